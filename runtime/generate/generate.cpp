#include "generate/generate.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "dist/dist.h"
#include "generate/engine.h"
#include "generate/stop.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace cai {
namespace {

// Left-pads rows into (B, T) ids and mask.
void left_pad(const std::vector<std::vector<int32_t>>& rows, size_t begin, size_t end, at::Tensor& ids,
              at::Tensor& mask) {
    size_t longest = 0;
    for (size_t i = begin; i < end; ++i) longest = std::max(longest, rows[i].size());
    const int64_t B = end - begin, T = longest;
    ids = at::zeros({B, T}, at::kLong);
    mask = at::zeros({B, T}, at::kLong);
    auto id = ids.accessor<int64_t, 2>();
    auto mk = mask.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
        const auto& row = rows[begin + b];
        int64_t offset = T - (int64_t)row.size();
        for (size_t t = 0; t < row.size(); ++t) {
            id[b][offset + t] = row[t];
            mk[b][offset + t] = 1;
        }
    }
}

struct row_state {
    rng stream{0};
    std::vector<int32_t> context;  // prompt + generated (repetition penalty)
    generation out;
    bool done = false;
    std::unique_ptr<stop_search> stops;  // with stop strings
};

// Length-prefixed fields for gathering results across ranks.
void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
void put_str(std::string& out, const std::string& s) {
    put_u64(out, s.size());
    out += s;
}
struct reader {
    const std::string& in;
    size_t at = 0;
    uint64_t u64() {
        if (at + 8 > in.size()) fail("dist: a gathered result is truncated");
        uint64_t v;
        std::memcpy(&v, in.data() + at, 8);
        at += 8;
        return v;
    }
    std::string str() {
        const uint64_t n = u64();
        if (at + n > in.size()) fail("dist: a gathered result is truncated");
        std::string s = in.substr(at, n);
        at += n;
        return s;
    }
};

// Every rank's part of a list, concatenated in rank order (= the original order).
template <class T, class Put, class Get>
std::vector<T> gather_in_order(const std::vector<T>& mine, size_t total, const char* what, Put put, Get get) {
    std::string bytes;
    put_u64(bytes, mine.size());
    for (const T& x : mine) put(bytes, x);
    std::vector<T> all;
    all.reserve(total);
    for (const std::string& part : dist::all_gather_bytes(bytes, what)) {
        reader r{part};
        const uint64_t n = r.u64();
        for (uint64_t i = 0; i < n; ++i) all.push_back(get(r));
    }
    if (all.size() != total) fail("dist: ", what, ": gathered ", all.size(), " results for ", total, " inputs");
    return all;
}

}  // namespace

std::vector<generation> generate(const model& m, const std::vector<std::vector<int32_t>>& prompts,
                                 const generate_options& o) {
    o.sampling.check();
    if (o.max_new_tokens < 0) fail("generate: max_new_tokens must be >= 0, got ", o.max_new_tokens);
    if (o.batch_size < 1) fail("generate: batch_size must be >= 1, got ", o.batch_size);
    if (o.prefill_chunk < 1) fail("generate: prefill_chunk must be >= 1, got ", o.prefill_chunk);
    if (o.block_size < 1) fail("generate: block_size must be >= 1, got ", o.block_size);
    if (o.kv_cache_bytes < 0) fail("generate: kv_cache_mb must be >= 0, got ", o.kv_cache_bytes / 1048576.0);
    for (const auto& s : o.stop)
        if (s.empty()) fail("generate: stop strings must not be empty");
    if (!o.streams.empty() && o.streams.size() != prompts.size())
        fail("generate: streams has ", o.streams.size(), " entries for ", prompts.size(),
             " prompts; give one stream index per prompt");
    if (!o.stop.empty() && !m.tok) fail("generate: stop strings need the model's tokenizer");
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (prompts[i].empty()) fail("generate: prompt ", i + 1, " has no tokens");
        for (int32_t id : prompts[i])
            if (id < 0 || id >= m.config.vocab_size)
                fail("generate: prompt ", i + 1, " holds token id ", id, ", outside the vocabulary [0, ",
                     m.config.vocab_size, ")");
        if ((int64_t)prompts[i].size() >= m.config.max_position_embeddings)
            fail("generate: prompt ", o.first_index + i + 1, " is ", prompts[i].size(),
                 " tokens, which leaves no room below the model's max_position_embeddings (",
                 m.config.max_position_embeddings, "); shorten the prompt");
    }
    if (o.shard && dist::world_size() > 1) {
        const dist::shard part = dist::shard_of(prompts.size());
        generate_options local = o;
        local.shard = false;
        local.first_index = o.first_index + part.begin;
        if (!o.streams.empty())
            local.streams.assign(o.streams.begin() + part.begin, o.streams.begin() + part.end);
        local.show_progress = o.show_progress && dist::is_main();
        std::vector<std::vector<int32_t>> mine(prompts.begin() + part.begin, prompts.begin() + part.end);
        std::vector<generation> done = generate(m, mine, local);
        return gather_in_order(
            done, prompts.size(), "generated text",
            [](std::string& out, const generation& g) {
                put_str(out, g.text);
                put_str(out, g.finish);
                put_str(out, std::string(reinterpret_cast<const char*>(g.tokens.data()), g.tokens.size() * 4));
            },
            [](reader& r) {
                generation g;
                g.text = r.str();
                g.finish = r.str();
                const std::string t = r.str();
                g.tokens.resize(t.size() / 4);
                if (!t.empty()) std::memcpy(g.tokens.data(), t.data(), t.size());
                return g;
            });
    }
    c10::InferenceMode no_grad;
    std::vector<generation> results(prompts.size());
    std::unique_ptr<progress> bar;
    if (o.show_progress && !prompts.empty()) bar = std::make_unique<progress>(
            o.progress_label.empty() ? std::string("generate") : "generate: " + o.progress_label, (long)prompts.size(),
            "prompts");
    if (o.continuous) {
        results = generate_continuous(m, prompts, o, bar.get());
        if (bar) bar->finish();
        return results;
    }
    // The earlier engine: fixed batches of batch_size prompts, each as long as its longest answer.
    const int64_t V = m.config.vocab_size;
    auto is_eos = [&](int32_t id) { return std::find(m.eos_ids.begin(), m.eos_ids.end(), id) != m.eos_ids.end(); };
    auto decode = [&](const std::vector<int32_t>& ids) { return m.tok ? m.tok->decode(ids, true) : std::string(); };

    for (size_t begin = 0; begin < prompts.size(); begin += o.batch_size) {
        const size_t end = std::min(prompts.size(), begin + (size_t)o.batch_size);
        const int64_t B = end - begin;
        std::vector<row_state> rows(B);
        for (int64_t b = 0; b < B; ++b) {
            rows[b].stream = rng(rng::derive(o.seed, stream_index(o, begin + b)));
            rows[b].context = prompts[begin + b];
            rows[b].out.finish = "length";
            if (!o.stop.empty()) rows[b].stops = std::make_unique<stop_search>(*m.tok, o.stop);
        }
        if (o.max_new_tokens == 0) {
            for (int64_t b = 0; b < B; ++b) results[begin + b] = rows[b].out;
            if (bar) bar->advance(B);
            continue;
        }
        // A row stops at the model's context length (finish "length"), never past it.
        std::vector<int64_t> limit(B);
        int64_t longest_limit = 0;
        for (int64_t b = 0; b < B; ++b) {
            limit[b] = std::min<int64_t>(o.max_new_tokens,
                                         m.config.max_position_embeddings - (int64_t)prompts[begin + b].size());
            longest_limit = std::max(longest_limit, limit[b]);
        }
        at::Tensor ids, mask;
        left_pad(prompts, begin, end, ids, mask);
        kv_cache cache = m.new_cache(B, ids.size(1) + longest_limit);
        // Prefill: only the last column's logits are needed (left padding keeps it real).
        at::Tensor hidden = m.hidden_states(ids, mask, &cache);
        at::Tensor logits = m.logits_from_hidden(hidden.narrow(1, hidden.size(1) - 1, 1));  // (B, 1, V)

        for (int64_t step = 0; step < longest_limit; ++step) {
            at::Tensor row_logits = logits.select(1, 0).to(at::kFloat).contiguous();  // (B, V)
            const float* data = row_logits.data_ptr<float>();
            at::Tensor next = at::zeros({B, 1}, at::kLong), next_mask = at::zeros({B, 1}, at::kLong);
            bool any_active = false;
            for (int64_t b = 0; b < B; ++b) {
                row_state& r = rows[b];
                if (r.done) continue;
                int32_t token = sample_token(data + b * V, V, o.sampling, r.context, r.stream);
                if (is_eos(token)) {
                    r.done = true;
                    r.out.finish = "eos";
                    continue;
                }
                r.out.tokens.push_back(token);
                r.context.push_back(token);
                if (r.stops && r.stops->add(r.out.tokens)) {
                    r.done = true;
                    r.out.finish = "stop";
                    r.out.text = r.stops->text();
                    continue;
                }
                if ((int64_t)r.out.tokens.size() == limit[b]) {
                    r.done = true;
                    continue;
                }
                next[b][0] = token;
                next_mask[b][0] = 1;
                any_active = true;
            }
            if (!any_active) break;
            logits = m.forward(next, next_mask, &cache);  // (B, 1, V)
        }
        for (int64_t b = 0; b < B; ++b) {
            if (rows[b].out.finish != "stop") rows[b].out.text = decode(rows[b].out.tokens);
            results[begin + b] = std::move(rows[b].out);
        }
        if (bar) bar->advance(B);
    }
    if (bar) bar->finish();
    return results;
}

pair_ids tokenize_pair(const tokenizer& tok, const std::string& prompt, const std::string& completion,
                       bool add_special_tokens) {
    pair_ids out;
    out.ids = tok.encode(prompt, add_special_tokens);
    out.completion_start = out.ids.size();
    std::vector<int32_t> tail = tok.encode(completion, false);
    out.ids.insert(out.ids.end(), tail.begin(), tail.end());
    return out;
}

std::vector<completion_logprob> score_completions(const model& m, const std::vector<std::vector<int32_t>>& prompts,
                                                  const std::vector<std::vector<int32_t>>& completions,
                                                  int64_t batch_size, bool shard) {
    if (prompts.size() != completions.size())
        fail("logprobs: ", prompts.size(), " prompts but ", completions.size(), " completions");
    if (batch_size < 1) fail("logprobs: batch_size must be >= 1");
    std::vector<std::vector<int32_t>> joined(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (prompts[i].empty()) fail("logprobs: prompt ", i + 1, " has no tokens");
        joined[i] = prompts[i];
        joined[i].insert(joined[i].end(), completions[i].begin(), completions[i].end());
        if ((int64_t)joined[i].size() > m.config.max_position_embeddings)
            fail("logprobs: prompt ", i + 1, " with its completion is ", joined[i].size(),
                 " tokens, more than the model's max_position_embeddings (", m.config.max_position_embeddings,
                 "); shorten the record");
        for (int32_t id : joined[i])
            if (id < 0 || id >= m.config.vocab_size)
                fail("logprobs: record ", i + 1, " holds token id ", id, ", outside the vocabulary [0, ",
                     m.config.vocab_size, ")");
    }
    if (shard && dist::world_size() > 1) {
        const dist::shard part = dist::shard_of(prompts.size());
        std::vector<std::vector<int32_t>> p(prompts.begin() + part.begin, prompts.begin() + part.end);
        std::vector<std::vector<int32_t>> c(completions.begin() + part.begin, completions.begin() + part.end);
        std::vector<completion_logprob> done = score_completions(m, p, c, batch_size, false);
        return gather_in_order(
            done, prompts.size(), "completion log-probs",
            [](std::string& out, const completion_logprob& x) {
                put_str(out, std::string(reinterpret_cast<const char*>(&x), sizeof x));
            },
            [](reader& r) {
                completion_logprob x;
                const std::string b = r.str();
                if (b.size() != sizeof x) fail("dist: a gathered log-prob has ", b.size(), " bytes");
                std::memcpy(&x, b.data(), sizeof x);
                return x;
            });
    }
    std::vector<completion_logprob> out(prompts.size());
    for (size_t begin = 0; begin < joined.size(); begin += batch_size) {
        const size_t end = std::min(joined.size(), begin + (size_t)batch_size);
        at::Tensor ids, mask;
        left_pad(joined, begin, end, ids, mask);
        // Rows are left-padded: the completion is the last n tokens, each scored at the position before it.
        const int64_t T = ids.size(1);
        at::Tensor targets = at::full({ids.size(0), T}, -100, at::kLong);  // (B, T)
        for (size_t i = begin; i < end; ++i) {
            const int64_t n = (int64_t)completions[i].size(), b = (int64_t)(i - begin);
            if (n > 0) targets[b].narrow(0, T - n - 1, n).copy_(ids[b].narrow(0, T - n, n));
        }
        at::Tensor lp = m.target_logprobs(ids, mask, targets).to(at::kDouble).contiguous();  // (B, T)
        auto acc = lp.accessor<double, 2>();
        for (size_t i = begin; i < end; ++i) {
            completion_logprob& r = out[i];
            r.n = (int64_t)completions[i].size();
            for (int64_t t = T - r.n - 1; t < T - 1; ++t) r.sum += acc[i - begin][t];
            r.mean = r.n ? r.sum / r.n : 0;
            if (!std::isfinite(r.sum))
                fail("logprobs: record ", i + 1, " has a ", std::isnan(r.sum) ? "NaN" : "infinite",
                     " log-probability; the model's weights or config produce non-finite logits (check the "
                     "safetensors for NaN/inf and config.json's rope_theta and rms_norm_eps)");
        }
    }
    return out;
}

}  // namespace cai

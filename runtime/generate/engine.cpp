// Shapes: n rows in one forward, T tokens per row, V vocabulary.
#include "generate/engine.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/strings.h"
#include "generate/kv_pool.h"
#include "generate/stop.h"
#include "model/kv_memory.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace cai {
namespace {

// One prompt in a slot: its KV blocks, how far its prompt is computed, its sample so far.
struct live_row {
    size_t prompt = 0;                   // index into the call's prompts
    const std::vector<int32_t>* ids = nullptr;  // the prompt
    int64_t limit = 0;                   // new tokens at most
    std::vector<int32_t> blocks;         // pool blocks holding slots [0, blocks.size() * block_size)
    int64_t reserved = 0;                // blocks promised by the pool, not yet taken
    int64_t length = 0;                  // slots filled (prompt tokens, then generated ones)
    bool waiting = false;                // for prefix blocks another row is computing
    bool has_next = false;               // next: sampled, to be fed at the next decode
    int32_t next = 0;
    rng stream{0};
    std::vector<int32_t> context;        // prompt + generated (repetition penalty)
    std::vector<int32_t> tokens;         // generated
    std::unique_ptr<stop_search> stops;  // with stop strings
    int64_t prompt_len() const { return (int64_t)ids->size(); }
    bool prefilling() const { return length < prompt_len(); }
};

// Everything that decides what a prompt's keys and values are: the weights,
// their in-place versions and the adapters' state. Cached prefixes are kept
// across calls only while this stays the same. 0: not trackable (a weight
// made under InferenceMode has no version counter), never kept.
uint64_t weights_fingerprint(const model& m) {
    uint64_t h = 1469598103934665603ull;
    bool trackable = true;
    auto mix = [&](uint64_t x) { h = (h ^ x) * 1099511628211ull; };
    auto tensor = [&](const at::Tensor& t) {
        if (!t.defined()) return mix(0);
        mix((uint64_t)(uintptr_t)t.data_ptr());
        if (t.is_inference()) trackable = false;
        else mix((uint64_t)t._version());
    };
    auto norm = [&](const rms_norm& n) { tensor(n.weight); };
    auto lin = [&](const linear& l) {
        tensor(l.weight);
        tensor(l.weight_q);
        tensor(l.weight_scale);
        tensor(l.bias);
        tensor(l.lora_a);
        tensor(l.lora_b);
        mix(l.lora_enabled);
        mix(l.lora_merged);
        uint64_t bits;
        std::memcpy(&bits, &l.lora_scale, 8);
        mix(bits);
    };
    mix((uint64_t)m.dtype);
    tensor(m.embed_tokens);
    norm(m.final_norm);
    lin(m.lm_head);
    for (const auto& l : m.layers) {
        for (const rms_norm* n : {&l.input_norm, &l.post_attention_norm, &l.pre_feedforward_norm,
                                  &l.post_feedforward_norm, &l.q_norm, &l.k_norm})
            norm(*n);
        for (const linear* p : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
            lin(*p);
    }
    return trackable && h != 0 ? h : 0;
}

// Prompt-prefix blocks kept on the model between calls (model::generation_state).
struct kept_prefixes {
    uint64_t fingerprint = 0;
    int64_t block_size = 0;
    std::vector<at::Tensor> k, v;               // per layer: (n, block_size, Hkv, D)
    std::vector<std::vector<int32_t>> keys;     // per kept block: its prefix, least recently used first
};

// Prefix blocks kept between calls: at most this many bytes (the most recently used first).
constexpr int64_t kept_prefix_bytes = 256ll << 20;

class engine {
public:
    engine(const model& m, const std::vector<std::vector<int32_t>>& prompts, const generate_options& o, progress* bar)
        : m_(m), prompts_(prompts), o_(o), bar_(bar), bs_(o.block_size), results_(prompts.size()) {}

    std::vector<generation> run();

private:
    int64_t limit_of(size_t p) const {
        return std::min<int64_t>(o_.max_new_tokens, m_.config.max_position_embeddings - (int64_t)prompts_[p].size());
    }
    int64_t blocks_for(size_t p) const {  // the most blocks prompt p can fill
        return ((int64_t)prompts_[p].size() + limit_of(p) + bs_ - 1) / bs_;
    }
    void make_pool();
    void keep_prefixes();
    bool admit(size_t slot);
    void match_prefix(live_row& r);
    bool computed_elsewhere(const live_row& r) const;
    void ensure_blocks(live_row& r, int64_t slots);
    at::Tensor forward(const std::vector<live_row*>& rows, const at::Tensor& ids, const at::Tensor& mask);
    void accept(live_row& r, const float* logits);
    void finish(size_t slot, const std::string& why);

    const model& m_;
    const std::vector<std::vector<int32_t>>& prompts_;
    const generate_options& o_;
    progress* bar_;
    const int64_t bs_;
    std::vector<generation> results_;
    std::unique_ptr<kv_pool> pool_;
    std::vector<std::unique_ptr<live_row>> slots_;
    size_t next_prompt_ = 0, finished_ = 0;
    int64_t step_ = 0, generated_ = 0;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

void engine::make_pool() {
    int64_t widest = 0;
    for (size_t p = 0; p < prompts_.size(); ++p) widest = std::max(widest, blocks_for(p));
    const int64_t bytes_per_block = 2 * (int64_t)m_.layers.size() * bs_ * m_.config.num_kv_heads *
                                    m_.config.head_dim * (int64_t)at::elementSize(m_.dtype);
    int64_t blocks = o_.batch_size * widest;
    if (o_.kv_cache_bytes <= 0) check_kv_cache_fits(m_, o_.batch_size, widest * bs_);
    if (o_.kv_cache_bytes > 0) {
        check_kv_budget_fits(m_, (double)o_.kv_cache_bytes);
        blocks = o_.kv_cache_bytes / bytes_per_block;
        for (size_t p = 0; p < prompts_.size(); ++p)
            if (blocks_for(p) > blocks)
                fail("generate: prompt ", o_.first_index + p + 1, " needs ", blocks_for(p) * bs_, " KV slots (",
                     format_bytes(blocks_for(p) * bytes_per_block), ": ", prompts_[p].size(), " prompt tokens + up to ",
                     limit_of(p), " new) but the KV pool holds ", blocks * bs_, " slots (",
                     format_bytes(blocks * bytes_per_block), " of kv_cache_mb = ", format_bytes(o_.kv_cache_bytes),
                     "); raise kv_cache_mb or lower max_new_tokens");
    }
    std::shared_ptr<kept_prefixes> kept = std::static_pointer_cast<kept_prefixes>(m_.generation_state);
    const bool reuse = kept && o_.prefix_cache && kept->block_size == bs_ && kept->fingerprint == weights_fingerprint(m_);
    const int64_t kept_n = reuse ? (int64_t)kept->keys.size() : 0;
    pool_ = std::make_unique<kv_pool>(m_, std::max<int64_t>(blocks, 1) + kept_n, bs_);
    if (kept_n > 0) {  // the kept blocks go first, cached and unreferenced (evicted first when space runs out)
        for (size_t l = 0; l < m_.layers.size(); ++l) {
            pool_->k[l].narrow(0, 0, kept_n).copy_(kept->k[l]);
            pool_->v[l].narrow(0, 0, kept_n).copy_(kept->v[l]);
        }
        for (int64_t i = 0; i < kept_n; ++i) {
            if (!pool_->reserve(1)) fail("generate: KV pool: no room for a kept prefix block");
            const int32_t b = pool_->take();
            if (b != i) fail("generate: KV pool: kept blocks out of order");
            pool_->remember(kept->keys[i], kept->keys[i].size(), b);
        }
        for (int64_t i = 0; i < kept_n; ++i) pool_->release((int32_t)i);
    }
    if (o_.trace) {
        o_.trace->pool_blocks = pool_->blocks();
        o_.trace->pool_bytes = pool_->blocks() * pool_->bytes_per_block();
    }
}

// Copies the most recently used cached prefix blocks (up to kept_prefix_bytes) onto the model.
void engine::keep_prefixes() {
    if (!o_.prefix_cache) return;
    std::vector<std::pair<std::vector<int32_t>, int32_t>> blocks = pool_->cached_lru();
    const int64_t room = kept_prefix_bytes / pool_->bytes_per_block();
    if ((int64_t)blocks.size() > room) blocks.erase(blocks.begin(), blocks.end() - room);
    auto kept = std::make_shared<kept_prefixes>();
    kept->fingerprint = weights_fingerprint(m_);
    if (kept->fingerprint == 0) {
        m_.generation_state.reset();
        return;
    }
    kept->block_size = bs_;
    if (!blocks.empty()) {
        std::vector<int64_t> ids;
        for (auto& b : blocks) {
            ids.push_back(b.second);
            kept->keys.push_back(std::move(b.first));
        }
        at::Tensor index = at::tensor(ids, at::kLong);
        for (size_t l = 0; l < m_.layers.size(); ++l) {
            kept->k.push_back(pool_->k[l].index_select(0, index));
            kept->v.push_back(pool_->v[l].index_select(0, index));
        }
    }
    m_.generation_state = kept;
}

// Takes blocks already holding r's next prompt blocks; at least one prompt token is always left to compute.
void engine::match_prefix(live_row& r) {
    if (!o_.prefix_cache) return;
    while (r.length % bs_ == 0 && r.length == (int64_t)r.blocks.size() * bs_ && r.length + bs_ <= r.prompt_len() - 1) {
        const int32_t b = pool_->lookup(*r.ids, (size_t)(r.length + bs_));
        if (b < 0) break;
        pool_->retain(b);
        --r.reserved;
        r.blocks.push_back(b);
        r.length += bs_;
        if (o_.trace) o_.trace->prompt_tokens_reused += bs_;
    }
}

// Whether a row admitted before r, not itself waiting, is computing r's next prompt block.
bool engine::computed_elsewhere(const live_row& r) const {
    if (!o_.prefix_cache || r.length % bs_ != 0) return false;
    const int64_t end = r.length + bs_;
    if (end > r.prompt_len() - 1) return false;
    for (const auto& other : slots_) {
        if (!other || other.get() == &r || other->waiting || other->prompt > r.prompt) continue;
        if (!other->prefilling() || other->length >= end || other->prompt_len() < end) continue;
        if (std::equal(r.ids->begin(), r.ids->begin() + end, other->ids->begin())) return true;
    }
    return false;
}

bool engine::admit(size_t slot) {
    const size_t p = next_prompt_;
    if (!pool_->reserve(blocks_for(p))) return false;  // waits for rows to finish
    auto r = std::make_unique<live_row>();
    r->prompt = p;
    r->ids = &prompts_[p];
    r->limit = limit_of(p);
    r->reserved = blocks_for(p);
    r->stream = rng(rng::derive(o_.seed, stream_index(o_, p)));
    r->context = prompts_[p];
    if (!o_.stop.empty()) r->stops = std::make_unique<stop_search>(*m_.tok, o_.stop);
    if (o_.trace) {
        o_.trace->slot[p] = (int64_t)slot;
        o_.trace->admitted_step[p] = step_;
        o_.trace->prompt_tokens += r->prompt_len();
    }
    slots_[slot] = std::move(r);
    ++next_prompt_;
    return true;
}

// Blocks for r's slots [0, slots).
void engine::ensure_blocks(live_row& r, int64_t slots) {
    while ((int64_t)r.blocks.size() * bs_ < slots) {
        if (r.reserved < 1) fail("generate: KV pool: prompt ", r.prompt + 1, " outgrew its reservation");
        r.blocks.push_back(pool_->take());
        --r.reserved;
    }
}

// One forward over some rows' new tokens. ids, mask: (n, T), left-padded. -> (n, T, C) hidden states.
at::Tensor engine::forward(const std::vector<live_row*>& rows, const at::Tensor& ids, const at::Tensor& mask) {
    const int64_t n = (int64_t)rows.size();
    size_t widest = 0;
    for (live_row* r : rows) widest = std::max(widest, r->blocks.size());
    kv_cache cache;
    cache.k = pool_->k;
    cache.v = pool_->v;
    cache.block_size = bs_;
    cache.capacity = (int64_t)widest * bs_;
    cache.block_table = at::zeros({n, (int64_t)widest}, at::kLong);  // unused entries name block 0, never read
    auto table = cache.block_table.accessor<int64_t, 2>();
    for (int64_t i = 0; i < n; ++i) {
        cache.length.push_back(rows[i]->length);
        for (size_t j = 0; j < rows[i]->blocks.size(); ++j) table[i][j] = rows[i]->blocks[j];
    }
    at::Tensor hidden = m_.hidden_states(ids, mask, &cache);
    for (int64_t i = 0; i < n; ++i) rows[i]->length = cache.length[i];
    return hidden;
}

// Samples r's next token from its logits (V) and decides whether r is done.
void engine::accept(live_row& r, const float* logits) {
    const int64_t V = m_.config.vocab_size;
    const int32_t token = sample_token(logits, V, o_.sampling, r.context, r.stream);
    r.has_next = false;
    size_t slot = 0;
    while (slots_[slot].get() != &r) ++slot;
    if (std::find(m_.eos_ids.begin(), m_.eos_ids.end(), token) != m_.eos_ids.end()) return finish(slot, "eos");
    r.tokens.push_back(token);
    r.context.push_back(token);
    ++generated_;
    if (r.stops && r.stops->add(r.tokens)) return finish(slot, "stop");
    if ((int64_t)r.tokens.size() == r.limit) return finish(slot, "length");
    r.next = token;
    r.has_next = true;
}

void engine::finish(size_t slot, const std::string& why) {
    std::unique_ptr<live_row> r = std::move(slots_[slot]);
    generation& g = results_[r->prompt];
    g.finish = why;
    g.text = why == "stop" ? r->stops->text() : m_.tok ? m_.tok->decode(r->tokens, true) : std::string();
    g.tokens = std::move(r->tokens);
    for (int32_t b : r->blocks) pool_->release(b);
    pool_->unreserve(r->reserved);
    if (o_.trace) o_.trace->finished_step[r->prompt] = step_;
    ++finished_;
    if (bar_) {
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        char extra[48];
        std::snprintf(extra, sizeof extra, "%.0f tok/s", seconds > 0 ? generated_ / seconds : 0.0);
        bar_->advance(1, extra);
    }
}

std::vector<generation> engine::run() {
    const size_t N = prompts_.size();
    if (o_.trace) {
        *o_.trace = generate_trace();
        o_.trace->slot.assign(N, -1);
        o_.trace->admitted_step.assign(N, -1);
        o_.trace->finished_step.assign(N, -1);
    }
    if (N == 0) return {};
    if (o_.max_new_tokens == 0) {
        for (auto& g : results_) g.finish = "length";
        if (bar_) bar_->advance((long)N);
        return results_;
    }
    make_pool();
    slots_.resize((size_t)o_.batch_size);
    const int64_t V = m_.config.vocab_size;
    while (finished_ < N) {
        // Free slots take the next prompts, lowest slot first.
        for (size_t s = 0; s < slots_.size() && next_prompt_ < N; ++s)
            if (!slots_[s] && !admit(s)) break;
        // Rows still to compute their prompt take shared blocks; one whose next block another row is computing waits.
        std::vector<live_row*> order;  // running rows in prompt order
        for (auto& r : slots_)
            if (r) order.push_back(r.get());
        std::sort(order.begin(), order.end(), [](live_row* a, live_row* b) { return a->prompt < b->prompt; });
        for (live_row* r : order) {
            if (!r->prefilling()) continue;
            match_prefix(*r);
            r->waiting = computed_elsewhere(*r);
        }
        if (order.empty()) fail("generate: KV pool: no prompt fits (", pool_->available(), " blocks free)");

        // Decode: one token for every row that has one to feed.
        std::vector<live_row*> decoding, prefill_candidates;
        for (live_row* r : order) {
            if (r->has_next) decoding.push_back(r);
            else if (r->prefilling()) prefill_candidates.push_back(r);
        }
        if (!decoding.empty()) {
            const int64_t n = (int64_t)decoding.size();
            at::Tensor ids = at::empty({n, 1}, at::kLong);
            for (int64_t i = 0; i < n; ++i) {
                ensure_blocks(*decoding[i], decoding[i]->length + 1);
                ids[i][0] = decoding[i]->next;
            }
            at::Tensor logits = m_.logits_from_hidden(forward(decoding, ids, at::Tensor()));  // (n, 1, V)
            at::Tensor rows = logits.select(1, 0).to(at::kFloat).contiguous();                   // (n, V)
            const float* data = rows.data_ptr<float>();
            for (int64_t i = 0; i < n; ++i) accept(*decoding[i], data + i * V);
            order.clear();
            for (live_row* r : prefill_candidates) order.push_back(r);
        }

        // Prefill: up to prefill_chunk prompt tokens, rows in prompt order, equal chunks (left-padded).
        // (Rows that finished above are gone from their slots; decoding rows are past their prompt.)
        std::vector<live_row*> filling;
        int64_t longest = 0;
        for (live_row* r : order)
            if (r->prefilling() && !r->waiting) {
                filling.push_back(r);
                longest = std::max(longest, r->prompt_len() - r->length);
            }
        if (!filling.empty()) {
            const int64_t T = std::min(longest, o_.prefill_chunk);
            filling.resize((size_t)std::min<int64_t>((int64_t)filling.size(), std::max<int64_t>(1, o_.prefill_chunk / T)));
            const int64_t n = (int64_t)filling.size();
            at::Tensor ids = at::zeros({n, T}, at::kLong), mask = at::zeros({n, T}, at::kLong);
            auto id = ids.accessor<int64_t, 2>();
            auto mk = mask.accessor<int64_t, 2>();
            std::vector<int64_t> before(n);
            for (int64_t i = 0; i < n; ++i) {
                live_row& r = *filling[i];
                const int64_t take = std::min(T, r.prompt_len() - r.length);
                before[i] = r.length;
                ensure_blocks(r, r.length + take);
                for (int64_t t = 0; t < take; ++t) {
                    id[i][T - take + t] = (*r.ids)[r.length + t];
                    mk[i][T - take + t] = 1;
                }
            }
            at::Tensor hidden = forward(filling, ids, mask);  // (n, T, C)
            at::Tensor logits = m_.logits_from_hidden(hidden.narrow(1, T - 1, 1)).select(1, 0).to(at::kFloat).contiguous();
            const float* data = logits.data_ptr<float>();  // (n, V): each row's last new token (left padding)
            for (int64_t i = 0; i < n; ++i) {
                live_row& r = *filling[i];
                if (o_.prefix_cache)  // full prompt blocks computed now can serve other prompts
                    for (int64_t end = (before[i] / bs_ + 1) * bs_; end <= std::min(r.length, r.prompt_len()); end += bs_)
                        pool_->remember(*r.ids, (size_t)end, r.blocks[end / bs_ - 1]);
                if (!r.prefilling()) accept(r, data + i * V);
            }
        }
        ++step_;
    }
    if (o_.trace) o_.trace->steps = step_;
    keep_prefixes();
    return std::move(results_);
}

}  // namespace

std::vector<generation> generate_continuous(const model& m, const std::vector<std::vector<int32_t>>& prompts,
                                            const generate_options& options, progress* bar) {
    engine e(m, prompts, options, bar);
    return e.run();
}

}  // namespace cai

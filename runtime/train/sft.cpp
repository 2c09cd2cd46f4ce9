// Supervised fine-tuning over trainer_loop (see sft.h).
#include "train/sft.h"

#include <algorithm>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "dist/dist.h"
#include "generate/generate.h"
#include "model/model.h"
#include "model/save.h"
#include "tokenizer/tokenizer.h"
#include "train/lora.h"
#include "train/token_batch.h"

namespace cai {

namespace {

int32_t eos_id_of(const model& m) {
    if (m.tok && m.tok->eos_id >= 0) return m.tok->eos_id;
    if (!m.eos_ids.empty()) return static_cast<int32_t>(m.eos_ids.front());
    fail("sft: eos = true but the model's tokenizer and config name no EOS token; set eos = false or use a "
         "tokenizer with an eos_token");
}

// Each trained run of ids, decoded: the few tokens before it, its first and
// last few, and the few after it: "...before" [start ... end] "after...".
std::string boundary_text(const tokenizer& tok, const sft_tokens& t) {
    const size_t k = 8;
    auto text = [&](size_t from, size_t to) {  // quoted, line breaks as \n: one log line
        std::vector<int32_t> ids(t.ids.begin() + from, t.ids.begin() + to);
        std::string out = "\"";
        for (char c : tok.decode(ids, false)) out += c == '\n' ? std::string("\\n") : std::string(1, c);
        return out + "\"";
    };
    std::string out;
    for (size_t s = 0; s < t.ids.size();) {
        if (!t.trains(s)) {
            ++s;
            continue;
        }
        size_t e = s;
        while (e < t.ids.size() && t.trains(e)) ++e;
        if (!out.empty()) out += "; ";
        out += text(s > k ? s - k : 0, s) + " [";
        if (e - s <= 2 * k)
            out += text(s, e);
        else
            out += text(s, s + k) + " ... " + text(e - k, e);
        out += "] " + text(e, std::min(t.ids.size(), e + k));
        s = e;
    }
    return out;
}

}  // namespace

std::vector<sft_tokens> sft_tokenize(const model& m, const std::vector<sft_example>& data, bool eos,
                                     bool add_special_tokens, int64_t max_length, const char* field) {
    if (!m.tok) fail("sft: the model has no tokenizer");
    if (data.empty()) fail("sft: data is empty; give at least one {prompt=, response=} record");
    if (max_length < 0) fail("sft: max_length must be >= 0 (0: no truncation), got ", max_length);
    const int64_t context = m.config.max_position_embeddings;
    if (max_length > context)
        fail("sft: max_length = ", max_length, " is more than the model's max_position_embeddings (", context, ")");
    size_t cut = 0, longest = 0;
    // A record longer than the context is refused, naming it; with max_length
    // it keeps its first max_length tokens (TRL's truncation) and must still
    // hold a trained token.
    auto fit = [&](sft_tokens& t, size_t i) {
        longest = std::max(longest, t.ids.size());
        if (max_length > 0 && (int64_t)t.ids.size() > max_length) {
            t.ids.resize((size_t)max_length);
            if (!t.trained.empty()) t.trained.resize((size_t)max_length);
            t.has_eos = false;
            ++cut;
            if (t.n_trained() == 0)
                fail("sft: ", field, "[", i + 1, "]: the prompt alone is ", t.response_start,
                     " tokens, so max_length = ", max_length, " leaves no response token to train on; shorten the "
                     "prompt or raise max_length");
        } else if ((int64_t)t.ids.size() > context) {
            fail("sft: ", field, "[", i + 1, "] is ", t.ids.size(), " tokens, more than the model's "
                 "max_position_embeddings (", context, "); shorten it, or set max_length = N to truncate long "
                 "records");
        }
    };
    const int32_t eos_id = eos ? eos_id_of(m) : -1;
    std::vector<sft_tokens> out;
    out.reserve(data.size());
    for (size_t i = 0; i < data.size(); ++i) {
        sft_tokens t;
        if (data[i].segments.empty()) {
            pair_ids p = tokenize_pair(*m.tok, data[i].prompt, data[i].response, add_special_tokens);
            t.ids = std::move(p.ids);
            t.response_start = p.completion_start;
            if (eos) {
                t.ids.push_back(eos_id);
                t.has_eos = true;
            }
            if (t.ids.size() <= t.response_start)
                fail("sft: data[", i + 1, "]: field \"response\" gives no token to train on (empty response",
                     eos ? "" : " and eos = false", "); remove the record or give it a response");
            if (t.response_start == 0)
                fail("sft: data[", i + 1, "]: field \"prompt\" gives no token (empty prompt and no BOS); the first "
                     "response token needs a token before it");
            fit(t, i);
            out.push_back(std::move(t));
            continue;
        }
        for (size_t p = 0; p < data[i].segments.size(); ++p) {
            const sft_segment& piece = data[i].segments[p];
            std::vector<int32_t> ids = m.tok->encode(piece.text, p == 0 && add_special_tokens);
            t.ids.insert(t.ids.end(), ids.begin(), ids.end());
            t.trained.insert(t.trained.end(), ids.size(), piece.trained ? 1 : 0);
        }
        if (eos) {
            t.ids.push_back(eos_id);
            t.trained.push_back(1);
            t.has_eos = true;
        }
        t.response_start = t.ids.size();
        for (size_t j = t.ids.size(); j-- > 1;)
            if (t.trained[j]) t.response_start = j;
        if (t.n_trained() == 0)
            fail("sft: data[", i + 1, "]: no token to train on (the trained pieces give no token after the first "
                 "one); remove the record or give it a completion");
        fit(t, i);
        out.push_back(std::move(t));
    }
    if (cut > 0)
        log_warn("sft: max_length = ", max_length, " truncated ", cut, " of ", data.size(), " ", field,
                 " records (the longest had ", longest, " tokens)");
    return out;
}

at::Tensor sft_loss(const model& m, const std::vector<const sft_tokens*>& rows, int64_t min_length) {
    std::vector<token_row> scored;
    for (const auto* r : rows) scored.push_back({&r->ids, r->response_start, r->trained.empty() ? nullptr : &r->trained});
    token_batch batch = pad_token_rows(m, scored, min_length);
    at::Tensor token_logp = m.target_logprobs(batch.ids, batch.mask, batch.targets);  // (B, T)
    return -token_logp.sum() / batch.scored.sum();
}

train_result sft_train(model& m, const std::vector<sft_example>& data, const sft_options& options) {
    std::vector<sft_tokens> examples = sft_tokenize(m, data, options.eos, options.add_special_tokens, options.max_length, "data");
    if (!options.full && !lora_present(m))
        fail("sft: the model has no LoRA adapters; call m:add_lora{...} first, or pass full = true to train all "
             "weights");

    int64_t trained_total = 0;
    std::vector<int64_t> lengths;
    for (const auto& e : examples) {
        lengths.push_back((int64_t)e.ids.size());
        trained_total += (int64_t)e.n_trained();
    }
    log_info("sft: ", examples.size(), " examples, ", trained_total, " trained tokens");
    for (int64_t i = 0; i < options.preview && i < (int64_t)examples.size(); ++i) {
        const auto& e = examples[i];
        log_info("sft: example ", i + 1, ": ", e.ids.size() - e.n_trained(), " tokens masked, ", e.n_trained(),
                 " trained, EOS ", e.has_eos ? "present" : "absent", "; trained [in brackets]: ",
                 boundary_text(*m.tok, e));
    }

    std::vector<sft_tokens> eval_examples;
    if (!options.eval_data.empty())
        eval_examples = sft_tokenize(m, options.eval_data, options.eos, options.add_special_tokens,
                                     options.max_length, "eval_data");
    const bool lora = lora_present(m);

    trainer_eval eval;
    eval.set_option = "eval_data";
    eval.has_set = !eval_examples.empty();
    eval.metrics = {"eval_loss"};
    eval.evaluate = [&]() -> metric_values {
        // Response-token cross-entropy over the eval set, dropout off.
        at::NoGradGuard no_grad;
        if (lora) lora_set_training(m, false);
        const size_t chunk = scoring_batch_size(options.trainer);
        double sum = 0;
        int64_t count = 0;
        for (size_t s = 0; s < eval_examples.size(); s += chunk) {
            std::vector<const sft_tokens*> rows;
            int64_t n = 0;
            for (size_t i = s; i < std::min(eval_examples.size(), s + chunk); ++i) {
                rows.push_back(&eval_examples[i]);
                n += (int64_t)eval_examples[i].n_trained();
            }
            sum += sft_loss(m, rows).item<double>() * double(n);
            count += n;
        }
        if (lora) lora_set_training(m, true);
        return {{"eval_loss", sum / double(count)}};
    };
    eval.save_best = [&m, &options](const std::string& dir) {
        if (!dist::is_main()) return;  // rank 0 writes
        if (options.full)
            save_model(m, dir, m.dtype);
        else
            lora_save(m, dir);
    };

    trainer_loop loop(options.trainer, trainable_parameters(m, options.full), lengths);
    loop.metadata = std::string("{\"trainer\": \"sft\", \"full\": ") + (options.full ? "true" : "false") + "}";
    if (!options.full) loop.extra_files = lora_checkpoint_files(m);
    loop.begin("sft", std::move(eval));
    struct training_mode {
        model& m;
        bool on;
        training_mode(model& m_, bool lora_) : m(m_), on(lora_) {
            if (on) lora_set_training(m, true);
        }
        ~training_mode() {
            if (on) lora_set_training(m, false);
        }
    } mode(m, lora);

    while (!loop.done()) {
        if (lora) lora_set_dropout_seed(m, rng::derive(options.trainer.seed, (uint64_t)loop.step()));
        auto micro = loop.next_micro_batches();
        double loss_sum = 0;
        int64_t tokens = 0;
        for (const auto& batch : micro) {
            // This rank's rows of the micro-batch (all of them in one process).
            // The loss is a mean over the whole micro-batch's response tokens,
            // so a rank's mean is scaled by its share of them: the sum over
            // ranks of the scaled losses (and gradients) is the 1-process value.
            const dist::shard part = dist::shard_of(batch.size());
            std::vector<const sft_tokens*> rows;
            int64_t batch_trained = 0, part_trained = 0, batch_length = 0;
            for (size_t k = 0; k < batch.size(); ++k) {
                const sft_tokens& e = examples[batch[k]];
                const int64_t trained = (int64_t)e.n_trained();
                batch_trained += trained;
                batch_length = std::max<int64_t>(batch_length, (int64_t)e.ids.size());
                if (!part.contains(k)) continue;
                rows.push_back(&e);
                part_trained += trained;
                tokens += (int64_t)e.ids.size();
            }
            if (rows.empty()) continue;
            at::Tensor loss = sft_loss(m, rows, batch_length);
            if (part_trained != batch_trained) loss = loss * (double(part_trained) / double(batch_trained));
            (loss / double(micro.size())).backward();
            loss_sum += loss.item<double>();
        }
        loop.finish_step(loss_sum / double(micro.size()), {}, tokens);
    }
    return loop.finish();
}

}  // namespace cai

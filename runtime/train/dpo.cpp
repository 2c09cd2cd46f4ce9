// DPO over trainer_loop (see dpo.h); the reference cache is dpo_reference.h.
#include "train/dpo.h"

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "dist/dist.h"
#include "generate/generate.h"
#include "kernels/cpu.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/dpo_loss.h"
#include "train/dpo_loss_fused.h"
#include "train/dpo_reference.h"
#include "train/lora.h"
#include "train/token_batch.h"

namespace cai {

namespace {

dpo_tokens tokenize_completion(const model& m, const std::string& prompt, const std::string& completion,
                               int32_t eos_id, size_t index, const char* field, bool add_special_tokens,
                               int64_t max_length, size_t* cut, const char* list = "pairs") {
    pair_ids p = tokenize_pair(*m.tok, prompt, completion, add_special_tokens);
    dpo_tokens t{std::move(p.ids), p.completion_start};
    if (eos_id >= 0) t.ids.push_back(eos_id);
    const int64_t context = m.config.max_position_embeddings;
    if (max_length > 0 && (int64_t)t.ids.size() > max_length) {
        if ((int64_t)t.completion_start >= max_length)
            fail("dpo: ", list, "[", index + 1, "]: the prompt alone is ", t.completion_start, " tokens, so max_length = ",
                 max_length, " leaves no \"", field, "\" token; shorten the prompt or raise max_length");
        t.ids.resize((size_t)max_length);
        ++*cut;
    } else if ((int64_t)t.ids.size() > context) {
        fail("dpo: ", list, "[", index + 1, "]: prompt + \"", field, "\" is ", t.ids.size(),
             " tokens, more than the model's max_position_embeddings (", context,
             "); shorten it, or set max_length = N to truncate long pairs");
    }
    if (t.ids.size() <= t.completion_start)
        fail("dpo: pairs[", index + 1, "]: field \"", field, "\" gives no token (empty and eos = false)");
    if (t.completion_start == 0)
        fail("dpo: pairs[", index + 1, "]: field \"prompt\" gives no token (empty prompt and no BOS)");
    return t;
}

// Rows right-padded into one batch, T at least min_length; their completion tokens are scored.
token_batch batch_of(const model& m, const std::vector<const dpo_tokens*>& rows, int64_t min_length = 0) {
    std::vector<token_row> scored;
    for (const auto* r : rows) scored.push_back({&r->ids, r->completion_start});
    return pad_token_rows(m, scored, min_length);
}

// Per completion (B): its token log-probs summed over the scored tokens, or averaged.
at::Tensor logps_of(const at::Tensor& token_logp, const at::Tensor& scored, bool average) {
    at::Tensor sums = (token_logp * scored).sum(1);  // (B)
    return average ? sums / scored.sum(1) : sums;
}

// The token log-probs (B, T) of a batch's completion tokens under m, 0 elsewhere.
at::Tensor token_logps(const model& m, const token_batch& batch) {
    return m.target_logprobs(batch.ids, batch.mask, batch.targets);
}

// dpo_loss_forward and dpo_metrics, or the fused pass (dpo_loss_fused.h)
// computing both in one pass when the kernels are on.
dpo_loss_result dpo_loss_and_metrics(const at::Tensor& pc, const at::Tensor& pr, const at::Tensor& rc,
                                     const at::Tensor& rr, const dpo_options& o,
                                     std::map<std::string, double>& metrics) {
    if (kernels::enabled())
        return dpo_loss_fused(pc, pr, rc, rr, o.beta, o.loss, o.label_smoothing, false, 0.05, &metrics);
    dpo_loss_result r = dpo_loss_forward(pc, pr, rc, rr, o.beta, o.loss, o.label_smoothing, false, 0.05);
    metrics = dpo_metrics(r, pc, pr);
    return r;
}

// One batch's DPO loss: rows are the chosen completions of n pairs, then
// their rejected ones; reference (2n) their reference log-probs. loss is the
// mean over the pairs (plus rpo_alpha times the chosen tokens' mean NLL);
// a data-parallel rank scales the pair means by pair_share and the NLL by
// token_share, its shares of the micro-batch, so the ranks' sums are the
// 1-process values. metrics: TRL's, and nll_loss with rpo_alpha.
struct dpo_batch_loss {
    at::Tensor loss;
    std::map<std::string, double> metrics;
};
dpo_batch_loss dpo_loss_of_batch(const model& m, const token_batch& tokens, const at::Tensor& reference_in, int64_t n,
                                 const dpo_options& o, double pair_share = 1.0, double token_share = 1.0) {
    const bool average = o.loss == "ipo";
    at::Tensor token_logp = token_logps(m, tokens);                     // (2n, T)
    at::Tensor policy = logps_of(token_logp, tokens.scored, average);   // (2n)
    at::Tensor reference = reference_in.to(policy.device());            // (2n)
    at::Tensor pc = policy.slice(0, 0, n), pr = policy.slice(0, n, 2 * n);
    dpo_batch_loss out;
    dpo_loss_result r =
        dpo_loss_and_metrics(pc, pr, reference.slice(0, 0, n), reference.slice(0, n, 2 * n), o, out.metrics);
    out.loss = r.losses.mean();
    if (pair_share != 1.0) out.loss = out.loss * pair_share;
    for (auto& kv : out.metrics) kv.second *= pair_share;
    if (o.rpo_alpha > 0) {
        // mean -log p over the chosen rows' completion tokens
        const at::Tensor chosen_scored = tokens.scored.slice(0, 0, n);
        at::Tensor nll = -(token_logp.slice(0, 0, n) * chosen_scored).sum() / chosen_scored.sum();
        if (token_share != 1.0) nll = nll * token_share;
        out.loss = out.loss + o.rpo_alpha * nll;
        out.metrics["nll_loss"] = nll.item<double>();
    }
    return out;
}

}  // namespace

at::Tensor completion_logps(const model& m, const std::vector<const dpo_tokens*>& rows, bool average) {
    token_batch batch = batch_of(m, rows);
    return logps_of(token_logps(m, batch), batch.scored, average);
}

train_result dpo_train(model& m, const std::vector<dpo_pair>& pairs, const dpo_options& options) {
    if (!m.tok) fail("dpo: the model has no tokenizer");
    if (pairs.empty()) fail("dpo: pairs is empty; give at least one {prompt=, chosen=, rejected=} record");
    if (!(options.rpo_alpha >= 0.0)) fail("dpo: rpo_alpha must be >= 0, got ", options.rpo_alpha);
    if (!is_dpo_loss_type(options.loss))
        fail("dpo: unknown loss \"", options.loss, "\"; valid: ", dpo_loss_types_joined());
    const bool adapter_off = !options.reference_model;
    if (adapter_off && options.reference != "adapter_off")
        fail("dpo: reference must be \"adapter_off\" (the model with its adapters switched off) or a model, got \"",
             options.reference, "\"");
    if (options.reference_model.get() == &m)
        fail("dpo: the reference model is the policy itself; use reference = \"adapter_off\"");
    if (options.reference_model) dpo_check_reference_vocabulary(m, *options.reference_model);
    if (!lora_present(m))
        fail("dpo: training needs LoRA adapters on the policy; call m:add_lora{...} first");
    if (lora_describe(m).merged) fail("dpo: the adapters are merged; unmerge_lora() first");
    int32_t eos_id = -1;
    if (options.eos) {
        if (m.tok->eos_id >= 0)
            eos_id = m.tok->eos_id;
        else if (!m.eos_ids.empty())
            eos_id = (int32_t)m.eos_ids.front();
        else
            fail("dpo: eos = true but the tokenizer and config name no EOS token; set eos = false");
    }
    if (options.max_length < 0) fail("dpo: max_length must be >= 0 (0: no truncation), got ", options.max_length);
    if (options.max_length > m.config.max_position_embeddings)
        fail("dpo: max_length = ", options.max_length, " is more than the model's max_position_embeddings (",
             m.config.max_position_embeddings, ")");
    size_t cut = 0;
    std::vector<dpo_tokens> chosen, rejected;
    std::vector<int64_t> lengths;
    for (size_t i = 0; i < pairs.size(); ++i) {
        chosen.push_back(tokenize_completion(m, pairs[i].prompt, pairs[i].chosen, eos_id, i, "chosen",
                                             options.add_special_tokens, options.max_length, &cut));
        rejected.push_back(tokenize_completion(m, pairs[i].prompt, pairs[i].rejected, eos_id, i, "rejected",
                                               options.add_special_tokens, options.max_length, &cut));
        lengths.push_back((int64_t)std::max(chosen.back().ids.size(), rejected.back().ids.size()));
    }
    if (cut > 0)
        log_warn("dpo: max_length = ", options.max_length, " truncated ", cut, " of ", 2 * pairs.size(),
                 " prompt + completion sequences");
    log_info("dpo: ", pairs.size(), " pairs, loss ", options.loss, ", beta ", options.beta);
    std::vector<dpo_tokens> eval_chosen, eval_rejected;
    for (size_t i = 0; i < options.eval_pairs.size(); ++i) {
        const dpo_pair& p = options.eval_pairs[i];
        eval_chosen.push_back(tokenize_completion(m, p.prompt, p.chosen, eos_id, i, "chosen", options.add_special_tokens,
                                                  options.max_length, &cut, "eval_pairs"));
        eval_rejected.push_back(tokenize_completion(m, p.prompt, p.rejected, eos_id, i, "rejected",
                                                    options.add_special_tokens, options.max_length, &cut,
                                                    "eval_pairs"));
    }
    // TRL's order of the metric names.
    std::vector<std::string> metric_names = {"rewards/chosen", "rewards/rejected", "rewards/accuracies",
                                             "rewards/margins", "logps/chosen", "logps/rejected"};
    if (options.rpo_alpha > 0) metric_names.push_back("nll_loss");
    const bool average = options.loss == "ipo";
    // Reference log-probs (2N): the chosen completions then the rejected ones of the batch's rows.
    auto reference_logps = [&](const token_batch& batch) {
        at::NoGradGuard no_grad;
        if (!adapter_off) return logps_of(token_logps(*options.reference_model, batch), batch.scored, average);
        lora_set_training(m, false);
        m.set_lora_enabled(false);
        at::Tensor r = logps_of(token_logps(m, batch), batch.scored, average);
        m.set_lora_enabled(true);
        return r;
    };
    // The rows of pairs [begin, end): chosen completions, then rejected ones.
    auto rows_of = [](const std::vector<dpo_tokens>& c, const std::vector<dpo_tokens>& r, size_t begin, size_t end) {
        std::vector<const dpo_tokens*> rows;
        for (size_t i = begin; i < end; ++i) rows.push_back(&c[i]);
        for (size_t i = begin; i < end; ++i) rows.push_back(&r[i]);
        return rows;
    };
    dpo_reference_logps cached;
    if (options.reference_cache) {
        const model& ref = adapter_off ? m : *options.reference_model;
        cached = dpo_reference_cache(
            options.trainer.out_dir, dpo_reference_fingerprint(ref, adapter_off, *m.tok, pairs, options.eos, average,
                                                              options.add_special_tokens, options.max_length),
            pairs.size(), scoring_batch_size(options.trainer),
            [&](size_t begin, size_t end) { return reference_logps(batch_of(m, rows_of(chosen, rejected, begin, end))); });
    }

    trainer_eval eval;
    eval.set_option = "eval_pairs";
    eval.has_set = !eval_chosen.empty();
    eval.metrics = {"eval_loss"};
    for (const auto& n : metric_names) eval.metrics.push_back("eval_" + n);
    eval.evaluate = [&]() -> metric_values {
        // Loss and metrics over the eval pairs (means weighted by pairs), dropout off, no gradient.
        at::NoGradGuard no_grad;
        const size_t chunk = scoring_batch_size(options.trainer);
        double loss_total = 0;
        std::map<std::string, double> totals;
        for (size_t s = 0; s < eval_chosen.size(); s += chunk) {
            const size_t e = std::min(eval_chosen.size(), s + chunk);
            token_batch tokens = batch_of(m, rows_of(eval_chosen, eval_rejected, s, e));
            at::Tensor reference = reference_logps(tokens);
            lora_set_training(m, false);
            dpo_batch_loss b = dpo_loss_of_batch(m, tokens, reference, (int64_t)(e - s), options);
            loss_total += b.loss.item<double>() * double(e - s);
            for (const auto& kv : b.metrics) totals[kv.first] += kv.second * double(e - s);
        }
        lora_set_training(m, true);
        const double count = double(eval_chosen.size());
        metric_values em = {{"eval_loss", loss_total / count}};
        for (const auto& name : metric_names)
            if (totals.count(name)) em.push_back({"eval_" + name, totals[name] / count});
        return em;
    };
    eval.save_best = [&m](const std::string& dir) {
        if (dist::is_main()) lora_save(m, dir);  // rank 0 writes
    };

    trainer_loop loop(options.trainer, trainable_parameters(m, false), lengths);
    loop.metadata = "{\"trainer\": \"dpo\"}";
    loop.extra_files = lora_checkpoint_files(m);
    loop.begin("dpo", std::move(eval));
    struct training_mode {
        model& m;
        explicit training_mode(model& m_) : m(m_) { lora_set_training(m, true); }
        ~training_mode() {
            lora_set_training(m, false);
            m.set_lora_enabled(true);
        }
    } mode(m);

    while (!loop.done()) {
        lora_set_dropout_seed(m, rng::derive(options.trainer.seed, (uint64_t)loop.step()));
        auto micro = loop.next_micro_batches();
        double loss_sum = 0;
        // Every rank reports every metric (a rank may get no pair of a micro-batch), in TRL's order.
        metric_values metric_sums;
        for (const auto& name : metric_names) metric_sums.push_back({name, 0.0});
        for (const auto& full_batch : micro) {
            // This rank's pairs of the micro-batch (all of them in one process).
            // Loss and metrics are means over the whole micro-batch's pairs (the
            // nll over its chosen tokens), so a rank's means are scaled by its
            // share: summed over ranks they are the 1-process values.
            const dist::shard part = dist::shard_of(full_batch.size());
            const std::vector<int64_t> batch(full_batch.begin() + part.begin, full_batch.begin() + part.end);
            if (batch.empty()) continue;
            const double pair_share = double(batch.size()) / double(full_batch.size());
            int64_t batch_chosen_tokens = 0, part_chosen_tokens = 0;
            for (size_t k = 0; k < full_batch.size(); ++k) {
                const dpo_tokens& c = chosen[full_batch[k]];
                const int64_t t = (int64_t)(c.ids.size() - c.completion_start);
                batch_chosen_tokens += t;
                if (part.contains(k)) part_chosen_tokens += t;
            }
            const double token_share = double(part_chosen_tokens) / double(batch_chosen_tokens);
            // A rank pads its rows as long as the whole micro-batch's, so it
            // computes them in the shapes one process would.
            int64_t batch_length = 0;
            for (int64_t i : full_batch)
                batch_length = std::max<int64_t>(batch_length, (int64_t)std::max(chosen[i].ids.size(), rejected[i].ids.size()));
            // rows: the batch's chosen completions, then its rejected ones.
            std::vector<const dpo_tokens*> rows;
            for (int64_t i : batch) rows.push_back(&chosen[i]);
            for (int64_t i : batch) rows.push_back(&rejected[i]);
            token_batch tokens = batch_of(m, rows, batch_length);
            at::Tensor reference;  // (2N)
            if (options.reference_cache) {
                std::vector<float> r;
                for (int64_t i : batch) r.push_back(cached.chosen[i]);
                for (int64_t i : batch) r.push_back(cached.rejected[i]);
                reference = at::tensor(r, at::kFloat);
            } else {
                reference = reference_logps(tokens);
                lora_set_training(m, true);
            }
            dpo_batch_loss b = dpo_loss_of_batch(m, tokens, reference, (int64_t)batch.size(), options, pair_share,
                                                 token_share);
            (b.loss / double(micro.size())).backward();
            loss_sum += b.loss.item<double>();
            for (auto& kv : metric_sums) kv.second += b.metrics.at(kv.first) / double(micro.size());
        }
        loop.finish_step(loss_sum / double(micro.size()), metric_sums);
    }
    return loop.finish();
}

}  // namespace cai

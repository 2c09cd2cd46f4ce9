// DPO over trainer_loop with the adapters-off reference (see dpo.h).
#include "train/dpo.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "dist/dist.h"
#include "generate/generate.h"
#include "kernels/cpu.h"
#include "model/model.h"
#include "model/save.h"
#include <nlohmann/json.hpp>
#include "tokenizer/tokenizer.h"
#include "train/dpo_loss.h"
#include "train/dpo_loss_fused.h"
#include "train/lora.h"
#include "train/metrics.h"
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

// FNV-1a 64 over everything fed to it.
struct fnv64 {
    uint64_t h = 1469598103934665603ull;
    void bytes(const void* p, size_t n) {
        const auto* c = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
    }
    void str(const std::string& s) {
        const uint64_t n = s.size();
        bytes(&n, sizeof n);
        bytes(s.data(), s.size());
    }
    void num(int64_t v) { bytes(&v, sizeof v); }
};

// A tensor's identity: name, dtype, shape, its float32 sum and up to 256
// evenly spaced elements.
void hash_tensor(fnv64& f, const std::string& name, const at::Tensor& t) {
    f.str(name);
    f.str(std::string(c10::toString(t.scalar_type())));
    for (int64_t d : t.sizes()) f.num(d);
    at::Tensor flat = t.detach().reshape({-1}).to(at::kCPU, at::kFloat);
    const double sum = flat.sum().item<double>();
    f.bytes(&sum, sizeof sum);
    const int64_t n = flat.numel();
    if (n == 0) return;
    at::Tensor idx = at::linspace(0, (double)(n - 1), std::min<int64_t>(n, 256), at::kDouble).to(at::kLong);
    at::Tensor sample = flat.index_select(0, idx).contiguous();
    f.bytes(sample.data_ptr<float>(), (size_t)sample.numel() * sizeof(float));
}

}  // namespace

std::string dpo_reference_fingerprint(const model& reference, bool adapter_off, const tokenizer& tok,
                                      const std::vector<dpo_pair>& pairs, bool eos, bool average,
                                      bool add_special_tokens, int64_t max_length) {
    fnv64 f;
    f.str("cai.dpo.reference_logps.v1");
    if (!add_special_tokens) f.str("prompts without special tokens");
    if (max_length > 0) f.num(max_length);  // absent when 0, so older caches keep their key
    f.num(adapter_off);
    f.num(eos);
    f.num(average);
    f.num((int64_t)pairs.size());
    for (const auto& p : pairs) {
        f.str(p.prompt);
        f.str(p.chosen);
        f.str(p.rejected);
    }
    f.str(reference.config.json);
    f.str(dtype_name(reference.dtype));
    at::NoGradGuard no_grad;
    for (const auto& [name, t] : model_named_tensors(reference)) hash_tensor(f, name, t);
    if (!adapter_off && lora_present(reference))
        for (const auto& [name, t] : lora_named_tensors(reference)) hash_tensor(f, name, t);
    f.num(tok.vocab_size());
    for (int32_t id = 0; id < tok.vocab_size(); ++id) f.str(tok.id_to_piece(id));
    f.num(tok.bos_id);
    f.num(tok.eos_id);
    f.num(tok.pad_id);
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)f.h);
    return hex;
}

namespace {

// The reference model has the policy's vocabulary: same size, and (where it
// has a tokenizer) the same piece for every id.
void check_same_vocabulary(const model& policy, const model& reference) {
    if (reference.config.vocab_size != policy.config.vocab_size)
        fail("dpo: reference model: vocab_size ", reference.config.vocab_size, " differs from the policy's ",
             policy.config.vocab_size, "; the reference must share the policy's tokenizer");
    if (!reference.tok) return;
    const tokenizer& a = *policy.tok;
    const tokenizer& b = *reference.tok;
    if (a.vocab_size() != b.vocab_size())
        fail("dpo: reference model: tokenizer vocabulary of ", b.vocab_size(), " pieces differs from the policy's ",
             a.vocab_size());
    for (int32_t id = 0; id < a.vocab_size(); ++id)
        if (a.id_to_piece(id) != b.id_to_piece(id))
            fail("dpo: reference model: token ", id, " is \"", b.id_to_piece(id), "\" but \"", a.id_to_piece(id),
                 "\" for the policy; the reference must share the policy's tokenizer");
}

}  // namespace

namespace {

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

}  // namespace

at::Tensor completion_logps(const model& m, const std::vector<const dpo_tokens*>& rows, bool average) {
    token_batch batch = batch_of(m, rows);
    return logps_of(token_logps(m, batch), batch.scored, average);
}

dpo_result dpo_train(model& m, const std::vector<dpo_pair>& pairs, const dpo_options& options) {
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
    if (options.reference_model) check_same_vocabulary(m, *options.reference_model);
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
    if (options.eval.eval_steps < 0) fail("dpo: eval_steps must be >= 0, got ", options.eval.eval_steps);
    if (!eval_chosen.empty() && options.eval.eval_steps == 0)
        fail("dpo: eval_pairs is given but eval_steps is 0; set eval_steps = N to evaluate every N steps");
    if (!options.eval.keep_best.empty() && eval_chosen.empty())
        fail("dpo: keep_best needs an eval set (eval_pairs) and eval_steps");
    // TRL's order of the metric names.
    std::vector<std::string> metric_names = {"rewards/chosen", "rewards/rejected", "rewards/accuracies",
                                             "rewards/margins", "logps/chosen", "logps/rejected"};
    if (options.rpo_alpha > 0) metric_names.push_back("nll_loss");
    std::unique_ptr<best_keeper> keeper;
    if (!options.eval.keep_best.empty()) {
        std::vector<std::string> valid = {"eval_loss"};
        for (const auto& n : metric_names) valid.push_back("eval_" + n);
        keeper = std::make_unique<best_keeper>(options.trainer.out_dir, options.eval.keep_best, valid,
                                               [&m](const std::string& dir) {
                                                   if (dist::is_main()) lora_save(m, dir);  // rank 0 writes
                                               },
                                               "dpo");
    }
    const bool average = options.loss == "ipo";
    // Reference log-probs (2N): the chosen completions then the rejected ones of rows.
    auto reference_logps = [&](const token_batch& batch) {
        at::NoGradGuard no_grad;
        if (!adapter_off) return logps_of(token_logps(*options.reference_model, batch), batch.scored, average);
        lora_set_training(m, false);
        m.set_lora_enabled(false);
        at::Tensor r = logps_of(token_logps(m, batch), batch.scored, average);
        m.set_lora_enabled(true);
        return r;
    };
    std::vector<float> cached_chosen, cached_rejected;
    if (options.reference_cache) {
        const model& ref = adapter_off ? m : *options.reference_model;
        const std::string fingerprint = dpo_reference_fingerprint(ref, adapter_off, *m.tok, pairs, options.eos, average,
                                                                     options.add_special_tokens, options.max_length);
        const std::string cache_path = path_join(options.trainer.out_dir, "reference_logps.json");
        if (file_exists(cache_path)) {
            nlohmann::json j;
            try {
                j = nlohmann::json::parse(read_file(cache_path));
            } catch (const std::exception& e) {
                log_info("dpo: ", cache_path, " is unreadable (", e.what(), "); recomputing");
            }
            if (j.is_object() && j.value("fingerprint", "") == fingerprint && j["chosen"].size() == pairs.size() &&
                j["rejected"].size() == pairs.size()) {
                cached_chosen = j["chosen"].get<std::vector<float>>();
                cached_rejected = j["rejected"].get<std::vector<float>>();
                log_info("dpo: reference log-probs from ", cache_path);
            } else if (j.is_object()) {
                log_info("dpo: ", cache_path, " was computed for other pairs, model, tokenizer or options (fingerprint ",
                         j.value("fingerprint", "?"), ", now ", fingerprint, "); recomputing");
            }
        }
        if (cached_chosen.empty()) {
            const size_t chunk = options.trainer.batches.batch_size > 0 ? (size_t)options.trainer.batches.batch_size : 8;
            for (size_t s = 0; s < pairs.size(); s += chunk) {
                std::vector<const dpo_tokens*> rows;
                const size_t e = std::min(pairs.size(), s + chunk);
                for (size_t i = s; i < e; ++i) rows.push_back(&chosen[i]);
                for (size_t i = s; i < e; ++i) rows.push_back(&rejected[i]);
                at::Tensor r = reference_logps(batch_of(m, rows)).to(at::kCPU, at::kFloat).contiguous();
                const float* p = r.data_ptr<float>();
                const size_t n = e - s;
                cached_chosen.insert(cached_chosen.end(), p, p + n);
                cached_rejected.insert(cached_rejected.end(), p + n, p + 2 * n);
            }
            nlohmann::json j = {{"fingerprint", fingerprint}, {"chosen", cached_chosen}, {"rejected", cached_rejected}};
            make_directories(options.trainer.out_dir);
            if (dist::is_main()) write_file_atomic(cache_path, j.dump());  // every rank computed the same
            log_info("dpo: reference log-probs of ", pairs.size(), " pairs written to ", cache_path);
        }
    }

    trainer_loop loop(named_trainer_options(options.trainer, "dpo"), trainable_parameters(m, false), lengths);
    loop.metadata = "{\"trainer\": \"dpo\"}";
    loop.extra_files = [&m] {
        return std::vector<std::pair<std::string, std::string>>{{"adapter_config.json", lora_adapter_config(m)}};
    };
    dpo_result result;
    if (!options.resume && !latest_checkpoint(options.trainer.out_dir).empty())
        fail("dpo: ", options.trainer.out_dir, " already holds checkpoints (", latest_checkpoint(options.trainer.out_dir),
             "); pass resume = true to continue that run, or choose another out directory");
    if (options.resume) result.resumed_from = loop.resume();

    const std::string metrics_path = path_join(options.trainer.out_dir, "metrics.jsonl");
    // The file as resume() left it; its last line is the result if no step is left to run.
    uint64_t metrics_offset = 0;
    std::vector<std::string> earlier = read_new_lines(metrics_path, metrics_offset);
    std::string seen_line;
    for (const auto& line : earlier)
        if (line.find("\"eval_") == std::string::npos) seen_line = line;
    struct training_mode {
        model& m;
        explicit training_mode(model& m_) : m(m_) { lora_set_training(m, true); }
        ~training_mode() {
            lora_set_training(m, false);
            m.set_lora_enabled(true);
        }
    } mode(m);

    std::unique_ptr<progress> bar;
    if (options.show_progress && dist::is_main()) {  // one bar for the job
        bar = std::make_unique<progress>("dpo", (long)loop.total_steps(), "step");
        bar->update((long)loop.step());
    }
    while (!loop.done()) {
        lora_set_dropout_seed(m, rng::derive(options.trainer.seed, (uint64_t)loop.step()));
        auto micro = loop.next_micro_batches();
        double loss_sum = 0;
        // Every rank reports every metric (a rank may get no pair of a micro-batch).
        std::vector<std::pair<std::string, double>> metric_sums;
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
            const int64_t n = (int64_t)batch.size();
            token_batch tokens = batch_of(m, rows, batch_length);
            at::Tensor reference;  // (2N)
            if (options.reference_cache) {
                std::vector<float> r;
                for (int64_t i : batch) r.push_back(cached_chosen[i]);
                for (int64_t i : batch) r.push_back(cached_rejected[i]);
                reference = at::tensor(r, at::kFloat);
            } else {
                reference = reference_logps(tokens);
                lora_set_training(m, true);
            }
            at::Tensor token_logp = token_logps(m, tokens);                   // (2N, T)
            const at::Tensor& weights = tokens.scored;                        // (2N, T)
            at::Tensor policy = logps_of(token_logp, weights, average);       // (2N)
            reference = reference.to(policy.device());
            at::Tensor pc = policy.slice(0, 0, n), pr = policy.slice(0, n, 2 * n);
            std::map<std::string, double> metrics;
            dpo_loss_result r = dpo_loss_and_metrics(pc, pr, reference.slice(0, 0, n), reference.slice(0, n, 2 * n),
                                                     options, metrics);
            at::Tensor loss = r.losses.mean();
            if (pair_share != 1.0) loss = loss * pair_share;
            at::Tensor nll;
            if (options.rpo_alpha > 0) {
                // mean -log p over the chosen rows' completion tokens
                nll = -(token_logp.slice(0, 0, n) * weights.slice(0, 0, n)).sum() / weights.slice(0, 0, n).sum();
                if (token_share != 1.0) nll = nll * token_share;
                loss = loss + options.rpo_alpha * nll;
            }
            (loss / double(micro.size())).backward();
            loss_sum += loss.item<double>();
            for (auto& kv : metrics) kv.second *= pair_share;
            if (nll.defined()) metrics["nll_loss"] = nll.item<double>();
            for (auto& kv : metric_sums) kv.second += metrics.at(kv.first) / double(micro.size());
        }
        // TRL's order of the metric names.
        std::vector<std::pair<std::string, double>> ordered;
        for (const char* name : {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                                 "logps/chosen", "logps/rejected", "nll_loss"})
            for (const auto& kv : metric_sums)
                if (kv.first == name) ordered.push_back(kv);
        const double lr = loop.current_lr();
        loop.finish_step(loss_sum / double(micro.size()), ordered);
        if (!eval_chosen.empty() && !loop.interrupted() && eval_due(options.eval, loop.step())) {
            // Loss and metrics over the eval pairs (means weighted by pairs), dropout off, no gradient.
            at::NoGradGuard no_grad;
            const size_t chunk = options.trainer.batches.batch_size > 0 ? (size_t)options.trainer.batches.batch_size : 8;
            double loss_total = 0;
            std::map<std::string, double> totals;
            for (size_t s = 0; s < eval_chosen.size(); s += chunk) {
                const size_t e = std::min(eval_chosen.size(), s + chunk);
                const int64_t n = (int64_t)(e - s);
                std::vector<const dpo_tokens*> rows;
                for (size_t i = s; i < e; ++i) rows.push_back(&eval_chosen[i]);
                for (size_t i = s; i < e; ++i) rows.push_back(&eval_rejected[i]);
                token_batch tokens = batch_of(m, rows);
                at::Tensor reference = reference_logps(tokens);
                lora_set_training(m, false);
                at::Tensor token_logp = token_logps(m, tokens);  // (2N, T)
                const at::Tensor& weights = tokens.scored;       // (2N, T)
                at::Tensor policy = logps_of(token_logp, weights, average);
                reference = reference.to(policy.device());
                at::Tensor pc = policy.slice(0, 0, n), pr = policy.slice(0, n, 2 * n);
                std::map<std::string, double> metrics;
                dpo_loss_result r = dpo_loss_and_metrics(pc, pr, reference.slice(0, 0, n),
                                                         reference.slice(0, n, 2 * n), options, metrics);
                at::Tensor loss = r.losses.mean();
                if (options.rpo_alpha > 0) {
                    at::Tensor nll =
                        -(token_logp.slice(0, 0, n) * weights.slice(0, 0, n)).sum() / weights.slice(0, 0, n).sum();
                    loss = loss + options.rpo_alpha * nll;
                    metrics["nll_loss"] = nll.item<double>();
                }
                loss_total += loss.item<double>() * double(n);
                for (const auto& kv : metrics) totals[kv.first] += kv.second * double(n);
            }
            lora_set_training(m, true);
            const double count = double(eval_chosen.size());
            std::vector<std::pair<std::string, double>> em = {{"eval_loss", loss_total / count}};
            for (const auto& name : metric_names)
                if (totals.count(name)) em.push_back({"eval_" + name, totals[name] / count});
            loop.log_metrics(em);
            if (keeper) keeper->offer(loop.step(), em);
        }
        if (bar) bar->update((long)loop.step(), "loss " + format_metric(loss_sum / double(micro.size())) + " lr " +
                                                    format_metric(lr));
        for (const std::string& line : read_new_lines(metrics_path, metrics_offset)) {
            if (line.find("\"eval_") == std::string::npos) seen_line = line;
            if (options.on_log) options.on_log(line);
        }
    }
    if (bar) bar->finish();
    result.interrupted = loop.interrupted();
    result.final_checkpoint = result.interrupted ? latest_checkpoint(options.trainer.out_dir) : loop.save_final();
    result.steps = loop.step();
    result.last_metrics = seen_line.empty() ? "{}" : seen_line;
    if (keeper && keeper->best_step() >= 0) {
        result.best_checkpoint = keeper->dir();
        result.best_step = keeper->best_step();
        result.best_value = keeper->best_value();
    }
    return result;
}

}  // namespace cai

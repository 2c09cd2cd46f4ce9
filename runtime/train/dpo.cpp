// DPO over trainer_loop with the adapters-off reference (see dpo.h).
#include "train/dpo.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <memory>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "generate/generate.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/dpo_loss.h"
#include "train/lora.h"

namespace cai {

namespace {

// Lines appended to a file since byte `offset` (moved past them); the file
// is read from the offset only, so a long run does not re-read its log.
std::vector<std::string> new_lines(const std::string& path, uint64_t& offset) {
    std::vector<std::string> lines;
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    if (ec || size <= offset) return lines;
    std::ifstream in(path, std::ios::binary);
    in.seekg((std::streamoff)offset);
    std::string line;
    while (std::getline(in, line)) {
        if (in.eof()) break;  // a line without its newline is not complete yet
        offset += line.size() + 1;
        lines.push_back(line);
    }
    return lines;
}


std::string format_number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf;
}

dpo_tokens tokenize_completion(const model& m, const std::string& prompt, const std::string& completion,
                               int32_t eos_id, size_t index, const char* field) {
    pair_ids p = tokenize_pair(*m.tok, prompt, completion);
    dpo_tokens t{std::move(p.ids), p.completion_start};
    if (eos_id >= 0) t.ids.push_back(eos_id);
    if (t.ids.size() <= t.completion_start)
        fail("dpo: pairs[", index + 1, "]: field \"", field, "\" gives no token (empty and eos = false)");
    if (t.completion_start == 0)
        fail("dpo: pairs[", index + 1, "]: field \"prompt\" gives no token (empty prompt and no BOS)");
    return t;
}

// Padded ids and attention mask (B, T) of rows.
std::pair<at::Tensor, at::Tensor> pad_rows(const model& m, const std::vector<const dpo_tokens*>& rows) {
    int64_t T = 0;
    for (const auto* r : rows) T = std::max<int64_t>(T, (int64_t)r->ids.size());
    const int64_t B = (int64_t)rows.size();
    const int32_t pad = m.tok && m.tok->pad_id >= 0 ? m.tok->pad_id : 0;
    at::Tensor ids = at::full({B, T}, (int64_t)pad, at::kLong);
    at::Tensor mask = at::zeros({B, T}, at::kLong);
    auto id = ids.accessor<int64_t, 2>();
    auto mk = mask.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b)
        for (size_t t = 0; t < rows[b]->ids.size(); ++t) {
            id[b][t] = rows[b]->ids[t];
            mk[b][t] = 1;
        }
    return {ids, mask};
}

}  // namespace

at::Tensor completion_logps(const at::Tensor& logits, const std::vector<const dpo_tokens*>& rows, bool average) {
    // logits: (B, T, V)
    const int64_t B = logits.size(0), T = logits.size(1);
    at::Tensor targets = at::zeros({B, T - 1}, at::kLong);
    at::Tensor weights = at::zeros({B, T - 1}, at::kFloat);
    auto tg = targets.accessor<int64_t, 2>();
    auto w = weights.accessor<float, 2>();
    for (int64_t b = 0; b < B; ++b) {
        const auto& r = *rows[b];
        for (size_t j = r.completion_start; j < r.ids.size(); ++j) {
            tg[b][j - 1] = r.ids[j];
            w[b][j - 1] = 1.0f;
        }
    }
    at::Tensor logp = at::log_softmax(logits.slice(1, 0, T - 1).to(at::kFloat), -1);  // (B, T-1, V)
    at::Tensor token_logp = logp.gather(2, targets.unsqueeze(2)).squeeze(2);         // (B, T-1)
    at::Tensor sums = (token_logp * weights).sum(1);                                 // (B)
    return average ? sums / weights.sum(1) : sums;
}

dpo_result dpo_train(model& m, const std::vector<dpo_pair>& pairs, const dpo_options& options) {
    if (!m.tok) fail("dpo: the model has no tokenizer");
    if (pairs.empty()) fail("dpo: pairs is empty; give at least one {prompt=, chosen=, rejected=} record");
    if (!is_dpo_loss_type(options.loss))
        fail("dpo: unknown loss \"", options.loss, "\"; valid: ", dpo_loss_types_joined());
    if (options.reference != "adapter_off")
        fail("dpo: reference must be \"adapter_off\" (the model with its adapters switched off), got \"",
             options.reference, "\"");
    if (!lora_present(m))
        fail("dpo: reference = \"adapter_off\" needs LoRA adapters; call m:add_lora{...} first");
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
    std::vector<dpo_tokens> chosen, rejected;
    std::vector<int64_t> lengths;
    for (size_t i = 0; i < pairs.size(); ++i) {
        chosen.push_back(tokenize_completion(m, pairs[i].prompt, pairs[i].chosen, eos_id, i, "chosen"));
        rejected.push_back(tokenize_completion(m, pairs[i].prompt, pairs[i].rejected, eos_id, i, "rejected"));
        lengths.push_back((int64_t)std::max(chosen.back().ids.size(), rejected.back().ids.size()));
    }
    log_info("dpo: ", pairs.size(), " pairs, loss ", options.loss, ", beta ", options.beta);

    trainer_loop loop(options.trainer, trainable_parameters(m, false), lengths);
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
    std::vector<std::string> earlier = new_lines(metrics_path, metrics_offset);
    std::string seen_line = earlier.empty() ? "" : earlier.back();
    struct training_mode {
        model& m;
        explicit training_mode(model& m_) : m(m_) { lora_set_training(m, true); }
        ~training_mode() {
            lora_set_training(m, false);
            m.set_lora_enabled(true);
        }
    } mode(m);

    const bool average = options.loss == "ipo";
    std::unique_ptr<progress> bar;
    if (options.show_progress) {
        bar = std::make_unique<progress>("dpo", (long)loop.total_steps(), "step");
        bar->update((long)loop.step());
    }
    while (!loop.done()) {
        lora_set_dropout_seed(m, rng::derive(options.trainer.seed, (uint64_t)loop.step()));
        auto micro = loop.next_micro_batches();
        double loss_sum = 0;
        std::vector<std::pair<std::string, double>> metric_sums;
        for (const auto& batch : micro) {
            // rows: the batch's chosen completions, then its rejected ones.
            std::vector<const dpo_tokens*> rows;
            for (int64_t i : batch) rows.push_back(&chosen[i]);
            for (int64_t i : batch) rows.push_back(&rejected[i]);
            const int64_t n = (int64_t)batch.size();
            auto [ids, mask] = pad_rows(m, rows);
            at::Tensor reference;  // (2N)
            {
                at::NoGradGuard no_grad;
                lora_set_training(m, false);
                m.set_lora_enabled(false);
                reference = completion_logps(m.forward(ids, mask), rows, average);
                m.set_lora_enabled(true);
                lora_set_training(m, true);
            }
            at::Tensor policy = completion_logps(m.forward(ids, mask), rows, average);  // (2N)
            at::Tensor pc = policy.slice(0, 0, n), pr = policy.slice(0, n, 2 * n);
            dpo_loss_result r = dpo_loss_forward(pc, pr, reference.slice(0, 0, n), reference.slice(0, n, 2 * n),
                                                 options.beta, options.loss, options.label_smoothing);
            at::Tensor loss = r.losses.mean();
            (loss / double(micro.size())).backward();
            loss_sum += loss.item<double>();
            auto metrics = dpo_metrics(r, pc, pr);
            if (metric_sums.empty())
                for (const auto& kv : metrics) metric_sums.push_back({kv.first, 0.0});
            for (auto& kv : metric_sums) kv.second += metrics.at(kv.first) / double(micro.size());
        }
        // TRL's order of the metric names.
        std::vector<std::pair<std::string, double>> ordered;
        for (const char* name : {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                                 "logps/chosen", "logps/rejected"})
            for (const auto& kv : metric_sums)
                if (kv.first == name) ordered.push_back(kv);
        const double lr = loop.current_lr();
        loop.finish_step(loss_sum / double(micro.size()), ordered);
        if (bar) bar->update((long)loop.step(), "loss " + format_number(loss_sum / double(micro.size())) + " lr " +
                                                    format_number(lr));
        for (const std::string& line : new_lines(metrics_path, metrics_offset)) {
            seen_line = line;
            if (options.on_log) options.on_log(line);
        }
    }
    if (bar) bar->finish();
    result.interrupted = loop.interrupted();
    result.final_checkpoint = result.interrupted ? latest_checkpoint(options.trainer.out_dir) : loop.save_final();
    result.steps = loop.step();
    result.last_metrics = seen_line.empty() ? "{}" : seen_line;
    return result;
}

}  // namespace cai

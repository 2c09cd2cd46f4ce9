// Reward-model training over trainer_loop (see reward_train.h).
#include "train/reward_train.h"

#include <algorithm>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "dist/dist.h"
#include "model/model.h"
#include "model/reward.h"
#include "model/save.h"
#include "tokenizer/tokenizer.h"
#include "train/lora.h"

namespace cai {

namespace {

std::vector<int32_t> tokenize_text(const model& m, const std::string& text, const reward_options& o, size_t index,
                                   const char* list, const char* field, size_t* cut) {
    std::vector<int32_t> ids = m.tok->encode(text, o.add_special_tokens);
    if (ids.empty()) fail("reward: ", list, "[", index + 1, "]: field \"", field, "\" gives no token");
    const int64_t context = m.config.max_position_embeddings;
    if (o.max_length > 0 && (int64_t)ids.size() > o.max_length) {
        ids.resize((size_t)o.max_length);
        ++*cut;
    } else if ((int64_t)ids.size() > context) {
        fail("reward: ", list, "[", index + 1, "]: \"", field, "\" is ", ids.size(),
             " tokens, more than the model's max_position_embeddings (", context,
             "); shorten it, or set max_length = N to truncate long texts");
    }
    return ids;
}

// Rows right-padded to T (at least min_length) -> ids and mask (B, T) int64.
std::pair<at::Tensor, at::Tensor> pad_rows(const std::vector<const std::vector<int32_t>*>& rows, int64_t min_length) {
    int64_t T = min_length;
    for (const auto* r : rows) T = std::max<int64_t>(T, (int64_t)r->size());
    const int64_t B = (int64_t)rows.size();
    at::Tensor ids = at::zeros({B, T}, at::kLong), mask = at::zeros({B, T}, at::kLong);
    auto pi = ids.accessor<int64_t, 2>();
    auto pm = mask.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b)
        for (size_t t = 0; t < rows[b]->size(); ++t) {
            pi[b][t] = (*rows[b])[t];
            pm[b][t] = 1;
        }
    return {ids, mask};
}

struct pair_batch_loss {
    at::Tensor loss;  // mean over the batch's pairs (scaled by pair_share), differentiable
    double correct = 0, margin = 0, reward = 0;  // sums over the pairs
};

// rows: the chosen texts of n pairs, then their rejected ones.
pair_batch_loss loss_of_rows(const reward_model& rm, const std::vector<const std::vector<int32_t>*>& rows, int64_t n,
                             int64_t min_length, const reward_options& o, double pair_share = 1.0) {
    auto [ids, mask] = pad_rows(rows, min_length);
    at::Tensor scores = rm.score_ids(ids, mask);                       // (2n) float32
    at::Tensor rc = scores.slice(0, 0, n), rr = scores.slice(0, n, 2 * n);
    at::Tensor loss = -at::log_sigmoid(rc - rr).mean();
    if (o.center_rewards_coefficient > 0) loss = loss + o.center_rewards_coefficient * (rc + rr).pow(2).mean();
    pair_batch_loss out;
    out.loss = pair_share != 1.0 ? loss * pair_share : loss;
    at::Tensor d = (rc - rr).detach();
    out.correct = (d > 0).sum().item<double>();
    out.margin = d.sum().item<double>();
    out.reward = (rc + rr).detach().sum().item<double>() / 2.0;
    return out;
}

}  // namespace

train_result reward_train(reward_model& rm, const std::vector<reward_text_pair>& pairs, const reward_options& options) {
    if (!rm.backbone) fail("reward: the reward model has no backbone");
    model& m = *rm.backbone;
    if (!m.tok) fail("reward: the model has no tokenizer");
    if (pairs.empty()) fail("reward: pairs is empty; give at least one {chosen=, rejected=} record");
    if (!(options.center_rewards_coefficient >= 0))
        fail("reward: center_rewards_coefficient must be >= 0, got ", options.center_rewards_coefficient);
    if (options.max_length < 0) fail("reward: max_length must be >= 0 (0: no truncation), got ", options.max_length);
    const bool lora = lora_present(m);
    if (options.full && lora) fail("reward: full = true trains every weight, but the model has LoRA adapters; drop "
                                   "the adapters or train them (full = false)");
    if (!options.full && !lora)
        fail("reward: the model has no LoRA adapters; call m:add_lora{...} first, or pass full = true to train all "
             "weights (the score head trains either way)");
    if (lora && lora_describe(m).merged) fail("reward: the adapters are merged; unmerge_lora() first");
    if (lora && !options.trainer.eval.keep_best.empty())
        fail("reward: keep_best needs full = true (the best reward model is saved whole; an adapter plus a score "
             "head is not a format transformers or PEFT loads)");

    size_t cut = 0;
    std::vector<std::vector<int32_t>> chosen, rejected;
    std::vector<int64_t> lengths;
    for (size_t i = 0; i < pairs.size(); ++i) {
        chosen.push_back(tokenize_text(m, pairs[i].chosen, options, i, "pairs", "chosen", &cut));
        rejected.push_back(tokenize_text(m, pairs[i].rejected, options, i, "pairs", "rejected", &cut));
        lengths.push_back((int64_t)std::max(chosen.back().size(), rejected.back().size()));
    }
    std::vector<std::vector<int32_t>> eval_chosen, eval_rejected;
    for (size_t i = 0; i < options.eval_pairs.size(); ++i) {
        eval_chosen.push_back(tokenize_text(m, options.eval_pairs[i].chosen, options, i, "eval_pairs", "chosen", &cut));
        eval_rejected.push_back(
            tokenize_text(m, options.eval_pairs[i].rejected, options, i, "eval_pairs", "rejected", &cut));
    }
    if (cut > 0) log_warn("reward: max_length = ", options.max_length, " truncated ", cut, " texts");
    log_info("reward: ", pairs.size(), " pairs, ", rm.head.architecture, ", ",
             options.full ? "all weights" : "LoRA adapters", " + score head");

    auto rows_of = [](const std::vector<std::vector<int32_t>>& c, const std::vector<std::vector<int32_t>>& r,
                      const std::vector<int64_t>& which) {
        std::vector<const std::vector<int32_t>*> rows;
        for (int64_t i : which) rows.push_back(&c[i]);
        for (int64_t i : which) rows.push_back(&r[i]);
        return rows;
    };

    trainer_eval eval;
    eval.set_option = "eval_pairs";
    eval.has_set = !eval_chosen.empty();
    eval.metrics = {"eval_loss", "eval_accuracy", "eval_margin", "eval_mean_reward"};
    eval.evaluate = [&]() -> metric_values {
        at::NoGradGuard no_grad;
        if (lora) lora_set_training(m, false);
        const size_t chunk = scoring_batch_size(options.trainer);
        double loss = 0, correct = 0, margin = 0, reward = 0;
        for (size_t s = 0; s < eval_chosen.size(); s += chunk) {
            std::vector<int64_t> which;
            for (size_t i = s; i < std::min(eval_chosen.size(), s + chunk); ++i) which.push_back((int64_t)i);
            pair_batch_loss b = loss_of_rows(rm, rows_of(eval_chosen, eval_rejected, which), (int64_t)which.size(), 0,
                                             options);
            loss += b.loss.item<double>() * double(which.size());
            correct += b.correct;
            margin += b.margin;
            reward += b.reward;
        }
        if (lora) lora_set_training(m, true);
        const double n = double(eval_chosen.size());
        return {{"eval_loss", loss / n}, {"eval_accuracy", correct / n}, {"eval_margin", margin / n},
                {"eval_mean_reward", reward / n}};
    };
    eval.save_best = [&rm](const std::string& dir) {
        if (dist::is_main()) save_reward_model(rm, dir, rm.backbone->dtype);  // rank 0 writes
    };

    std::vector<named_parameter> params = trainable_parameters(m, options.full);
    rm.score_weight.requires_grad_(true);
    params.push_back({"score.weight", rm.score_weight, true});
    trainer_loop loop(options.trainer, params, lengths);
    loop.metadata = std::string("{\"trainer\": \"reward\", \"full\": ") + (options.full ? "true" : "false") + "}";
    if (lora) loop.extra_files = lora_checkpoint_files(m);
    loop.begin("reward", std::move(eval));
    struct training_mode {
        reward_model& rm;
        bool lora;
        training_mode(reward_model& r, bool l) : rm(r), lora(l) {
            if (lora) lora_set_training(*rm.backbone, true);
        }
        ~training_mode() {
            if (lora) lora_set_training(*rm.backbone, false);
            rm.score_weight.requires_grad_(false);
        }
    } mode(rm, lora);

    while (!loop.done()) {
        if (lora) lora_set_dropout_seed(m, rng::derive(options.trainer.seed, (uint64_t)loop.step()));
        auto micro = loop.next_micro_batches();
        double loss_sum = 0, correct = 0, margin = 0, reward = 0;
        for (const auto& full_batch : micro) {
            // This rank's pairs of the micro-batch; means are scaled by its
            // share so the ranks' sums are the 1-process values.
            const dist::shard part = dist::shard_of(full_batch.size());
            const std::vector<int64_t> batch(full_batch.begin() + part.begin, full_batch.begin() + part.end);
            if (batch.empty()) continue;
            const double pair_share = double(batch.size()) / double(full_batch.size());
            int64_t batch_length = 0;
            for (int64_t i : full_batch) batch_length = std::max(batch_length, lengths[i]);
            pair_batch_loss b =
                loss_of_rows(rm, rows_of(chosen, rejected, batch), (int64_t)batch.size(), batch_length, options,
                             pair_share);
            (b.loss / double(micro.size())).backward();
            loss_sum += b.loss.item<double>();
            const double per = double(full_batch.size()) * double(micro.size());
            correct += b.correct / per;
            margin += b.margin / per;
            reward += b.reward / per;
        }
        loop.finish_step(loss_sum / double(micro.size()),
                         {{"accuracy", correct}, {"margin", margin}, {"mean_reward", reward}});
    }
    return loop.finish();
}

}  // namespace cai

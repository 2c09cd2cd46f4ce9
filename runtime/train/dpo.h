// DPO over prompt/chosen/rejected pairs with the policy's LoRA adapters, the
// reference being the same model with its adapters off, a separate model, or
// log-probs cached on disk (see dpo_options).
//
// Each completion is tokenized as tokenize_pair(prompt, completion) (+ EOS,
// as TRL appends it), the boundary m:logprobs scores. A pair's log-prob is
// the sum over its completion tokens (for loss = "ipo" the per-token mean,
// as TRL). The reference log-probs come from the model with adapters
// switched off under NoGradGuard, so no second copy of the weights exists.
// Loss and metrics are dpo_loss_forward / dpo_metrics (TRL's formulas and
// names), logged through trainer_loop.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace cai {

class model;

struct dpo_pair {
    std::string prompt, chosen, rejected;
};

struct dpo_options {
    trainer_options trainer;  // also resume, show_progress, on_log and eval (eval_steps, keep_best)
    double beta = 0.1;
    std::string loss = "sigmoid";
    double label_smoothing = 0.0;
    // "adapter_off": the policy with its adapters switched off; or a
    // separate model in reference_model (same vocabulary), used as it is.
    std::string reference = "adapter_off";
    std::shared_ptr<model> reference_model;
    // Reference log-probs computed once for all pairs before training and
    // kept in out/reference_logps.json, keyed by a fingerprint of the pairs,
    // the reference model (config and weights), the tokenizer vocabulary and
    // the options that change log-probs (eos, ipo averaging); a cache with
    // another fingerprint is recomputed.
    bool reference_cache = false;
    // TRL's RPO term: loss += rpo_alpha * NLL of the chosen completions'
    // tokens under the policy (mean per token over the micro-batch), logged
    // as "nll_loss". 0 = off.
    double rpo_alpha = 0.0;
    bool eos = true;
    // Encode prompts with the tokenizer's special tokens (BOS); false for
    // prompts a chat template rendered, which writes them itself.
    bool add_special_tokens = true;
    // > 0: cut prompt + completion to this many tokens (keeping the start) and
    // say how many were cut; 0: refuse a pair longer than the model's
    // max_position_embeddings, naming it.
    int64_t max_length = 0;
    // Eval pairs: eval_loss and eval_rewards/... (TRL's names with "eval_")
    // every trainer.eval.eval_steps steps; keep_best keeps the best adapter in out/best/.
    std::vector<dpo_pair> eval_pairs;
};

// One completion (chosen or rejected) of a pair, tokenized.
struct dpo_tokens {
    std::vector<int32_t> ids;
    size_t completion_start = 0;
};

// Per completion: log p(ids[start:] | ids[:start]) under m summed over the
// completion tokens (average = true: divided by their count) -> (B) float32,
// from the model's token log-probs (model::target_logprobs).
at::Tensor completion_logps(const model& m, const std::vector<const dpo_tokens*>& rows, bool average);

train_result dpo_train(model& m, const std::vector<dpo_pair>& pairs, const dpo_options& options);

}  // namespace cai

// DPO over prompt/chosen/rejected pairs with the policy's LoRA adapters (or
// all weights), the reference being the same model with its adapters off.
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
#include <functional>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace cai {

class model;

struct dpo_pair {
    std::string prompt, chosen, rejected;
};

struct dpo_options {
    trainer_options trainer;
    double beta = 0.1;
    std::string loss = "sigmoid";
    double label_smoothing = 0.0;
    std::string reference = "adapter_off";  // the only reference for now
    bool eos = true;
    bool show_progress = true;
    bool resume = true;
    std::function<void(const std::string&)> on_log;  // each metrics line (JSON text)
};

struct dpo_result {
    int64_t steps = 0;
    bool interrupted = false;
    std::string resumed_from;
    std::string final_checkpoint;
    std::string last_metrics;  // "{}" if none
};

// One completion (chosen or rejected) of a pair, tokenized.
struct dpo_tokens {
    std::vector<int32_t> ids;
    size_t completion_start = 0;
};

// Per completion: log p(ids[start:] | ids[:start]) summed over completion
// tokens (average = true: divided by their count). logits (B, T, V) for rows
// padded to T -> (B) float32.
at::Tensor completion_logps(const at::Tensor& logits, const std::vector<const dpo_tokens*>& rows, bool average);

dpo_result dpo_train(model& m, const std::vector<dpo_pair>& pairs, const dpo_options& options);

}  // namespace cai

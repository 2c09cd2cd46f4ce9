// The DPO family of losses fused over the batch: one pass over the pairs
// computes each pair's loss, its derivative with respect to the four log-prob
// inputs, the rewards and TRL's metrics; the backward pass is a scale (and,
// for the sorting losses aot / aot_pair, a scatter back through the sort).
// Same names, formulas and arguments as dpo_loss.h beside it, which is the
// plain ATen reference it is tested against.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>

#include "train/dpo_loss.h"

namespace cai {

// The forward pass without autograd. All (N); the coefficient arrays say
// d losses[i] / d input_j[index_j[i]] = coef_j[i] for the inputs
// j = policy_chosen, policy_rejected, reference_chosen, reference_rejected.
struct dpo_loss_pass {
    at::Tensor losses;                 // (N) float64
    at::Tensor chosen_rewards, rejected_rewards;  // (N) float64
    at::Tensor coef[4];                // (N) float64
    at::Tensor index[4];               // (N) int64 (identity except for aot / aot_pair)
    std::map<std::string, double> metrics;  // rewards/*, logps/* as dpo_metrics names them
};
dpo_loss_pass dpo_loss_pass_forward(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                                    const at::Tensor& reference_chosen, const at::Tensor& reference_rejected,
                                    double beta, const std::string& loss_type, double label_smoothing,
                                    bool reference_free, double discopop_tau);

// policy_chosen, policy_rejected, reference_chosen, reference_rejected: (N).
// Like cai::dpo_loss_forward: losses (N) differentiable with respect to all
// four inputs, rewards detached; metrics, when given, gets dpo_metrics' values.
dpo_loss_result dpo_loss_fused(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                               const at::Tensor& reference_chosen, const at::Tensor& reference_rejected, double beta,
                               const std::string& loss_type, double label_smoothing = 0.0,
                               bool reference_free = false, double discopop_tau = 0.05,
                               std::map<std::string, double>* metrics = nullptr);

}  // namespace cai

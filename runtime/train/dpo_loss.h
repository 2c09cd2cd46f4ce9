// The DPO family of preference losses on per-pair sequence log-probabilities,
// with TRL's names and formulas (DPOTrainer.dpo_loss; see docs/training.md).
// Everything is a composition of ATen ops, so gradients flow back into the
// policy log-probs through autograd; the rewards are detached.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

namespace cai {

struct dpo_loss_result {
    at::Tensor losses;            // (N) one loss per pair; the trainer takes the mean
    at::Tensor chosen_rewards;    // (N) beta * (policy_chosen - reference_chosen), detached
    at::Tensor rejected_rewards;  // (N) beta * (policy_rejected - reference_rejected), detached
};

// "sigmoid", "robust", "ipo", "hinge", "exo_pair", "sppo_hard", "nca_pair",
// "apo_zero", "apo_down", "aot", "aot_pair", "discopop".
const std::vector<std::string>& dpo_loss_types();
bool is_dpo_loss_type(const std::string& name);
std::string dpo_loss_types_joined();  // "sigmoid, robust, ..." for error messages

// policy_chosen, policy_rejected, reference_chosen, reference_rejected: (N)
// summed log p(response | prompt) per pair. beta > 0. label_smoothing in
// [0, 0.5] (sigmoid, robust (< 0.5), exo_pair (0 means 1e-3), aot, aot_pair).
// reference_free: the reference log-ratio is taken as 0 (TRL's reference_free;
// like TRL it affects sigmoid, robust, exo_pair, hinge, ipo, apo_*).
// Bad shapes, values or loss names throw cai::error naming them.
dpo_loss_result dpo_loss_forward(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                                 const at::Tensor& reference_chosen, const at::Tensor& reference_rejected,
                                 double beta, const std::string& loss_type, double label_smoothing = 0.0,
                                 bool reference_free = false, double discopop_tau = 0.05);

// The argument checks of dpo_loss_forward (shared with the fused dpo_loss_fused.h).
void dpo_loss_check_inputs(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                           const at::Tensor& reference_chosen, const at::Tensor& reference_rejected, double beta,
                           const std::string& loss_type, double label_smoothing, double discopop_tau);

// TRL's logged DPO metrics for one batch, means over the pairs:
// rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,
// logps/chosen, logps/rejected (policy log-probs).
std::map<std::string, double> dpo_metrics(const dpo_loss_result& result, const at::Tensor& policy_chosen,
                                          const at::Tensor& policy_rejected);

}  // namespace cai

// AdamW over named parameters, gradient clipping by global norm and the
// non-finite loss check: the pieces every trainer (SFT, DPO, LoRA) shares.
//
// adamw follows torch.optim.AdamW (single-tensor path) exactly:
//   p      -= lr * weight_decay * p                 (decoupled decay, only if decay)
//   m       = beta1 * m + (1 - beta1) * g
//   v       = beta2 * v + (1 - beta2) * g * g
//   p      -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// with t counted per parameter (a parameter without a gradient is skipped).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cai {

struct named_parameter {
    std::string name;
    at::Tensor value;           // a leaf tensor with requires_grad; updated in place
    bool weight_decay = true;   // the caller decides: no decay for biases and norms
};

// true for names a trainer conventionally exempts from weight decay:
// biases and normalisation weights ("...bias", "...norm...", "...ln_...").
bool is_no_decay_name(const std::string& name);

struct adamw_options {
    double beta1 = 0.9, beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
};

class adamw {
public:
    adamw(std::vector<named_parameter> params, const adamw_options& options);

    // One update with learning rate lr from each parameter's .grad().
    void step(double lr);
    // Drops the gradients (like zero_grad(set_to_none=True)).
    void zero_grad();

    const std::vector<named_parameter>& parameters() const { return params_; }
    const adamw_options& options() const { return options_; }

    // Optimizer state as named tensors for a checkpoint:
    // "exp_avg/<name>", "exp_avg_sq/<name>", "step/<name>" (int64 scalar).
    std::vector<std::pair<std::string, at::Tensor>> state_tensors() const;
    // Restores what state_tensors() gave; every parameter must be present
    // with matching shapes, or this throws naming the tensor.
    void load_state_tensors(const std::map<std::string, at::Tensor>& state, const std::string& where);

private:
    struct slot {
        at::Tensor exp_avg, exp_avg_sq;
        int64_t step = 0;
    };
    std::vector<named_parameter> params_;
    std::vector<slot> state_;
    adamw_options options_;
};

// Scales all gradients so their global L2 norm is at most max_norm, as
// torch.nn.utils.clip_grad_norm_: coef = min(1, max_norm / (norm + 1e-6)).
// Returns the norm before clipping. Parameters without gradients are skipped.
double clip_grad_norm(const std::vector<named_parameter>& params, double max_norm);
// The global L2 norm of the gradients, unchanged.
double grad_norm(const std::vector<named_parameter>& params);

// Throws cai::error "training: loss is nan at step 12 (...how to fix)"
// when value is NaN or infinite; `what` names the quantity ("loss", "grad norm").
void check_finite(const char* what, double value, int64_t step);

}  // namespace cai

// LoRA adapters with PEFT's semantics (peft.tuners.lora): for a target
// linear W (out, in), A (r, in) ~ kaiming_uniform_(a = sqrt(5)) and
// B (out, r) = 0, both float32 and trainable; y = x W^T + scale * (dropout(x) A^T) B^T
// with scale = alpha / r, or alpha / sqrt(r) with rslora.
//
// Adapters are saved and loaded in PEFT's layout: adapter_config.json and
// adapter_model.safetensors with keys
//   base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
//   base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
// so PEFT loads ours and we load PEFT's (see docs/lora.md).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "train/optim.h"

namespace cai {

class model;

// The linear names LoRA can target, in transformers' order:
// q_proj k_proj v_proj o_proj gate_proj up_proj down_proj.
const std::vector<std::string>& lora_target_names();

struct lora_options {
    int64_t r = 8;
    double alpha = 8;
    double dropout = 0;  // probability, in [0, 1)
    // Names from lora_target_names(), or the single name "all-linear" for all
    // of them. The default is PEFT's for the Llama family.
    std::vector<std::string> targets = {"q_proj", "v_proj"};
    bool rslora = false;
    uint64_t seed = 0;  // A's values (one sub-stream per layer and projection)
};

// The adapters a model carries, read back from its linears.
struct lora_state {
    int64_t r = 0;
    double alpha = 0, dropout = 0, scale = 0;
    bool rslora = false, merged = false;
    std::vector<std::string> targets;  // in lora_target_names() order
};

// torch.nn.init.kaiming_uniform_'s bound for a weight with this fan_in:
// gain = sqrt(2 / (1 + a^2)), std = gain / sqrt(fan_in), bound = sqrt(3) * std.
double kaiming_uniform_bound(int64_t fan_in, double a);
double lora_scaling(int64_t r, double alpha, bool rslora);

// Attaches adapters to every layer's target linears. Throws when the model
// already has adapters, on a bad option, or on an unknown target (listing the valid names).
void lora_add(model& m, const lora_options& options);
// Detaches the adapters (unmerging first when merged).
void lora_remove(model& m);
bool lora_present(const model& m);
lora_state lora_describe(const model& m);  // throws when there are none

// W += scale * B A in W's dtype (computed in float32, rounded once), then the
// adapters stay off; lora_unmerge subtracts the same product and turns them on.
void lora_merge(model& m);
void lora_unmerge(model& m);

// Dropout acts only while training. The trainer reseeds the masks each step
// (e.g. seed = rng::derive(run_seed, step)) so a resumed run draws the same masks.
void lora_set_training(model& m, bool training);
void lora_set_dropout_seed(model& m, uint64_t seed);

// The adapter tensors under PEFT's saved key names (live tensors, not copies).
std::vector<std::pair<std::string, at::Tensor>> lora_named_tensors(const model& m);
// adapter_config.json text for the model's adapters, as PEFT writes it.
std::string lora_adapter_config(const model& m);
// A LoRA run's trainer_loop::extra_files: that adapter_config.json in each checkpoint.
std::function<std::vector<std::pair<std::string, std::string>>()> lora_checkpoint_files(const model& m);

// Writes adapter_config.json + adapter_model.safetensors into dir atomically.
void lora_save(const model& m, const std::string& dir);
// Attaches the adapter saved in dir (ours or PEFT's). Throws naming the
// file and field or key on anything we do not support or that does not fit.
void lora_load(model& m, const std::string& dir);

// What a trainer optimises, with requires_grad set: the LoRA A and B
// matrices under their PEFT names when the model has adapters (full must be
// false), otherwise every weight under its HF name when full is true (a tied
// lm_head once, as model.embed_tokens.weight). weight_decay is false for
// biases and normalisation weights, as transformers' Trainer decides it.
std::vector<named_parameter> trainable_parameters(model& m, bool full);

}  // namespace cai

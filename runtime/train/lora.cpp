// LoRA: attaching, merging and unmerging adapters as PEFT does; their files
// (adapter_config.json, adapter_model.safetensors) are in lora_peft.cpp.
#include "train/lora.h"
#include "train/lora_layout.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "core/error.h"
#include "core/rng.h"
#include "core/strings.h"
#include "model/model.h"
#include "model/save.h"

namespace cai {
namespace lora_detail {

const target_slot slots[slot_count] = {
    {"q_proj", "self_attn.q_proj", &decoder_layer::q_proj},  {"k_proj", "self_attn.k_proj", &decoder_layer::k_proj},
    {"v_proj", "self_attn.v_proj", &decoder_layer::v_proj},  {"o_proj", "self_attn.o_proj", &decoder_layer::o_proj},
    {"gate_proj", "mlp.gate_proj", &decoder_layer::gate_proj}, {"up_proj", "mlp.up_proj", &decoder_layer::up_proj},
    {"down_proj", "mlp.down_proj", &decoder_layer::down_proj},
};

namespace {

std::string target_list() {
    std::string s;
    for (const auto& t : slots) s += (s.empty() ? "" : ", ") + std::string(t.name);
    return s;
}

// "q_proj", "self_attn.q_proj" -> slot index; -1 when neither.
int slot_index(const std::string& name) {
    for (size_t k = 0; k < slot_count; ++k)
        if (name == slots[k].name || name == slots[k].module) return (int)k;
    return -1;
}

}  // namespace

std::vector<bool> select_targets(const std::vector<std::string>& targets, const std::string& where) {
    std::vector<bool> chosen(slot_count, false);
    if (targets.empty()) fail(where, ": targets must name at least one of ", target_list());
    for (const auto& t : targets) {
        if (t == "all-linear") {
            chosen.assign(slot_count, true);
            continue;
        }
        int k = slot_index(t);
        if (k < 0)
            fail(where, ": unknown LoRA target \"", t, "\"; this model's linear layers are ", target_list(),
                 " (or \"all-linear\" for all of them)");
        chosen[k] = true;
    }
    return chosen;
}

std::string key_prefix(size_t layer, size_t k) {
    return "base_model.model.model.layers." + std::to_string(layer) + "." + slots[k].module;
}

namespace {

template <class Model, class Fn>
void for_each_adapter(Model& m, Fn&& fn) {
    for (size_t i = 0; i < m.layers.size(); ++i)
        for (size_t k = 0; k < slot_count; ++k) {
            auto& l = m.layers[i].*(slots[k].member);
            if (l.lora_a.defined() && l.lora_b.defined()) fn(i, k, l);
        }
}

// A (r, in) as torch.nn.init.kaiming_uniform_(A, a=sqrt(5)) draws it, from our generator.
at::Tensor kaiming_uniform(rng& r, int64_t rows, int64_t fan_in) {
    const double bound = kaiming_uniform_bound(fan_in, std::sqrt(5.0));
    at::Tensor t = at::empty({rows, fan_in}, at::kFloat);
    float* p = t.data_ptr<float>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = (float)(-bound + 2 * bound * r.uniform());
    return t;
}

}  // namespace

void attach(linear& l, at::Tensor a, at::Tensor b, int64_t r, double alpha, bool rslora, double dropout,
            uint64_t dropout_seed) {
    l.lora_a = a.set_requires_grad(true);
    l.lora_b = b.set_requires_grad(true);
    l.lora_alpha = alpha;
    l.lora_rslora = rslora;
    l.lora_scale = lora_scaling(r, alpha, rslora);
    l.lora_dropout = dropout;
    l.lora_rng = std::make_shared<rng>(dropout_seed);
    l.lora_enabled = true;
    l.lora_merged = false;
}

void check_options(int64_t r, double alpha, double dropout, const std::string& where) {
    if (r < 1) fail(where, ": r must be a positive integer, got ", r);
    if (!std::isfinite(alpha) || alpha <= 0) fail(where, ": alpha must be a positive number, got ", alpha);
    if (!(dropout >= 0 && dropout < 1)) fail(where, ": dropout must be in [0, 1), got ", dropout);
}

namespace {

// Product B A in float32: (out, in).
at::Tensor delta_weight(const linear& l) { return at::matmul(l.lora_b.detach(), l.lora_a.detach()) * l.lora_scale; }

}  // namespace
}  // namespace lora_detail

using namespace lora_detail;

const std::vector<std::string>& lora_target_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (const auto& t : slots) v.push_back(t.name);
        return v;
    }();
    return names;
}

double kaiming_uniform_bound(int64_t fan_in, double a) {
    const double gain = std::sqrt(2.0 / (1.0 + a * a));
    const double std = gain / std::sqrt((double)fan_in);
    return std::sqrt(3.0) * std;
}

double lora_scaling(int64_t r, double alpha, bool rslora) {
    return rslora ? alpha / std::sqrt((double)r) : alpha / (double)r;
}

bool lora_present(const model& m) {
    bool any = false;
    for_each_adapter(m, [&](size_t, size_t, const linear&) { any = true; });
    return any;
}

void lora_add(model& m, const lora_options& o) {
    const std::string where = "add_lora";
    check_options(o.r, o.alpha, o.dropout, where);
    std::vector<bool> chosen = select_targets(o.targets, where);
    if (lora_present(m)) fail(where, ": the model already has LoRA adapters (remove_lora() first)");
    // A rank above min(in, out) adds nothing but memory (r = 1e9 would only end in "out of memory").
    for (size_t i = 0; i < m.layers.size(); ++i)
        for (size_t k = 0; k < slot_count; ++k) {
            if (!chosen[k]) continue;
            const linear& l = m.layers[i].*(slots[k].member);
            const int64_t smallest = std::min(l.out_features(), l.in_features());
            if (o.r > smallest)
                fail(where, ": r = ", o.r, " is more than ", slots[k].name, "'s smallest dimension (", smallest,
                     "); LoRA's rank must be at most min(in_features, out_features)");
        }
    for (size_t i = 0; i < m.layers.size(); ++i)
        for (size_t k = 0; k < slot_count; ++k) {
            if (!chosen[k]) continue;
            linear& l = m.layers[i].*(slots[k].member);
            const int64_t out = l.out_features(), in = l.in_features();
            rng init(rng::derive(o.seed, init_stream, i * slot_count + k));
            at::Tensor a = kaiming_uniform(init, o.r, in);         // (r, in)
            at::Tensor b = at::zeros({out, o.r}, at::kFloat);     // (out, r)
            attach(l, a, b, o.r, o.alpha, o.rslora, o.dropout, rng::derive(o.seed, dropout_stream, i * slot_count + k));
        }
}

void lora_remove(model& m) {
    if (!lora_present(m)) return;
    // A merged adapter stays in the weights (PEFT's merge_and_unload): only
    // unmerge_lora() takes it out again, and only before the adapter is removed.
    for_each_adapter(m, [&](size_t, size_t, linear& l) {
        l.lora_a = at::Tensor();
        l.lora_b = at::Tensor();
        l.lora_scale = l.lora_alpha = l.lora_dropout = 0;
        l.lora_rslora = l.lora_enabled = l.lora_merged = l.training = false;
        l.lora_rng.reset();
    });
}

lora_state lora_describe(const model& m) {
    lora_state s;
    std::vector<bool> chosen(slot_count, false);
    bool first = true;
    for_each_adapter(m, [&](size_t, size_t k, const linear& l) {
        chosen[k] = true;
        if (!first) return;
        first = false;
        s.r = l.lora_a.size(0);
        s.alpha = l.lora_alpha;
        s.dropout = l.lora_dropout;
        s.scale = l.lora_scale;
        s.rslora = l.lora_rslora;
        s.merged = l.lora_merged;
    });
    if (first) fail("lora: the model has no LoRA adapters (add_lora or load_lora first)");
    for (size_t k = 0; k < slot_count; ++k)
        if (chosen[k]) s.targets.push_back(slots[k].name);
    return s;
}

void lora_merge(model& m) {
    if (lora_describe(m).merged) fail("merge_lora: the adapters are already merged");
    if (m.int8_weights())
        fail("merge_lora: the model's weights are int8 (loaded with weights = \"int8\"); merging needs float weights: "
             "load the model without it to merge, or save the adapter alone (m:save_lora)");
    at::NoGradGuard no_grad;
    for_each_adapter(m, [&](size_t, size_t, linear& l) {
        // W = round(float(W) + scale * B A), as PEFT's in-place add does.
        l.weight.copy_((l.weight.to(at::kFloat) + delta_weight(l)).to(l.weight.scalar_type()));
        l.lora_merged = true;
        l.lora_enabled = false;
    });
}

void lora_unmerge(model& m) {
    if (!lora_describe(m).merged) fail("unmerge_lora: the adapters are not merged");
    at::NoGradGuard no_grad;
    for_each_adapter(m, [&](size_t, size_t, linear& l) {
        l.weight.copy_((l.weight.to(at::kFloat) - delta_weight(l)).to(l.weight.scalar_type()));
        l.lora_merged = false;
        l.lora_enabled = true;
    });
}

void lora_set_training(model& m, bool training) {
    for_each_adapter(m, [&](size_t, size_t, linear& l) { l.training = training; });
}

void lora_set_dropout_seed(model& m, uint64_t seed) {
    for_each_adapter(m, [&](size_t i, size_t k, linear& l) {
        l.lora_rng = std::make_shared<rng>(rng::derive(seed, dropout_stream, i * slot_count + k));
    });
}

std::vector<std::pair<std::string, at::Tensor>> lora_named_tensors(const model& m) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for_each_adapter(m, [&](size_t i, size_t k, const linear& l) {
        out.emplace_back(key_prefix(i, k) + ".lora_A.weight", l.lora_a);
        out.emplace_back(key_prefix(i, k) + ".lora_B.weight", l.lora_b);
    });
    return out;
}

std::vector<named_parameter> trainable_parameters(model& m, bool full) {
    if (full && m.int8_weights())
        fail("trainable_parameters: full = true but the model's weights are int8 (loaded with weights = \"int8\"); "
             "train LoRA adapters on the int8 base, or load the float weights for full fine-tuning");
    std::vector<named_parameter> out;
    if (lora_present(m)) {
        if (full)
            fail("trainable_parameters: full = true but the model has LoRA adapters; remove them for full "
                 "fine-tuning, or train the adapters (full = false)");
        if (lora_describe(m).merged)
            fail("trainable_parameters: the LoRA adapters are merged; unmerge_lora() before training them");
        for (auto& [name, t] : model_named_tensors(m)) t.requires_grad_(false);
        for (auto& [name, t] : lora_named_tensors(m)) {
            t.requires_grad_(true);
            out.push_back({name, t, true});
        }
        return out;
    }
    if (!full)
        fail("trainable_parameters: the model has no LoRA adapters; add_lora{...} first, or pass full = true "
             "to train every weight");
    for (auto& [name, t] : model_named_tensors(m)) {
        // transformers' Trainer: no decay for names matching layernorm, norm or *_norm (q_norm, k_norm).
        const bool is_norm = ends_with(name, "layernorm.weight") || ends_with(name, "_norm.weight") ||
                             name == "model.norm.weight";
        t.requires_grad_(true);
        out.push_back({name, t, !(is_norm || ends_with(name, ".bias"))});
    }
    return out;
}

}  // namespace cai

// LoRA: attaching, merging, saving and loading adapters as PEFT does.
#include "train/lora.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/rng.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/save.h"

namespace cai {
namespace {

using json = nlohmann::json;

// One LoRA-capable projection of a decoder layer: its short name (PEFT's
// target_modules entry), its module path inside the layer, the member.
struct target_slot {
    const char* name;
    const char* module;
    linear decoder_layer::*member;
};

const target_slot slots[] = {
    {"q_proj", "self_attn.q_proj", &decoder_layer::q_proj},  {"k_proj", "self_attn.k_proj", &decoder_layer::k_proj},
    {"v_proj", "self_attn.v_proj", &decoder_layer::v_proj},  {"o_proj", "self_attn.o_proj", &decoder_layer::o_proj},
    {"gate_proj", "mlp.gate_proj", &decoder_layer::gate_proj}, {"up_proj", "mlp.up_proj", &decoder_layer::up_proj},
    {"down_proj", "mlp.down_proj", &decoder_layer::down_proj},
};
constexpr size_t slot_count = sizeof(slots) / sizeof(slots[0]);

// Sub-stream keys: A's values and the dropout masks of layer i, slot k.
constexpr uint64_t init_stream = 1, dropout_stream = 2;

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

// Which slots a target list selects ("all-linear" selects every one).
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

// Product B A in float32: (out, in).
at::Tensor delta_weight(const linear& l) { return at::matmul(l.lora_b.detach(), l.lora_a.detach()) * l.lora_scale; }

// ---- adapter_config.json ----

const json* field(const json& config, const char* name) {
    auto it = config.find(name);
    return it == config.end() ? nullptr : &*it;
}

bool is_unset(const json* v) { return !v || v->is_null() || ((v->is_object() || v->is_array()) && v->empty()); }

void reject_set(const json& config, const char* name, const std::string& where, const char* why) {
    const json* v = field(config, name);
    if (!is_unset(v)) fail(where, ": field \"", name, "\" is ", v->dump(), "; ", why);
}

void reject_true(const json& config, const char* name, const std::string& where, const char* why) {
    const json* v = field(config, name);
    if (v && !v->is_null() && !(v->is_boolean() && !v->get<bool>()))
        fail(where, ": field \"", name, "\" is ", v->dump(), "; ", why);
}

double number_field(const json& config, const char* name, double def, const std::string& where) {
    const json* v = field(config, name);
    if (!v || v->is_null()) return def;
    if (!v->is_number()) fail(where, ": field \"", name, "\" must be a number, got ", v->dump());
    return v->get<double>();
}

struct adapter_config {
    int64_t r = 0;
    double alpha = 8, dropout = 0;
    bool rslora = false;
    std::vector<bool> targets;
};

adapter_config parse_adapter_config(const std::string& text, const std::string& where) {
    json c = parse_json(text, where);
    if (!c.is_object()) fail(where, ": must be a JSON object");
    const json* type = field(c, "peft_type");
    if (!type || !type->is_string() || type->get<std::string>() != "LORA")
        fail(where, ": field \"peft_type\" must be \"LORA\", got ", type ? type->dump() : "nothing",
             " (only LoRA adapters load)");
    const json* task = field(c, "task_type");
    if (task && !task->is_null() && !(task->is_string() && task->get<std::string>() == "CAUSAL_LM"))
        fail(where, ": field \"task_type\" is ", task->dump(), "; only CAUSAL_LM adapters load");

    // PEFT features this runtime does not implement: refuse rather than load something else.
    reject_true(c, "use_dora", where, "DoRA adapters are not supported (train with use_dora=False)");
    reject_true(c, "fan_in_fan_out", where, "only nn.Linear weights (fan_in_fan_out=False) are supported");
    reject_true(c, "lora_bias", where, "LoRA biases are not supported");
    reject_true(c, "use_qalora", where, "QALoRA adapters are not supported");
    reject_set(c, "layers_to_transform", where, "adapters on a subset of layers are not supported");
    reject_set(c, "layers_pattern", where, "adapters on a subset of layers are not supported");
    reject_set(c, "rank_pattern", where, "per-module ranks are not supported (one r for every module)");
    reject_set(c, "alpha_pattern", where, "per-module alphas are not supported (one lora_alpha for every module)");
    reject_set(c, "modules_to_save", where, "fully trained extra modules are not supported");
    reject_set(c, "layer_replication", where, "layer replication is not supported");
    reject_set(c, "megatron_config", where, "Megatron layers are not supported");
    reject_set(c, "exclude_modules", where, "excluded modules are not supported");
    reject_set(c, "trainable_token_indices", where, "trainable tokens are not supported");
    reject_set(c, "target_parameters", where, "LoRA on parameters (not modules) is not supported");
    if (const json* bias = field(c, "bias"))
        if (!bias->is_null() && !(bias->is_string() && bias->get<std::string>() == "none"))
            fail(where, ": field \"bias\" is ", bias->dump(), "; only \"none\" is supported");
    if (const json* init = field(c, "init_lora_weights"); init && init->is_string()) {
        std::string s = init->get<std::string>();
        if (s.rfind("pissa", 0) == 0 || s == "olora" || s == "loftq" || s == "corda" || s == "eva")
            fail(where, ": field \"init_lora_weights\" is \"", s,
                 "\"; such adapters change the base weights and are not supported");
    }

    adapter_config out;
    const json* r = field(c, "r");
    if (!r || !r->is_number_integer() || r->get<int64_t>() < 1)
        fail(where, ": field \"r\" must be a positive integer, got ", r ? r->dump() : "nothing");
    out.r = r->get<int64_t>();
    out.alpha = number_field(c, "lora_alpha", 8, where);
    out.dropout = number_field(c, "lora_dropout", 0, where);
    if (const json* rs = field(c, "use_rslora"); rs && !rs->is_null()) {
        if (!rs->is_boolean()) fail(where, ": field \"use_rslora\" must be true or false, got ", rs->dump());
        out.rslora = rs->get<bool>();
    }
    check_options(out.r, out.alpha, out.dropout, where);

    const json* targets = field(c, "target_modules");
    std::vector<std::string> names;
    if (targets && targets->is_string()) {
        if (targets->get<std::string>() != "all-linear")
            fail(where, ": field \"target_modules\" is the pattern ", targets->dump(),
                 "; only a list of names or \"all-linear\" is supported");
        names.push_back("all-linear");
    } else if (targets && targets->is_array()) {
        for (const auto& t : *targets) {
            if (!t.is_string()) fail(where, ": field \"target_modules\" must hold strings, got ", t.dump());
            names.push_back(t.get<std::string>());
        }
    } else {
        fail(where, ": field \"target_modules\" must be a list of module names, got ",
             targets ? targets->dump() : "nothing");
    }
    out.targets = select_targets(names, std::string(where) + ": field \"target_modules\"");
    return out;
}

std::string shape_string(at::IntArrayRef s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

}  // namespace

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
            const int64_t smallest = std::min(l.weight.size(0), l.weight.size(1));
            if (o.r > smallest)
                fail(where, ": r = ", o.r, " is more than ", slots[k].name, "'s smallest dimension (", smallest,
                     "); LoRA's rank must be at most min(in_features, out_features)");
        }
    for (size_t i = 0; i < m.layers.size(); ++i)
        for (size_t k = 0; k < slot_count; ++k) {
            if (!chosen[k]) continue;
            linear& l = m.layers[i].*(slots[k].member);
            const int64_t out = l.weight.size(0), in = l.weight.size(1);
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

std::string lora_adapter_config(const model& m) {
    lora_state s = lora_describe(m);
    json c = json::object();
    // The fields PEFT has written since 0.10 (older PEFT refuses unknown fields, newer ones fill the rest).
    c["alpha_pattern"] = json::object();
    c["auto_mapping"] = nullptr;
    c["base_model_name_or_path"] = m.path.empty() ? json(nullptr) : json(m.path);
    c["bias"] = "none";
    c["fan_in_fan_out"] = false;
    c["inference_mode"] = true;
    c["init_lora_weights"] = true;
    c["layer_replication"] = nullptr;
    c["layers_pattern"] = nullptr;
    c["layers_to_transform"] = nullptr;
    c["loftq_config"] = json::object();
    if (s.alpha == std::floor(s.alpha) && std::abs(s.alpha) < 1e15)
        c["lora_alpha"] = (int64_t)s.alpha;
    else
        c["lora_alpha"] = s.alpha;
    c["lora_dropout"] = s.dropout;
    c["megatron_config"] = nullptr;
    c["megatron_core"] = "megatron.core";
    c["modules_to_save"] = nullptr;
    c["peft_type"] = "LORA";
    c["r"] = s.r;
    c["rank_pattern"] = json::object();
    c["revision"] = nullptr;
    c["target_modules"] = s.targets;
    c["task_type"] = "CAUSAL_LM";
    c["use_dora"] = false;
    c["use_rslora"] = s.rslora;
    return c.dump(2) + "\n";
}

void lora_save(const model& m, const std::string& dir) {
    std::string config = lora_adapter_config(m);  // throws when there are no adapters
    write_directory_atomic(dir, {"adapter_config.json", "adapter_model.safetensors", "README.md"},
                           [&](const std::string& tmp) {
                               write_file_atomic(path_join(tmp, "adapter_config.json"), config);
                               std::vector<std::pair<std::string, at::Tensor>> tensors;
                               for (const auto& [name, t] : lora_named_tensors(m))
                                   tensors.emplace_back(name, t.detach().to(at::kFloat).contiguous());
                               save_safetensors(path_join(tmp, "adapter_model.safetensors"), tensors,
                                                {{"format", "pt"}});
                           });
}

void lora_load(model& m, const std::string& dir) {
    if (!is_directory(dir)) fail("load_lora: \"", dir, "\" is not a directory (expected a PEFT adapter directory)");
    const std::string config_path = path_join(dir, "adapter_config.json");
    const std::string weights_path = path_join(dir, "adapter_model.safetensors");
    if (!file_exists(config_path)) fail(dir, ": no adapter_config.json (expected a PEFT LoRA adapter directory)");
    if (!file_exists(weights_path)) {
        if (file_exists(path_join(dir, "adapter_model.bin")))
            fail(dir, ": only adapter_model.bin is present; save the adapter with safe_serialization=True");
        fail(dir, ": no adapter_model.safetensors");
    }
    if (lora_present(m)) fail("load_lora: the model already has LoRA adapters (remove_lora() first)");
    adapter_config c = parse_adapter_config(read_file(config_path), config_path);

    safetensors_file file(weights_path);
    std::set<std::string> expected;
    for (size_t i = 0; i < m.layers.size(); ++i)
        for (size_t k = 0; k < slot_count; ++k)
            if (c.targets[k]) {
                expected.insert(key_prefix(i, k) + ".lora_A.weight");
                expected.insert(key_prefix(i, k) + ".lora_B.weight");
            }
    for (const auto& name : file.names())
        if (!expected.count(name))
            fail(weights_path, ": unexpected tensor \"", name, "\" (adapter_config.json targets ",
                 [&] {
                     std::string s;
                     for (size_t k = 0; k < slot_count; ++k)
                         if (c.targets[k]) s += (s.empty() ? "" : ", ") + std::string(slots[k].name);
                     return s;
                 }(),
                 " in ", m.layers.size(), " layers)");
    auto take = [&](const std::string& name, std::vector<int64_t> shape) {
        if (!file.has(name))
            fail(weights_path, ": missing tensor \"", name, "\" (expected shape ", shape_string(shape), ")");
        const safetensors_entry& e = file.entry(name);
        if (e.dtype != "F32" && e.dtype != "BF16" && e.dtype != "F16")
            fail(weights_path, ": tensor \"", name, "\" has dtype ", e.dtype, "; LoRA weights must be F32, BF16 or F16");
        if (e.shape != shape)
            fail(weights_path, ": tensor \"", name, "\" has shape ", shape_string(e.shape), ", expected ",
                 shape_string(shape), " (r = ", c.r, " from adapter_config.json)");
        return file.load(name, at::kFloat);
    };
    // Read and check everything before touching the model.
    std::vector<std::pair<linear*, std::pair<at::Tensor, at::Tensor>>> loaded;
    for (size_t i = 0; i < m.layers.size(); ++i)
        for (size_t k = 0; k < slot_count; ++k) {
            if (!c.targets[k]) continue;
            linear& l = m.layers[i].*(slots[k].member);
            const int64_t out = l.weight.size(0), in = l.weight.size(1);
            at::Tensor a = take(key_prefix(i, k) + ".lora_A.weight", {c.r, in});
            at::Tensor b = take(key_prefix(i, k) + ".lora_B.weight", {out, c.r});
            loaded.push_back({&l, {a, b}});
        }
    size_t n = 0;
    for (size_t i = 0; i < m.layers.size(); ++i)
        for (size_t k = 0; k < slot_count; ++k) {
            if (!c.targets[k]) continue;
            auto& [l, ab] = loaded[n++];
            attach(*l, ab.first, ab.second, c.r, c.alpha, c.rslora, c.dropout,
                   rng::derive(0, dropout_stream, i * slot_count + k));
        }
}

std::vector<named_parameter> trainable_parameters(model& m, bool full) {
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
    auto ends_with = [](const std::string& s, const std::string& suffix) {
        return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
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

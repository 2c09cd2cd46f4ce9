// PEFT's adapter files: adapter_config.json (written as PEFT writes it, read
// with everything this runtime does not implement refused by name) and
// adapter_model.safetensors under PEFT's key names.
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/strings.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/save.h"
#include "train/lora.h"
#include "train/lora_layout.h"

namespace cai {

using namespace lora_detail;

namespace {

using json = nlohmann::json;

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
        if (starts_with(s, "pissa") || s == "olora" || s == "loftq" || s == "corda" || s == "eva")
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

}  // namespace

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

std::function<std::vector<std::pair<std::string, std::string>>()> lora_checkpoint_files(const model& m) {
    return [&m] {
        return std::vector<std::pair<std::string, std::string>>{{"adapter_config.json", lora_adapter_config(m)}};
    };
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
            const int64_t out = l.out_features(), in = l.in_features();
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

}  // namespace cai

#include "model/save.h"

#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <system_error>

#include "core/error.h"
#include "core/fs.h"
#include "model/model.h"
#include "model/reward.h"
#include "model/safetensors.h"

namespace cai {
namespace {

namespace fs = std::filesystem;

// Files a Hugging Face model directory carries besides the weights; copied
// from the directory the model was loaded from when present.
const std::vector<std::string> companion_files = {
    "generation_config.json", "tokenizer.json",     "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "added_tokens.json", "vocab.json",            "merges.txt",
    "chat_template.jinja",
};

std::string without_trailing_slash(std::string dir) {
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    return dir;
}

// config.json as loaded, with its dtype field (torch_dtype, or dtype in
// newer configs) naming the dtype the weights are saved in, as transformers
// writes it, so that the directory loads back in that dtype. The text is kept
// as it was when it already says so (or names no dtype and the weights are
// float32, which is what an absent field means).
std::string config_json_for_dtype(const std::string& text, at::ScalarType dtype) {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(text);
    const std::string name = dtype == at::kBFloat16 ? "bfloat16" : "float32";
    std::vector<std::string> keys;
    for (const char* key : {"torch_dtype", "dtype"})
        if (j.contains(key) && !j[key].is_null()) keys.push_back(key);
    bool same = keys.empty() ? name == "float32" : true;
    for (const auto& key : keys) same = same && j[key].is_string() && j[key].get<std::string>() == name;
    if (same) return text;
    if (keys.empty()) keys.push_back("torch_dtype");
    for (const auto& key : keys) j[key] = name;
    return j.dump(2) + "\n";
}

void remove_tree(const std::string& path) {
    std::error_code ec;
    fs::remove_all(path, ec);
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> model_named_tensors(const model& m) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    auto add_linear = [&](const std::string& prefix, const linear& l) {
        if (l.quantized()) {  // int8 weights (saving refuses them; hashes and freezing see these)
            out.emplace_back(prefix + ".weight", l.weight_q);
            out.emplace_back(prefix + ".weight_scale", l.weight_scale);
        } else {
            out.emplace_back(prefix + ".weight", l.weight);
        }
        if (l.bias.defined()) out.emplace_back(prefix + ".bias", l.bias);
    };
    out.emplace_back("model.embed_tokens.weight", m.embed_tokens);
    for (size_t i = 0; i < m.layers.size(); ++i) {
        const decoder_layer& l = m.layers[i];
        const std::string p = "model.layers." + std::to_string(i) + ".";
        out.emplace_back(p + "input_layernorm.weight", l.input_norm.weight);
        out.emplace_back(p + "post_attention_layernorm.weight", l.post_attention_norm.weight);
        if (m.config.sandwich_norms) {
            out.emplace_back(p + "pre_feedforward_layernorm.weight", l.pre_feedforward_norm.weight);
            out.emplace_back(p + "post_feedforward_layernorm.weight", l.post_feedforward_norm.weight);
        }
        if (m.config.qk_norm) {
            out.emplace_back(p + "self_attn.q_norm.weight", l.q_norm.weight);
            out.emplace_back(p + "self_attn.k_norm.weight", l.k_norm.weight);
        }
        add_linear(p + "self_attn.q_proj", l.q_proj);
        add_linear(p + "self_attn.k_proj", l.k_proj);
        add_linear(p + "self_attn.v_proj", l.v_proj);
        add_linear(p + "self_attn.o_proj", l.o_proj);
        add_linear(p + "mlp.gate_proj", l.gate_proj);
        add_linear(p + "mlp.up_proj", l.up_proj);
        add_linear(p + "mlp.down_proj", l.down_proj);
    }
    out.emplace_back("model.norm.weight", m.final_norm.weight);
    if (m.lm_head.quantized()) {
        out.emplace_back("lm_head.weight", m.lm_head.weight_q);
        out.emplace_back("lm_head.weight_scale", m.lm_head.weight_scale);
    } else if (!m.config.tie_word_embeddings) {
        out.emplace_back("lm_head.weight", m.lm_head.weight);
    }
    return out;
}

void write_directory_atomic(const std::string& dir_in, const std::vector<std::string>& replaceable,
                            const std::function<void(const std::string&)>& fill) {
    const std::string dir = without_trailing_slash(dir_in);
    if (dir.empty()) fail("write_directory: the directory name is empty");
    const bool exists = file_exists(dir);
    if (exists) {
        if (!is_directory(dir)) fail(dir, ": exists and is not a directory");
        for (const auto& entry : fs::directory_iterator(dir)) {
            std::string name = entry.path().filename().string();
            bool known = false;
            for (const auto& r : replaceable) known = known || name == r;
            if (!known)
                fail(dir, ": exists and holds \"", name, "\", which this save would delete; "
                     "choose a new or empty directory");
        }
    }
    const std::string parent = path_dirname(dir);
    if (parent != ".") make_directories(parent);
    const std::string pid = std::to_string(::getpid());
    const std::string tmp = dir + ".tmp." + pid, old = dir + ".old." + pid;
    remove_tree(tmp);
    make_directories(tmp);
    try {
        fill(tmp);
    } catch (...) {
        remove_tree(tmp);
        throw;
    }
    if (exists) rename_into_place(dir, old);
    try {
        rename_into_place(tmp, dir);
    } catch (...) {
        if (exists) std::rename(old.c_str(), dir.c_str());
        remove_tree(tmp);
        throw;
    }
    if (exists) remove_tree(old);
}

namespace {

void check_savable(const model& m, const std::string& dir, const char* fname, at::ScalarType dtype) {
    if (dtype != at::kFloat && dtype != at::kBFloat16) fail(fname, ": dtype must be fp32 or bf16");
    for (const decoder_layer& l : m.layers)
        for (const linear* p : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
            if (p->lora_a.defined() && !p->lora_merged)
                fail(fname, ": ", dir, ": the model has LoRA adapters that are not merged; call m:merge_lora() "
                     "first to save the adapted weights, or m:save_lora(dir) to save the adapter alone");
    if (m.config.json.empty()) fail(fname, ": ", dir, ": the model has no config.json text to write");
    if (m.int8_weights())
        fail(fname, ": ", dir, ": the model's weights are int8 (loaded with weights = \"int8\"); cairun saves "
             "float weights only: load the model without it to save");
}

void copy_companions(const model& m, const std::string& tmp) {
    if (m.path.empty()) return;
    for (const auto& name : companion_files) {
        const std::string from = path_join(m.path, name);
        if (file_exists(from)) write_file_atomic(path_join(tmp, name), read_file(from));
    }
}

}  // namespace

void save_reward_model(const reward_model& rm, const std::string& dir, at::ScalarType dtype) {
    const model& m = *rm.backbone;
    check_savable(m, dir, "save_reward_model", dtype);
    std::vector<std::string> replaceable = companion_files;
    replaceable.push_back("config.json");
    replaceable.push_back("model.safetensors");
    write_directory_atomic(dir, replaceable, [&](const std::string& tmp) {
        write_file_atomic(path_join(tmp, "config.json"), rm.config_json(dtype));
        std::vector<std::pair<std::string, at::Tensor>> tensors;
        for (const auto& [name, t] : model_named_tensors(m))
            if (name != "lm_head.weight") tensors.emplace_back(name, t.detach().to(dtype).contiguous());
        tensors.emplace_back("score.weight", rm.score_weight.detach().to(dtype).contiguous());
        save_safetensors(path_join(tmp, "model.safetensors"), tensors, {{"format", "pt"}});
        copy_companions(m, tmp);
    });
}

void save_model(const model& m, const std::string& dir, at::ScalarType dtype) {
    check_savable(m, dir, "save_model", dtype);

    std::vector<std::string> replaceable = companion_files;
    replaceable.push_back("config.json");
    replaceable.push_back("model.safetensors");
    write_directory_atomic(dir, replaceable, [&](const std::string& tmp) {
        write_file_atomic(path_join(tmp, "config.json"), config_json_for_dtype(m.config.json, dtype));
        std::vector<std::pair<std::string, at::Tensor>> tensors;
        for (const auto& [name, t] : model_named_tensors(m))
            tensors.emplace_back(name, t.detach().to(dtype).contiguous());
        save_safetensors(path_join(tmp, "model.safetensors"), tensors, {{"format", "pt"}});
        copy_companions(m, tmp);
    });
}

}  // namespace cai

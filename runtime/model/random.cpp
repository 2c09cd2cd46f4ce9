#include "model/random.h"

#include "core/fs.h"
#include "core/rng.h"
#include "model/safetensors.h"

namespace cai {
namespace {

at::Tensor normal_tensor(rng& r, std::vector<int64_t> shape, double mean, double std) {
    at::Tensor t = at::empty(shape, at::kFloat);
    float* p = t.data_ptr<float>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = (float)(mean + std * r.normal());
    return t;
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> random_model_tensors(const model_config& c, uint64_t seed,
                                                                     double std) {
    rng r(seed);
    std::vector<std::pair<std::string, at::Tensor>> out;
    const int64_t C = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
    const int64_t q_out = c.num_heads * c.head_dim, kv_out = c.num_kv_heads * c.head_dim;
    const double norm_mean = c.norm_one_plus ? 0.0 : 1.0;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, double mean, double s) {
        out.emplace_back(name, normal_tensor(r, shape, mean, s));
    };
    auto add_linear = [&](const std::string& p, int64_t o, int64_t i, bool bias) {
        add(p + ".weight", {o, i}, 0, std);
        if (bias) add(p + ".bias", {o}, 0, std);
    };
    add("model.embed_tokens.weight", {V, C}, 0, std);
    for (int64_t i = 0; i < c.num_layers; ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        add(p + "input_layernorm.weight", {C}, norm_mean, 0.1);
        add(p + "post_attention_layernorm.weight", {C}, norm_mean, 0.1);
        if (c.sandwich_norms) {
            add(p + "pre_feedforward_layernorm.weight", {C}, norm_mean, 0.1);
            add(p + "post_feedforward_layernorm.weight", {C}, norm_mean, 0.1);
        }
        if (c.qk_norm) {
            add(p + "self_attn.q_norm.weight", {c.head_dim}, norm_mean, 0.1);
            add(p + "self_attn.k_norm.weight", {c.head_dim}, norm_mean, 0.1);
        }
        add_linear(p + "self_attn.q_proj", q_out, C, c.qkv_bias);
        add_linear(p + "self_attn.k_proj", kv_out, C, c.qkv_bias);
        add_linear(p + "self_attn.v_proj", kv_out, C, c.qkv_bias);
        add_linear(p + "self_attn.o_proj", C, q_out, c.o_bias);
        add_linear(p + "mlp.gate_proj", I, C, c.mlp_bias);
        add_linear(p + "mlp.up_proj", I, C, c.mlp_bias);
        add_linear(p + "mlp.down_proj", C, I, c.mlp_bias);
    }
    add("model.norm.weight", {C}, norm_mean, 0.1);
    if (!c.tie_word_embeddings) add("lm_head.weight", {V, C}, 0, std);
    return out;
}

std::vector<std::pair<std::string, at::Tensor>> random_reward_tensors(const model_config& c, uint64_t seed,
                                                                      int64_t labels, double std) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (auto& [name, t] : random_model_tensors(c, seed, std))
        if (name != "lm_head.weight") out.emplace_back(name, t);
    rng r(rng::derive(seed, 0x73636f7265));  // "score": its own stream, the body stays the causal model's
    out.emplace_back("score.weight", normal_tensor(r, {labels, c.hidden_size}, 0, std));
    return out;
}

void write_model_dir(const std::string& dir, const std::string& config_json,
                     const std::vector<std::pair<std::string, at::Tensor>>& tensors, at::ScalarType dtype) {
    make_directories(dir);
    write_file_atomic(path_join(dir, "config.json"), config_json);
    std::vector<std::pair<std::string, at::Tensor>> converted;
    for (const auto& [name, t] : tensors) converted.emplace_back(name, t.to(dtype));
    save_safetensors(path_join(dir, "model.safetensors"), converted);
}

}  // namespace cai

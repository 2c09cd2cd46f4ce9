// A Hugging Face config.json read into the fields the forward pass uses,
// with each architecture's defaults (transformers' <Arch>Config) applied
// where a field is absent. Errors name config.json, the field and what was
// expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cai {

struct model_config {
    std::string model_type;  // llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text
    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t intermediate_size = 0;
    int64_t num_layers = 0;
    int64_t num_heads = 0;
    int64_t num_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t max_position_embeddings = 0;
    double rms_norm_eps = 1e-6;
    std::string hidden_act = "silu";  // silu, gelu, gelu_pytorch_tanh, gelu_new, relu

    // Rotary embedding: rope_type default | linear | llama3. With local_rope
    // (gemma3_text) these are the full-attention layers' parameters.
    double rope_theta = 10000.0;
    std::string rope_type = "default";
    double rope_factor = 1.0;
    double rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
    int64_t rope_original_max_position_embeddings = 8192;

    bool qkv_bias = false;   // q/k/v projections carry a bias (qwen2; llama attention_bias)
    bool o_bias = false;     // o_proj carries a bias (llama attention_bias)
    bool mlp_bias = false;   // gate/up/down carry a bias (llama mlp_bias)
    bool tie_word_embeddings = false;
    bool qk_norm = false;    // RMSNorm over each head of q and k before the rotation (qwen3, gemma3_text)

    // Gemma family.
    bool norm_one_plus = false;      // RMSNorm scales by (1 + w)
    bool scale_embeddings = false;   // embeddings times sqrt(hidden_size)
    bool sandwich_norms = false;     // gemma2: post-attention and pre/post-feedforward norms
    double attn_scale = 0;           // softmax scale: query_pre_attn_scalar^-0.5 or head_dim^-0.5
    double attn_logit_softcapping = 0;   // 0: off
    double final_logit_softcapping = 0;  // 0: off

    int64_t sliding_window = 0;           // 0: none
    std::vector<bool> layer_sliding;      // per layer: uses sliding_window

    // gemma3_text: the layers layer_types calls "sliding_attention" rotate with
    // their own base (rope_local_base_freq) and no scaling.
    bool local_rope = false;
    double rope_local_theta = 10000.0;
    std::vector<bool> layer_local_rope;   // per layer: uses the local rotary base

    // The checkpoint's dtype (torch_dtype, or dtype in newer configs):
    // "float32", "bfloat16", "float16", or empty when the config names none.
    std::string torch_dtype;

    std::vector<int64_t> eos_token_ids;   // config.json's eos_token_id (int or list)
    int64_t bos_token_id = -1, pad_token_id = -1;

    std::string json;  // the config.json text as read
};

// Parses config.json text; `where` names the file in errors.
model_config parse_model_config(const std::string& json_text, const std::string& where = "config.json");

// Ids from generation_config.json's eos_token_id (int or list); empty when absent.
std::vector<int64_t> parse_generation_eos(const std::string& json_text, const std::string& where);

}  // namespace cai

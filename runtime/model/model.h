// A decoder-only transformer of the Llama family (llama, mistral, qwen2,
// qwen3, gemma, gemma2, gemma3_text) loaded from a Hugging Face directory. The forward pass is a
// composition of ATen ops, so autograd runs through it (SFT, DPO); its
// numbers follow transformers' modeling_<arch>.py (see docs/models.md).
//
// Positions come from the attention mask (cumsum - 1), so a left-padded row
// gives the same logits for its real tokens as the row without padding; with
// no mask, positions are 0..T-1.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"

namespace cai {

class rng;
class tokenizer;

// y = x W^T + b. The LoRA fields are filled by runtime/train/lora.h
// (lora_a: (r, in), lora_b: (out, r), float32 whatever the weight's dtype);
// when enabled, y += scale * (dropout(x) A^T) B^T, computed in float32 and
// cast back to y's dtype as PEFT does. Dropout (probability lora_dropout)
// acts only while training, with masks drawn from lora_rng.
struct linear {
    at::Tensor weight;  // (out, in); undefined when the weights are int8
    at::Tensor bias;    // (out) or undefined
    // int8 weights (model::quantize_int8): weight_q (out, in) uint8 holding the
    // int8 value + 128 and weight_scale (out) float32,
    // weight ≈ (weight_q - 128) * weight_scale[:, None] (kernels/matvec.h).
    at::Tensor weight_q, weight_scale;
    at::Tensor lora_a, lora_b;
    double lora_scale = 0;
    bool lora_enabled = false;
    double lora_alpha = 0;          // as configured: scale = alpha / r (alpha / sqrt(r) with rslora)
    bool lora_rslora = false;
    double lora_dropout = 0;
    bool lora_merged = false;       // scale * B A is in weight; the adapter stays off until unmerged
    bool training = false;          // LoRA dropout on
    std::shared_ptr<rng> lora_rng;  // dropout masks

    at::Tensor forward(const at::Tensor& x) const;
    bool quantized() const { return weight_q.defined(); }
    int64_t out_features() const { return quantized() ? weight_q.size(0) : weight.size(0); }
    int64_t in_features() const { return quantized() ? weight_q.size(1) : weight.size(1); }
};

// RMSNorm computed in float32: llama casts back then scales by w;
// gemma scales by (1 + w) in float32, then casts back.
struct rms_norm {
    at::Tensor weight;  // (C)
    double eps = 1e-6;
    bool one_plus = false;

    at::Tensor forward(const at::Tensor& x) const;
};

struct decoder_layer {
    rms_norm input_norm, post_attention_norm;
    rms_norm pre_feedforward_norm, post_feedforward_norm;  // gemma2, gemma3_text
    rms_norm q_norm, k_norm;                               // over each head (D): qwen3, gemma3_text
    linear q_proj, k_proj, v_proj, o_proj;
    linear gate_proj, up_proj, down_proj;
    bool sliding = false;     // attends to the last config.sliding_window positions only
    bool local_rope = false;  // rotates with inv_freq_local (gemma3_text's sliding layers)
};

// Keys and values for a batch, preallocated. Row b holds its real tokens
// compactly in slots [0, length[b]): padding is never stored, so a row's
// cache does not depend on the rest of the batch.
// Paged (block_table defined): k and v are a pool of fixed-size blocks shared
// by many rows (runtime/generate's KV pool), and row b's slot s lives in
// block block_table[b, s / block_size] at offset s % block_size. Rows may
// name the same block (a shared prompt prefix); only slots at or past a row's
// length are written.
struct kv_cache {
    std::vector<at::Tensor> k, v;  // per layer: (B, capacity, Hkv, D); paged: (blocks, block_size, Hkv, D)
    std::vector<int64_t> length;   // per row: slots filled
    int64_t capacity = 0;          // slots per row (paged: block_table.size(1) * block_size)
    at::Tensor block_table;        // paged: (B, capacity / block_size) int64, else undefined
    int64_t block_size = 0;        // paged: slots per block
    int64_t batch() const { return (int64_t)length.size(); }
    bool paged() const { return block_table.defined(); }
};

class model {
public:
    model_config config;
    at::ScalarType dtype = at::kFloat;  // compute dtype (float32 or bfloat16)
    std::string path;                   // directory it was loaded from

    at::Tensor embed_tokens;  // (V, C)
    std::vector<decoder_layer> layers;
    rms_norm final_norm;
    linear lm_head;          // weight is embed_tokens when tie_word_embeddings
    at::Tensor inv_freq;     // (D/2) float32 rotary frequencies
    at::Tensor inv_freq_local;  // (D/2) the local layers' frequencies when config.local_rope, else undefined
    std::shared_ptr<tokenizer> tok;  // null when built from tensors or loaded from a directory without one
    std::string tokenizer_path;      // the directory tok was loaded from
    std::vector<int64_t> eos_ids;    // config, generation_config and tokenizer EOS ids
    // runtime/generate's prompt-prefix KV blocks kept between generate calls (opaque here).
    mutable std::shared_ptr<void> generation_state;

    // Loads config.json, model.safetensors (or the sharded index) and, when
    // with_tokenizer, the tokenizer: from tokenizer_dir when given, else from
    // dir when it has tokenizer files (a directory without them loads with
    // tok null, as model.save_pretrained() alone writes none).
    // dtype: at::kFloat, at::kBFloat16, or at::ScalarType::Undefined for the
    // checkpoint's own (checkpoint_dtype).
    static std::shared_ptr<model> load(const std::string& dir, at::ScalarType dtype, bool with_tokenizer = true,
                                       const std::string& tokenizer_dir = "");
    // Builds a model from a config and named tensors (HF names), checking
    // every name and shape as load does. `where` names the source in errors.
    static std::shared_ptr<model> from_tensors(const model_config& config,
                                               const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                               at::ScalarType dtype, const std::string& where);

    // ids: (B, T) int64; attention_mask: (B, T) 0/1 or undefined (all real).
    // Without a cache: differentiable, returns the final normed hidden states (B, T, C).
    // With a cache: appends each row's real tokens after its cached ones.
    at::Tensor hidden_states(const at::Tensor& ids, const at::Tensor& attention_mask = {},
                             kv_cache* cache = nullptr) const;
    // (B, T, C) -> (B, T, V) in the compute dtype, soft-capped where the model says so.
    at::Tensor logits_from_hidden(const at::Tensor& hidden) const;
    at::Tensor forward(const at::Tensor& ids, const at::Tensor& attention_mask = {}, kv_cache* cache = nullptr) const;
    // The one token log-prob path: log p(targets[b, t] | ids[b, <=t]) as float32
    // (B, T), differentiable. targets: (B, T) int64, the token position t is
    // scored against (usually ids[b, t+1]), or negative (-100) where nothing is
    // scored, which gives 0. With the kernels on and a head the fused kernel
    // computes exactly (no bias, no enabled LoRA), only the scored positions
    // enter kernels::linear_logprob and the (B, T, V) logits never exist;
    // otherwise logits, log_softmax and gather. SFT, DPO and scoring reduce this.
    at::Tensor target_logprobs(const at::Tensor& ids, const at::Tensor& attention_mask,
                               const at::Tensor& targets) const;
    // log p(ids[b, t] | ids[b, <t]) as float32 (B, T); 0 in column 0 and where t or t-1 is padding.
    at::Tensor logprobs(const at::Tensor& ids, const at::Tensor& attention_mask = {}) const;

    kv_cache new_cache(int64_t batch, int64_t capacity) const;

    // LoRA adapters (filled by the training code): whether any linear has
    // one, and switching all of them on or off (use_lora = false). Merged
    // adapters stay off; switching them off is an error (unmerge first).
    bool has_lora() const;
    void set_lora_enabled(bool enabled);
    int64_t parameter_count() const;
    // Bytes the weights take in memory as loaded (int8 weights, their scales
    // and LoRA adapters included; a head tied to the embeddings once).
    int64_t weight_bytes() const;
    // Replaces the decoder layers' projection weights (q/k/v/o, gate/up/down)
    // and lm_head by int8 ones with a float32 scale per output row (symmetric;
    // a head tied to the embeddings gets its own int8 copy; the embeddings,
    // norms and biases stay in the compute dtype). Decode
    // reads them as int8 (kernels::matvec_i8); prefill and training widen a
    // layer's weights per call. LoRA adapters train on top; merging and
    // saving need the float weights (an error names it).
    void quantize_int8();
    bool int8_weights() const;

    // The rotary cos/sin for integer positions (B, T): each (B, T, D) in the compute dtype;
    // local: with the local layers' frequencies (config.local_rope).
    std::pair<at::Tensor, at::Tensor> rotary(const at::Tensor& positions, bool local = false) const;

private:
    // What every layer's attention reads, built once per forward pass.
    struct attention_inputs {
        at::Tensor cos, sin;                  // (B, T, D) rotary
        at::Tensor cos_local, sin_local;      // (B, T, D) the local layers' rotary (config.local_rope)
        at::Tensor positions;                 // (B, T) int64
        at::Tensor real;                      // (B, T) bool: not padding
        int64_t window = 0;                   // the sliding layers' window
        kv_cache* cache = nullptr;
        at::Tensor write_rows, write_cols, write_slots;  // (N) int64: where each real token goes in the cache
        at::Tensor write_pool;                           // paged: (N) int64, each real token's pool slot
        int64_t key_len = 0;                             // cache slots attended (S)
        bool fresh = false;                              // the cache held nothing before: keys are this call's
        at::Tensor filled;                               // (B) int64: each row's slots filled after this step
        // A chunk of more than a decode step after a filled cache: each row's
        // keys right-aligned to S, for kernels::suffix_attention.
        at::Tensor suffix_index;      // (B * S) int64: the cache token (pool slot, or row * capacity + slot) of key j
        at::Tensor suffix_valid;      // (B, S) bool
        at::Tensor suffix_positions;  // (B, S) int64: each key's position
        // The plain path's (B, 1, T, S) bool mask (sliding: within the window) and, paged, the
        // (B * S) pool slot of each key it gathers; made on first use (the kernels need neither).
        const at::Tensor& plain_mask(bool sliding) const;
        const at::Tensor& plain_key_pool() const;
        mutable at::Tensor allowed, allowed_sliding, key_pool;
    };
    at::Tensor layer_forward(size_t index, const at::Tensor& x, const attention_inputs& in) const;
    // The feed-forward half of a layer, residual included.
    at::Tensor feed_forward(const decoder_layer& layer, const at::Tensor& after_attention) const;
};

// Rotary inverse frequencies for a config (rope_type default, linear, llama3), float32 (D/2);
// local: the local layers' (rope_local_theta, no scaling).
at::Tensor rope_inv_freq(const model_config& config, bool local = false);

at::ScalarType parse_dtype(const std::string& name);  // "fp32" | "bf16"
// The compute dtype a checkpoint asks for: bf16 for torch_dtype bfloat16,
// fp32 for float32, float16 (logged) or none. `where` names config.json.
at::ScalarType checkpoint_dtype(const model_config& config, const std::string& where);
std::string dtype_name(at::ScalarType type);

}  // namespace cai

// Reward models: Hugging Face *ForSequenceClassification checkpoints of the
// Llama family (LlamaForSequenceClassification, Qwen2..., Mistral...,
// Gemma..., Gemma2...) with one output label.
//
// transformers computes score = hidden · score.weightᵀ (no bias) at every
// position of the final normed hidden states, then keeps each row's value at
// its last token that is not pad_token_id. We tokenize ourselves, so we pool
// at each row's last real token according to our own attention mask (and
// apply the head only there, which is the same number). The two differ only
// when a text's own tokens end with pad_token_id (e.g. pad = eos and the
// tokenizer appends EOS): transformers would then skip those trailing
// tokens; we log a warning when that happens.
//
// The head runs in float32 whatever the compute dtype (transformers rounds
// the score to the model dtype, bf16, as well).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"

namespace cai {

class model;

// The fields of config.json that make a checkpoint a reward model.
struct reward_head_config {
    std::string architecture;  // architectures[0], e.g. "LlamaForSequenceClassification"
    int64_t num_labels = 0;    // num_labels, else the size of id2label, else 2 (transformers' default)
};

// Checks that config.json text describes a one-label *ForSequenceClassification
// model; errors name `where`, the field and how to fix it.
reward_head_config parse_reward_config(const std::string& json_text, const std::string& where);
// Whether config.json text names a *ForSequenceClassification class in
// architectures[0] (then parse_reward_config says whether it is usable).
bool names_reward_architecture(const std::string& json_text, const std::string& where);

class reward_model {
public:
    std::shared_ptr<model> backbone;  // the decoder without an LM head; backbone->tok is the tokenizer
    at::Tensor score_weight;          // (1, C) float32
    reward_head_config head;
    std::string path;  // directory it was loaded from

    // Loads config.json, model.safetensors (or the sharded index) and the
    // tokenizer. dtype: at::kFloat or at::kBFloat16 (the backbone's compute dtype),
    // or at::ScalarType::Undefined for the checkpoint's torch_dtype.
    static std::shared_ptr<reward_model> load(const std::string& dir, at::ScalarType dtype);
    // Builds one from a config (whose .json is config.json's text) and named
    // HF tensors: the backbone's "model.*" tensors plus "score.weight" (1, C).
    // No tokenizer: score_ids only. `where` names the source in errors.
    static std::shared_ptr<reward_model> from_tensors(const model_config& config,
                                                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                                      at::ScalarType dtype, const std::string& where);

    // A reward model over a causal LM's decoder (shared, not copied; its LM
    // head is unused) with a new one-row score head drawn as transformers
    // initialises it: normal(0, 0.02), float32, from `seed`. The architecture
    // is the LM's with ForSequenceClassification (LlamaForCausalLM ->
    // LlamaForSequenceClassification), or named from model_type.
    static std::shared_ptr<reward_model> from_causal(std::shared_ptr<model> lm, uint64_t seed);

    // config.json for this model as transformers' AutoModelForSequenceClassification
    // writes it: the backbone's config with architectures, num_labels = 1,
    // id2label/label2id and a pad_token_id (the EOS id when the config has none).
    std::string config_json(at::ScalarType dtype) const;

    // ids: (B, T) int64, attention_mask: (B, T) 0/1 (left or right padding;
    // every row needs a real token). Returns (B) float32: each row's score
    // at its last real token.
    at::Tensor score_ids(const at::Tensor& ids, const at::Tensor& attention_mask) const;
    // Scores token-id rows, batch_size at a time (rows grouped by length,
    // left-padded); the result does not depend on batch_size beyond float
    // rounding. No gradients.
    std::vector<double> score_rows(const std::vector<std::vector<int32_t>>& rows, int64_t batch_size) const;
    // Tokenizes each text with special tokens (BOS as the tokenizer config says) and scores it.
    std::vector<double> score_texts(const std::vector<std::string>& texts, int64_t batch_size) const;
};

}  // namespace cai

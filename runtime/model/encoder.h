// Encoder classifiers: Hugging Face BertForSequenceClassification,
// RobertaForSequenceClassification, DistilBertForSequenceClassification and
// DebertaV2ForSequenceClassification (DeBERTa-v2 and -v3 checkpoints), as
// transformers computes them in eval mode (no dropout).
//
// One encoder path serves the four families; they differ in
//  - embeddings: word + absolute position (+ token type) then LayerNorm
//    (bert, roberta, distilbert); roberta numbers positions from
//    pad_token_id + 1 counting only tokens that are not the pad token;
//    deberta-v2 adds the absolute positions only when position_biased_input,
//    projects embedding_size to hidden_size when they differ, and zeroes
//    padding after the LayerNorm;
//  - attention: softmax(q kᵀ / sqrt(d) + mask) v (bert family), or DeBERTa's
//    disentangled attention: content-to-content plus content-to-position
//    (c2p) and position-to-content (p2c) terms over relative positions,
//    optionally log-bucketed (position_buckets), with the relative embeddings
//    LayerNormed (norm_rel_ebd = "layer_norm") and projected by the
//    attention's own q/k projections (share_att_key) or separate ones;
//  - the head on the first token: bert's pooler (dense + tanh) then
//    classifier; roberta's classifier.dense + tanh + classifier.out_proj;
//    distilbert's pre_classifier + ReLU + classifier; deberta's
//    ContextPooler (dense + pooler_hidden_act) then classifier.
//
// Rows are right-padded (as these tokenizers pad); the first token carries
// the result, so a row's logits do not depend on its batch. The pooler and
// classifier run in float32 whatever the compute dtype.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cai {

class tokenizer;

struct encoder_config {
    std::string model_type;    // bert, roberta, distilbert, deberta-v2
    std::string architecture;  // architectures[0]
    int64_t vocab_size = 0, hidden_size = 0, num_layers = 0, num_heads = 0, head_dim = 0;
    int64_t intermediate_size = 0, max_position_embeddings = 512, type_vocab_size = 2;
    double layer_norm_eps = 1e-12;
    std::string hidden_act = "gelu";
    int64_t pad_token_id = 0;

    // deberta-v2
    bool relative_attention = false;
    int64_t max_relative_positions = -1;  // resolved: < 1 means max_position_embeddings
    int64_t position_buckets = -1;
    bool c2p = false, p2c = false, share_att_key = false, norm_rel_layer_norm = false;
    bool position_biased_input = true;
    int64_t embedding_size = 0;  // word embedding width (embed_proj when != hidden_size)
    int64_t pooler_hidden_size = 0;
    std::string pooler_hidden_act = "gelu";

    // the classification head
    int64_t num_labels = 2;
    std::vector<std::string> id2label;  // num_labels names ("LABEL_i" when config.json has none)
    std::string problem_type;           // "", regression, single_label_classification, multi_label_classification

    std::string json;  // config.json as read

    // The size of the relative embedding table's half (att_span in transformers).
    int64_t att_span() const { return position_buckets > 0 ? position_buckets : max_relative_positions; }
};

// The model types this file runs.
bool is_encoder_model_type(const std::string& model_type);
// config.json's model_type, "" when absent or not a string.
std::string config_model_type(const std::string& json_text, const std::string& where);
// Parses an encoder *ForSequenceClassification config.json with the
// defaults of transformers' BertConfig, RobertaConfig, DistilBertConfig and
// DebertaV2Config. Errors name `where`, the field and the expectation.
encoder_config parse_encoder_config(const std::string& json_text, const std::string& where);

// One tokenized input row: ids and the segment of each token (token_type_ids).
struct encoder_row {
    std::vector<int32_t> ids, type_ids;
};

class encoder_classifier {
public:
    encoder_config config;
    at::ScalarType dtype = at::kFloat;
    std::shared_ptr<tokenizer> tok;  // null when the directory has none and none was named
    std::string path;

    // Loads config.json and model.safetensors (or its sharded index) from
    // dir; the tokenizer from tokenizer_dir ("" = dir; a directory without
    // tokenizer files loads without one). dtype: at::kFloat or at::kBFloat16.
    static std::shared_ptr<encoder_classifier> load(const std::string& dir, at::ScalarType dtype,
                                                    const std::string& tokenizer_dir = "");
    // Builds one from a parsed config and named HF tensors. Missing or
    // misshapen tensors are errors naming `where`.
    static std::shared_ptr<encoder_classifier> from_tensors(
        const encoder_config& config, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
        at::ScalarType dtype, const std::string& where);

    // Writes a random checkpoint (config.json as given + model.safetensors
    // with every tensor the config asks for, HF names, drawn from cai::rng:
    // weights N(0, std^2), LayerNorm weights 1 + N(0, 0.01)) into dir.
    static void write_random(const std::string& dir, const std::string& config_json, uint64_t seed,
                             double std = 0.2);

    // ids, attention_mask, token_type_ids: (B, T) integer; mask 1 for real
    // tokens (right padding; undefined mask = all ones; undefined types =
    // zeros). Returns (B, num_labels) float32 logits.
    at::Tensor logits(const at::Tensor& ids, const at::Tensor& attention_mask,
                      const at::Tensor& token_type_ids) const;
    // (B, T, hidden_size) final hidden states in the compute dtype.
    at::Tensor hidden_states(const at::Tensor& ids, const at::Tensor& attention_mask,
                             const at::Tensor& token_type_ids) const;

    // Logits of every row, batch_size rows at a time, rows grouped by length
    // (right-padded); a row's logits do not depend on the others beyond float
    // rounding. progress_label: a progress bar on a terminal ("" = none).
    std::vector<std::vector<double>> logits_rows(const std::vector<encoder_row>& rows, int64_t batch_size,
                                                 const std::string& progress_label = "") const;
    // Tokenizes texts (with their pairs when text_pairs is non-empty: one per
    // text) as the tokenizer's post-processor says: [CLS] a [SEP] b [SEP].
    std::vector<encoder_row> tokenize(const std::vector<std::string>& texts,
                                      const std::vector<std::string>& text_pairs) const;

    int64_t parameter_count() const;

private:
    struct layer_weights {
        at::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, attn_ln_w, attn_ln_b;
        at::Tensor ff1_w, ff1_b, ff2_w, ff2_b, out_ln_w, out_ln_b;
        at::Tensor pos_key_w, pos_key_b, pos_query_w, pos_query_b;  // deberta without share_att_key
    };
    at::Tensor word_, position_, token_type_, emb_ln_w_, emb_ln_b_, embed_proj_;
    at::Tensor rel_embeddings_, rel_ln_w_, rel_ln_b_;
    std::vector<layer_weights> layers_;
    // Head, float32: pooler / pre-classifier / roberta dense, then the output layer.
    at::Tensor pool_w_, pool_b_, out_w_, out_b_;

    at::Tensor relative_positions(int64_t T) const;
    class weight_source;  // named tensors (or random ones) with shape checks
    // Takes every tensor the config asks for from w.
    static std::shared_ptr<encoder_classifier> build(const encoder_config& c, at::ScalarType dtype, weight_source& w);  // (T, T) int64, bucketed as the config says
};

}  // namespace cai

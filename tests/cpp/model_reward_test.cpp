// runtime/model/reward: *ForSequenceClassification reward models. Scores
// equal the head applied by hand to an independent causal model's hidden
// state at the last token; padding side and batch size do not change them;
// every error names what is wrong.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <stdlib.h>

#include <cstdio>
#include <string>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "model/reward.h"
#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"

namespace {

using tensor_list = std::vector<std::pair<std::string, at::Tensor>>;

// vocab_size matches tests/data/tokenizers/llama_json (BOS added).
const std::string llama_json = R"({"architectures":["LlamaForSequenceClassification"],"model_type":"llama",
  "vocab_size":700,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,
  "num_key_value_heads":2,"rms_norm_eps":1e-5,"num_labels":1,"pad_token_id":0,"eos_token_id":2})";

const std::string qwen2_json = R"({"architectures":["Qwen2ForSequenceClassification"],"model_type":"qwen2",
  "vocab_size":50,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,
  "num_key_value_heads":2,"id2label":{"0":"LABEL_0"},"tie_word_embeddings":false})";

std::string temp_dir() {
    char tmpl[] = "/tmp/cai_reward_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

// Backbone tensors (no LM head) plus score.weight ~ N(0, 0.3^2).
tensor_list reward_tensors(const std::string& json, uint64_t seed = 5) {
    cai::model_config c = cai::parse_model_config(json);
    c.tie_word_embeddings = true;  // no lm_head.weight
    tensor_list t = cai::random_model_tensors(c, seed);
    cai::rng r(seed + 100);
    at::Tensor w = at::empty({1, c.hidden_size}, at::kFloat);
    for (int64_t i = 0; i < c.hidden_size; ++i) w[0][i] = (float)(0.3 * r.normal());
    t.emplace_back("score.weight", w);
    return t;
}

tensor_list without(const tensor_list& t, const std::string& name) {
    tensor_list out;
    for (const auto& kv : t)
        if (kv.first != name) out.push_back(kv);
    return out;
}

tensor_list replaced(const tensor_list& t, const std::string& name, at::Tensor value) {
    tensor_list out = without(t, name);
    out.emplace_back(name, value);
    return out;
}

void copy_tokenizer(const std::string& dir) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
        cai::write_file_atomic(cai::path_join(dir, f),
                               cai::read_file(std::string("tests/data/tokenizers/llama_json/") + f));
}

std::string reward_dir(const std::string& json = llama_json, const tensor_list& t = reward_tensors(llama_json),
                       at::ScalarType dtype = at::kFloat) {
    std::string dir = temp_dir();
    cai::write_model_dir(dir, json, t, dtype);
    copy_tokenizer(dir);
    return dir;
}

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const cai::error& e) {
        return e.what();
    }
    return "(no error)";
}

std::string load_error(const std::string& dir) {
    return error_of([&] { cai::reward_model::load(dir, at::kFloat); });
}

std::string build_error(const std::string& json, const tensor_list& t) {
    return error_of([&] { cai::reward_model::from_tensors(cai::parse_model_config(json), t, at::kFloat, "mem"); });
}

// The score by hand: an independent causal model over the same backbone
// tensors, one unpadded row, hidden state at the last token · score.weight.
double direct_score(const std::string& json, const tensor_list& t, const std::vector<int32_t>& row) {
    cai::model_config c = cai::parse_model_config(json);
    c.tie_word_embeddings = true;
    auto m = cai::model::from_tensors(c, without(t, "score.weight"), at::kFloat, "direct");
    at::Tensor w;
    for (const auto& kv : t)
        if (kv.first == "score.weight") w = kv.second;
    c10::InferenceMode no_grad;
    at::Tensor ids = at::empty({1, (int64_t)row.size()}, at::kLong);
    for (size_t i = 0; i < row.size(); ++i) ids[0][(int64_t)i] = row[i];
    at::Tensor h = m->hidden_states(ids);                  // (1, T, C)
    at::Tensor last = h[0][(int64_t)row.size() - 1];       // (C)
    return (last.to(at::kDouble) * w[0].to(at::kDouble)).sum().item<double>();
}

const std::vector<std::string> texts = {"the cat sat on the mat", "hi", "a reward model scores whole answers",
                                        "hello world"};

}  // namespace

TEST_CASE("reward: config checks name the field and the fix") {
    auto parse_error = [](const std::string& json) {
        return error_of([&] { cai::parse_reward_config(json, "rm/config.json"); });
    };
    CHECK(cai::parse_reward_config(llama_json, "c").num_labels == 1);
    CHECK(cai::parse_reward_config(qwen2_json, "c").num_labels == 1);
    CHECK(cai::parse_reward_config(llama_json, "c").architecture == "LlamaForSequenceClassification");
    CHECK_THAT(parse_error(R"({"model_type":"llama"})"),
               Catch::Contains("rm/config.json: field \"architectures\" must be a list"));
    CHECK_THAT(parse_error(R"({"architectures":["LlamaForCausalLM"],"num_labels":1})"),
               Catch::Contains("architectures[0] is \"LlamaForCausalLM\"") &&
                   Catch::Contains("cai.scoring.logprob"));
    CHECK_THAT(parse_error(R"({"architectures":["LlamaForSequenceClassification"],"num_labels":3})"),
               Catch::Contains("rm/config.json: num_labels is 3") && Catch::Contains("\"num_labels\": 1"));
    CHECK_THAT(parse_error(R"({"architectures":["LlamaForSequenceClassification"],
                               "id2label":{"0":"NEG","1":"POS"}})"),
               Catch::Contains("num_labels is 2;"));
    CHECK_THAT(parse_error(R"({"architectures":["LlamaForSequenceClassification"]})"),
               Catch::Contains("num_labels is 2 (transformers' default"));
    CHECK_THAT(parse_error(R"({"architectures":["LlamaForSequenceClassification"],"num_labels":"one"})"),
               Catch::Contains("field \"num_labels\" must be an integer"));
    CHECK_THAT(parse_error("{"), Catch::Contains("rm/config.json: not valid JSON"));
}

TEST_CASE("reward: a loaded directory scores texts as the head over the last hidden state") {
    tensor_list t = reward_tensors(llama_json);
    std::string dir = reward_dir(llama_json, t);
    auto rm = cai::reward_model::load(dir, at::kFloat);
    REQUIRE(rm->backbone->tok);
    REQUIRE(rm->head.architecture == "LlamaForSequenceClassification");
    std::vector<double> scores = rm->score_texts(texts, 8);
    REQUIRE(scores.size() == texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
        std::vector<int32_t> row = rm->backbone->tok->encode(texts[i], true);
        REQUIRE(row.front() == rm->backbone->tok->bos_id);  // add_special_tokens: BOS as configured
        CHECK(scores[i] == Approx(direct_score(llama_json, t, row)).epsilon(0).margin(1e-5));
    }
    // Scores differ between texts: the head sees the text.
    CHECK(std::abs(scores[0] - scores[1]) > 1e-4);
    CHECK(rm->score_texts({}, 4).empty());
}

TEST_CASE("reward: batch size and padding side do not change a score") {
    tensor_list t = reward_tensors(llama_json);
    auto rm = cai::reward_model::load(reward_dir(llama_json, t), at::kFloat);
    std::vector<double> one = rm->score_texts(texts, 1);
    std::vector<double> three = rm->score_texts(texts, 3);
    std::vector<double> all = rm->score_texts(texts, 16);
    for (size_t i = 0; i < texts.size(); ++i) {
        CHECK(three[i] == Approx(one[i]).epsilon(0).margin(1e-5));
        CHECK(all[i] == Approx(one[i]).epsilon(0).margin(1e-5));
    }

    // score_ids: the same two rows left-padded and right-padded.
    std::vector<int32_t> a = rm->backbone->tok->encode(texts[0], true), b = rm->backbone->tok->encode(texts[1], true);
    REQUIRE(a.size() > b.size());
    const int64_t T = (int64_t)a.size(), pad = T - (int64_t)b.size();
    at::Tensor left = at::full({2, T}, 7, at::kLong), right = at::full({2, T}, 7, at::kLong);
    at::Tensor left_mask = at::zeros({2, T}, at::kLong), right_mask = at::zeros({2, T}, at::kLong);
    for (int64_t i = 0; i < T; ++i) {
        left[0][i] = right[0][i] = a[i];
        left_mask[0][i] = right_mask[0][i] = 1;
    }
    for (int64_t i = 0; i < (int64_t)b.size(); ++i) {
        left[1][pad + i] = b[i];
        left_mask[1][pad + i] = 1;
        right[1][i] = b[i];
        right_mask[1][i] = 1;
    }
    c10::InferenceMode no_grad;
    at::Tensor l = rm->score_ids(left, left_mask), r = rm->score_ids(right, right_mask);
    REQUIRE(l.sizes() == at::IntArrayRef({2}));
    CHECK(l[0].item<double>() == Approx(one[0]).epsilon(0).margin(1e-5));
    CHECK(l[1].item<double>() == Approx(one[1]).epsilon(0).margin(1e-5));
    CHECK(r[0].item<double>() == Approx(one[0]).epsilon(0).margin(1e-5));
    CHECK(r[1].item<double>() == Approx(one[1]).epsilon(0).margin(1e-5));
    CHECK_THAT(error_of([&] { rm->score_ids(left, at::zeros({2, T}, at::kLong)); }),
               Catch::Contains("every row needs at least one real token"));
    CHECK_THAT(error_of([&] { rm->score_rows({a, {}}, 2); }), Catch::Contains("text 2 has no tokens"));
    CHECK_THAT(error_of([&] { rm->score_rows({{1, 700}}, 2); }),
               Catch::Contains("text 1 holds token id 700, outside the model's vocabulary [0, 700)"));
    CHECK_THAT(error_of([&] { rm->score_rows({a}, 0); }), Catch::Contains("batch_size must be >= 1"));
}

TEST_CASE("reward: other architectures of the family build from tensors (qwen2 with q/k/v biases)") {
    tensor_list t = reward_tensors(qwen2_json);
    auto rm = cai::reward_model::from_tensors(cai::parse_model_config(qwen2_json), t, at::kFloat, "mem");
    std::vector<std::vector<int32_t>> rows = {{3, 9, 4, 1}, {7}, {2, 2, 40, 11, 5, 6}};
    std::vector<double> scores = rm->score_rows(rows, 2);
    for (size_t i = 0; i < rows.size(); ++i)
        CHECK(scores[i] == Approx(direct_score(qwen2_json, t, rows[i])).epsilon(0).margin(1e-5));
    CHECK_THAT(error_of([&] { rm->score_texts({"x"}, 1); }), Catch::Contains("no tokenizer"));
}

TEST_CASE("reward: gemma2's final logit soft-capping does not touch the score") {
    const std::string gemma2_json = R"({"architectures":["Gemma2ForSequenceClassification"],"model_type":"gemma2",
      "vocab_size":40,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,
      "num_key_value_heads":2,"head_dim":8,"query_pre_attn_scalar":8,"sliding_window":3,
      "final_logit_softcapping":0.01,"attn_logit_softcapping":50.0,"num_labels":1})";
    tensor_list t = reward_tensors(gemma2_json);
    auto rm = cai::reward_model::from_tensors(cai::parse_model_config(gemma2_json), t, at::kFloat, "mem");
    std::vector<std::vector<int32_t>> rows = {{2, 9, 4, 1, 30, 8}, {7, 3}};
    std::vector<double> scores = rm->score_rows(rows, 2);
    for (size_t i = 0; i < rows.size(); ++i)
        CHECK(scores[i] == Approx(direct_score(gemma2_json, t, rows[i])).epsilon(0).margin(1e-5));
    CHECK(std::abs(scores[0]) > 0.01);  // a soft-capped value would stay below 0.01
}

TEST_CASE("reward: a text ending in pad_token_id is pooled at its last real token (documented difference)") {
    // transformers would pool at the last token that is not pad_token_id (0 here);
    // we pool at the last token of the text, whatever its id, and warn.
    tensor_list t = reward_tensors(llama_json);
    auto rm = cai::reward_model::from_tensors(cai::parse_model_config(llama_json), t, at::kFloat, "mem");
    std::vector<int32_t> row = {1, 15, 40, 0};
    double score = rm->score_rows({row}, 1)[0];
    CHECK(score == Approx(direct_score(llama_json, t, row)).epsilon(0).margin(1e-5));
    CHECK(std::abs(score - direct_score(llama_json, t, {1, 15, 40})) > 1e-4);
}

TEST_CASE("reward: bf16 weights and compute stay close to fp32") {
    tensor_list t = reward_tensors(llama_json);
    std::string dir = reward_dir(llama_json, t, at::kBFloat16);
    auto fp32 = cai::reward_model::load(dir, at::kFloat);
    auto bf16 = cai::reward_model::load(dir, at::kBFloat16);
    REQUIRE(bf16->backbone->dtype == at::kBFloat16);
    REQUIRE(bf16->score_weight.scalar_type() == at::kFloat);
    std::vector<double> a = fp32->score_texts(texts, 2), b = bf16->score_texts(texts, 2);
    for (size_t i = 0; i < texts.size(); ++i) CHECK(b[i] == Approx(a[i]).epsilon(0).margin(0.05));
}

TEST_CASE("reward: a sharded checkpoint scores like the single file") {
    tensor_list t = reward_tensors(llama_json);
    auto single = cai::reward_model::load(reward_dir(llama_json, t), at::kFloat);
    std::string dir = temp_dir();
    cai::write_file_atomic(cai::path_join(dir, "config.json"), llama_json);
    copy_tokenizer(dir);
    tensor_list first(t.begin(), t.begin() + t.size() / 2), second(t.begin() + t.size() / 2, t.end());
    cai::save_safetensors(cai::path_join(dir, "model-00001-of-00002.safetensors"), first);
    cai::save_safetensors(cai::path_join(dir, "model-00002-of-00002.safetensors"), second);
    std::string index = R"({"metadata":{},"weight_map":{)";
    for (size_t i = 0; i < t.size(); ++i)
        index += (i ? "," : "") + ("\"" + t[i].first + "\":\"model-0000" + (i < first.size() ? "1" : "2") +
                                   "-of-00002.safetensors\"");
    cai::write_file_atomic(cai::path_join(dir, "model.safetensors.index.json"), index + "}}");
    auto sharded = cai::reward_model::load(dir, at::kFloat);
    CHECK(sharded->score_texts(texts, 4) == single->score_texts(texts, 4));

    std::remove(cai::path_join(dir, "model-00002-of-00002.safetensors").c_str());
    CHECK_THAT(load_error(dir), Catch::Contains("shard \"model-00002-of-00002.safetensors\" does not exist"));
}

TEST_CASE("reward: checkpoint errors name the tensor, the file and the fix") {
    tensor_list t = reward_tensors(llama_json);
    CHECK_THAT(build_error(llama_json, without(t, "score.weight")),
               Catch::Contains("mem: missing tensor \"score.weight\" (the reward head, shape [1, 16])"));
    CHECK_THAT(build_error(llama_json, replaced(t, "score.weight", at::zeros({2, 16}))),
               Catch::Contains("tensor \"score.weight\" has shape [2, 16], expected [1, 16]"));
    CHECK_THAT(build_error(llama_json, replaced(t, "score.weight", at::zeros({16}))),
               Catch::Contains("has shape [16], expected [1, 16]"));
    tensor_list with_head = t;
    with_head.emplace_back("lm_head.weight", at::zeros({700, 16}));
    CHECK_THAT(build_error(llama_json, with_head), Catch::Contains("unexpected tensor \"lm_head.weight\""));
    tensor_list with_bias = t;
    with_bias.emplace_back("score.bias", at::zeros({1}));
    CHECK_THAT(build_error(llama_json, with_bias), Catch::Contains("unexpected tensor \"score.bias\""));
    tensor_list extra = t;
    extra.emplace_back("model.layers.2.input_layernorm.weight", at::ones({16}));
    CHECK_THAT(build_error(llama_json, extra),
               Catch::Contains("unexpected tensor \"model.layers.2.input_layernorm.weight\""));
    CHECK_THAT(build_error(llama_json, without(t, "model.norm.weight")),
               Catch::Contains("missing tensor \"model.norm.weight\""));

    // Through a directory: the file is named.
    std::string dir = reward_dir(llama_json, without(t, "score.weight"));
    CHECK_THAT(load_error(dir), Catch::Contains(cai::path_join(dir, "model.safetensors") +
                                                ": missing tensor \"score.weight\""));
}

TEST_CASE("reward: directory errors say what is missing and how to fix it") {
    CHECK_THAT(load_error("/nonexistent/rm"), Catch::Contains("\"/nonexistent/rm\" is not a directory"));
    std::string empty = temp_dir();
    CHECK_THAT(load_error(empty), Catch::Contains(empty + ": no config.json"));

    std::string causal = temp_dir();
    std::string causal_json = R"({"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":700,
      "hidden_size":16,"intermediate_size":24,"num_hidden_layers":1,"num_attention_heads":4})";
    cai::write_model_dir(causal, causal_json, cai::random_model_tensors(cai::parse_model_config(causal_json), 1));
    CHECK_THAT(load_error(causal), Catch::Contains(cai::path_join(causal, "config.json") +
                                                   ": architectures[0] is \"LlamaForCausalLM\""));

    std::string no_tok = temp_dir();
    cai::write_model_dir(no_tok, llama_json, reward_tensors(llama_json));
    CHECK_THAT(load_error(no_tok), Catch::Contains("the reward model's tokenizer does not load") &&
                                       Catch::Contains("tokenizer.save_pretrained"));

    std::string no_weights = temp_dir();
    cai::write_file_atomic(cai::path_join(no_weights, "config.json"), llama_json);
    copy_tokenizer(no_weights);
    CHECK_THAT(load_error(no_weights), Catch::Contains("no model.safetensors or model.safetensors.index.json"));
    cai::write_file_atomic(cai::path_join(no_weights, "pytorch_model.bin"), "x");
    CHECK_THAT(load_error(no_weights), Catch::Contains("safe_serialization=True"));
}

// runtime/model/encoder: BERT, RoBERTa, DistilBERT and DeBERTa-v2/v3
// sequence classifiers against golden logits from a PyTorch re-statement of
// transformers' forward passes (tests/data/encoders/make_golden.py), for a
// batch with a right-padded row; each row alone gives the same logits; bf16
// stays near fp32; bad checkpoints are errors naming the tensor or field.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "model/encoder.h"
#include "model/safetensors.h"
#include "test_util.h"

namespace {

using json = nlohmann::json;

const char* const cases[] = {"bert", "roberta", "distilbert", "deberta_v3", "deberta_v2"};

std::string case_dir(const std::string& name) { return "tests/data/encoders/" + name; }

at::Tensor int_tensor(const json& rows) {
    const int64_t B = (int64_t)rows.size(), T = (int64_t)rows[0].size();
    at::Tensor t = at::zeros({B, T}, at::kLong);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < T; ++i) t[b][i] = rows[b][i].get<int64_t>();
    return t;
}

double max_abs_diff(const at::Tensor& a, const json& expected) {
    double worst = 0;
    auto acc = a.to(at::kDouble).contiguous();
    for (int64_t b = 0; b < a.size(0); ++b)
        for (int64_t l = 0; l < a.size(1); ++l)
            worst = std::max(worst, std::abs(acc[b][l].item<double>() - expected[b][l].get<double>()));
    return worst;
}

}  // namespace

TEST_CASE("encoder classifiers match transformers' logits within 1e-4, padded row included", "[encoder]") {
    c10::InferenceMode guard;
    for (const char* name : cases) {
        INFO("case " << name);
        json golden = json::parse(cai::read_file(case_dir(name) + "/golden.json"));
        auto clf = cai::encoder_classifier::load(case_dir(name), at::kFloat);
        CHECK(clf->tok == nullptr);  // no tokenizer files: loads as transformers loads it
        at::Tensor ids = int_tensor(golden["input_ids"]), mask = int_tensor(golden["attention_mask"]);
        at::Tensor types = int_tensor(golden["token_type_ids"]);
        at::Tensor logits = clf->logits(ids, mask, types);
        REQUIRE(logits.sizes() == at::IntArrayRef({ids.size(0), clf->config.num_labels}));
        CHECK(max_abs_diff(logits, golden["logits"]) < 1e-4);

        // Each row alone, without padding, gives its batched logits.
        for (int64_t b = 0; b < ids.size(0); ++b) {
            int64_t n = mask[b].sum().item<int64_t>();
            at::Tensor one = clf->logits(ids[b].slice(0, 0, n).unsqueeze(0), {}, types[b].slice(0, 0, n).unsqueeze(0));
            CHECK((one[0] - logits[b]).abs().max().item<double>() < 1e-5);
        }

        // logits_rows: grouped by length, any batch size, same numbers.
        std::vector<cai::encoder_row> rows(ids.size(0));
        for (int64_t b = 0; b < ids.size(0); ++b)
            for (int64_t i = 0; i < mask[b].sum().item<int64_t>(); ++i) {
                rows[b].ids.push_back((int32_t)ids[b][i].item<int64_t>());
                rows[b].type_ids.push_back((int32_t)types[b][i].item<int64_t>());
            }
        for (int64_t batch_size : {1, 2, 3}) {
            auto out = clf->logits_rows(rows, batch_size);
            REQUIRE(out.size() == rows.size());
            for (size_t b = 0; b < rows.size(); ++b)
                for (int64_t l = 0; l < clf->config.num_labels; ++l)
                    CHECK(std::abs(out[b][l] - golden["logits"][b][l].get<double>()) < 1e-4);
        }

        // bf16 computes near the float32 numbers.
        auto half = cai::encoder_classifier::load(case_dir(name), at::kBFloat16);
        CHECK(max_abs_diff(half->logits(ids, mask, types), golden["logits"]) < 0.15);
    }
}

TEST_CASE("encoder configs read transformers' fields and defaults", "[encoder]") {
    auto c = cai::parse_encoder_config(cai::read_file(case_dir("deberta_v3") + "/config.json"), "config.json");
    CHECK(c.model_type == "deberta-v2");
    CHECK(c.c2p);
    CHECK(c.p2c);
    CHECK(c.share_att_key);
    CHECK(c.norm_rel_layer_norm);
    CHECK(!c.position_biased_input);
    CHECK(c.max_relative_positions == 64);  // -1: max_position_embeddings
    CHECK(c.att_span() == 8);
    CHECK(c.num_labels == 1);

    auto v2 = cai::parse_encoder_config(cai::read_file(case_dir("deberta_v2") + "/config.json"), "config.json");
    CHECK(v2.c2p);
    CHECK(v2.p2c);  // from the "c2p|p2c" string
    CHECK(v2.att_span() == 6);
    CHECK(v2.embedding_size == 24);
    CHECK(v2.id2label == std::vector<std::string>{"NEGATIVE", "POSITIVE"});

    auto bert = cai::parse_encoder_config(cai::read_file(case_dir("bert") + "/config.json"), "config.json");
    CHECK(bert.problem_type == "single_label_classification");
    CHECK(bert.id2label == std::vector<std::string>{"negative", "neutral", "positive"});

    using test_util::error_of;
    CHECK_THAT(error_of([] { cai::parse_encoder_config(R"({"model_type":"bert","architectures":["BertModel"]})", "x/config.json"); }),
               Catch::Contains("x/config.json") && Catch::Contains("ForSequenceClassification"));
    CHECK_THAT(error_of([] {
                   cai::parse_encoder_config(R"({"model_type":"bert","architectures":["BertForSequenceClassification"],
                     "position_embedding_type":"relative_key"})", "config.json");
               }),
               Catch::Contains("position_embedding_type"));
    CHECK_THAT(error_of([] {
                   cai::parse_encoder_config(R"({"model_type":"deberta-v2","architectures":["DebertaV2ForSequenceClassification"],
                     "pos_att_type":["c2p","p2p"]})", "config.json");
               }),
               Catch::Contains("p2p"));
    CHECK_THAT(error_of([] {
                   cai::parse_encoder_config(R"({"model_type":"bert","architectures":["BertForSequenceClassification"],
                     "id2label":{"0":"a","2":"b"}})", "config.json");
               }),
               Catch::Contains("id 1 is missing"));
    // The one JSON field reader (shared with config.json): 2.0 is the integer 2, 2.5 and 1e300 are not integers.
    auto integral = cai::parse_encoder_config(
        R"({"model_type":"bert","architectures":["BertForSequenceClassification"],"num_hidden_layers":2.0})", "c");
    CHECK(integral.num_layers == 2);
    for (const char* bad : {"2.5", "1e300"})
        CHECK_THAT(error_of([&] {
                       cai::parse_encoder_config(std::string(R"({"model_type":"bert","architectures":)"
                                                             R"(["BertForSequenceClassification"],"num_hidden_layers":)") +
                                                     bad + "}",
                                                 "c");
                   }),
                   Catch::Contains("c: field \"num_hidden_layers\" must be an integer"));
}

TEST_CASE("encoder checkpoints with missing or misshapen tensors are errors naming them", "[encoder]") {
    using test_util::error_of;
    const std::string dir = case_dir("bert");
    auto config = cai::parse_encoder_config(cai::read_file(dir + "/config.json"), "config.json");
    cai::safetensors_file file(dir + "/model.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& name : file.names())
        if (name != "classifier.weight") tensors.emplace_back(name, file.load(name));
    CHECK_THAT(error_of([&] { cai::encoder_classifier::from_tensors(config, tensors, at::kFloat, "m.safetensors"); }),
               Catch::Contains("m.safetensors") && Catch::Contains("missing tensor \"classifier.weight\""));
    tensors.emplace_back("classifier.weight", at::zeros({2, 32}));
    CHECK_THAT(error_of([&] { cai::encoder_classifier::from_tensors(config, tensors, at::kFloat, "m.safetensors"); }),
               Catch::Contains("classifier.weight") && Catch::Contains("[2, 32]") && Catch::Contains("[3, 32]"));

    auto clf = cai::encoder_classifier::load(dir, at::kFloat);
    at::Tensor too_long = at::ones({1, 65}, at::kLong);
    CHECK_THAT(error_of([&] { clf->logits(too_long, {}, {}); }), Catch::Contains("max_position_embeddings = 64"));
    at::Tensor left = at::ones({1, 4}, at::kLong), left_mask = at::tensor({0, 1, 1, 1}, at::kLong).view({1, 4});
    CHECK_THAT(error_of([&] { clf->logits(left, left_mask, {}); }), Catch::Contains("right padding"));
    CHECK_THAT(error_of([&] { clf->tokenize({"hi"}, {}); }), Catch::Contains("no tokenizer"));
    CHECK_THAT(error_of([&] { clf->logits_rows({cai::encoder_row{{5, 120}, {}}}, 1); }),
               Catch::Contains("token id 120"));
}

// Qwen3, Gemma 3 (text) and Llama 3.2 checkpoints against golden logits from
// a PyTorch transcription of transformers' modeling code
// (tests/data/models/make_golden.py, see tests/data/models/README.md): a
// batch with a full, a left-padded and a right-padded row, within 1e-4 in
// float32. Also: the same numbers through the KV cache, the newer config
// layout, save and reload, and what loading takes from config.json (dtype,
// no tokenizer).
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "kernels/cpu.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/save.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace {

const char* const fixtures[] = {"qwen3", "gemma3_text", "llama3_2"};

std::string fixture_dir(const std::string& name) { return "tests/data/models/" + name; }

struct golden {
    at::Tensor ids, mask, logits, logits_bf16;  // (B, T), (B, T), (B, T, V), (B, T, V)
};

golden read_golden(const std::string& name) {
    cai::safetensors_file f(cai::path_join(fixture_dir(name), "golden.safetensors"));
    return {f.load("input_ids", at::kLong), f.load("attention_mask", at::kLong), f.load("logits", at::kFloat),
            f.load("logits_bf16", at::kFloat)};
}

// Largest |a - b| over the real (unpadded) positions.
double max_diff_real(const at::Tensor& a, const at::Tensor& b, const at::Tensor& mask) {
    at::Tensor real = mask.ne(0).unsqueeze(-1).expand_as(a);
    return (a.to(at::kFloat) - b.to(at::kFloat)).abs().masked_select(real).max().item<double>();
}

}  // namespace

TEST_CASE("golden: fp32 logits match transformers' within 1e-4") {
    for (const char* name : fixtures) {
        INFO(name);
        golden g = read_golden(name);
        auto m = cai::model::load(fixture_dir(name), at::kFloat);
        c10::InferenceMode no_grad;
        at::Tensor logits = m->forward(g.ids, g.mask);
        REQUIRE(logits.sizes() == g.logits.sizes());
        REQUIRE(g.logits.abs().max().item<double>() > 1.0);  // the comparison has something to compare
        double diff = max_diff_real(logits, g.logits, g.mask);
        std::printf("golden %s: fp32 max |logit - transformers'| = %.3g\n", name, diff);
        REQUIRE(diff < 1e-4);
    }
}

TEST_CASE("golden: log-probabilities of the next tokens match transformers' logits") {
    // m->logprobs takes the fused LM-head path (no (B, T, V) logits) when the kernels are on.
    for (bool kernels_on : {true, false}) {
        cai::kernels::scoped_enabled switch_(kernels_on);
        for (const char* name : fixtures) {
            INFO(name << (kernels_on ? " kernels on" : " kernels off"));
            golden g = read_golden(name);
            auto m = cai::model::load(fixture_dir(name), at::kFloat);
            c10::InferenceMode no_grad;
            at::Tensor lp = m->logprobs(g.ids, g.mask);  // (B, T)
            const int64_t T = g.ids.size(1);
            at::Tensor ref = at::log_softmax(g.logits.narrow(1, 0, T - 1), -1)
                                 .gather(-1, g.ids.narrow(1, 1, T - 1).unsqueeze(-1))
                                 .squeeze(-1);  // (B, T-1)
            at::Tensor counted = g.mask.narrow(1, 1, T - 1).ne(0) & g.mask.narrow(1, 0, T - 1).ne(0);
            at::Tensor diff = (lp.narrow(1, 1, T - 1) - ref).abs().masked_select(counted);
            REQUIRE(diff.numel() > 10);
            REQUIRE(diff.max().item<double>() < 1e-4);
            REQUIRE(lp.narrow(1, 1, T - 1).masked_select(counted.logical_not()).abs().max().item<double>() == 0);
        }
    }
}

TEST_CASE("golden: the plain path (kernels off) gives the same logits") {
    cai::kernels::scoped_enabled off(false);
    for (const char* name : fixtures) {
        INFO(name);
        golden g = read_golden(name);
        auto m = cai::model::load(fixture_dir(name), at::kFloat);
        c10::InferenceMode no_grad;
        REQUIRE(max_diff_real(m->forward(g.ids, g.mask), g.logits, g.mask) < 1e-4);
    }
}

TEST_CASE("golden: a bfloat16 checkpoint computes in bf16 by default, close to transformers' bf16") {
    for (const char* name : fixtures) {
        INFO(name);
        golden g = read_golden(name);
        auto m = cai::model::load(fixture_dir(name), at::ScalarType::Undefined);
        REQUIRE(m->dtype == at::kBFloat16);  // config.json: "torch_dtype": "bfloat16"
        REQUIRE(m->embed_tokens.scalar_type() == at::kBFloat16);
        c10::InferenceMode no_grad;
        at::Tensor logits = m->forward(g.ids, g.mask);
        REQUIRE(logits.scalar_type() == at::kBFloat16);
        // Rounding differs op by op (GEMM accumulation order), so bf16 is compared loosely:
        // nearer transformers' bf16 numbers than a tenth of the logits' spread.
        double diff = max_diff_real(logits, g.logits_bf16, g.mask);
        std::printf("golden %s: bf16 max |logit - transformers' bf16| = %.3g (fp32 vs bf16 there: %.3g)\n", name,
                    diff, max_diff_real(g.logits, g.logits_bf16, g.mask));
        REQUIRE(diff < 0.1 * g.logits.std().item<double>() + 0.05);
    }
}

TEST_CASE("golden: decoding through the KV cache gives the full forward's logits") {
    for (const char* name : {"qwen3", "gemma3_text"}) {  // sliding windows, local rotary base, q/k norms
        INFO(name);
        golden g = read_golden(name);
        auto m = cai::model::load(fixture_dir(name), at::kFloat);
        c10::InferenceMode no_grad;
        const int64_t B = g.ids.size(0), T = g.ids.size(1);
        cai::kv_cache cache = m->new_cache(B, T);
        // A prefill of 4 columns, then one column at a time: padding columns add nothing to a row's cache.
        std::vector<at::Tensor> steps;
        steps.push_back(m->forward(g.ids.narrow(1, 0, 4), g.mask.narrow(1, 0, 4), &cache));
        for (int64_t t = 4; t < T; ++t)
            steps.push_back(m->forward(g.ids.narrow(1, t, 1), g.mask.narrow(1, t, 1), &cache));
        at::Tensor logits = at::cat(steps, 1);
        REQUIRE(max_diff_real(logits, g.logits, g.mask) < 1e-4);
    }
}

TEST_CASE("golden: gemma3_text in transformers 5's config layout loads the same model") {
    // rope_parameters per layer type and an explicit layer_types list instead of rope_theta,
    // rope_scaling, rope_local_base_freq and sliding_window_pattern.
    std::string dir = test_util::temp_dir();
    nlohmann::json c = nlohmann::json::parse(cai::read_file(fixture_dir("gemma3_text") + "/config.json"));
    for (const char* key : {"rope_theta", "rope_scaling", "rope_local_base_freq", "sliding_window_pattern", "torch_dtype"})
        c.erase(key);
    c["dtype"] = "bfloat16";
    c["layer_types"] = {"sliding_attention", "sliding_attention", "full_attention", "sliding_attention"};
    c["rope_parameters"] = {{"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1000000.0}}},
                            {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
    cai::write_file_atomic(cai::path_join(dir, "config.json"), c.dump(2));
    cai::write_file_atomic(cai::path_join(dir, "model.safetensors"),
                           cai::read_file(fixture_dir("gemma3_text") + "/model.safetensors"));
    golden g = read_golden("gemma3_text");
    auto m = cai::model::load(dir, at::ScalarType::Undefined);
    REQUIRE(m->dtype == at::kBFloat16);  // "dtype" as transformers 5 writes it
    auto m32 = cai::model::load(dir, at::kFloat);
    c10::InferenceMode no_grad;
    REQUIRE(max_diff_real(m32->forward(g.ids, g.mask), g.logits, g.mask) < 1e-4);

    // A layer_types entry decides the rotary base even when no window is set.
    cai::model_config nowin = cai::parse_model_config(
        R"({"model_type":"gemma3_text","num_hidden_layers":3,"sliding_window":null,"sliding_window_pattern":2})");
    REQUIRE(nowin.layer_sliding == std::vector<bool>{false, false, false});
    REQUIRE(nowin.layer_local_rope == std::vector<bool>{true, false, true});
}

TEST_CASE("golden: m:save writes a checkpoint transformers loads the same way") {
    for (const char* name : fixtures) {
        INFO(name);
        golden g = read_golden(name);
        auto m = cai::model::load(fixture_dir(name), at::kFloat);
        std::string dir = cai::path_join(test_util::temp_dir(), "saved");
        cai::save_model(*m, dir, at::kFloat);
        nlohmann::json before = nlohmann::json::parse(cai::read_file(fixture_dir(name) + "/config.json"));
        nlohmann::json after = nlohmann::json::parse(cai::read_file(dir + "/config.json"));
        REQUIRE(after["torch_dtype"] == "float32");  // the dtype the weights were saved in
        after["torch_dtype"] = before["torch_dtype"];
        REQUIRE(after == before);  // every other field as loaded
        cai::safetensors_file saved(dir + "/model.safetensors");
        cai::safetensors_file original(fixture_dir(name) + "/model.safetensors");
        REQUIRE(saved.names() == original.names());  // q_norm/k_norm included, lm_head only when untied
        auto back = cai::model::load(dir, at::ScalarType::Undefined);
        REQUIRE(back->dtype == at::kFloat);
        c10::InferenceMode no_grad;
        REQUIRE(max_diff_real(back->forward(g.ids, g.mask), g.logits, g.mask) < 1e-4);
    }
}

TEST_CASE("load: a directory without tokenizer files loads; a tokenizer can come from elsewhere") {
    auto m = cai::model::load(fixture_dir("qwen3"), at::kFloat);
    REQUIRE(m->tok == nullptr);
    REQUIRE(m->tokenizer_path.empty());
    REQUIRE(m->eos_ids == std::vector<int64_t>{393});

    auto with = cai::model::load(fixture_dir("qwen3"), at::kFloat, true, "tests/data/tokenizers/qwen2");
    REQUIRE(with->tok != nullptr);
    REQUIRE(with->tokenizer_path == "tests/data/tokenizers/qwen2");
    REQUIRE(with->tok->encode("hello", false).size() > 0);

    REQUIRE_THAT(test_util::error_of([] { cai::model::load(fixture_dir("qwen3"), at::kFloat, true, "/nonexistent/tok"); }),
                 Catch::Contains("tokenizer = \"/nonexistent/tok\" is not a directory"));
    // A directory that has tokenizer files which do not load is an error, not a model without a tokenizer.
    std::string dir = test_util::temp_dir();
    for (const char* f : {"config.json", "model.safetensors"})
        cai::write_file_atomic(cai::path_join(dir, f), cai::read_file(fixture_dir("qwen3") + "/" + f));
    cai::write_file_atomic(cai::path_join(dir, "tokenizer.json"), "{ not json");
    REQUIRE_THAT(test_util::error_of([&] { cai::model::load(dir, at::kFloat); }), Catch::Contains("tokenizer.json"));
}

TEST_CASE("config: qwen3 and gemma3_text fields and defaults as transformers reads them") {
    cai::model_config q = cai::parse_model_config(cai::read_file(fixture_dir("qwen3") + "/config.json"));
    REQUIRE(q.qk_norm);
    REQUIRE(q.head_dim == 16);
    REQUIRE_FALSE(q.qkv_bias);
    REQUIRE_FALSE(q.o_bias);
    REQUIRE(q.layer_sliding == std::vector<bool>{false, true});
    REQUIRE(q.torch_dtype == "bfloat16");
    cai::model_config qd = cai::parse_model_config(R"({"model_type":"qwen3","hidden_size":64,"num_attention_heads":32})");
    REQUIRE(qd.head_dim == 128);  // Qwen3Config's default, not hidden_size / heads
    REQUIRE(qd.num_kv_heads == 32);
    REQUIRE_FALSE(qd.tie_word_embeddings);
    REQUIRE(qd.layer_sliding == std::vector<bool>(32, false));  // use_sliding_window defaults to false
    cai::model_config qb = cai::parse_model_config(R"({"model_type":"qwen3","attention_bias":true})");
    REQUIRE(qb.qkv_bias);
    REQUIRE(qb.o_bias);

    cai::model_config g = cai::parse_model_config(R"({"model_type":"gemma3_text","num_hidden_layers":7})");
    REQUIRE(g.qk_norm);
    REQUIRE(g.sandwich_norms);
    REQUIRE(g.norm_one_plus);
    REQUIRE(g.tie_word_embeddings);
    REQUIRE(g.head_dim == 256);
    REQUIRE(g.attn_scale == Approx(1.0 / 16));
    REQUIRE(g.attn_logit_softcapping == 0);
    REQUIRE(g.final_logit_softcapping == 0);
    REQUIRE(g.sliding_window == 4096);
    REQUIRE(g.layer_sliding == std::vector<bool>{true, true, true, true, true, false, true});
    REQUIRE(g.rope_theta == 1000000.0);
    REQUIRE(g.rope_local_theta == 10000.0);
    REQUIRE(g.local_rope);
    REQUIRE(g.torch_dtype.empty());

    auto error = [](const std::string& json) {
        return test_util::error_of([&] { cai::parse_model_config(json); });
    };
    REQUIRE_THAT(error(R"({"model_type":"gemma3"})"), Catch::Contains("only its text model loads"));
    REQUIRE_THAT(error(R"({"model_type":"gemma3_text","use_bidirectional_attention":true})"),
                 Catch::Contains("use_bidirectional_attention"));
    REQUIRE_THAT(error(R"({"model_type":"gemma3_text","rope_parameters":{"sliding_attention":{"rope_type":"linear","factor":2}}})"),
                 Catch::Contains("rope_parameters.sliding_attention") && Catch::Contains("\"linear\" is not supported"));
    REQUIRE_THAT(error(R"({"model_type":"llama","torch_dtype":"int8"})"),
                 Catch::Contains("field \"torch_dtype\" must be \"float32\", \"bfloat16\" or \"float16\", got \"int8\""));
}

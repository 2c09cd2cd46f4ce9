// runtime/train/lora and runtime/model/save: PEFT's LoRA initialisation and
// scaling, the forward with adapters (float32 inside a bf16 model, dropout),
// merging, the PEFT adapter layout both ways, saving a model as an HF
// directory, and the parameters a trainer gets.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "model/safetensors.h"
#include "model/save.h"
#include "train/lora.h"
#include "fixtures.h"

namespace {

using at::Tensor;
using Catch::Matchers::Contains;

const char* llama_json = R"({"model_type":"llama","vocab_size":40,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-5})";
const char* qwen2_tied_json = R"({"model_type":"qwen2","vocab_size":40,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"tie_word_embeddings":true})";

std::string temp_dir() {
    char tmpl[] = "/tmp/cai_lora_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

std::shared_ptr<cai::model> make(const std::string& json = llama_json, at::ScalarType dtype = at::kFloat) {
    return fixtures::random_model(json, 1, 0.3, dtype);
}

std::vector<cai::linear*> linears(cai::model& m) {
    std::vector<cai::linear*> out;
    for (auto& l : m.layers)
        for (auto* p : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
            out.push_back(p);
    return out;
}

Tensor ids() { return at::tensor({3, 7, 1, 22, 9, 31, 5, 2, 17, 11, 0, 39}, at::kLong).view({2, 6}); }

Tensor logits(const cai::model& m) {
    at::NoGradGuard no_grad;
    return m.forward(ids()).to(at::kFloat);
}

// Gives every B (and A) values so the adapters change the output.
void randomize(cai::model& m, uint64_t seed) {
    at::NoGradGuard no_grad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    for (auto* l : linears(m)) {
        if (!l->lora_a.defined()) continue;
        l->lora_b.copy_(at::normal(0, 0.2, l->lora_b.sizes(), gen));
        l->lora_a.copy_(at::normal(0, 0.2, l->lora_a.sizes(), gen));
    }
}

cai::lora_options options(int64_t r, double alpha, std::vector<std::string> targets, uint64_t seed = 7) {
    cai::lora_options o;
    o.r = r;
    o.alpha = alpha;
    o.targets = std::move(targets);
    o.seed = seed;
    return o;
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(cai::read_file(path)); }

}  // namespace

TEST_CASE("kaiming_uniform(a = sqrt(5)) bound and LoRA scaling follow torch and PEFT", "[lora]") {
    // gain = sqrt(2 / 6), std = gain / sqrt(fan_in), bound = sqrt(3) * std = 1 / sqrt(fan_in).
    REQUIRE(cai::kaiming_uniform_bound(16, std::sqrt(5.0)) == Approx(0.25).epsilon(1e-14));
    REQUIRE(cai::kaiming_uniform_bound(100, std::sqrt(5.0)) == Approx(0.1).epsilon(1e-14));
    REQUIRE(cai::kaiming_uniform_bound(9, 0.0) == Approx(std::sqrt(6.0) / 3).epsilon(1e-14));  // a = 0: sqrt(6/fan_in)
    REQUIRE(cai::lora_scaling(8, 16, false) == 2.0);
    REQUIRE(cai::lora_scaling(16, 8, true) == 2.0);
    REQUIRE(cai::lora_scaling(4, 8, true) == 4.0);
}

TEST_CASE("add_lora initialises A uniformly in the kaiming bound and B at zero, deterministically", "[lora]") {
    auto m = make();
    Tensor base = logits(*m);
    cai::lora_add(*m, options(4, 8, {"all-linear"}));
    REQUIRE(m->has_lora());
    std::vector<double> normalised;
    for (auto* l : linears(*m)) {
        const int64_t out = l->weight.size(0), in = l->weight.size(1);
        REQUIRE(l->lora_a.sizes() == at::IntArrayRef{4, in});
        REQUIRE(l->lora_b.sizes() == at::IntArrayRef{out, 4});
        REQUIRE(l->lora_a.scalar_type() == at::kFloat);
        REQUIRE(l->lora_a.requires_grad());
        REQUIRE(l->lora_b.requires_grad());
        REQUIRE(l->lora_b.abs().max().item<float>() == 0.0f);
        REQUIRE(l->lora_scale == 2.0);
        const double bound = 1.0 / std::sqrt((double)in);
        REQUIRE(l->lora_a.abs().max().item<double>() <= bound);
        Tensor a = l->lora_a.detach().to(at::kDouble) / bound;
        for (int64_t i = 0; i < a.numel(); ++i) normalised.push_back(a.view({-1})[i].item<double>());
    }
    // Pooled A / bound ~ U(-1, 1): mean 0, variance 1/3, reaching near both ends.
    double mean = 0, var = 0, lo = 1, hi = -1;
    for (double v : normalised) mean += v, lo = std::min(lo, v), hi = std::max(hi, v);
    mean /= normalised.size();
    for (double v : normalised) var += (v - mean) * (v - mean);
    var /= normalised.size();
    REQUIRE(std::abs(mean) < 0.05);
    REQUIRE(var == Approx(1.0 / 3).margin(0.03));
    REQUIRE(lo < -0.98);
    REQUIRE(hi > 0.98);
    // B = 0: the output is the base model's, bit for bit.
    REQUIRE(at::equal(logits(*m), base));

    auto same = make();
    cai::lora_add(*same, options(4, 8, {"all-linear"}));
    auto other = make();
    cai::lora_add(*other, options(4, 8, {"all-linear"}, 8));
    REQUIRE(at::equal(same->layers[1].up_proj.lora_a, m->layers[1].up_proj.lora_a));
    REQUIRE_FALSE(at::equal(other->layers[1].up_proj.lora_a, m->layers[1].up_proj.lora_a));
    // A linear's values do not depend on which other linears are targeted.
    auto fewer = make();
    cai::lora_add(*fewer, options(4, 8, {"up_proj"}));
    REQUIRE(at::equal(fewer->layers[1].up_proj.lora_a, m->layers[1].up_proj.lora_a));
    REQUIRE_FALSE(fewer->layers[1].q_proj.lora_a.defined());
}

TEST_CASE("add_lora rejects unknown targets, bad options and a second adapter", "[lora]") {
    auto m = make();
    REQUIRE_THROWS_WITH(cai::lora_add(*m, options(4, 8, {"q_proj", "qproj"})),
                        Contains("unknown LoRA target \"qproj\"") &&
                            Contains("q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"));
    REQUIRE_THROWS_WITH(cai::lora_add(*m, options(4, 8, {"lm_head"})), Contains("\"lm_head\""));
    REQUIRE_THROWS_WITH(cai::lora_add(*m, options(0, 8, {"q_proj"})), Contains("r must be a positive integer"));
    auto bad_dropout = options(4, 8, {"q_proj"});
    bad_dropout.dropout = 1.0;
    REQUIRE_THROWS_WITH(cai::lora_add(*m, bad_dropout), Contains("dropout must be in [0, 1)"));
    REQUIRE_FALSE(m->has_lora());
    cai::lora_add(*m, options(4, 8, {"q_proj"}));
    REQUIRE_THROWS_WITH(cai::lora_add(*m, options(4, 8, {"q_proj"})), Contains("already has LoRA adapters"));
    auto s = cai::lora_describe(*m);
    REQUIRE(s.targets == std::vector<std::string>{"q_proj"});
    cai::lora_remove(*m);
    REQUIRE_FALSE(m->has_lora());
}

TEST_CASE("the adapter adds scale * (x A^T) B^T; switching it off gives the base model", "[lora]") {
    auto m = make();
    Tensor base = logits(*m);
    auto o = options(2, 6, {"q_proj", "down_proj"});
    o.rslora = true;
    cai::lora_add(*m, o);
    randomize(*m, 3);
    const cai::linear& l = m->layers[0].down_proj;
    REQUIRE(l.lora_scale == Approx(6 / std::sqrt(2.0)));
    Tensor x = at::randn({3, 24}, at::kDouble);
    Tensor expected = x.matmul(l.weight.to(at::kDouble).t()) +
                      x.matmul(l.lora_a.detach().to(at::kDouble).t()).matmul(l.lora_b.detach().to(at::kDouble).t()) *
                          l.lora_scale;
    {
        at::NoGradGuard no_grad;
        REQUIRE(at::allclose(l.forward(x.to(at::kFloat)).to(at::kDouble), expected, 1e-5, 1e-5));
    }
    Tensor adapted = logits(*m);
    REQUIRE_FALSE(at::allclose(adapted, base, 1e-4, 1e-4));
    m->set_lora_enabled(false);
    REQUIRE(at::equal(logits(*m), base));
    m->set_lora_enabled(true);
    REQUIRE(at::equal(logits(*m), adapted));
}

TEST_CASE("LoRA weights stay float32 in a bf16 model; the output is bf16", "[lora]") {
    auto m = make(llama_json, at::kBFloat16);
    cai::lora_add(*m, options(4, 8, {"all-linear"}));
    randomize(*m, 5);
    const cai::linear& l = m->layers[0].q_proj;
    REQUIRE(l.lora_a.scalar_type() == at::kFloat);
    Tensor x = at::randn({2, 16}).to(at::kBFloat16);
    at::NoGradGuard no_grad;
    Tensor y = l.forward(x);
    REQUIRE(y.scalar_type() == at::kBFloat16);
    // PEFT's order: the base output, plus the float32 adapter term, rounded once.
    Tensor delta = at::linear(at::linear(x.to(at::kFloat), l.lora_a), l.lora_b) * l.lora_scale;
    Tensor expected = (at::linear(x, l.weight) + delta).to(at::kBFloat16);
    REQUIRE(at::equal(y, expected));
    REQUIRE(m->forward(ids()).scalar_type() == at::kBFloat16);
}

TEST_CASE("merge_lora gives the adapter's logits; unmerge_lora restores the weights", "[lora]") {
    auto m = make();
    cai::lora_add(*m, options(4, 16, {"all-linear"}));
    randomize(*m, 9);
    std::vector<Tensor> before;
    for (auto* l : linears(*m)) before.push_back(l->weight.clone());
    Tensor adapted = logits(*m);

    cai::lora_merge(*m);
    REQUIRE(cai::lora_describe(*m).merged);
    for (auto* l : linears(*m)) REQUIRE_FALSE(l->lora_enabled);
    Tensor merged = logits(*m);
    REQUIRE(at::allclose(merged, adapted, 1e-5, 1e-5));
    REQUIRE_THROWS_WITH(m->set_lora_enabled(false), Contains("unmerge_lora"));
    m->set_lora_enabled(true);  // merged adapters stay off: no double counting
    REQUIRE(at::equal(logits(*m), merged));
    REQUIRE_THROWS_WITH(cai::lora_merge(*m), Contains("already merged"));

    cai::lora_unmerge(*m);
    auto ls = linears(*m);
    for (size_t i = 0; i < ls.size(); ++i) REQUIRE(at::allclose(ls[i]->weight, before[i], 0, 1e-6));
    REQUIRE(at::allclose(logits(*m), adapted, 1e-5, 1e-5));
    REQUIRE_THROWS_WITH(cai::lora_unmerge(*m), Contains("not merged"));
}

TEST_CASE("merge_lora in a bf16 model rounds float(W) + scale * B A once", "[lora]") {
    auto m = make(llama_json, at::kBFloat16);
    cai::lora_add(*m, options(2, 4, {"v_proj"}));
    randomize(*m, 4);
    const cai::linear& l = m->layers[1].v_proj;
    Tensor w = l.weight.clone();
    Tensor expected =
        (w.to(at::kFloat) + at::matmul(l.lora_b.detach(), l.lora_a.detach()) * l.lora_scale).to(at::kBFloat16);
    cai::lora_merge(*m);
    REQUIRE(l.weight.scalar_type() == at::kBFloat16);
    REQUIRE(at::equal(l.weight, expected));
}

TEST_CASE("LoRA dropout acts only while training, with masks from the seed", "[lora]") {
    cai::linear l;
    const int64_t n = 8;
    l.weight = at::zeros({n, n});
    l.lora_a = at::eye(n);
    l.lora_b = at::eye(n);
    l.lora_scale = 1;
    l.lora_enabled = true;
    l.lora_dropout = 0.25;
    Tensor x = at::ones({500, n});
    REQUIRE(at::equal(l.forward(x), x));  // not training: no dropout
    l.training = true;
    REQUIRE_THROWS_WITH(l.forward(x), Contains("no generator"));

    auto m = make();
    auto o = options(4, 8, {"all-linear"});
    o.dropout = 0.25;
    cai::lora_add(*m, o);
    randomize(*m, 2);
    Tensor eval = logits(*m);
    cai::lora_set_training(*m, true);
    cai::lora_set_dropout_seed(*m, 11);
    Tensor a = logits(*m);
    Tensor a_next = logits(*m);
    cai::lora_set_dropout_seed(*m, 11);
    Tensor again = logits(*m);
    cai::lora_set_dropout_seed(*m, 12);
    Tensor other = logits(*m);
    REQUIRE_FALSE(at::allclose(a, eval, 1e-4, 1e-4));
    REQUIRE(at::equal(a, again));
    REQUIRE_FALSE(at::equal(a, a_next));
    REQUIRE_FALSE(at::equal(a, other));
    cai::lora_set_training(*m, false);
    REQUIRE(at::equal(logits(*m), eval));

    // The mask keeps 1 - p of the inputs, scaled by 1 / (1 - p).
    const cai::linear& q = m->layers[0].q_proj;
    cai::linear probe;
    probe.weight = at::zeros({16, 16});
    probe.lora_a = at::eye(16);
    probe.lora_b = at::eye(16);
    probe.lora_scale = 1;
    probe.lora_enabled = true;
    probe.lora_dropout = 0.25;
    probe.training = true;
    probe.lora_rng = q.lora_rng;
    Tensor y = probe.forward(at::ones({1000, 16}));
    double zero_fraction = y.eq(0).to(at::kDouble).mean().item<double>();
    REQUIRE(zero_fraction == Approx(0.25).margin(0.01));
    REQUIRE(y.ne(0).logical_and(y.sub(1 / 0.75).abs().gt(1e-6)).sum().item<int64_t>() == 0);
}

TEST_CASE("gradients reach A and B and not the base weights", "[lora]") {
    auto m = make();
    cai::lora_add(*m, options(4, 8, {"q_proj", "v_proj"}));
    auto params = cai::trainable_parameters(*m, false);
    REQUIRE(params.size() == 2 * 2 * 2);
    Tensor loss = m->forward(ids()).pow(2).mean();
    loss.backward();
    const cai::linear& q = m->layers[0].q_proj;
    REQUIRE(q.lora_b.grad().defined());
    REQUIRE(q.lora_b.grad().abs().sum().item<double>() > 0);
    // B = 0, so dL/dA = scale * B^T (...) = 0 at the first step, as in PEFT.
    REQUIRE(q.lora_a.grad().abs().sum().item<double>() == 0);
    REQUIRE_FALSE(q.weight.requires_grad());
    REQUIRE_FALSE(q.weight.grad().defined());
}

TEST_CASE("trainable_parameters: PEFT names for adapters, HF names and Trainer's no-decay for full", "[lora]") {
    auto m = make(qwen2_tied_json);
    REQUIRE_THROWS_WITH(cai::trainable_parameters(*m, false), Contains("full = true"));
    auto full = cai::trainable_parameters(*m, true);
    auto named = cai::model_named_tensors(*m);
    REQUIRE(full.size() == named.size());
    std::set<std::string> names;
    for (const auto& p : full) {
        names.insert(p.name);
        REQUIRE(p.value.requires_grad());
    }
    REQUIRE(names.size() == full.size());
    REQUIRE_FALSE(names.count("lm_head.weight"));  // tied: trained once, as the embedding
    for (const auto& p : full) {
        bool no_decay = p.name.find("bias") != std::string::npos || p.name.find("norm") != std::string::npos;
        INFO(p.name);
        REQUIRE(p.weight_decay == !no_decay);
    }
    auto find = [&](const std::string& n) {
        for (const auto& p : full)
            if (p.name == n) return p;
        FAIL("no parameter " << n);
        return full[0];
    };
    REQUIRE(find("model.embed_tokens.weight").weight_decay);
    REQUIRE_FALSE(find("model.layers.0.self_attn.q_proj.bias").weight_decay);
    REQUIRE_FALSE(find("model.layers.1.input_layernorm.weight").weight_decay);
    REQUIRE_FALSE(find("model.norm.weight").weight_decay);
    REQUIRE(find("model.layers.1.mlp.down_proj.weight").weight_decay);

    auto lm = make();
    cai::lora_add(*lm, options(2, 4, {"k_proj", "gate_proj"}));
    auto lora = cai::trainable_parameters(*lm, false);
    REQUIRE(lora.size() == 8);
    REQUIRE(lora[0].name == "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
    REQUIRE(lora[1].name == "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight");
    REQUIRE(lora[2].name == "base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight");
    for (const auto& p : lora) REQUIRE(p.weight_decay);
    REQUIRE_THROWS_WITH(cai::trainable_parameters(*lm, true), Contains("has LoRA adapters"));
}

TEST_CASE("save_lora writes PEFT's layout; load_lora reads it back to the same logits", "[lora]") {
    auto m = make();
    cai::lora_add(*m, options(4, 16, {"v_proj", "q_proj", "down_proj"}));
    randomize(*m, 21);
    Tensor adapted = logits(*m);
    const std::string root = temp_dir(), dir = root + "/adapter";
    cai::lora_save(*m, dir);

    nlohmann::json c = read_json(dir + "/adapter_config.json");
    REQUIRE(c["peft_type"] == "LORA");
    REQUIRE(c["task_type"] == "CAUSAL_LM");
    REQUIRE(c["r"] == 4);
    REQUIRE(c["lora_alpha"] == 16);
    REQUIRE(c["lora_dropout"] == 0.0);
    REQUIRE(c["use_rslora"] == false);
    REQUIRE(c["use_dora"] == false);
    REQUIRE(c["bias"] == "none");
    REQUIRE(c["fan_in_fan_out"] == false);
    REQUIRE(c["inference_mode"] == true);
    REQUIRE(c["target_modules"] == nlohmann::json({"q_proj", "v_proj", "down_proj"}));
    REQUIRE(c["rank_pattern"] == nlohmann::json::object());
    REQUIRE(c["layers_to_transform"].is_null());

    cai::safetensors_file f(dir + "/adapter_model.safetensors");
    std::vector<std::string> expected;
    for (int i = 0; i < 2; ++i)
        for (std::string mod : {"self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"})
            for (std::string ab : {"lora_A", "lora_B"})
                expected.push_back("base_model.model.model.layers." + std::to_string(i) + "." + mod + "." + ab +
                                   ".weight");
    std::sort(expected.begin(), expected.end());
    REQUIRE(f.names() == expected);
    REQUIRE(f.entry("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight").shape ==
            std::vector<int64_t>{4, 24});
    REQUIRE(f.entry("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").shape ==
            std::vector<int64_t>{16, 4});
    REQUIRE(f.entry("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").dtype == "F32");
    REQUIRE(f.metadata().at("format") == "pt");

    auto fresh = make();
    cai::lora_load(*fresh, dir);
    REQUIRE(at::equal(logits(*fresh), adapted));
    auto s = cai::lora_describe(*fresh);
    REQUIRE(s.r == 4);
    REQUIRE(s.alpha == 16);
    REQUIRE(s.targets == std::vector<std::string>{"q_proj", "v_proj", "down_proj"});
    REQUIRE(fresh->layers[0].q_proj.lora_a.requires_grad());
    REQUIRE_THROWS_WITH(cai::lora_load(*fresh, dir), Contains("already has LoRA adapters"));

    // Saving again replaces the directory; nothing temporary is left beside it.
    cai::lora_save(*fresh, dir);
    REQUIRE(system(("test $(ls -A " + root + " | wc -l) -eq 1").c_str()) == 0);
    // A directory holding other files is not deleted.
    cai::write_file_atomic(root + "/mine/notes.txt", "keep");
    REQUIRE_THROWS_WITH(cai::lora_save(*fresh, root + "/mine"), Contains("\"notes.txt\""));
    REQUIRE(cai::read_file(root + "/mine/notes.txt") == "keep");
    // rslora and dropout round-trip.
    auto r = make();
    auto o = options(4, 8, {"o_proj"});
    o.rslora = true;
    o.dropout = 0.1;
    cai::lora_add(*r, o);
    cai::lora_save(*r, root + "/rs");
    auto back = make();
    cai::lora_load(*back, root + "/rs");
    REQUIRE(back->layers[0].o_proj.lora_scale == 4.0);
    REQUIRE(back->layers[0].o_proj.lora_dropout == 0.1);
    REQUIRE(cai::lora_describe(*back).rslora);
}

namespace {

// An adapter directory as PEFT 0.13 writes one for target_modules={"v_proj", "q_proj"}, r = 2, alpha = 16,
// weights in bf16 (a model trained in bf16).
nlohmann::json peft_config() {
    return nlohmann::json::parse(R"({
  "alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "some/model", "bias": "none",
  "eva_config": null, "exclude_modules": null, "fan_in_fan_out": false, "inference_mode": true,
  "init_lora_weights": true, "layer_replication": null, "layers_pattern": null, "layers_to_transform": null,
  "loftq_config": {}, "lora_alpha": 16, "lora_bias": false, "lora_dropout": 0.05, "megatron_config": null,
  "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA", "r": 2, "rank_pattern": {},
  "revision": null, "target_modules": ["v_proj", "q_proj"], "task_type": "CAUSAL_LM", "use_dora": false,
  "use_rslora": false})");
}

std::vector<std::pair<std::string, Tensor>> peft_tensors(const cai::model& m) {
    std::vector<std::pair<std::string, Tensor>> out;
    for (int i = 0; i < 2; ++i)
        for (std::string mod : {"q_proj", "v_proj"}) {
            const std::string p = "base_model.model.model.layers." + std::to_string(i) + ".self_attn." + mod;
            const cai::linear& l = mod == "q_proj" ? m.layers[i].q_proj : m.layers[i].v_proj;
            const int64_t out_dim = l.weight.size(0);
            out.emplace_back(p + ".lora_A.weight", (at::randn({2, 16}) * 0.3).to(at::kBFloat16));
            out.emplace_back(p + ".lora_B.weight", (at::randn({out_dim, 2}) * 0.3).to(at::kBFloat16));
        }
    return out;
}

void write_adapter(const std::string& dir, const nlohmann::json& config,
                   const std::vector<std::pair<std::string, Tensor>>& tensors) {
    cai::make_directories(dir);
    cai::write_file_atomic(dir + "/adapter_config.json", config.dump(2));
    cai::save_safetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
}

}  // namespace

TEST_CASE("load_lora reads a PEFT-made adapter", "[lora]") {
    auto m = make();
    Tensor base = logits(*m);
    const std::string dir = temp_dir();
    auto tensors = peft_tensors(*m);
    write_adapter(dir, peft_config(), tensors);
    cai::lora_load(*m, dir);
    auto s = cai::lora_describe(*m);
    REQUIRE(s.r == 2);
    REQUIRE(s.alpha == 16);
    REQUIRE(s.scale == 8);
    REQUIRE(s.dropout == 0.05);
    REQUIRE(s.targets == std::vector<std::string>{"q_proj", "v_proj"});
    const cai::linear& v = m->layers[1].v_proj;
    REQUIRE(v.lora_a.scalar_type() == at::kFloat);
    REQUIRE(at::equal(v.lora_b, tensors[7].second.to(at::kFloat)));
    REQUIRE_FALSE(m->layers[0].k_proj.lora_a.defined());
    REQUIRE_FALSE(at::allclose(logits(*m), base, 1e-4, 1e-4));

    // "all-linear" and module paths as target names.
    auto all = peft_config();
    all["target_modules"] = "all-linear";
    auto a = make();
    write_adapter(dir + "/all", all, tensors);
    REQUIRE_THROWS_WITH(cai::lora_load(*a, dir + "/all"),
                        Contains("missing tensor \"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight\""));
    auto paths = peft_config();
    paths["target_modules"] = {"self_attn.q_proj", "v_proj"};
    write_adapter(dir + "/paths", paths, tensors);
    auto p = make();
    cai::lora_load(*p, dir + "/paths");
    REQUIRE(at::equal(logits(*p), logits(*m)));
}

TEST_CASE("load_lora names the key, shape or config field it cannot accept", "[lora]") {
    auto m = make();
    const std::string root = temp_dir();
    int n = 0;
    auto expect_error = [&](const nlohmann::json& config, const std::vector<std::pair<std::string, Tensor>>& tensors,
                            const std::string& message) {
        const std::string dir = root + "/" + std::to_string(n++);
        write_adapter(dir, config, tensors);
        INFO(message);
        REQUIRE_THROWS_WITH(cai::lora_load(*m, dir), Contains(message));
        REQUIRE_FALSE(m->has_lora());
    };
    auto good = peft_tensors(*m);

    auto missing = good;
    missing.erase(missing.begin() + 3);
    expect_error(peft_config(), missing, "missing tensor \"base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight\"");
    auto extra = good;
    extra.emplace_back("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", at::zeros({2, 16}));
    expect_error(peft_config(), extra, "unexpected tensor \"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight\"");
    auto named_default = good;
    named_default[0].first = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight";
    expect_error(peft_config(), named_default, "unexpected tensor \"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight\"");
    auto wrong_shape = good;
    wrong_shape[2].second = at::zeros({3, 16});
    expect_error(peft_config(), wrong_shape, "has shape [3, 16], expected [2, 16]");

    auto with = [&](const char* key, const nlohmann::json& value) {
        auto c = peft_config();
        c[key] = value;
        return c;
    };
    expect_error(with("use_dora", true), good, "field \"use_dora\"");
    expect_error(with("fan_in_fan_out", true), good, "field \"fan_in_fan_out\"");
    expect_error(with("layers_to_transform", {0}), good, "field \"layers_to_transform\"");
    expect_error(with("rank_pattern", {{"q_proj", 4}}), good, "field \"rank_pattern\"");
    expect_error(with("alpha_pattern", {{"q_proj", 4}}), good, "field \"alpha_pattern\"");
    expect_error(with("modules_to_save", {"lm_head"}), good, "field \"modules_to_save\"");
    expect_error(with("bias", "all"), good, "field \"bias\"");
    expect_error(with("init_lora_weights", "pissa"), good, "field \"init_lora_weights\"");
    expect_error(with("peft_type", "IA3"), good, "field \"peft_type\" must be \"LORA\"");
    expect_error(with("task_type", "SEQ_CLS"), good, "field \"task_type\"");
    expect_error(with("target_modules", ".*q_proj"), good, "field \"target_modules\" is the pattern");
    expect_error(with("target_modules", {"q_proj", "lm_head"}), good, "unknown LoRA target \"lm_head\"");
    expect_error(with("r", 0), good, "field \"r\" must be a positive integer");

    REQUIRE_THROWS_WITH(cai::lora_load(*m, root + "/nowhere"), Contains("is not a directory"));
    cai::make_directories(root + "/bin");
    cai::write_file_atomic(root + "/bin/adapter_config.json", peft_config().dump());
    cai::write_file_atomic(root + "/bin/adapter_model.bin", "x");
    REQUIRE_THROWS_WITH(cai::lora_load(*m, root + "/bin"), Contains("safe_serialization=True"));
}

TEST_CASE("save_model writes an HF directory that loads back to identical logits", "[lora][save]") {
    const std::string root = temp_dir();
    for (const char* json : {llama_json, qwen2_tied_json}) {
        for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
            cai::model_config c = cai::parse_model_config(json);
            const std::string src = root + "/src_" + c.model_type;
            cai::write_model_dir(src, json, cai::random_model_tensors(c, 4, 0.3));
            cai::write_file_atomic(src + "/generation_config.json", R"({"eos_token_id": 2})");
            auto m = cai::model::load(src, dtype, false);
            const std::string out = root + "/out_" + c.model_type + "_" + cai::dtype_name(dtype);
            cai::save_model(*m, out, dtype);
            if (dtype == at::kFloat) {
                REQUIRE(cai::read_file(out + "/config.json") == json);  // no dtype named: float32, kept as it was
            } else {  // the saved dtype is named, every other field kept
                nlohmann::json saved = nlohmann::json::parse(cai::read_file(out + "/config.json"));
                REQUIRE(saved["torch_dtype"] == "bfloat16");
                saved.erase("torch_dtype");
                REQUIRE(saved == nlohmann::json::parse(json));
            }
            REQUIRE(cai::read_file(out + "/generation_config.json") == R"({"eos_token_id": 2})");
            cai::safetensors_file f(out + "/model.safetensors");
            REQUIRE(f.has("lm_head.weight") == !c.tie_word_embeddings);
            REQUIRE(f.entry("model.embed_tokens.weight").dtype == (dtype == at::kFloat ? "F32" : "BF16"));
            auto back = cai::model::load(out, dtype, false);
            REQUIRE(at::equal(logits(*back), logits(*m)));
            REQUIRE(back->eos_ids == m->eos_ids);
        }
    }
}

TEST_CASE("save_model refuses unmerged adapters and saves merged ones", "[lora][save]") {
    auto m = make();
    cai::lora_add(*m, options(4, 8, {"all-linear"}));
    randomize(*m, 6);
    Tensor adapted = logits(*m);
    const std::string root = temp_dir();
    REQUIRE_THROWS_WITH(cai::save_model(*m, root + "/m", at::kFloat), Contains("merge_lora"));
    REQUIRE_FALSE(cai::file_exists(root + "/m"));
    cai::lora_merge(*m);
    cai::save_model(*m, root + "/m", at::kFloat);
    auto back = cai::model::load(root + "/m", at::kFloat, false);
    REQUIRE_FALSE(back->has_lora());
    REQUIRE(at::allclose(logits(*back), adapted, 1e-5, 1e-5));
}

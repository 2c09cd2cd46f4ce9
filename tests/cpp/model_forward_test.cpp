// runtime/model forward pass: against a naive per-token, per-head reference
// written from the transformers modeling code in double precision, and the
// invariants generation relies on (left padding, KV cache, batch rows).
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "fixtures.h"

namespace {

using at::Tensor;

const char* llama_json = R"({"model_type":"llama","vocab_size":40,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-5,"rope_theta":10000.0})";
const char* llama_linear_tied_json = R"({"model_type":"llama","vocab_size":40,"hidden_size":16,
  "intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":4,
  "tie_word_embeddings":true,"rope_scaling":{"type":"linear","factor":2.0}})";
const char* llama3_json = R"({"model_type":"llama","vocab_size":40,"hidden_size":32,"intermediate_size":24,
  "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"rope_theta":500.0,
  "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
  "original_max_position_embeddings":64}})";
const char* qwen2_json = R"({"model_type":"qwen2","vocab_size":40,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rope_theta":1000000.0})";
const char* mistral_json = R"({"model_type":"mistral","vocab_size":40,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"sliding_window":3})";
const char* gemma_json = R"({"model_type":"gemma","vocab_size":40,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":8,
  "hidden_activation":"gelu_pytorch_tanh"})";
const char* gemma2_json = R"({"model_type":"gemma2","vocab_size":40,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"sliding_window":3,
  "query_pre_attn_scalar":12,"attn_logit_softcapping":0.5,"final_logit_softcapping":0.3})";

std::shared_ptr<cai::model> make(const std::string& json, at::ScalarType dtype = at::kFloat, uint64_t seed = 1,
                                 double std = 0.3) {
    return fixtures::random_model(json, seed, std, dtype);
}

// ---- the reference: one sequence, loops over tokens and heads, float64 ----

Tensor d(const Tensor& t) { return t.to(at::kDouble); }

Tensor ref_norm(const cai::rms_norm& n, const Tensor& x) {  // x: (C)
    Tensor y = x / std::sqrt((x * x).mean().item<double>() + n.eps);
    return n.one_plus ? y * (1 + d(n.weight)) : y * d(n.weight);
}

Tensor ref_linear(const cai::linear& l, const Tensor& x) {
    Tensor y = at::mv(d(l.weight), x);
    return l.bias.defined() ? y + d(l.bias) : y;
}

std::vector<double> ref_inv_freq(const cai::model_config& c) {
    std::vector<double> f;
    for (int64_t i = 0; i < c.head_dim / 2; ++i) {
        double v = 1.0 / std::pow(c.rope_theta, 2.0 * i / c.head_dim);
        if (c.rope_type == "linear") v /= c.rope_factor;
        if (c.rope_type == "llama3") {
            double wavelen = 2 * M_PI / v, old = (double)c.rope_original_max_position_embeddings;
            double lo = c.rope_low_freq_factor, hi = c.rope_high_freq_factor;
            if (wavelen > old / lo) {
                v /= c.rope_factor;
            } else if (wavelen >= old / hi) {
                double s = (old / wavelen - lo) / (hi - lo);
                v = (1 - s) * v / c.rope_factor + s * v;
            }
        }
        f.push_back(v);
    }
    return f;
}

// Rotates pairs (i, i + D/2) of one head by position * inv_freq[i].
Tensor ref_rope(const Tensor& x, int64_t pos, const std::vector<double>& f) {
    int64_t half = x.size(0) / 2;
    Tensor y = x.clone();
    for (int64_t i = 0; i < half; ++i) {
        double a = x[i].item<double>(), b = x[i + half].item<double>(), t = pos * f[i];
        y[i] = a * std::cos(t) - b * std::sin(t);
        y[i + half] = b * std::cos(t) + a * std::sin(t);
    }
    return y;
}

Tensor ref_act(const std::string& name, const Tensor& x) {
    if (name == "silu") return x / (1 + at::exp(-x));
    // tanh-approximated GELU
    return 0.5 * x * (1 + at::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

Tensor ref_logits(const cai::model& m, const std::vector<int64_t>& ids) {  // -> (T, V)
    const cai::model_config& c = m.config;
    const int64_t T = ids.size(), H = c.num_heads, D = c.head_dim, groups = c.num_heads / c.num_kv_heads;
    std::vector<double> f = ref_inv_freq(c);
    std::vector<Tensor> x;
    for (int64_t id : ids) {
        Tensor e = d(m.embed_tokens[id]);
        x.push_back(c.scale_embeddings ? e * std::sqrt((double)c.hidden_size) : e);
    }
    for (const auto& layer : m.layers) {
        std::vector<Tensor> q(T), k(T), v(T), out(T);
        for (int64_t t = 0; t < T; ++t) {
            Tensor h = ref_norm(layer.input_norm, x[t]);
            q[t] = ref_linear(layer.q_proj, h).view({H, D});
            k[t] = ref_linear(layer.k_proj, h).view({c.num_kv_heads, D});
            v[t] = ref_linear(layer.v_proj, h).view({c.num_kv_heads, D});
            for (int64_t hh = 0; hh < H; ++hh) q[t][hh] = ref_rope(q[t][hh], t, f);
            for (int64_t hh = 0; hh < c.num_kv_heads; ++hh) k[t][hh] = ref_rope(k[t][hh], t, f);
        }
        for (int64_t t = 0; t < T; ++t) {
            Tensor heads = at::zeros({H, D}, at::kDouble);
            for (int64_t hh = 0; hh < H; ++hh) {
                int64_t kv = hh / groups;  // repeat_kv: each key/value head serves `groups` consecutive heads
                std::vector<double> scores;
                std::vector<int64_t> keys;
                for (int64_t s = 0; s <= t; ++s) {
                    if (layer.sliding && t - s >= c.sliding_window) continue;
                    double score = at::dot(q[t][hh], k[s][kv]).item<double>() * c.attn_scale;
                    if (c.attn_logit_softcapping > 0)
                        score = std::tanh(score / c.attn_logit_softcapping) * c.attn_logit_softcapping;
                    scores.push_back(score);
                    keys.push_back(s);
                }
                double mx = *std::max_element(scores.begin(), scores.end()), sum = 0;
                for (double& s : scores) sum += (s = std::exp(s - mx));
                for (size_t i = 0; i < keys.size(); ++i) heads[hh] += v[keys[i]][kv] * (scores[i] / sum);
            }
            Tensor attn = ref_linear(layer.o_proj, heads.view({H * D}));
            if (c.sandwich_norms) attn = ref_norm(layer.post_attention_norm, attn);
            Tensor y = x[t] + attn;
            Tensor h = c.sandwich_norms ? ref_norm(layer.pre_feedforward_norm, y) : ref_norm(layer.post_attention_norm, y);
            Tensor mlp = ref_linear(layer.down_proj,
                                    ref_act(c.hidden_act, ref_linear(layer.gate_proj, h)) * ref_linear(layer.up_proj, h));
            if (c.sandwich_norms) mlp = ref_norm(layer.post_feedforward_norm, mlp);
            out[t] = y + mlp;
        }
        x = out;
    }
    std::vector<Tensor> rows;
    for (int64_t t = 0; t < T; ++t) {
        Tensor l = at::mv(d(m.lm_head.weight), ref_norm(m.final_norm, x[t]));
        if (c.final_logit_softcapping > 0) l = at::tanh(l / c.final_logit_softcapping) * c.final_logit_softcapping;
        rows.push_back(l);
    }
    return at::stack(rows);
}

Tensor ids_tensor(const std::vector<std::vector<int64_t>>& rows) {
    std::vector<Tensor> out;
    for (const auto& r : rows) out.push_back(at::tensor(r, at::kLong));
    return at::stack(out);
}

double max_diff(const Tensor& a, const Tensor& b) { return (d(a) - d(b)).abs().max().item<double>(); }

const std::vector<int64_t> seq_a = {3, 17, 5, 29, 11, 2, 38};
const std::vector<int64_t> seq_b = {7, 1, 33, 12};

}  // namespace

TEST_CASE("model: fp32 logits equal the float64 reference for every architecture") {
    for (const char* json : {llama_json, llama_linear_tied_json, llama3_json, qwen2_json, mistral_json, gemma_json,
                             gemma2_json}) {
        auto m = make(json);
        INFO(m->config.model_type << " " << m->config.rope_type);
        Tensor logits = m->forward(ids_tensor({seq_a}))[0];
        Tensor ref = ref_logits(*m, seq_a);
        REQUIRE(logits.sizes() == ref.sizes());
        REQUIRE(ref.abs().max().item<double>() > 0.05);  // the test compares something
        REQUIRE(max_diff(logits, ref) < 1e-5);
    }
}

TEST_CASE("model: left padding gives the same logits for the real tokens") {
    for (const char* json : {llama_json, qwen2_json, mistral_json, gemma_json, gemma2_json}) {
        auto m = make(json);
        INFO(m->config.model_type);
        Tensor ids = ids_tensor({seq_a, {0, 0, 0, 7, 1, 33, 12}});
        Tensor mask = ids_tensor({{1, 1, 1, 1, 1, 1, 1}, {0, 0, 0, 1, 1, 1, 1}});
        Tensor batch = m->forward(ids, mask);
        REQUIRE(at::isfinite(batch).all().item<bool>());
        REQUIRE(max_diff(batch[0], m->forward(ids_tensor({seq_a}))[0]) < 1e-5);
        Tensor alone = m->forward(ids_tensor({seq_b}))[0];
        REQUIRE(max_diff(batch[1].narrow(0, 3, 4), alone) < 1e-5);
        REQUIRE(max_diff(alone, ref_logits(*m, seq_b)) < 1e-5);
    }
}

TEST_CASE("model: the KV cache path gives the logits of the full forward") {
    for (const char* json : {llama_json, qwen2_json, mistral_json, gemma2_json}) {
        auto m = make(json);
        INFO(m->config.model_type);
        // Row 1 is left-padded by three positions in the full forward.
        Tensor ids = ids_tensor({seq_a, {0, 0, 0, 7, 1, 33, 12}});
        Tensor mask = ids_tensor({{1, 1, 1, 1, 1, 1, 1}, {0, 0, 0, 1, 1, 1, 1}});
        Tensor full = m->forward(ids, mask);

        cai::kv_cache cache = m->new_cache(2, 12);
        // Prefill the first 4 columns (row 1: one real token), then 1 column, then 2 at once.
        std::vector<Tensor> parts;
        for (auto [start, len] : std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {4, 1}, {5, 2}})
            parts.push_back(m->forward(ids.narrow(1, start, len), mask.narrow(1, start, len), &cache));
        Tensor cached = at::cat(parts, 1);
        REQUIRE(cache.length == std::vector<int64_t>{7, 4});
        REQUIRE(max_diff(cached[0], full[0]) < 1e-5);
        REQUIRE(max_diff(cached[1].narrow(0, 3, 4), full[1].narrow(0, 3, 4)) < 1e-5);
        REQUIRE_THROWS_WITH(m->forward(ids, mask, &cache), Catch::Contains("cache holds 12 positions"));
    }
}

TEST_CASE("model: long chunks through the cache: a first chunk by the causal kernel, later ones by the suffix kernel") {
    for (const char* json : {llama_json, mistral_json, gemma2_json}) {
        auto m = make(json);
        INFO(m->config.model_type);
        // 24 columns, row 1 left-padded by five; chunks of 12 (nothing cached yet), 10 (over the
        // cache, more rows than the decode kernel takes; the rows' cached lengths differ) and 2 (decode).
        std::vector<int64_t> a, b, ma, mb;
        for (int64_t t = 0; t < 24; ++t) {
            a.push_back(1 + (t * 7) % 39);
            b.push_back(t < 5 ? 0 : 1 + (t * 11 + 3) % 39);
            ma.push_back(1);
            mb.push_back(t < 5 ? 0 : 1);
        }
        Tensor ids = ids_tensor({a, b}), mask = ids_tensor({ma, mb});
        Tensor full = m->forward(ids, mask);
        cai::kv_cache cache = m->new_cache(2, 24);
        std::vector<Tensor> parts;
        for (auto [start, len] : std::vector<std::pair<int64_t, int64_t>>{{0, 12}, {12, 10}, {22, 2}})
            parts.push_back(m->forward(ids.narrow(1, start, len), mask.narrow(1, start, len), &cache));
        Tensor cached = at::cat(parts, 1);
        REQUIRE(cache.length == std::vector<int64_t>{24, 19});
        REQUIRE(max_diff(cached[0], full[0]) < 1e-5);
        REQUIRE(max_diff(cached[1].narrow(0, 5, 19), full[1].narrow(0, 5, 19)) < 1e-5);
    }
}

TEST_CASE("model: a row's logits do not depend on the other rows of the batch") {
    auto m = make(gemma2_json);
    Tensor mask = ids_tensor({{1, 1, 1, 1, 1, 1, 1}, {0, 0, 0, 1, 1, 1, 1}});
    Tensor two = m->forward(ids_tensor({seq_a, {0, 0, 0, 7, 1, 33, 12}}), mask);
    Tensor other = m->forward(ids_tensor({seq_a, {0, 0, 0, 9, 9, 9, 9}}), mask);
    REQUIRE(max_diff(two[0], other[0]) < 1e-6);
}

TEST_CASE("model: hand-checkable pieces: rotary layout, llama3 frequencies, embeddings scale") {
    auto m = make(llama3_json);
    // head_dim 16, theta 500: frequencies 500^(-i/8); llama3 with original context 64:
    // wavelength > 64 divided by 8, < 16 kept, between interpolated.
    std::vector<double> expect = ref_inv_freq(m->config);
    REQUIRE(expect[0] == Approx(1.0));
    REQUIRE(expect[7] == Approx(std::pow(500.0, -7.0 / 8) / 8));
    for (size_t i = 0; i < expect.size(); ++i) REQUIRE(m->inv_freq[i].item<double>() == Approx(expect[i]).epsilon(1e-6));
    // cos/sin repeat the half-size frequencies (rotate_half layout, not interleaved).
    auto [cos, sin] = m->rotary(at::full({1, 1}, 5, at::kLong));
    for (int64_t i = 0; i < 16; ++i) {
        REQUIRE(cos[0][0][i].item<double>() == Approx(std::cos(5 * expect[i % 8])).margin(1e-6));
        REQUIRE(sin[0][0][i].item<double>() == Approx(std::sin(5 * expect[i % 8])).margin(1e-6));
    }

    // A gemma whose layers are zero reduces to softcap-free lm_head(norm(sqrt(C) * e)) with (1 + w).
    auto g = make(gemma_json);
    for (auto& l : g->layers)
        for (cai::linear* p : {&l.o_proj, &l.down_proj}) p->weight.zero_();
    Tensor e = g->embed_tokens[5].to(at::kDouble) * 4.0;  // sqrt(16)
    Tensor h = e / std::sqrt((e * e).mean().item<double>() + 1e-6) * (1 + d(g->final_norm.weight));
    Tensor expect_logits = at::mv(d(g->embed_tokens), h);  // tied by default for gemma
    REQUIRE(g->config.tie_word_embeddings);
    REQUIRE(max_diff(g->forward(at::full({1, 1}, 5, at::kLong))[0][0], expect_logits) < 1e-4);
}

TEST_CASE("model: logprobs pick log_softmax of the next token and zero the padding") {
    auto m = make(llama_json);
    Tensor ids = ids_tensor({{0, 0, 7, 1, 33}});
    Tensor mask = ids_tensor({{0, 0, 1, 1, 1}});
    Tensor lp = m->logprobs(ids, mask)[0];
    Tensor logits = m->forward(ids_tensor({{7, 1, 33}}))[0].to(at::kDouble);
    double expect = at::log_softmax(logits[0], -1)[1].item<double>() + at::log_softmax(logits[1], -1)[33].item<double>();
    REQUIRE(lp.sum().item<double>() == Approx(expect).margin(1e-5));
    REQUIRE(lp[0].item<double>() == 0);
    REQUIRE(lp[1].item<double>() == 0);
    REQUIRE(lp[2].item<double>() == 0);
}

TEST_CASE("model: gradients flow through the forward pass") {
    auto m = make(gemma2_json);
    m->layers[0].q_proj.weight.requires_grad_(true);
    Tensor mask = ids_tensor({{0, 1, 1, 1}});
    Tensor lp = m->logprobs(ids_tensor({{0, 7, 1, 33}}), mask).sum();
    lp.backward();
    Tensor grad = m->layers[0].q_proj.weight.grad();
    REQUIRE(grad.defined());
    REQUIRE(grad.abs().sum().item<double>() > 0);
}

TEST_CASE("model: bf16 compute stays close to fp32") {
    auto m32 = make(llama_json);
    auto m16 = make(llama_json, at::kBFloat16);
    REQUIRE(m16->embed_tokens.scalar_type() == at::kBFloat16);
    Tensor a = m32->forward(ids_tensor({seq_a}));
    Tensor b = m16->forward(ids_tensor({seq_a}));
    REQUIRE(b.scalar_type() == at::kBFloat16);
    REQUIRE(max_diff(a, b) < 0.1 * a.abs().max().item<double>() + 0.02);
}

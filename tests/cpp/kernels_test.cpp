// kernels/: each fused kernel against the plain ATen composition of the same
// math (the path the model takes with the kernels off), values and gradients
// (torch autograd through both), float32 and bf16, odd shapes; the sampler's
// partial sort against the full sort; the whole model fused vs plain.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/rng.h"
#include "generate/sampler.h"
#include "kernels/attention.h"
#include "kernels/cpu.h"
#include "kernels/gate.h"
#include "kernels/matvec.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "test_util.h"

namespace {

using at::Tensor;
using cai::kernels::scoped_enabled;

const bool have_kernels = cai::kernels::cpu_isa() != cai::kernels::isa::generic;

// float32: 1e-5 relative to the size of the values; bf16: two units in the last place.
void check_close(const Tensor& got, const Tensor& want, at::ScalarType type, const std::string& what) {
    INFO(what << " (" << (type == at::kBFloat16 ? "bf16" : "fp32") << ")");
    REQUIRE(got.sizes() == want.sizes());
    Tensor g = got.to(at::kFloat), w = want.to(at::kFloat);
    const double scale = std::max(1.0, w.abs().max().item<double>());
    const double tol = type == at::kBFloat16 ? 2e-2 : 1e-5;
    const double err = (g - w).abs().max().item<double>();
    INFO("max abs error " << err << ", scale " << scale);
    CHECK(err <= tol * scale);
}

std::vector<at::ScalarType> types() { return {at::kFloat, at::kBFloat16}; }

Tensor randn(at::IntArrayRef sizes, at::ScalarType type) { return at::randn(sizes).to(type); }

}  // namespace

TEST_CASE("matvec: few rows against at::linear, fused projections, odd sizes") {
    if (!have_kernels) return;
    at::manual_seed(1);
    at::NoGradGuard no_grad;
    for (auto type : types()) {
        for (int64_t K : {1, 7, 16, 37, 200}) {
            for (int64_t N : {1, 5, 19, 64}) {
                for (int64_t rows : {1, 2, 3, 5, 8, 9, 20, 64}) {
                    Tensor x = randn({rows, K}, type), w = randn({N, K}, type), b = randn({N}, type);
                    REQUIRE(cai::kernels::matvec_applies(x, w, b));
                    check_close(cai::kernels::matvec_forward(x, w, b), at::linear(x, w, b), type,
                                "K " + std::to_string(K) + " N " + std::to_string(N) + " rows " + std::to_string(rows));
                }
            }
        }
        // (B, T, C) input with one row, several projections in one pass, one without bias.
        Tensor x = randn({1, 1, 48}, type);
        Tensor wq = randn({48, 48}, type), wk = randn({16, 48}, type), wv = randn({16, 48}, type), bk = randn({16}, type);
        auto outs = cai::kernels::matvec_forward_many(x, {wq, wk, wv}, {Tensor(), bk, Tensor()});
        REQUIRE(outs.size() == 3);
        check_close(outs[0], at::linear(x, wq), type, "q");
        check_close(outs[1], at::linear(x, wk, bk), type, "k");
        check_close(outs[2], at::linear(x, wv), type, "v");
        CHECK(outs[1].sizes() == at::IntArrayRef({1, 1, 16}));
        // A row's result does not depend on the rows computed with it (each alone vs 20 at once).
        Tensor many = randn({20, 130}, type), wm = randn({300, 130}, type);
        Tensor all = cai::kernels::matvec_forward(many, wm);
        for (int64_t r = 0; r < 20; ++r)
            CHECK(at::equal(cai::kernels::matvec_forward(many.narrow(0, r, 1), wm), all.narrow(0, r, 1)));
    }
    // Not taken: too many rows, mixed dtypes, a gradient wanted, kernels off.
    Tensor w = at::randn({4, 8});
    CHECK_FALSE(cai::kernels::matvec_applies(at::randn({65, 8}), w));
    CHECK_FALSE(cai::kernels::matvec_applies(at::randn({1, 8}).to(at::kBFloat16), w));
    {
        at::AutoGradMode grad(true);
        CHECK_FALSE(cai::kernels::matvec_applies(at::randn({1, 8}).requires_grad_(), w));
    }
    {
        scoped_enabled off(false);
        CHECK_FALSE(cai::kernels::matvec_applies(at::randn({1, 8}), w));
        CHECK(test_util::error_of([&] { cai::kernels::matvec_forward(at::randn({1, 8}), w); }).find("matvec") !=
              std::string::npos);
    }
}

namespace {

// What matvec_i8 computes, in double: with VNNI, x quantized per 64-wide block to
// int8 (nearest even, scale max|x| / 127); without, x as it is. Weights (w_q - 128) * scale.
Tensor matvec_i8_reference(const Tensor& x, const Tensor& w_q, const Tensor& scale, const Tensor& bias) {
    Tensor xd = x.to(at::kDouble).reshape({-1, x.size(-1)});
    if (cai::kernels::cpu_has_avx512_vnni()) {
        const int64_t K = xd.size(1), nb = (K + 63) / 64;
        Tensor padded = at::zeros({xd.size(0), nb * 64}, at::kDouble);
        padded.narrow(1, 0, K).copy_(xd);
        Tensor blocks = padded.view({xd.size(0), nb, 64}).to(at::kFloat);
        Tensor s = blocks.abs().amax(-1, true) / 127.0f;                              // float32, as the kernel
        Tensor inv = at::where(s > 0, 127.0f / blocks.abs().amax(-1, true), at::zeros_like(s));
        Tensor q = at::round(blocks * inv);                                             // nearest even
        xd = (q.to(at::kDouble) * s.to(at::kDouble)).view({xd.size(0), nb * 64}).narrow(1, 0, K);
    }
    Tensor w = (w_q.to(at::kDouble) - 128.0) * scale.to(at::kDouble).unsqueeze(1);
    Tensor y = at::matmul(xd, w.t());
    if (bias.defined()) y = y + bias.to(at::kDouble);
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = w_q.size(0);
    return y.view(shape);
}

}  // namespace

TEST_CASE("matvec_i8: int8 weights against their dequantized product, any row count, rows independent") {
    if (!have_kernels) return;
    for (at::ScalarType type : types()) {
        for (int64_t K : {1, 7, 64, 100, 200}) {
            for (int64_t N : {1, 5, 19, 64}) {
                Tensor w = at::randn({N, K}), b = randn({N}, type);
                auto [q, scale] = cai::kernels::int8_quantize_rows(w);
                CHECK(q.scalar_type() == at::kByte);
                // Quantization: each weight within half a step of its row's scale.
                CHECK(((q.to(at::kFloat) - 128) * scale.unsqueeze(1) - w).abs().le(scale.unsqueeze(1) * 0.5001).all().item<bool>());
                for (int64_t rows : {1, 3, 8}) {
                    Tensor x = randn({rows, K}, type);
                    REQUIRE(cai::kernels::matvec_i8_applies(x, q, scale, b));
                    Tensor got = cai::kernels::matvec_i8_forward_many(x, {q}, {scale}, {b})[0];
                    CHECK(got.scalar_type() == type);
                    check_close(got, matvec_i8_reference(x.to(at::kFloat), q, scale, b.to(at::kFloat)), type,
                                "K " + std::to_string(K) + " N " + std::to_string(N) + " rows " + std::to_string(rows));
                }
            }
        }
        // A row's result does not depend on the rows computed with it (each row alone vs 20 at once).
        Tensor w = at::randn({48, 130});
        auto [q, scale] = cai::kernels::int8_quantize_rows(w);
        Tensor x = randn({cai::kernels::cpu_has_avx512_vnni() ? 20 : 8, 130}, type);
        Tensor all = cai::kernels::matvec_i8_forward_many(x, {q}, {scale})[0];
        for (int64_t r = 0; r < x.size(0); ++r) {
            Tensor one = cai::kernels::matvec_i8_forward_many(x.narrow(0, r, 1), {q}, {scale})[0];
            CHECK(at::equal(one, all.narrow(0, r, 1)));
        }
        // Several projections in one pass, one with a bias.
        Tensor xs = randn({1, 1, 96}, type);
        auto [q1, s1] = cai::kernels::int8_quantize_rows(at::randn({32, 96}));
        auto [q2, s2] = cai::kernels::int8_quantize_rows(at::randn({16, 96}));
        Tensor b2 = randn({16}, type);
        auto outs = cai::kernels::matvec_i8_forward_many(xs, {q1, q2}, {s1, s2}, {Tensor(), b2});
        CHECK(outs[1].sizes() == at::IntArrayRef({1, 1, 16}));
        check_close(outs[0], matvec_i8_reference(xs.to(at::kFloat), q1, s1, Tensor()), type, "first of two");
        check_close(outs[1], matvec_i8_reference(xs.to(at::kFloat), q2, s2, b2.to(at::kFloat)), type, "second of two");
    }
    // Not taken: float weights, a gradient wanted, kernels off.
    auto [q, scale] = cai::kernels::int8_quantize_rows(at::randn({4, 8}));
    CHECK_FALSE(cai::kernels::matvec_i8_applies(at::randn({1, 8}), at::randn({4, 8}), scale));
    {
        at::AutoGradMode grad(true);
        CHECK_FALSE(cai::kernels::matvec_i8_applies(at::randn({1, 8}).requires_grad_(), q, scale));
    }
    {
        scoped_enabled off(false);
        CHECK_FALSE(cai::kernels::matvec_i8_applies(at::randn({1, 8}), q, scale));
    }
}

namespace {

// The plain path of model.cpp: q (B, T, H, D), caches (B, cap, Hkv, D).
Tensor attention_plain(const Tensor& q, const Tensor& kc, const Tensor& vc, const Tensor& positions,
                       const Tensor& filled, int64_t key_len, int64_t window, double scale, double cap) {
    const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3), Hkv = kc.size(2), S = key_len;
    Tensor keys = kc.narrow(1, 0, S).transpose(1, 2), values = vc.narrow(1, 0, S).transpose(1, 2);
    Tensor key_pos = at::arange(S, at::kLong);
    Tensor key_valid = key_pos.view({1, S}) < filled.view({B, 1});
    Tensor distance = positions.view({B, 1, T, 1}) - key_pos.view({1, 1, 1, S});
    Tensor allowed = key_valid.view({B, 1, 1, S}) & (distance >= 0);
    if (window > 0) allowed = allowed & (distance < window);
    Tensor gq = q.transpose(1, 2).reshape({B, Hkv, (H / Hkv) * T, D});
    Tensor scores = at::matmul(gq, keys.transpose(-1, -2)).view({B, H, T, S}) * scale;
    if (cap > 0) scores = at::tanh(scores / cap) * cap;
    const double lowest = q.scalar_type() == at::kBFloat16 ? (double)std::numeric_limits<c10::BFloat16>::lowest()
                                                           : (double)std::numeric_limits<float>::lowest();
    scores = scores.masked_fill(at::logical_not(allowed), lowest);
    Tensor weights = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
    Tensor out = at::matmul(weights.view({B, Hkv, (H / Hkv) * T, S}), values);
    return out.view({B, H, T, D}).transpose(1, 2).reshape({B, T, H * D});
}

}  // namespace

TEST_CASE("attention over the KV cache: GQA, sliding window, soft-capping, ragged rows") {
    if (!have_kernels) return;
    at::manual_seed(2);
    at::NoGradGuard no_grad;
    for (auto type : types()) {
        for (int64_t D : {8, 20, 64}) {
            for (int64_t window : {0, 3}) {
                for (double cap : {0.0, 5.0}) {
                    const int64_t B = 3, H = 6, Hkv = 2, cap_slots = 12;
                    Tensor kc = randn({B, cap_slots, Hkv, D}, type), vc = randn({B, cap_slots, Hkv, D}, type);
                    // Row 0 decodes at slot 8, row 1 at slot 3, row 2 (a padding row) holds one token.
                    Tensor filled = at::tensor({9, 4, 1}, at::kLong);
                    for (int64_t T : {1, 3}) {
                        // Queries at the last T slots of each row (clamped at 0, as padding columns are).
                        Tensor positions = (filled.view({B, 1}) - T + at::arange(T, at::kLong).view({1, T})).clamp_min(0);
                        Tensor q = randn({B, T, H, D}, type);
                        const int64_t key_len = filled.max().item<int64_t>();
                        cai::kernels::attention_options o;
                        o.key_len = key_len;
                        o.window = window;
                        o.scale = 1.0 / std::sqrt((double)D);
                        o.softcap = cap;
                        Tensor got = cai::kernels::attention_decode_forward(q, kc, vc, positions, filled, o);
                        Tensor want = attention_plain(q, kc, vc, positions, filled, key_len, window, o.scale, cap);
                        check_close(got, want, type,
                                    "D " + std::to_string(D) + " window " + std::to_string(window) + " cap " +
                                        std::to_string(cap) + " T " + std::to_string(T));
                    }
                }
            }
        }
    }
}

TEST_CASE("rms_norm: llama and gemma (1 + w), values and gradients") {
    if (!have_kernels) return;
    at::manual_seed(3);
    for (auto type : types()) {
        for (bool one_plus : {false, true}) {
            for (auto shape : std::vector<std::vector<int64_t>>{{1, 7}, {3, 5, 33}, {2, 64}}) {
                const int64_t C = shape.back();
                Tensor x0 = randn(shape, type), w0 = randn({C}, type), dy = randn(shape, type);
                auto plain = [&](const Tensor& x, const Tensor& w) {
                    Tensor x32 = x.to(at::kFloat);
                    Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, true) + 1e-6);
                    if (one_plus) return (normed * (1.0 + w.to(at::kFloat))).to(x.scalar_type());
                    return w * normed.to(x.scalar_type());
                };
                Tensor x1 = x0.clone().requires_grad_(), w1 = w0.clone().requires_grad_();
                Tensor x2 = x0.clone().requires_grad_(), w2 = w0.clone().requires_grad_();
                Tensor y1 = cai::kernels::rms_norm(x1, w1, 1e-6, one_plus), y2 = plain(x2, w2);
                const std::string what = std::string(one_plus ? "gemma" : "llama") + " C " + std::to_string(C);
                check_close(y1, y2, type, what + " forward");
                auto g1 = torch::autograd::grad({y1}, {x1, w1}, {dy});
                auto g2 = torch::autograd::grad({y2}, {x2, w2}, {dy});
                check_close(g1[0], g2[0], type, what + " dx");
                // dw sums over every row: bf16 rounding of the plain path adds up.
                check_close(g1[1], g2[1], type == at::kBFloat16 ? type : at::kFloat, what + " dw");
            }
        }
    }
}

TEST_CASE("rotary: in place and out of place, gradient is the inverse rotation") {
    if (!have_kernels) return;
    at::manual_seed(4);
    for (auto type : types()) {
        for (int64_t D : {2, 10, 64}) {
            const int64_t B = 2, T = 3, heads = 5;
            Tensor angles = at::rand({B, T, D / 2}) * 10;
            Tensor emb = at::cat({angles, angles}, -1);
            Tensor cos = emb.cos().to(type), sin = emb.sin().to(type);
            Tensor x0 = randn({B, T, heads, D}, type), dy = randn({B, T, heads, D}, type);
            auto plain = [&](const Tensor& x) {
                const int64_t half = D / 2;
                Tensor rot = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
                return x * cos.unsqueeze(2) + rot * sin.unsqueeze(2);
            };
            Tensor x1 = x0.clone().requires_grad_(), x2 = x0.clone().requires_grad_();
            Tensor y1 = cai::kernels::rotary(x1, cos, sin), y2 = plain(x2);
            check_close(y1, y2, type, "rotary D " + std::to_string(D));
            check_close(torch::autograd::grad({y1}, {x1}, {dy})[0], torch::autograd::grad({y2}, {x2}, {dy})[0], type,
                        "rotary grad D " + std::to_string(D));
            Tensor x3 = x0.clone();
            cai::kernels::rotary_forward_(x3, cos, sin);
            check_close(x3, y2.detach(), type, "rotary in place");
        }
    }
}

TEST_CASE("gate: act(g) * u for silu, gelu (tanh and erf) and relu, values and gradients") {
    if (!have_kernels) return;
    at::manual_seed(5);
    using cai::kernels::gate_act;
    const std::vector<std::pair<std::string, gate_act>> acts = {
        {"silu", gate_act::silu}, {"gelu_pytorch_tanh", gate_act::gelu_tanh}, {"gelu", gate_act::gelu_erf},
        {"relu", gate_act::relu}};
    for (auto type : types()) {
        for (const auto& [name, act] : acts) {
            gate_act parsed;
            REQUIRE(cai::kernels::gate_activation(name, &parsed));
            CHECK(parsed == act);
            for (auto shape : std::vector<std::vector<int64_t>>{{1, 1, 13}, {2, 3, 37}, {4, 64}}) {
                Tensor g0 = randn(shape, type) * 3, u0 = randn(shape, type), dy = randn(shape, type);
                auto plain = [&](const Tensor& g, const Tensor& u) {
                    Tensor a = act == gate_act::silu        ? at::silu(g)
                               : act == gate_act::gelu_tanh ? at::gelu(g, "tanh")
                               : act == gate_act::gelu_erf  ? at::gelu(g)
                                                            : at::relu(g);
                    return a * u;
                };
                Tensor g1 = g0.clone().requires_grad_(), u1 = u0.clone().requires_grad_();
                Tensor g2 = g0.clone().requires_grad_(), u2 = u0.clone().requires_grad_();
                Tensor y1 = cai::kernels::gate(g1, u1, act), y2 = plain(g2, u2);
                check_close(y1, y2, type, name + " forward");
                // relu(g) * u is one rounding of an exact product on both paths: bit for bit.
                if (act == gate_act::relu) CHECK(at::equal(y1, y2));
                auto d1 = torch::autograd::grad({y1}, {g1, u1}, {dy});
                auto d2 = torch::autograd::grad({y2}, {g2, u2}, {dy});
                check_close(d1[0], d2[0], type, name + " dg");
                check_close(d1[1], d2[1], type, name + " du");
            }
        }
    }
    gate_act unused;
    CHECK_FALSE(cai::kernels::gate_activation("tanh", &unused));
}

TEST_CASE("sampler: top-k/top-p/min-p without a full sort give the full sort's distribution and tokens") {
    for (uint64_t seed = 0; seed < 200; ++seed) {
        cai::rng r(seed);
        const int64_t vocab = seed % 3 == 0 ? 1 + (int64_t)(seed % 50) : 1000 + (int64_t)(seed % 7);
        std::vector<float> logits(vocab);
        for (auto& l : logits) l = (float)(r.normal() * (1 + seed % 4));
        if (seed % 5 == 0)  // ties
            for (int64_t i = 0; i < vocab; i += 3) logits[i] = 0.5f;
        cai::sampling_options o;
        o.temperature = 0.3 + 0.2 * (double)(seed % 7);
        o.top_p = std::vector<double>{0.05, 0.5, 0.9, 0.95, 0.999, 1.0}[seed % 6];
        o.top_k = seed % 4 == 0 ? 0 : (int64_t)(seed % 90);
        o.min_p = seed % 3 == 1 ? 0.05 : 0.0;
        o.repetition_penalty = seed % 2 ? 1.3 : 1.0;
        std::vector<int32_t> context = {1, 2, 3, (int32_t)(seed % vocab)};
        std::vector<double> fused, plain;
        {
            scoped_enabled on(true);
            fused = cai::sampling_distribution(logits.data(), vocab, o, context);
        }
        {
            scoped_enabled off(false);
            plain = cai::sampling_distribution(logits.data(), vocab, o, context);
        }
        INFO("seed " << seed);
        REQUIRE(fused == plain);  // bit for bit
        for (uint64_t draw = 0; draw < 5; ++draw) {
            cai::rng a(cai::rng::derive(seed, draw)), b(cai::rng::derive(seed, draw));
            int32_t ta, tb;
            {
                scoped_enabled on(true);
                ta = cai::sample_token(logits.data(), vocab, o, context, a);
            }
            {
                scoped_enabled off(false);
                tb = cai::sample_token(logits.data(), vocab, o, context, b);
            }
            CHECK(ta == tb);
        }
    }
}

TEST_CASE("the switch: scoped_enabled restores the previous state") {
    const bool before = cai::kernels::enabled();
    {
        scoped_enabled off(false);
        CHECK_FALSE(cai::kernels::enabled());
        {
            scoped_enabled on(true);
            CHECK(cai::kernels::enabled());
        }
        CHECK_FALSE(cai::kernels::enabled());
    }
    CHECK(cai::kernels::enabled() == before);
}

namespace {

const char* tiny_gemma2 = R"({"model_type":"gemma2","vocab_size":50,"hidden_size":32,"intermediate_size":40,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":12,"sliding_window":4,
  "attn_logit_softcapping":50.0,"final_logit_softcapping":30.0,"query_pre_attn_scalar":12,
  "hidden_activation":"gelu_pytorch_tanh"})";
const char* tiny_llama = R"({"model_type":"llama","vocab_size":50,"hidden_size":32,"intermediate_size":40,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2})";

}  // namespace

TEST_CASE("model: prefill and cached decode with the kernels match the plain path") {
    if (!have_kernels) return;
    at::NoGradGuard no_grad;
    for (const char* json : {tiny_llama, tiny_gemma2}) {
        cai::model_config c = cai::parse_model_config(json);
        auto tensors = cai::random_model_tensors(c, 7);
        for (auto type : types()) {
            auto m = cai::model::from_tensors(c, tensors, type, "tiny");
            // Two left-padded rows, then decode steps with one row finished (mask 0).
            Tensor ids = at::tensor({0, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, at::kLong).view({2, 6});
            Tensor mask = at::tensor({0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, at::kLong).view({2, 6});
            auto run = [&](bool fused) {
                scoped_enabled s(fused);
                std::vector<Tensor> outs;
                cai::kv_cache cache = m->new_cache(2, 16);
                outs.push_back(m->forward(ids, mask, &cache));
                Tensor next = at::tensor({3, 4}, at::kLong).view({2, 1});
                for (int step = 0; step < 6; ++step) {
                    Tensor step_mask = at::tensor({1, step < 3 ? 1 : 0}, at::kLong).view({2, 1});
                    outs.push_back(m->forward(next, step_mask, &cache));
                    next = (next + 7) % c.vocab_size;
                }
                outs.push_back(m->forward(ids, mask));  // no cache
                return outs;
            };
            auto fused = run(true), plain = run(false);
            for (size_t i = 0; i < fused.size(); ++i)
                check_close(fused[i], plain[i], type, std::string(c.model_type) + " step " + std::to_string(i));
        }
    }
}

TEST_CASE("model: training gradients with the kernels match the plain path") {
    if (!have_kernels) return;
    for (const char* json : {tiny_llama, tiny_gemma2}) {
        cai::model_config c = cai::parse_model_config(json);
        auto tensors = cai::random_model_tensors(c, 8);
        auto m = cai::model::from_tensors(c, tensors, at::kFloat, "tiny");
        std::vector<Tensor> params = {m->layers[0].input_norm.weight, m->layers[1].gate_proj.weight,
                                      m->layers[0].q_proj.weight, m->final_norm.weight};
        for (auto& p : params) p.requires_grad_(true);
        Tensor ids = at::tensor({1, 2, 3, 4, 5, 0, 6, 7, 8, 9}, at::kLong).view({2, 5});
        Tensor mask = at::tensor({1, 1, 1, 1, 1, 0, 1, 1, 1, 1}, at::kLong).view({2, 5});
        auto grads = [&](bool fused) {
            scoped_enabled s(fused);
            Tensor loss = m->logprobs(ids, mask).sum();
            return std::make_pair(loss, torch::autograd::grad({loss}, params));
        };
        auto [loss_f, g_f] = grads(true);
        auto [loss_p, g_p] = grads(false);
        check_close(loss_f, loss_p, at::kFloat, std::string(c.model_type) + " loss");
        for (size_t i = 0; i < params.size(); ++i)
            check_close(g_f[i], g_p[i], at::kFloat, std::string(c.model_type) + " grad " + std::to_string(i));
    }
}

// kernels/linear_logprob, train/dpo_loss_fused and the causal attention against
// the plain ATen composition of the same math (values and gradients, float32
// and bfloat16, odd shapes), and SFT / DPO runs with the kernels on and off
// giving the same adapters.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/signals.h"
#include "kernels/attention.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/linear_logprob.h"
#include "kernels/lora_linear.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "tokenizer/tokenizer.h"
#include "train/dpo.h"
#include "train/dpo_loss.h"
#include "train/dpo_loss_fused.h"
#include "train/lora.h"
#include "train/optim.h"
#include "train/sft.h"
#include "fixtures.h"
#include "test_util.h"

namespace {

using at::Tensor;
using test_util::temp_dir;

// Largest |a - b| relative to the largest |b| (or absolute below 1).
double rel_diff(const Tensor& a, const Tensor& b) {
    Tensor a64 = a.to(at::kDouble), b64 = b.to(at::kDouble);
    return (a64 - b64).abs().max().item<double>() / std::max(1.0, b64.abs().max().item<double>());
}

struct lp_case {
    int64_t n, c, v, chunk;
    double softcap;
    int padding;  // rows with target -100
};

// Runs fused and plain on the same inputs with gradients for the hidden
// states and (optionally) the weight; returns {value, d hidden, d weight} diffs.
std::vector<double> compare_linear_logprob(const lp_case& k, at::ScalarType dtype, bool weight_grad) {
    at::manual_seed(7 + k.n + k.v);
    Tensor hidden = (at::randn({k.n, k.c}) * 2).to(dtype);
    Tensor weight = (at::randn({k.v, k.c}) * 0.5).to(dtype);
    Tensor targets = at::randint(0, k.v, {k.n}, at::kLong);
    for (int i = 0; i < k.padding && i < k.n; ++i) targets[(i * 3) % k.n] = -100;
    Tensor upstream = at::randn({k.n});
    std::vector<Tensor> outs[2];
    for (int fused = 0; fused < 2; ++fused) {
        Tensor h = hidden.clone().requires_grad_(true);
        Tensor w = weight.clone().requires_grad_(weight_grad);
        Tensor lp = fused ? cai::kernels::linear_logprob(h, w, targets, k.softcap, k.chunk)
                          : cai::kernels::linear_logprob_plain(h, w, targets, k.softcap);
        REQUIRE(lp.scalar_type() == at::kFloat);
        REQUIRE(lp.sizes() == at::IntArrayRef{k.n});
        (lp * upstream).sum().backward();
        outs[fused] = {lp.detach(), h.grad(), weight_grad ? w.grad() : Tensor()};
    }
    // Ignored rows are exactly 0 and get no gradient.
    for (int64_t i = 0; i < k.n; ++i)
        if (targets[i].item<int64_t>() < 0) {
            REQUIRE(outs[1][0][i].item<float>() == 0.0f);
            REQUIRE(outs[1][1][i].abs().max().item<double>() == 0.0);
        }
    std::vector<double> d = {rel_diff(outs[1][0], outs[0][0]), rel_diff(outs[1][1], outs[0][1])};
    if (weight_grad) d.push_back(rel_diff(outs[1][2], outs[0][2]));
    return d;
}

const std::vector<lp_case> cases = {
    {1, 16, 37, 0, 0, 0},         // one row
    {13, 24, 1000, 256, 0, 3},    // V not a multiple of the chunk, padding rows
    {9, 32, 777, 100, 5.0, 2},    // softcap
    {40, 64, 3001, 512, 0, 10},   // larger
    {6, 8, 50, 7, 30.0, 0},       // tiny chunks (vector tails), softcap
};

}  // namespace

namespace {

struct attention_case {
    int64_t B, T, H, Hkv, D, window;
    double softcap;
};

// causal_attention against attention_plain with causal_mask on the same
// inputs: k and v are strided views of one (B, T, 2 Hkv, D) projection, as
// the model's fused projections give. Row 0 is whole, row 1 right-padded,
// row 2 left-padded (its first queries see no key). Returns the largest
// relative differences of {out, dq, dk, dv}.
std::vector<double> compare_attention(const attention_case& c, at::ScalarType dtype, bool grad) {
    at::manual_seed(11 + c.T + c.D);
    Tensor q0 = at::randn({c.B, c.T, c.H, c.D}).to(dtype);
    Tensor kv0 = at::randn({c.B, c.T, 2 * c.Hkv, c.D}).to(dtype);
    Tensor valid = at::ones({c.B, c.T}, at::kBool);
    if (c.B > 1 && c.T > 2) valid[1].narrow(0, c.T - 2, 2).fill_(false);
    if (c.B > 2 && c.T > 3) valid[2].narrow(0, 0, 3).fill_(false);
    Tensor positions = (valid.to(at::kLong).cumsum(1) - 1).clamp_min(0);
    Tensor upstream = at::randn({c.B, c.T, c.H * c.D}).to(dtype);
    cai::kernels::attention_options o;
    o.window = c.window;
    o.scale = 1.0 / std::sqrt((double)c.D);
    o.softcap = c.softcap;
    std::vector<Tensor> outs[2];
    for (int fused = 0; fused < 2; ++fused) {
        at::AutoGradMode mode(grad);
        Tensor q = q0.clone().requires_grad_(grad), kv = kv0.clone().requires_grad_(grad);
        Tensor k = kv.narrow(2, 0, c.Hkv), v = kv.narrow(2, c.Hkv, c.Hkv);  // (B, T, Hkv, D), strided
        Tensor out;
        if (fused) {
            REQUIRE(cai::kernels::causal_attention_applies(q, k, v));
            out = cai::kernels::causal_attention(q, k, v, valid, positions, o);
        } else {
            out = cai::kernels::attention_plain(q, k.transpose(1, 2), v.transpose(1, 2),
                                                cai::kernels::causal_mask(valid, positions, c.window), o);
        }
        REQUIRE(out.sizes() == at::IntArrayRef{c.B, c.T, c.H * c.D});
        REQUIRE(out.scalar_type() == dtype);
        outs[fused] = {out.detach()};
        if (grad) {
            (out.to(at::kFloat) * upstream.to(at::kFloat)).sum().backward();
            outs[fused].push_back(q.grad());
            outs[fused].push_back(kv.grad().narrow(2, 0, c.Hkv));
            outs[fused].push_back(kv.grad().narrow(2, c.Hkv, c.Hkv));
        }
    }
    std::vector<double> d;
    for (size_t i = 0; i < outs[0].size(); ++i) d.push_back(rel_diff(outs[1][i], outs[0][i]));
    return d;
}

const std::vector<attention_case> attention_cases = {
    {1, 1, 1, 1, 8, 0, 0},      // one query, one key
    {3, 5, 6, 2, 20, 0, 0},     // GQA, D not a multiple of the vector, padded rows
    {3, 30, 4, 4, 64, 0, 0},    // more than one query block
    {3, 53, 6, 3, 16, 7, 0},    // sliding window, odd T
    {3, 29, 4, 2, 12, 0, 5.0},  // soft-capped scores
    {2, 70, 2, 1, 64, 16, 50},  // window and cap, multi-query
};

}  // namespace

TEST_CASE("causal_attention: values and gradients equal the plain masked softmax (GQA, padding, window, cap)",
          "[kernels]") {
    if (cai::kernels::cpu_isa() == cai::kernels::isa::generic) return;
    for (const auto& c : attention_cases) {
        for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
            INFO("B " << c.B << " T " << c.T << " H " << c.H << "/" << c.Hkv << " D " << c.D << " window " << c.window
                      << " cap " << c.softcap << " " << dtype);
            const double tol = dtype == at::kFloat ? 1e-5 : 3e-2;
            for (double d : compare_attention(c, dtype, true)) CHECK(d < tol);
            for (double d : compare_attention(c, dtype, false)) CHECK(d < tol);
        }
    }
}

TEST_CASE("causal_attention: what it takes, and clear errors otherwise", "[kernels]") {
    if (cai::kernels::cpu_isa() == cai::kernels::isa::generic) return;
    Tensor q = at::randn({2, 4, 4, 8}), k = at::randn({2, 4, 2, 8});
    Tensor valid = at::ones({2, 4}, at::kBool), positions = at::arange(4, at::kLong).repeat({2, 1});
    CHECK(cai::kernels::causal_attention_applies(q, k, k));
    CHECK_FALSE(cai::kernels::causal_attention_applies(q, k.to(at::kBFloat16), k));     // mixed dtypes
    CHECK_FALSE(cai::kernels::causal_attention_applies(q, at::randn({2, 4, 3, 8}), at::randn({2, 4, 3, 8})));  // 4 % 3
    CHECK_FALSE(cai::kernels::causal_attention_applies(q, k.transpose(2, 3), k.transpose(2, 3)));  // D strided
    CHECK_FALSE(cai::kernels::causal_attention_applies(q, at::randn({2, 5, 2, 8}), at::randn({2, 5, 2, 8})));
    cai::kernels::attention_options o;
    CHECK(test_util::error_of([&] { cai::kernels::causal_attention(q, k, k, at::ones({2, 3}, at::kBool), positions, o); })
              .find("key_valid must be (2, 4)") != std::string::npos);
    o.window = 2;
    CHECK(test_util::error_of([&] { cai::kernels::causal_attention(q, k, k, valid, Tensor(), o); })
              .find("sliding window needs positions") != std::string::npos);
    {
        cai::kernels::scoped_enabled off(false);
        CHECK_FALSE(cai::kernels::causal_attention_applies(q, k, k));
    }
}

TEST_CASE("suffix_attention: a chunk over cached keys equals the plain masked softmax (right-aligned rows)",
          "[kernels]") {
    if (cai::kernels::cpu_isa() == cai::kernels::isa::generic) return;
    at::NoGradGuard no_grad;
    struct suffix_case {
        int64_t T, S, H, Hkv, D, window;
        double softcap;
    };
    const std::vector<suffix_case> cases = {
        {9, 9, 4, 2, 8, 0, 0},       // as many keys as queries
        {12, 40, 6, 2, 20, 0, 0},    // GQA, D not a multiple of the vector
        {30, 77, 4, 4, 64, 0, 0},    // more than one query block
        {25, 60, 6, 3, 16, 7, 0},    // sliding window
        {10, 33, 4, 2, 12, 0, 5.0},  // soft-capped scores
    };
    for (const auto& c : cases) {
        for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
            INFO("T " << c.T << " S " << c.S << " H " << c.H << "/" << c.Hkv << " D " << c.D << " window " << c.window
                      << " cap " << c.softcap << " " << dtype);
            at::manual_seed(5 + c.T + c.S);
            const int64_t B = 3, off = c.S - c.T;
            Tensor q = at::randn({B, c.T, c.H, c.D}).to(dtype);
            Tensor kv = at::randn({B, c.S, 2 * c.Hkv, c.D}).to(dtype);
            Tensor k = kv.narrow(2, 0, c.Hkv), v = kv.narrow(2, c.Hkv, c.Hkv);  // (B, S, Hkv, D), strided
            // Row 0 fills all S keys; row 1 five fewer; row 2 fewer than T (its first queries see no key).
            const std::vector<int64_t> filled = {c.S, c.S - 5, std::max<int64_t>(c.T - 3, 1)};
            Tensor valid = at::zeros({B, c.S}, at::kBool), positions = at::zeros({B, c.S}, at::kLong);
            for (int64_t b = 0; b < B; ++b) {
                const int64_t first = c.S - filled[(size_t)b];
                valid[b].narrow(0, first, filled[(size_t)b]).fill_(true);
                positions[b].narrow(0, first, filled[(size_t)b]).copy_(at::arange(filled[(size_t)b], at::kLong));
            }
            // Query t is key off + t: it sees valid keys j <= off + t (within the window).
            Tensor j = at::arange(c.S, at::kLong).view({1, 1, 1, c.S});
            Tensor t = (off + at::arange(c.T, at::kLong)).view({1, 1, c.T, 1});
            Tensor allowed = valid.view({B, 1, 1, c.S}) & (j <= t);
            if (c.window > 0) {
                Tensor query_pos = positions.narrow(1, off, c.T).view({B, 1, c.T, 1});
                allowed = allowed & ((query_pos - positions.view({B, 1, 1, c.S})) < c.window);
            }
            cai::kernels::attention_options o;
            o.window = c.window;
            o.scale = 1.0 / std::sqrt((double)c.D);
            o.softcap = c.softcap;
            REQUIRE(cai::kernels::suffix_attention_applies(q, k, v));
            Tensor got = cai::kernels::suffix_attention(q, k, v, valid, positions, o);
            Tensor want = cai::kernels::attention_plain(q, k.transpose(1, 2), v.transpose(1, 2), allowed, o);
            REQUIRE(got.sizes() == want.sizes());
            CHECK(rel_diff(got, want) < (dtype == at::kFloat ? 1e-5 : 3e-2));
        }
    }
    // What it takes: more keys than queries but not fewer; no gradient.
    Tensor q = at::randn({2, 4, 4, 8}), k = at::randn({2, 6, 2, 8});
    CHECK(cai::kernels::suffix_attention_applies(q, k, k));
    CHECK_FALSE(cai::kernels::causal_attention_applies(q, k, k));
    CHECK_FALSE(cai::kernels::suffix_attention_applies(q, k.narrow(1, 0, 3), k.narrow(1, 0, 3)));
    cai::kernels::attention_options o;
    CHECK(test_util::error_of([&] {
              cai::kernels::suffix_attention(q, k, k, at::ones({2, 4}, at::kBool), Tensor(), o);
          }).find("key_valid must be (2, 6)") != std::string::npos);
    {
        at::AutoGradMode grad(true);
        Tensor qg = q.clone().requires_grad_(true);
        CHECK_FALSE(cai::kernels::suffix_attention_applies(qg, k, k));
        CHECK(test_util::error_of([&] {
                  cai::kernels::suffix_attention(qg, k, k, at::ones({2, 6}, at::kBool), Tensor(), o);
              }).find("no backward pass") != std::string::npos);
    }
}

TEST_CASE("gemm: oneDNN products equal at::mm for every operand layout; gemm_linear values and gradients",
          "[kernels]") {
    at::manual_seed(21);
    for (int64_t M : {1, 7, 64})
        for (int64_t K : {1, 16, 37})
            for (int64_t N : {1, 5, 40}) {
                Tensor a = at::randn({M, K}), b = at::randn({K, N});
                Tensor at_ = a.t().contiguous().t(), bt = b.t().contiguous().t();  // transposed storage
                for (const Tensor& x : {a, at_})
                    for (const Tensor& y : {b, bt}) {
                        INFO("M " << M << " K " << K << " N " << N);
                        REQUIRE(cai::kernels::gemm_applies(x, y));
                        CHECK(rel_diff(cai::kernels::gemm(x, y), at::mm(a, b)) < 1e-5);
                        Tensor c = at::randn({M, N}), want = c.addmm(a, b, 0.5, 2.0);
                        cai::kernels::gemm_add_(c, x, y, 0.5, 2.0);
                        CHECK(rel_diff(c, want) < 1e-5);
                    }
            }
    // Not taken: bf16, a column slice with strides in both dimensions, kernels off; the results still agree.
    Tensor a = at::randn({6, 8}), b = at::randn({8, 4});
    CHECK_FALSE(cai::kernels::gemm_applies(a.to(at::kBFloat16), b.to(at::kBFloat16)));
    CHECK_FALSE(cai::kernels::gemm_applies(at::randn({6, 16}).slice(1, 0, 16, 2), b));
    {
        cai::kernels::scoped_enabled off(false);
        CHECK_FALSE(cai::kernels::gemm_applies(a, b));
        CHECK(rel_diff(cai::kernels::gemm(a, b), at::mm(a, b)) < 1e-6);
    }
    // gemm_linear: 3-D input, with and without bias, gradients of x, w and bias.
    for (bool with_bias : {false, true}) {
        Tensor x0 = at::randn({2, 5, 12}), w0 = at::randn({7, 12}), b0 = at::randn({7}), up = at::randn({2, 5, 7});
        std::vector<Tensor> got, want;
        for (int fused = 0; fused < 2; ++fused) {
            Tensor x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
            Tensor bias = with_bias ? b0.clone().requires_grad_(true) : Tensor();
            REQUIRE(cai::kernels::gemm_linear_applies(x, w, bias));
            Tensor y = fused ? cai::kernels::gemm_linear(x, w, bias) : at::linear(x, w, bias);
            REQUIRE(y.sizes() == at::IntArrayRef{2, 5, 7});
            (y * up).sum().backward();
            auto& out = fused ? got : want;
            out = {y.detach(), x.grad(), w.grad()};
            if (with_bias) out.push_back(bias.grad());
        }
        for (size_t i = 0; i < got.size(); ++i) CHECK(rel_diff(got[i], want[i]) < 1e-5);
    }
    CHECK_FALSE(cai::kernels::gemm_linear_applies(at::randn({3, 4}), at::randn({5, 6}), Tensor()));
    CHECK(test_util::error_of([] { cai::kernels::gemm_linear(at::randn({3, 4}).to(at::kBFloat16), at::randn({5, 4}), Tensor()); })
              .find("gemm_linear") != std::string::npos);
}

namespace {
volatile sig_atomic_t signals_handled = 0;
extern "C" void count_signal(int) { signals_handled = signals_handled + 1; }
}  // namespace

// Ctrl-C sets a flag and returns into whatever kernel ran. oneDNN's sgemm keeps
// data below the stack pointer: a handler frame written on the thread's own
// stack corrupted the heap on every run of this loop (glibc aborted with
// "corrupted size vs. prev_size"). Handlers run on an alternate stack.
TEST_CASE("gemm: signals handled during oneDNN products leave the heap and the results intact", "[kernels]") {
    struct sigaction previous {};
    cai::install_signal_handler(SIGUSR1, count_signal, &previous);
    const pthread_t target = pthread_self();
    std::atomic<bool> done{false};
    std::thread sender([&] {
        while (!done.load()) {
            pthread_kill(target, SIGUSR1);
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    });
    at::manual_seed(5);
    const int64_t shapes[][3] = {{384, 64, 64}, {64, 384, 64}, {64, 64, 384}, {384, 256, 8},
                                 {8, 384, 256}, {256, 8, 384}, {384, 688, 256}};
    double worst = 0;
    for (int round = 0; round < 40; ++round)
        for (const auto& s : shapes) {
            Tensor a = at::randn({s[0], s[2]}), b = at::randn({s[2], s[1]});
            if (round % 3 == 0) a = a.t().contiguous().t();
            worst = std::max(worst, rel_diff(cai::kernels::gemm(a, b), at::mm(a, b)));
            std::vector<char> churn(1000 + 37 * round);  // the allocator walks its chunks
        }
    done = true;
    sender.join();
    sigaction(SIGUSR1, &previous, nullptr);
    CHECK(signals_handled > 0);
    CHECK(worst < 1e-5);
}

TEST_CASE("linear_logprob: float32 values and gradients equal log_softmax(linear) gathered", "[kernels]") {
    for (const auto& k : cases)
        for (bool weight_grad : {false, true}) {
            INFO("n " << k.n << " c " << k.c << " v " << k.v << " chunk " << k.chunk << " softcap " << k.softcap
                      << " weight_grad " << weight_grad);
            auto d = compare_linear_logprob(k, at::kFloat, weight_grad);
            REQUIRE(d[0] < 1e-5);
            REQUIRE(d[1] < 1e-5);
            if (weight_grad) REQUIRE(d[2] < 1e-5);
        }
}

TEST_CASE("linear_logprob: bfloat16 within bfloat16 tolerance of the plain path", "[kernels]") {
    for (const auto& k : cases)
        for (bool weight_grad : {false, true}) {
            INFO("n " << k.n << " v " << k.v << " softcap " << k.softcap << " weight_grad " << weight_grad);
            auto d = compare_linear_logprob(k, at::kBFloat16, weight_grad);
            REQUIRE(d[0] < 3e-2);
            REQUIRE(d[1] < 3e-2);
            if (weight_grad) REQUIRE(d[2] < 3e-2);
        }
}

TEST_CASE("linear_logprob: no gradient mode, all rows ignored, bad targets", "[kernels]") {
    at::manual_seed(1);
    Tensor h = at::randn({5, 8}).requires_grad_(true), w = at::randn({20, 8});
    Tensor t = at::tensor(std::vector<int64_t>{1, 2, 3, 4, 19}, at::kLong);
    {
        at::NoGradGuard no_grad;
        Tensor lp = cai::kernels::linear_logprob(h, w, t);
        REQUIRE_FALSE(lp.requires_grad());
        REQUIRE(rel_diff(lp, cai::kernels::linear_logprob_plain(h, w, t)) < 1e-5);
    }
    Tensor none = at::full({5}, -100, at::kLong);
    Tensor z = cai::kernels::linear_logprob(h, w, none);
    REQUIRE(z.abs().max().item<double>() == 0.0);
    z.sum().backward();
    REQUIRE(h.grad().abs().max().item<double>() == 0.0);
    std::string e = test_util::error_of([&] { cai::kernels::linear_logprob(h, w, t + 1); });
    REQUIRE(e.find("outside the vocabulary") != std::string::npos);
}

TEST_CASE("lora_linear: values and gradients equal the plain composition (dropout, bias, odd shapes; fp32, bf16)",
          "[kernels]") {
    if (cai::kernels::cpu_isa() == cai::kernels::isa::generic) return;  // the kernel needs AVX2
    struct shape {
        std::vector<int64_t> x;
        int64_t out, r;
    };
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16})
    for (const shape& sh : {shape{{1, 5}, 3, 1}, shape{{2, 7, 13}, 9, 4}, shape{{33, 16}, 17, 8}})
    for (bool dropout : {false, true})
    for (bool bias : {false, true})
    for (bool train_w : {false, true}) {
        INFO(dtype << " x " << at::IntArrayRef(sh.x) << " out " << sh.out << " r " << sh.r << " dropout " << dropout
                   << " bias " << bias << " train_w " << train_w);
        at::manual_seed(5);
        const int64_t in = sh.x.back();
        auto opts = at::TensorOptions().dtype(dtype);
        Tensor x0 = at::randn(sh.x, opts), w0 = at::randn({sh.out, in}, opts) * 0.3;
        Tensor a0 = at::randn({sh.r, in}, opts) * 0.3, b0 = at::randn({sh.out, sh.r}, opts) * 0.3;
        Tensor bias0 = bias ? at::randn({sh.out}, opts) : Tensor();
        Tensor mask = dropout ? (at::rand(sh.x) > 0.3).to(dtype) * 2 : Tensor();
        std::vector<Tensor> grads[2], values;
        for (int fused = 0; fused < 2; ++fused) {
            Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(train_w);
            Tensor a = a0.clone().requires_grad_(), b = b0.clone().requires_grad_();
            Tensor bi = bias ? bias0.clone().requires_grad_() : Tensor();
            Tensor xd = dropout ? x * mask : Tensor();
            Tensor y;
            if (fused) {
                REQUIRE(cai::kernels::lora_linear_applies(x, w, bi, a, b, xd));
                y = cai::kernels::lora_linear(x, w, bi, a, b, 0.75, xd);
            } else {
                cai::kernels::scoped_enabled off(false);
                REQUIRE_FALSE(cai::kernels::lora_linear_applies(x, w, bi, a, b, xd));
                y = at::linear(x, w, bi) + at::linear(at::linear(dropout ? xd : x, a), b) * 0.75;
            }
            values.push_back(y.detach());
            Tensor upstream = at::linspace(-1, 1, y.numel(), at::kFloat).view(y.sizes()).to(dtype);
            std::vector<Tensor> wrt = {x, a, b};
            if (train_w) wrt.push_back(w);
            if (bias) wrt.push_back(bi);
            grads[fused] = torch::autograd::grad({y}, wrt, {upstream});
        }
        const double tol = dtype == at::kFloat ? 1e-5 : 3e-2;
        REQUIRE(values[1].sizes() == values[0].sizes());
        REQUIRE(rel_diff(values[1], values[0]) < tol);
        for (size_t i = 0; i < grads[0].size(); ++i) {
            INFO("gradient " << i);
            REQUIRE(rel_diff(grads[1][i], grads[0][i]) < tol);
        }
    }
}

TEST_CASE("lora_linear: no gradient mode; mismatched inputs do not apply and are errors", "[kernels]") {
    if (cai::kernels::cpu_isa() == cai::kernels::isa::generic) return;
    Tensor x = at::randn({4, 6}), w = at::randn({5, 6}), a = at::randn({2, 6}), b = at::randn({5, 2});
    {
        at::NoGradGuard g;
        Tensor y = cai::kernels::lora_linear(x, w, Tensor(), a, b, 2.0);
        REQUIRE(rel_diff(y, at::linear(x, w) + at::linear(at::linear(x, a), b) * 2.0) < 1e-5);
    }
    REQUIRE_FALSE(cai::kernels::lora_linear_applies(x, w, Tensor(), a.to(at::kBFloat16), b));
    REQUIRE_FALSE(cai::kernels::lora_linear_applies(x, w, Tensor(), at::randn({2, 7}), b));
    REQUIRE_FALSE(cai::kernels::lora_linear_applies(x, w, Tensor(), a, at::randn({4, 2})));
    REQUIRE_FALSE(cai::kernels::lora_linear_applies(x, w, at::randn({4}), a, b));
    REQUIRE_FALSE(cai::kernels::lora_linear_applies(x, w, Tensor(), a, b, at::randn({3, 6})));
    REQUIRE_THROWS_WITH(cai::kernels::lora_linear(x, w, Tensor(), at::randn({2, 7}), b, 1.0),
                        Catch::Contains("lora_linear") && Catch::Contains("do not fit"));
}

TEST_CASE("dpo_loss_fused: every loss type equals dpo_loss_forward, values, rewards, metrics and gradients",
          "[kernels]") {
    at::manual_seed(5);
    const int64_t n = 7;
    Tensor pc0 = at::randn({n}, at::kDouble) * 3 - 20, pr0 = at::randn({n}, at::kDouble) * 3 - 21;
    Tensor rc0 = at::randn({n}, at::kDouble) * 3 - 20, rr0 = at::randn({n}, at::kDouble) * 3 - 20;
    Tensor upstream = at::rand({n}, at::kDouble);
    for (const auto& type : cai::dpo_loss_types())
        for (double ls : {0.0, 0.1, 0.3})
            for (bool reference_free : {false, true})
                for (double beta : {0.1, 0.5}) {
                    INFO(type << " ls " << ls << " reference_free " << reference_free << " beta " << beta);
                    std::vector<Tensor> grads[2];
                    cai::dpo_loss_result results[2];
                    std::map<std::string, double> metrics[2];
                    for (int fused = 0; fused < 2; ++fused) {
                        std::vector<Tensor> in = {pc0.clone().requires_grad_(true), pr0.clone().requires_grad_(true),
                                                  rc0.clone().requires_grad_(true), rr0.clone().requires_grad_(true)};
                        cai::dpo_loss_result r =
                            fused ? cai::dpo_loss_fused(in[0], in[1], in[2], in[3], beta, type, ls,
                                                                 reference_free, 0.05, &metrics[1])
                                  : cai::dpo_loss_forward(in[0], in[1], in[2], in[3], beta, type, ls, reference_free,
                                                          0.05);
                        if (!fused) metrics[0] = cai::dpo_metrics(r, in[0], in[1]);
                        (r.losses * upstream).sum().backward();
                        for (auto& t : in) grads[fused].push_back(t.grad().defined() ? t.grad() : at::zeros({n}, at::kDouble));
                        results[fused] = r;
                    }
                    REQUIRE(results[1].losses.scalar_type() == at::kDouble);
                    REQUIRE(rel_diff(results[1].losses, results[0].losses) < 1e-10);
                    REQUIRE(rel_diff(results[1].chosen_rewards, results[0].chosen_rewards) < 1e-12);
                    REQUIRE(rel_diff(results[1].rejected_rewards, results[0].rejected_rewards) < 1e-12);
                    REQUIRE_FALSE(results[1].chosen_rewards.requires_grad());
                    for (int j = 0; j < 4; ++j) {
                        INFO("input " << j);
                        REQUIRE(rel_diff(grads[1][j], grads[0][j]) < 1e-9);
                    }
                    REQUIRE(metrics[1].size() == metrics[0].size());
                    for (const auto& kv : metrics[0]) {
                        INFO(kv.first);
                        REQUIRE(metrics[1].at(kv.first) == Approx(kv.second).margin(1e-12));
                    }
                }
}

TEST_CASE("dpo_loss_fused: float32 inputs, float32 losses; errors as dpo_loss_forward", "[kernels]") {
    Tensor a = at::tensor(std::vector<float>{-1, -2}), b = at::tensor(std::vector<float>{-2, -1});
    auto r = cai::dpo_loss_fused(a, b, b, a, 0.5, "sigmoid");
    REQUIRE(r.losses.scalar_type() == at::kFloat);
    REQUIRE(rel_diff(r.losses, cai::dpo_loss_forward(a, b, b, a, 0.5, "sigmoid").losses) < 1e-6);
    std::string e = test_util::error_of([&] { cai::dpo_loss_fused(a, b, b, a, 0.5, "kto"); });
    REQUIRE(e.find("unknown loss \"kto\"") != std::string::npos);
}

namespace {

std::shared_ptr<cai::model> make_model(const char* json, at::ScalarType dtype = at::kFloat) {
    return fixtures::char_model(json, 5, 0.3, dtype);
}

const char* llama_json = fixtures::tiny_llama_json(32);
const char* gemma2_json = R"({"model_type":"gemma2","vocab_size":32,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":4,
  "final_logit_softcapping":3.0,"sliding_window":4})";

void add_lora(cai::model& m) {
    cai::lora_options lo;
    lo.r = 4;
    lo.alpha = 8;
    lo.targets = {"all-linear"};
    lo.seed = 3;
    cai::lora_add(m, lo);
}

std::map<std::string, Tensor> adapter_of(const cai::model& m) {
    std::map<std::string, Tensor> out;
    for (const auto& [name, t] : cai::lora_named_tensors(m)) out[name] = t.detach().clone();
    return out;
}

}  // namespace

TEST_CASE("model logprobs: kernels on equal kernels off (llama, gemma2 soft-capped, left padding; fp32, bf16)",
          "[kernels]") {
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16})
    for (const char* json : {llama_json, gemma2_json}) {
        INFO(json << " " << dtype);
        auto m = make_model(json, dtype);
        Tensor ids = at::randint(3, 31, {3, 9}, at::kLong);
        Tensor mask = at::ones({3, 9}, at::kLong);
        mask.narrow(1, 0, 3).select(0, 1).fill_(0);  // row 1 left-padded by 3
        at::NoGradGuard no_grad;
        Tensor on, off;
        {
            cai::kernels::scoped_enabled k(true);
            on = m->logprobs(ids, mask);
        }
        {
            cai::kernels::scoped_enabled k(false);
            off = m->logprobs(ids, mask);
        }
        REQUIRE(on.sizes() == off.sizes());
        REQUIRE(on.scalar_type() == at::kFloat);
        REQUIRE(rel_diff(on, off) < (dtype == at::kFloat ? 1e-5 : 3e-2));
    }
}

TEST_CASE("model target_logprobs: the scored positions only, kernels on and off, values and gradients",
          "[kernels]") {
    for (const char* json : {llama_json, gemma2_json}) {
        INFO(json);
        auto m = make_model(json, at::kFloat);
        add_lora(*m);  // adapters on the layers only: the head stays fusable
        Tensor ids = at::randint(3, 31, {2, 7}, at::kLong);
        Tensor mask = at::ones({2, 7}, at::kLong);
        mask.narrow(1, 5, 2).select(0, 1).fill_(0);  // row 1 right-padded by 2
        Tensor targets = at::full({2, 7}, -100, at::kLong);
        targets[0].narrow(0, 2, 4).copy_(ids[0].narrow(0, 3, 4));  // row 0 scores tokens 3..6
        targets[1].narrow(0, 1, 3).copy_(ids[1].narrow(0, 2, 3));  // row 1 scores tokens 2..4
        Tensor expect;
        {
            at::NoGradGuard no_grad;
            Tensor logp = at::log_softmax(m->forward(ids, mask).to(at::kFloat), -1);  // (B, T, V)
            expect = at::zeros({2, 7}, at::kFloat);
            for (int64_t b = 0; b < 2; ++b)
                for (int64_t t = 0; t < 7; ++t) {
                    const int64_t target = targets[b][t].item<int64_t>();
                    if (target >= 0) expect[b][t] = logp[b][t][target];
                }
        }
        std::map<std::string, Tensor> grads[2];
        for (bool on : {true, false}) {
            cai::kernels::scoped_enabled k(on);
            Tensor got = m->target_logprobs(ids, mask, targets);
            INFO("kernels " << on);
            REQUIRE(got.sizes() == ids.sizes());
            REQUIRE(rel_diff(got.detach(), expect) < 1e-5);
            REQUIRE(got.masked_select(targets.lt(0)).abs().max().item<float>() == 0.0f);
            got.sum().backward();
            for (const auto& [name, t] : cai::lora_named_tensors(*m)) {
                grads[on][name] = t.grad().clone();
                t.mutable_grad().zero_();
            }
        }
        for (const auto& [name, g] : grads[1]) {
            INFO(name);
            REQUIRE(rel_diff(g, grads[0][name]) < 1e-4);
        }
    }
    auto m = make_model(llama_json, at::kFloat);
    Tensor ids = at::randint(3, 31, {1, 4}, at::kLong);
    REQUIRE_THAT(test_util::error_of([&] { m->target_logprobs(ids, {}, at::full({1, 4}, 40, at::kLong)); }),
                 Catch::Matchers::Contains("target id 40 is outside the vocabulary"));
    REQUIRE_THAT(test_util::error_of([&] { m->target_logprobs(ids, {}, at::full({1, 3}, 4, at::kLong)); }),
                 Catch::Matchers::Contains("targets shape"));
}

TEST_CASE("sft and dpo: kernels on and off train the same adapter", "[kernels]") {
    const std::vector<cai::sft_example> data = {
        {"the cat", " sat."}, {"a dog", " ran far."}, {"bird", " flew."}, {"fish", " swam."}, {"an ant", " dug."}};
    const std::vector<cai::dpo_pair> pairs = {{"the cat", " sat.", " ran."},
                                              {"a dog", " ran far.", " flew"},
                                              {"bird", " flew.", " swam far."},
                                              {"fish", " swam.", " sat."}};
    for (const char* json : {llama_json, gemma2_json}) {
        std::map<std::string, Tensor> sft_adapter[2], dpo_adapter[2];
        for (int on = 0; on < 2; ++on) {
            cai::kernels::scoped_enabled k(on == 1);
            auto m = make_model(json);
            add_lora(*m);
            cai::sft_options o;
            o.trainer.out_dir = temp_dir();
            o.trainer.seed = 11;
            o.trainer.epochs = 2;
            o.trainer.learning_rate = 3e-2;
            o.trainer.batches.batch_size = 2;
            o.trainer.logging_steps = 1;
            o.trainer.show_progress = false;
            cai::sft_train(*m, data, o);
            sft_adapter[on] = adapter_of(*m);

            cai::dpo_options d;
            d.trainer = o.trainer;
            d.trainer.out_dir = temp_dir();
            d.loss = "sigmoid";
            d.beta = 0.5;
            d.rpo_alpha = 0.5;
            d.trainer.show_progress = false;
            cai::dpo_train(*m, pairs, d);
            dpo_adapter[on] = adapter_of(*m);
        }
        for (auto* adapters : {sft_adapter, dpo_adapter}) {
            REQUIRE(adapters[0].size() == adapters[1].size());
            REQUIRE_FALSE(adapters[0].empty());
            for (const auto& [name, t] : adapters[0]) {
                INFO(json << " " << name);
                REQUIRE(rel_diff(adapters[1].at(name), t) < 1e-4);
            }
        }
    }
}

TEST_CASE("sft full fine-tuning with tied embeddings: kernels on and off give the same gradients", "[kernels]") {
    auto m = make_model(gemma2_json);  // tie_word_embeddings: the head is embed_tokens
    REQUIRE(m->config.tie_word_embeddings);
    std::vector<cai::named_parameter> params = cai::trainable_parameters(*m, true);
    std::vector<cai::sft_example> data = {{"the cat", " sat."}, {"a dog", " ran far."}};
    auto tokens = cai::sft_tokenize(*m, data, true);
    std::vector<const cai::sft_tokens*> rows = {&tokens[0], &tokens[1]};
    std::vector<Tensor> grads[2];
    for (int on = 0; on < 2; ++on) {
        cai::kernels::scoped_enabled k(on == 1);
        for (auto& p : params)
            if (p.value.grad().defined()) p.value.mutable_grad().zero_();
        cai::sft_loss(*m, rows).backward();
        for (auto& p : params) grads[on].push_back(p.value.grad().defined() ? p.value.grad().clone() : at::zeros_like(p.value));
    }
    REQUIRE(grads[0].size() == grads[1].size());
    for (size_t i = 0; i < grads[0].size(); ++i) {
        INFO("parameter " << i);
        REQUIRE(rel_diff(grads[1][i], grads[0][i]) < 1e-5);
    }
}

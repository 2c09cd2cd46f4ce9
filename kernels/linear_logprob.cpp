// Fused linear + log-softmax + gather (see linear_logprob.h). Shapes: N rows,
// C hidden, V vocabulary, Vc columns of one vocabulary chunk.
#include "kernels/linear_logprob.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "kernels/cpu.h"

namespace cai::kernels {

// The per-ISA inner loops (linear_logprob_isa.h).
#define CAI_LINEAR_LOGPROB_DECLARE                                                                              \
    void linear_logprob_chunk_forward(float* logits, int64_t rows, int64_t cols, int64_t v0, float cap,        \
                                      const int64_t* targets, float* row_max, float* row_sum, float* rescale,  \
                                      float* target_logit, bool probs);                                        \
    void linear_logprob_chunk_backward(float* logits, int64_t rows, int64_t cols, int64_t v0, float cap,       \
                                       const int64_t* targets, const float* lse, const float* grad);
namespace AVX512 {
CAI_LINEAR_LOGPROB_DECLARE
}
namespace AVX2 {
CAI_LINEAR_LOGPROB_DECLARE
}
#undef CAI_LINEAR_LOGPROB_DECLARE

namespace {

// Plain C++ versions of the inner loops, for CPUs without AVX2.
namespace generic {

float capped_derivative(float l, float cap) { return cap > 0 ? 1.0f - (l / cap) * (l / cap) : 1.0f; }

void chunk_forward(float* logits, int64_t rows, int64_t cols, int64_t v0, float cap, const int64_t* targets,
                   float* row_max, float* row_sum, float* rescale, float* target_logit, bool probs) {
    for (int64_t r = 0; r < rows; ++r) {
        float* x = logits + r * cols;
        if (cap > 0)
            for (int64_t i = 0; i < cols; ++i) x[i] = std::tanh(x[i] / cap) * cap;
        const int64_t t = targets[r] - v0;
        if (t >= 0 && t < cols) target_logit[r] = x[t];
        const float old = row_max[r];
        float m = old;
        for (int64_t i = 0; i < cols; ++i) m = std::max(m, x[i]);
        const float scale = old == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(old - m);
        float sum = 0;
        for (int64_t i = 0; i < cols; ++i) {
            const float e = std::exp(x[i] - m);
            sum += e;
            if (probs) x[i] = e * capped_derivative(x[i], cap);
        }
        row_sum[r] = row_sum[r] * scale + sum;
        row_max[r] = m;
        rescale[r] = scale;
    }
}

void chunk_backward(float* logits, int64_t rows, int64_t cols, int64_t v0, float cap, const int64_t* targets,
                    const float* lse, const float* grad) {
    for (int64_t r = 0; r < rows; ++r) {
        float* x = logits + r * cols;
        if (cap > 0)
            for (int64_t i = 0; i < cols; ++i) x[i] = std::tanh(x[i] / cap) * cap;
        const int64_t t = targets[r] - v0;
        const bool here = t >= 0 && t < cols;
        const float lt = here ? x[t] : 0.0f;
        for (int64_t i = 0; i < cols; ++i) x[i] = -grad[r] * std::exp(x[i] - lse[r]) * capped_derivative(x[i], cap);
        if (here) x[t] += grad[r] * capped_derivative(lt, cap);
    }
}

}  // namespace generic

void chunk_forward(float* logits, int64_t rows, int64_t cols, int64_t v0, float cap, const int64_t* targets,
                   float* row_max, float* row_sum, float* rescale, float* target_logit, bool probs) {
    switch (cpu_isa()) {
        case isa::avx512:
            return AVX512::linear_logprob_chunk_forward(logits, rows, cols, v0, cap, targets, row_max, row_sum,
                                                        rescale, target_logit, probs);
        case isa::avx2:
            return AVX2::linear_logprob_chunk_forward(logits, rows, cols, v0, cap, targets, row_max, row_sum,
                                                      rescale, target_logit, probs);
        default:
            return generic::chunk_forward(logits, rows, cols, v0, cap, targets, row_max, row_sum, rescale,
                                          target_logit, probs);
    }
}

void chunk_backward(float* logits, int64_t rows, int64_t cols, int64_t v0, float cap, const int64_t* targets,
                    const float* lse, const float* grad) {
    switch (cpu_isa()) {
        case isa::avx512: return AVX512::linear_logprob_chunk_backward(logits, rows, cols, v0, cap, targets, lse, grad);
        case isa::avx2: return AVX2::linear_logprob_chunk_backward(logits, rows, cols, v0, cap, targets, lse, grad);
        default: return generic::chunk_backward(logits, rows, cols, v0, cap, targets, lse, grad);
    }
}

// Columns per chunk: about 8 MB of float32 logits, at least 512, at most 16384.
int64_t chunk_columns(int64_t rows, int64_t vocab, int64_t chunk) {
    if (chunk > 0) return std::min(chunk, vocab);
    int64_t c = (int64_t(8) << 20) / (4 * std::max<int64_t>(rows, 1));
    c = std::max<int64_t>(512, std::min<int64_t>(16384, c / 256 * 256));
    return std::min(c, vocab);
}

void check_inputs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets) {
    if (!hidden.defined() || hidden.dim() != 2) fail("linear_logprob: hidden must be (N, C)");
    if (!weight.defined() || weight.dim() != 2) fail("linear_logprob: weight must be (V, C)");
    if (hidden.size(1) != weight.size(1))
        fail("linear_logprob: hidden has ", hidden.size(1), " columns but weight has ", weight.size(1));
    if (hidden.scalar_type() != weight.scalar_type())
        fail("linear_logprob: hidden is ", hidden.scalar_type(), " but weight is ", weight.scalar_type());
    if (hidden.scalar_type() != at::kFloat && hidden.scalar_type() != at::kBFloat16)
        fail("linear_logprob: hidden must be float32 or bfloat16, got ", hidden.scalar_type());
    if (!targets.defined() || targets.dim() != 1 || targets.size(0) != hidden.size(0))
        fail("linear_logprob: targets must be (N) with N = ", hidden.size(0), " rows of hidden");
    if (targets.scalar_type() != at::kLong) fail("linear_logprob: targets must be int64");
    if (!hidden.device().is_cpu() || !weight.device().is_cpu()) fail("linear_logprob: CPU tensors only");
}

}  // namespace

linear_logprob_saved linear_logprob_forward(const at::Tensor& hidden_in, const at::Tensor& weight_in,
                                            const at::Tensor& targets_in, double softcap, int64_t chunk,
                                            bool with_d_hidden) {
    // hidden: (N, C); weight: (V, C); targets: (N)
    at::NoGradGuard no_grad;
    const at::Tensor hidden = hidden_in.contiguous(), weight = weight_in.contiguous();
    const at::Tensor targets = targets_in.contiguous();
    const int64_t N = hidden.size(0), C = hidden.size(1), V = weight.size(0);
    const int64_t Vc = chunk_columns(N, V, chunk);
    const float cap = (float)softcap;
    at::Tensor row_max = at::full({N}, -std::numeric_limits<float>::infinity(), at::kFloat);  // (N)
    at::Tensor row_sum = at::zeros({N}, at::kFloat);                                          // (N)
    at::Tensor rescale = at::empty({N}, at::kFloat);                                          // (N)
    at::Tensor target_logit = at::zeros({N}, at::kFloat);                                     // (N)
    at::Tensor acc = with_d_hidden ? at::zeros({N, C}, at::kFloat) : at::Tensor();            // (N, C)
    for (int64_t v0 = 0; v0 < V; v0 += Vc) {
        const int64_t vc = std::min(Vc, V - v0);
        at::Tensor w = weight.narrow(0, v0, vc);                          // (Vc, C)
        at::Tensor logits = at::mm(hidden, w.t()).to(at::kFloat).contiguous();  // (N, Vc)
        chunk_forward(logits.data_ptr<float>(), N, vc, v0, cap, targets.data_ptr<int64_t>(),
                      row_max.data_ptr<float>(), row_sum.data_ptr<float>(), rescale.data_ptr<float>(),
                      target_logit.data_ptr<float>(), with_d_hidden);
        if (with_d_hidden) {
            // acc = acc * rescale + exp(l - max) * softcap'(l) @ w
            acc.mul_(rescale.unsqueeze(1));
            acc.addmm_(logits, w.to(at::kFloat));
        }
    }
    linear_logprob_saved out;
    out.lse = row_max + row_sum.log();  // (N)
    out.logp = target_logit - out.lse;  // (N)
    if (with_d_hidden) {
        // d logp / d hidden = softcap'(l_target) * w[target] - sum_v softmax_v * softcap'(l_v) * w[v]
        at::Tensor target_rows = weight.index_select(0, targets).to(at::kFloat);  // (N, C)
        at::Tensor target_derivative = softcap > 0 ? 1 - (target_logit / softcap).pow(2) : at::ones_like(target_logit);
        out.d_hidden = target_derivative.unsqueeze(1) * target_rows - acc / row_sum.unsqueeze(1);
    }
    return out;
}

std::pair<at::Tensor, at::Tensor> linear_logprob_backward(const at::Tensor& grad_in, const at::Tensor& hidden_in,
                                                          const at::Tensor& weight_in, const at::Tensor& targets_in,
                                                          const at::Tensor& lse_in, double softcap, int64_t chunk,
                                                          bool need_hidden, bool need_weight) {
    // grad, lse: (N); hidden: (N, C); weight: (V, C); targets: (N)
    at::NoGradGuard no_grad;
    const at::Tensor hidden = hidden_in.contiguous(), weight = weight_in.contiguous();
    const at::Tensor targets = targets_in.contiguous();
    const at::Tensor grad = grad_in.to(at::kFloat).contiguous(), lse = lse_in.to(at::kFloat).contiguous();
    const int64_t N = hidden.size(0), C = hidden.size(1), V = weight.size(0);
    const int64_t Vc = chunk_columns(N, V, chunk);
    at::Tensor d_hidden = need_hidden ? at::zeros({N, C}, at::kFloat) : at::Tensor();         // (N, C)
    at::Tensor d_weight = need_weight ? at::empty({V, C}, weight.options()) : at::Tensor();   // (V, C)
    const at::Tensor hidden32 = need_weight ? hidden.to(at::kFloat) : at::Tensor();           // (N, C)
    for (int64_t v0 = 0; v0 < V; v0 += Vc) {
        const int64_t vc = std::min(Vc, V - v0);
        at::Tensor w = weight.narrow(0, v0, vc);                                // (Vc, C)
        at::Tensor logits = at::mm(hidden, w.t()).to(at::kFloat).contiguous();  // (N, Vc), becomes d loss / d logits
        chunk_backward(logits.data_ptr<float>(), N, vc, v0, (float)softcap, targets.data_ptr<int64_t>(),
                       lse.data_ptr<float>(), grad.data_ptr<float>());
        if (need_hidden) d_hidden.addmm_(logits, w.to(at::kFloat));
        if (need_weight) d_weight.narrow(0, v0, vc).copy_(at::mm(logits.t(), hidden32));
    }
    return {need_hidden ? d_hidden.to(hidden.scalar_type()) : at::Tensor(), d_weight};
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Autograd wrapper over rows that all have a target.
struct linear_logprob_function : public torch::autograd::Function<linear_logprob_function> {
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                              const at::Tensor& targets, double softcap, int64_t chunk, bool need_hidden,
                              bool need_weight) {
        // Only the hidden states need a gradient: fold it into the forward pass.
        const bool fold = need_hidden && !need_weight;
        linear_logprob_saved s = linear_logprob_forward(hidden, weight, targets, softcap, chunk, fold);
        ctx->saved_data["softcap"] = softcap;
        ctx->saved_data["chunk"] = chunk;
        ctx->saved_data["need_hidden"] = need_hidden;
        ctx->saved_data["need_weight"] = need_weight;
        ctx->saved_data["fold"] = fold;
        if (fold) {
            ctx->saved_data["d_hidden"] = s.d_hidden;
            ctx->saved_data["dtype"] = hidden.scalar_type();
        } else if (need_hidden || need_weight) {
            ctx->saved_data["lse"] = s.lse;
            ctx->save_for_backward({hidden, weight, targets});
        }
        return s.logp;
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        const at::Tensor grad = grads[0].to(at::kFloat);  // (N)
        variable_list out(7);
        if (ctx->saved_data["fold"].toBool()) {
            const at::Tensor d = ctx->saved_data["d_hidden"].toTensor();  // (N, C)
            out[0] = (grad.unsqueeze(1) * d).to(ctx->saved_data["dtype"].toScalarType());
            return out;
        }
        const bool need_hidden = ctx->saved_data["need_hidden"].toBool();
        const bool need_weight = ctx->saved_data["need_weight"].toBool();
        if (!need_hidden && !need_weight) return out;
        variable_list saved = ctx->get_saved_variables();
        auto [d_hidden, d_weight] = linear_logprob_backward(
            grad, saved[0], saved[1], saved[2], ctx->saved_data["lse"].toTensor(), ctx->saved_data["softcap"].toDouble(),
            ctx->saved_data["chunk"].toInt(), need_hidden, need_weight);
        out[0] = d_hidden;
        out[1] = d_weight;
        return out;
    }
};

}  // namespace

at::Tensor linear_logprob(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                          double softcap, int64_t chunk) {
    // hidden: (N, C); weight: (V, C); targets: (N)
    check_inputs(hidden, weight, targets);
    const int64_t N = hidden.size(0), V = weight.size(0);
    if (N > 0) {
        const int64_t hi = targets.max().item<int64_t>();
        if (hi >= V) fail("linear_logprob: target ", hi, " is outside the vocabulary [0, ", V, ")");
    }
    at::Tensor kept = targets.ge(0).nonzero().view({-1});  // (N') rows with a target
    const int64_t n = kept.size(0);
    const bool grad_mode = at::GradMode::is_enabled();
    const bool need_hidden = grad_mode && hidden.requires_grad();
    const bool need_weight = grad_mode && weight.requires_grad();
    if (n == 0) {
        at::Tensor zeros = at::zeros({N}, at::kFloat);
        return need_hidden ? zeros + hidden.sum().to(at::kFloat) * 0 : zeros;
    }
    const bool all = n == N;
    at::Tensor rows = all ? hidden : hidden.index_select(0, kept);          // (N', C)
    at::Tensor row_targets = all ? targets : targets.index_select(0, kept);  // (N')
    at::Tensor logp = linear_logprob_function::apply(rows, weight, row_targets, softcap, chunk, need_hidden,
                                                     need_weight);  // (N')
    if (all) return logp;
    return at::zeros({N}, at::kFloat).index_copy(0, kept, logp);
}

at::Tensor linear_logprob_plain(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                double softcap) {
    // hidden: (N, C); weight: (V, C); targets: (N)
    at::Tensor logits = at::linear(hidden, weight);  // (N, V)
    if (softcap > 0) logits = at::tanh(logits / softcap) * softcap;
    return logits_logprob(logits, targets);
}

at::Tensor logits_logprob(const at::Tensor& logits, const at::Tensor& targets) {
    // logits: (..., V); targets: (...)
    at::Tensor logp = at::log_softmax(logits.to(at::kFloat), -1);                          // (..., V)
    at::Tensor picked = logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1);  // (...)
    return picked * targets.ge(0).to(at::kFloat);
}

}  // namespace cai::kernels

// Inner loops of the fused linear + log-softmax + gather (linear_logprob.h),
// written once with at::vec and compiled per instruction set: included only
// by linear_logprob_avx512.cpp and linear_logprob_avx2.cpp, which define
// CPU_CAPABILITY (AVX512 / AVX2), the namespace these functions land in.
// Raw pointers only; rows run in parallel. The two entry points are defined
// (not inline) here, once per including file, each in its own namespace.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace cai::kernels::CPU_CAPABILITY {

using fvec = at::vec::Vectorized<float>;

// x = tanh(x / cap) * cap, in place. x: (n)
inline void softcap_row(float* x, int64_t n, float cap) {
    const fvec c(cap);
    int64_t i = 0;
    for (; i + fvec::size() <= n; i += fvec::size()) ((fvec::loadu(x + i) / c).tanh() * c).store(x + i);
    for (; i < n; ++i) x[i] = std::tanh(x[i] / cap) * cap;
}

// max of x: (n)
inline float max_row(const float* x, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
    int64_t i = 0;
    if (n >= fvec::size()) {
        fvec mv = fvec::loadu(x);
        for (i = fvec::size(); i + fvec::size() <= n; i += fvec::size()) mv = at::vec::maximum(mv, fvec::loadu(x + i));
        float lanes[fvec::size()];
        mv.store(lanes);
        for (int k = 0; k < fvec::size(); ++k) m = std::max(m, lanes[k]);
    }
    for (; i < n; ++i) m = std::max(m, x[i]);
    return m;
}

// Sum of exp(x - shift) over x: (n). With write, x becomes
// exp(x - shift) * scale * (cap > 0 ? 1 - (x / cap)^2 : 1), the softcap's
// derivative (x is already capped) folded in.
inline float exp_row(float* x, int64_t n, float shift, bool write, float scale, float cap) {
    const fvec s(shift), sc(scale), one(1.0f), c(cap > 0 ? cap : 1.0f);
    fvec acc(0.0f);
    int64_t i = 0;
    for (; i + fvec::size() <= n; i += fvec::size()) {
        fvec v = fvec::loadu(x + i);
        fvec e = (v - s).exp();
        acc = acc + e;
        if (write) {
            fvec out = e * sc;
            if (cap > 0) {
                fvec t = v / c;
                out = out * (one - t * t);
            }
            out.store(x + i);
        }
    }
    float lanes[fvec::size()];
    acc.store(lanes);
    float sum = 0;
    for (int k = 0; k < fvec::size(); ++k) sum += lanes[k];
    for (; i < n; ++i) {
        const float v = x[i];
        const float e = std::exp(v - shift);
        sum += e;
        if (write) {
            float out = e * scale;
            if (cap > 0) out *= 1.0f - (v / cap) * (v / cap);
            x[i] = out;
        }
    }
    return sum;
}

// One vocabulary chunk of the forward pass (see linear_logprob.cpp).
// logits: (rows, cols) the chunk's raw logits, columns v0 .. v0+cols-1;
// targets: (rows); row_max, row_sum: (rows) the online log-sum-exp state;
// rescale: (rows) out, the factor the earlier sums were multiplied by;
// target_logit: (rows) set where the target is in this chunk. With probs,
// logits become exp(l - row_max) times the softcap's derivative.
void linear_logprob_chunk_forward(float* logits, int64_t rows, int64_t cols, int64_t v0, float cap,
                                         const int64_t* targets, float* row_max, float* row_sum, float* rescale,
                                         float* target_logit, bool probs) {
    at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            float* x = logits + r * cols;
            if (cap > 0) softcap_row(x, cols, cap);
            const int64_t t = targets[r] - v0;
            if (t >= 0 && t < cols) target_logit[r] = x[t];
            const float old = row_max[r];
            const float m = std::max(old, max_row(x, cols));
            const float scale = old == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(old - m);
            row_sum[r] = row_sum[r] * scale + exp_row(x, cols, m, probs, 1.0f, cap);
            row_max[r] = m;
            rescale[r] = scale;
        }
    });
}

// One vocabulary chunk of the backward pass: logits (rows, cols) become
// d logp / d raw logit times grad: grad * (onehot(target) - exp(l - lse)) * softcap'(l).
void linear_logprob_chunk_backward(float* logits, int64_t rows, int64_t cols, int64_t v0, float cap,
                                          const int64_t* targets, const float* lse, const float* grad) {
    at::parallel_for(0, rows, 4, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            float* x = logits + r * cols;
            if (cap > 0) softcap_row(x, cols, cap);
            const int64_t t = targets[r] - v0;
            const bool here = t >= 0 && t < cols;
            const float lt = here ? x[t] : 0.0f;
            exp_row(x, cols, lse[r], true, -grad[r], cap);
            if (here) x[t] += grad[r] * (cap > 0 ? 1.0f - (lt / cap) * (lt / cap) : 1.0f);
        }
    });
}

}  // namespace cai::kernels::CPU_CAPABILITY

// Fused linear + log-softmax + gather: the log-probability of each row's
// target token under softmax(softcap(hidden @ weight^T)), computed over
// vocabulary chunks with an online log-sum-exp, so the (N, V) logits are never
// held whole (a 150k vocabulary at 1k tokens is 600 MB of float32 logits).
//
// Gradients: while autograd records and only the hidden states need one
// (LoRA training: the head is frozen), the forward pass also accumulates
// d logp / d hidden chunk by chunk (the flash-attention rescaling trick), so
// the backward pass is a per-row scale and the head costs two GEMMs as in the
// plain path. When the weight needs a gradient too (full fine-tuning, tied
// embeddings) the backward pass recomputes each chunk's logits instead.
// Rows whose target is negative (-100: prompt, padding) are dropped before
// the GEMMs and give 0.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace cai::kernels {

// hidden: (N, C) float32 or bfloat16; weight: (V, C) same dtype;
// targets: (N) int64 in [0, V), or negative for an ignored row.
// softcap > 0: logits = tanh(logits / softcap) * softcap (final_logit_softcapping).
// chunk: vocabulary columns per chunk, 0 chooses. Returns (N) float32.
// Differentiable with respect to hidden and weight.
at::Tensor linear_logprob(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                          double softcap = 0, int64_t chunk = 0);

// log_softmax + gather: logits (..., V) in any floating dtype, targets (...)
// int64 -> (...) float32 log-probs of the targets, 0 where a target is negative.
at::Tensor logits_logprob(const at::Tensor& logits, const at::Tensor& targets);

// The same math as plain ATen ops (at::linear, tanh, log_softmax, gather),
// materialising (N, V); ignored rows give 0. The reference of tests and benches.
at::Tensor linear_logprob_plain(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                double softcap = 0);

// The kernel's two passes without autograd, on rows that all have a target.
struct linear_logprob_saved {
    at::Tensor logp;      // (N) float32
    at::Tensor lse;       // (N) float32 log-sum-exp of each row's (capped) logits
    at::Tensor d_hidden;  // (N, C) float32 d logp[n] / d hidden[n], when asked for
};
// hidden: (N, C); weight: (V, C); targets: (N) in [0, V).
linear_logprob_saved linear_logprob_forward(const at::Tensor& hidden, const at::Tensor& weight,
                                            const at::Tensor& targets, double softcap, int64_t chunk,
                                            bool with_d_hidden);
// grad: (N) float32 d loss / d logp. Returns d hidden (N, C) in hidden's dtype
// and d weight (V, C) in weight's dtype, each only when asked for.
std::pair<at::Tensor, at::Tensor> linear_logprob_backward(const at::Tensor& grad, const at::Tensor& hidden,
                                                          const at::Tensor& weight, const at::Tensor& targets,
                                                          const at::Tensor& lse, double softcap, int64_t chunk,
                                                          bool need_hidden, bool need_weight);

}  // namespace cai::kernels

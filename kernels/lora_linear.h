// A linear layer with a LoRA adapter, y = x W^T + b + scale (xd A^T) B^T,
// where xd is x after the adapter's dropout (x itself without dropout).
//
// The plain composition materialises the adapter's delta, scales it and adds
// it to y: two extra passes over every (tokens, out) output forward, and
// their gradients backward, about a fifth of a LoRA training step on a
// ~100M model. Here the delta is accumulated into y by the second GEMM
// (alpha = scale, beta = 1), and backward accumulates the adapter's share of
// dx into the base's dx the same way; the other GEMMs are the plain ones.
// Math is that of the plain path; only the rounding order differs.
#pragma once

#include <ATen/ATen.h>

namespace cai::kernels {

// Kernels on; x, w, a, b (and bias) of one dtype, float32 or bf16, on the CPU;
// w: (out, in), a: (r, in), b: (out, r), x: (..., in); xd undefined or x's shape.
bool lora_linear_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& a,
                         const at::Tensor& b, const at::Tensor& xd = at::Tensor());

// x: (..., in) -> (..., out). xd: x after dropout, or undefined for x itself.
// An autograd function: gradients flow to x, xd, a, b, and to w and bias when they require them.
at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& a,
                       const at::Tensor& b, double scale, const at::Tensor& xd = at::Tensor());

}  // namespace cai::kernels

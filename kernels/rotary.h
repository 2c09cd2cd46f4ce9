// Rotary position embedding applied to q or k: y = x cos + rotate_half(x) sin,
// where rotate_half(x) = (-x2, x1) for the halves x1, x2 of each head, in
// float32 with one rounding. In place for decode; the backward is the
// transposed rotation (by -sin).
#pragma once

#include <ATen/ATen.h>

namespace cai::kernels {

// Whether rotary takes x and cos/sin: kernels on, same dtype (float32 or bf16), shapes as below.
bool rotary_applies(const at::Tensor& x, const at::Tensor& cos);

// x: (B, T, heads, D), last dimension contiguous; cos, sin: (B, T, D) -> y: (B, T, heads, D)
// inverse: the transposed rotation (the backward).
at::Tensor rotary_forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool inverse = false);
// The same, written over x.
void rotary_forward_(at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
// dy: (B, T, heads, D) -> dx
at::Tensor rotary_backward(const at::Tensor& dy, const at::Tensor& cos, const at::Tensor& sin);

// rotary_forward as an autograd function (gradient for x only).
at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace cai::kernels

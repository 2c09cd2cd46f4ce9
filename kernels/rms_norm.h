// RMSNorm in one pass per row, float32 math: llama scales the normed value
// (cast back to x's dtype) by w; gemma scales by (1 + w) in float32 and then
// casts. The backward gives dx and dw from x, w and the saved 1/rms.
#pragma once

#include <ATen/ATen.h>

namespace cai::kernels {

// Whether rms_norm takes x and w: kernels on, same dtype (float32 or bf16), w of size C.
bool rms_norm_applies(const at::Tensor& x, const at::Tensor& w);

// x: (..., C); w: (C) -> y: (..., C); inv: (rows) float32 1/rms, filled when not null
at::Tensor rms_norm_forward(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus,
                            at::Tensor* inv = nullptr);
// dy, x: (..., C); w: (C); inv: (rows) -> {dx: (..., C), dw: (C) in w's dtype}
std::pair<at::Tensor, at::Tensor> rms_norm_backward(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& w,
                                                    const at::Tensor& inv, bool one_plus);

// rms_norm_forward as an autograd function (gradients for x and w through rms_norm_backward).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus);

}  // namespace cai::kernels

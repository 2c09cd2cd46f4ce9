// Matrix-vector products for decode: a few rows of x against a weight matrix
// that is streamed from memory once, parallel over output rows. float32 and
// bf16 weights (bf16 is widened to float32 in registers; float32 accumulation,
// one rounding at the end). Several projections that share x (q/k/v,
// gate/up) run in one pass without copying their weights.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace cai::kernels {

constexpr int64_t matvec_max_rows = 8;

// Whether matvec_forward takes x against w (and bias): kernels on, x has at
// most matvec_max_rows rows, x, w and bias share a dtype (float32 or bf16), w
// is contiguous and no gradient is wanted.
bool matvec_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {});

// x: (..., K); w: (N, K); bias: (N) or undefined -> (..., N) = x w^T + bias
at::Tensor matvec_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {});

// x: (..., K); ws[i]: (N_i, K); biases[i]: (N_i) or undefined (or biases empty) -> (..., N_i) each
std::vector<at::Tensor> matvec_forward_many(const at::Tensor& x, const std::vector<at::Tensor>& ws,
                                            const std::vector<at::Tensor>& biases = {});

}  // namespace cai::kernels

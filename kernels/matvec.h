// Matrix-vector products for decode: a few rows of x against a weight matrix
// that is streamed from memory once, parallel over output rows. float32 and
// bf16 weights (bf16 is widened to float32 in registers; float32 accumulation,
// one rounding at the end). Several projections that share x (q/k/v,
// gate/up) run in one pass without copying their weights.
#pragma once

#include <ATen/ATen.h>

#include <utility>
#include <vector>

namespace cai::kernels {

// Rows of x in one register block (a decode step of up to 8 rows, the decode
// attention's limit too).
constexpr int64_t matvec_max_rows = 8;
// Rows of x matvec_forward takes in one call: 8 a block, the weights read
// from memory once for all of them (batched decode and short prefill chunks;
// measured faster than the GEMM up to 64 rows on the ~100M Llama; above this,
// products go to the GEMM).
constexpr int64_t matvec_batch_rows = 64;

// Whether matvec_forward takes x against w (and bias): kernels on, x has at
// most matvec_batch_rows rows, x, w and bias share a dtype (float32 or bf16), w
// is contiguous and no gradient is wanted.
bool matvec_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {});

// x: (..., K); w: (N, K); bias: (N) or undefined -> (..., N) = x w^T + bias
at::Tensor matvec_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {});

// x: (..., K); ws[i]: (N_i, K); biases[i]: (N_i) or undefined (or biases empty) -> (..., N_i) each
std::vector<at::Tensor> matvec_forward_many(const at::Tensor& x, const std::vector<at::Tensor>& ws,
                                            const std::vector<at::Tensor>& biases = {});

// int8 weights: w_q (N, K) uint8 holding the int8 value + 128 (the unsigned operand
// vpdpbusd wants), with a float32 scale per row: w ≈ (w_q - 128) * scale[:, None].
// Symmetric per output row: scale = max|w[n]| / 127 (1 for an all-zero row),
// w_q = round(w / scale) + 128.
std::pair<at::Tensor, at::Tensor> int8_quantize_rows(const at::Tensor& w);
// w_q * scale[:, None] in `dtype` (the plain path: prefill, training through a frozen int8 base).
at::Tensor int8_dequantize_rows(const at::Tensor& w_q, const at::Tensor& scale, at::ScalarType dtype);

// Whether matvec_i8_forward takes x against (w_q, scale): kernels on, x float32 or
// bf16 with at most matvec_max_rows rows (any number with AVX512-VNNI: 8 a pass),
// bias in x's dtype, no gradient wanted. With VNNI each 64-wide block of an x
// row is quantized to int8 with its own scale (as llama.cpp's Q8_0
// activations) and the products are integers; without, x stays float32.
bool matvec_i8_applies(const at::Tensor& x, const at::Tensor& w_q, const at::Tensor& scale,
                       const at::Tensor& bias = {});
// x: (..., K); ws_q[i]: (N_i, K) int8; scales[i]: (N_i) float32; biases[i]: (N_i) or undefined (or
// biases empty) -> (..., N_i) each, in x's dtype. The weights are read once, as int8.
std::vector<at::Tensor> matvec_i8_forward_many(const at::Tensor& x, const std::vector<at::Tensor>& ws_q,
                                               const std::vector<at::Tensor>& scales,
                                               const std::vector<at::Tensor>& biases = {});

}  // namespace cai::kernels

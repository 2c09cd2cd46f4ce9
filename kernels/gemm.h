// Float32 matrix products for the training kernels, through oneDNN's sgemm
// (libdnnl, which Debian's libtorch already links), on matvec_threads()
// threads.
//
// Why: libtorch runs its GEMMs on OpenBLAS, whose kernels may be AVX2-only
// (OPENBLAS_CORETYPE=Haswell, or a CPU model it does not know) on a CPU with
// AVX-512; oneDNN picks its JIT kernels from the CPU itself. Measured on the
// SFT step's shapes here: ~180 GFLOP/s on one core against OpenBLAS
// Haswell's ~170 on two, and 3x on the adapters' rank-16 products.
// Other dtypes, devices and layouts take at::mm / addmm_ unchanged.
#pragma once

#include <ATen/ATen.h>

namespace cai::kernels {

// Whether the oneDNN path takes a (M, K) and b (K, N): kernels on, float32
// CPU matrices, each row-major or a transposed view of a row-major one.
bool gemm_applies(const at::Tensor& a, const at::Tensor& b);

// a (M, K) b (K, N) -> (M, N) float32 row-major (at::mm otherwise).
at::Tensor gemm(const at::Tensor& a, const at::Tensor& b);

// c (M, N) = beta c + alpha a b, in place (c.addmm_ otherwise). c row-major.
void gemm_add_(at::Tensor& c, const at::Tensor& a, const at::Tensor& b, double beta = 1, double alpha = 1);

// x (N, in) W^T + bias through gemm, without autograd; bias (out), empty or
// undefined. The base product of gemm_linear and of the LoRA linear.
at::Tensor gemm_affine(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);

// OpenMP's thread count at matvec_threads() for the scope (oneDNN's
// products read it), restored after.
class gemm_threads_scope {
public:
    gemm_threads_scope();
    ~gemm_threads_scope();
    gemm_threads_scope(const gemm_threads_scope&) = delete;
    gemm_threads_scope& operator=(const gemm_threads_scope&) = delete;

private:
    int before_;
    int threads_;
};

// x (..., in) W^T + bias through gemm, differentiable in x, w and bias
// (gradients by gemm too): the training linears without an adapter (full
// fine-tuning) and the no-grad forward of any float32 linear with more rows
// than the matrix-vector product takes. Applies when gemm would: kernels
// on, float32 CPU tensors, w (out, in), bias (out) or undefined. bfloat16
// applies too when no gradient is asked for (prefill, scoring): libtorch's
// own oneDNN product, on matvec_threads() OpenMP threads rather than its
// intra-op count (one on a 2-core machine).
bool gemm_linear_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);
at::Tensor gemm_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);

}  // namespace cai::kernels

#include "kernels/gemm.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"
#include "kernels/cpu.h"

namespace cai::kernels {

namespace {

// A 2-D operand as dnnl_sgemm reads it: row-major data with leading
// dimension ld, transposed or not.
struct operand {
    char trans = 'N';
    int64_t ld = 0;
    bool ok = false;
};

// rows x cols matrix t: row-major (stride (ld, 1)) or the transpose of a
// row-major (cols x rows) one (stride (1, ld)).
operand layout(const at::Tensor& t) {
    operand o;
    const int64_t rows = t.size(0), cols = t.size(1);
    if (t.stride(1) == 1 && t.stride(0) >= std::max<int64_t>(cols, 1)) {
        o.ld = t.stride(0);
        o.ok = true;
    } else if (t.stride(0) == 1 && t.stride(1) >= std::max<int64_t>(rows, 1)) {
        o.trans = 'T';
        o.ld = t.stride(1);
        o.ok = true;
    }
    return o;
}

bool plain_matrix(const at::Tensor& t) {
    return t.defined() && t.dim() == 2 && t.scalar_type() == at::kFloat && t.device().is_cpu() && t.numel() > 0 &&
           layout(t).ok;
}

// c = beta c + alpha a b through oneDNN, OpenMP threads set for the call.
void sgemm(const at::Tensor& a, const at::Tensor& b, at::Tensor& c, float beta, float alpha) {
    const operand oa = layout(a), ob = layout(b);
    const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
    dnnl_status_t status;
    {
        gemm_threads_scope threads;
        status = dnnl_sgemm(oa.trans, ob.trans, M, N, K, alpha, a.data_ptr<float>(), oa.ld, b.data_ptr<float>(),
                            ob.ld, beta, c.data_ptr<float>(), c.stride(0));
    }
    if (status != dnnl_success)
        fail("gemm: oneDNN sgemm failed (status ", (int)status, ") on (", M, ", ", K, ") x (", K, ", ", N, ")");
}

}  // namespace

gemm_threads_scope::gemm_threads_scope() : before_(omp_get_max_threads()), threads_(matvec_threads()) {
    if (threads_ != before_) omp_set_num_threads(threads_);
}

gemm_threads_scope::~gemm_threads_scope() {
    if (threads_ != before_) omp_set_num_threads(before_);
}

bool gemm_applies(const at::Tensor& a, const at::Tensor& b) {
    return enabled() && plain_matrix(a) && plain_matrix(b) && a.size(1) == b.size(0);
}

at::Tensor gemm(const at::Tensor& a, const at::Tensor& b) {
    // a: (M, K); b: (K, N)
    if (!gemm_applies(a, b)) return at::mm(a, b);
    at::Tensor c = at::empty({a.size(0), b.size(1)}, a.options());  // (M, N)
    sgemm(a, b, c, 0.0f, 1.0f);
    return c;
}

void gemm_add_(at::Tensor& c, const at::Tensor& a, const at::Tensor& b, double beta, double alpha) {
    // c: (M, N); a: (M, K); b: (K, N)
    const bool fits = c.defined() && c.dim() == 2 && c.scalar_type() == at::kFloat && c.stride(1) == 1 &&
                      c.stride(0) >= c.size(1) && c.size(0) == a.size(0) && c.size(1) == b.size(1);
    if (!fits || !gemm_applies(a, b)) {
        c.addmm_(a, b, beta, alpha);
        return;
    }
    sgemm(a, b, c, (float)beta, (float)alpha);
}

at::Tensor gemm_affine(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    // x: (N, in); w: (out, in); bias: (out) -> (N, out)
    if (!bias.defined() || bias.numel() == 0) return gemm(x, w.t());
    at::Tensor y = bias.expand({x.size(0), w.size(0)}).contiguous();
    gemm_add_(y, x, w.t());
    return y;
}

namespace {

bool needs_grad(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    return at::GradMode::is_enabled() &&
           (x.requires_grad() || w.requires_grad() || (bias.defined() && bias.requires_grad()));
}

struct gemm_linear_function : torch::autograd::Function<gemm_linear_function> {
    // Autograd functions take defined tensors: without a bias, an empty one.
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                              const at::Tensor& bias) {
        ctx->save_for_backward({x, w});
        ctx->saved_data["has_bias"] = bias.numel() > 0;
        return gemm_affine(x, w, bias);
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        auto saved = ctx->get_saved_variables();
        const at::Tensor &x = saved[0], &w = saved[1];
        const at::Tensor g = grads[0].contiguous();  // (N, out)
        at::Tensor dx, dw, dbias;
        if (ctx->needs_input_grad(0)) dx = gemm(g, w);        // (N, in)
        if (ctx->needs_input_grad(1)) dw = gemm(g.t(), x);    // (out, in)
        if (ctx->needs_input_grad(2) && ctx->saved_data["has_bias"].toBool()) dbias = g.sum(0);
        return {dx, dw, dbias};
    }
};

}  // namespace

bool gemm_linear_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    if (!enabled() || !x.defined() || !w.defined() || x.dim() < 1 || w.dim() != 2) return false;
    const at::ScalarType type = x.scalar_type();
    if (type != at::kFloat && !(type == at::kBFloat16 && !needs_grad(x, w, bias))) return false;
    for (const at::Tensor* t : {&x, &w, &bias})
        if (t->defined() && (t->scalar_type() != type || !t->device().is_cpu())) return false;
    if (x.size(-1) != w.size(1) || x.numel() == 0 || w.numel() == 0) return false;
    return !bias.defined() || (bias.dim() == 1 && bias.size(0) == w.size(0));
}

at::Tensor gemm_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    // x: (..., in); w: (out, in); bias: (out)
    if (!gemm_linear_applies(x, w, bias))
        fail("gemm_linear: x ", x.sizes(), " (", x.scalar_type(), "), weight ", w.sizes(), " (", w.scalar_type(),
             ") do not fit: need float32 CPU tensors (or bfloat16 without gradients), w (out, in), x (..., in)");
    if (x.scalar_type() == at::kBFloat16) {
        gemm_threads_scope threads;
        return at::linear(x, w, bias);
    }
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = w.size(0);
    at::Tensor x2 = x.reshape({-1, w.size(1)}).contiguous();  // (N, in)
    if (!needs_grad(x, w, bias)) return gemm_affine(x2, w, bias).view(shape);
    return gemm_linear_function::apply(x2, w, bias.defined() ? bias : at::empty({0}, w.options())).view(shape);
}

}  // namespace cai::kernels

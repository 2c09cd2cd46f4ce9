#include "kernels/lora_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"

namespace cai::kernels {

bool lora_linear_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& a,
                         const at::Tensor& b, const at::Tensor& xd) {
    if (!available() || !x.defined() || !w.defined() || !a.defined() || !b.defined()) return false;
    const at::ScalarType type = w.scalar_type();
    if (type != at::kFloat && type != at::kBFloat16) return false;
    for (const at::Tensor* t : {&x, &a, &b, &bias, &xd})
        if (t->defined() && (t->scalar_type() != type || !t->device().is_cpu())) return false;
    if (!w.device().is_cpu() || w.dim() != 2 || a.dim() != 2 || b.dim() != 2 || x.dim() < 1) return false;
    const int64_t out = w.size(0), in = w.size(1), r = a.size(0);
    if (x.size(-1) != in || a.size(1) != in || b.size(0) != out || b.size(1) != r || x.numel() == 0) return false;
    if (bias.defined() && (bias.dim() != 1 || bias.size(0) != out)) return false;
    if (xd.defined() && xd.sizes() != x.sizes()) return false;
    return true;
}

namespace {

// Rows: x, xd: (N, in) -> {y: (N, out), xa = xd A^T: (N, r)}.
std::pair<at::Tensor, at::Tensor> forward_rows(const at::Tensor& x, const at::Tensor& xd, const at::Tensor& w,
                                               const at::Tensor& bias, const at::Tensor& a, const at::Tensor& b,
                                               double scale) {
    at::Tensor xa = gemm(xd.defined() ? xd : x, a.t());  // (N, r)
    at::Tensor y = gemm_affine(x, w, bias);              // (N, out)
    gemm_add_(y, xa, b.t(), /*beta=*/1, /*alpha=*/scale);  // + scale xa B^T
    return {y, xa};
}

// Inputs flattened to rows: x, xd: (N, in); w: (out, in); a: (r, in); b: (out, r).
struct lora_linear_function : torch::autograd::Function<lora_linear_function> {
    // Autograd functions take defined tensors only: without dropout xd is x
    // again, without a bias it is an empty tensor; the flags say which.
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& xd,
                              const at::Tensor& w, const at::Tensor& bias, const at::Tensor& a, const at::Tensor& b,
                              double scale, bool dropout, bool has_bias) {
        const at::Tensor none;
        auto [y, xa] = forward_rows(x, dropout ? xd : none, w, has_bias ? bias : none, a, b, scale);
        ctx->save_for_backward({x, dropout ? xd : none, w, a, b, xa});
        ctx->saved_data["scale"] = scale;
        ctx->saved_data["has_bias"] = has_bias;
        return y;
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        auto s = ctx->get_saved_variables();
        const at::Tensor &x = s[0], &xd = s[1], &w = s[2], &a = s[3], &b = s[4], &xa = s[5];
        const double scale = ctx->saved_data["scale"].toDouble();
        const at::Tensor g = grads[0].contiguous();  // (N, out)
        at::Tensor gxa = gemm(g, b).mul_(scale);  // (N, r): d/d(xa)
        at::Tensor dx, dxd, dw, dbias;
        if (ctx->needs_input_grad(0) || ctx->needs_input_grad(1)) {
            dx = gemm(g, w);  // (N, in)
            if (xd.defined()) dxd = gemm(gxa, a);
            else gemm_add_(dx, gxa, a);  // the adapter's share of dx, accumulated by the GEMM
        }
        if (ctx->needs_input_grad(2)) dw = gemm(g.t(), x);  // (out, in)
        if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(3)) dbias = g.sum(0);
        at::Tensor da = gemm(gxa.t(), xd.defined() ? xd : x);  // (r, in)
        at::Tensor db = gemm(g.t(), xa).mul_(scale);           // (out, r)
        return {dx, dxd, dw, dbias, da, db, at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

}  // namespace

at::Tensor lora_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& a,
                       const at::Tensor& b, double scale, const at::Tensor& xd) {
    if (!lora_linear_applies(x, w, bias, a, b, xd))
        fail("lora_linear: x ", x.sizes(), " (", x.scalar_type(), "), weight ", w.sizes(), ", lora_a ", a.sizes(),
             ", lora_b ", b.sizes(), " (", w.scalar_type(),
             ") do not fit the kernel: need one dtype (float32 or bf16), w (out, in), a (r, in), b (out, r)");
    const int64_t in = w.size(1), out = w.size(0);
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = out;
    at::Tensor x2 = x.reshape({-1, in}).contiguous();
    at::Tensor xd2 = xd.defined() ? xd.reshape({-1, in}).contiguous() : at::Tensor();
    bool grad = false;
    for (const at::Tensor* t : {&x, &xd, &w, &bias, &a, &b}) grad = grad || (t->defined() && t->requires_grad());
    if (!at::GradMode::is_enabled() || !grad) return forward_rows(x2, xd2, w, bias, a, b, scale).first.view(shape);
    return lora_linear_function::apply(x2, xd.defined() ? xd2 : x2, w, bias.defined() ? bias : at::empty({0}, w.options()),
                                       a, b, scale, xd.defined(), bias.defined())
        .view(shape);
}

}  // namespace cai::kernels

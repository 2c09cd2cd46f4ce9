#include "kernels/rms_norm.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"
#include "kernels/dispatch.h"

namespace cai::kernels {

bool rms_norm_applies(const at::Tensor& x, const at::Tensor& w) {
    if (!available() || !x.defined() || !w.defined() || x.dim() < 1 || w.dim() != 1) return false;
    const at::ScalarType type = x.scalar_type();
    if (type != at::kFloat && type != at::kBFloat16) return false;
    return w.scalar_type() == type && x.device().is_cpu() && w.device().is_cpu() && x.size(-1) == w.size(0) &&
           w.size(0) > 0;
}

namespace {
void check(const at::Tensor& x, const at::Tensor& w) {
    if (!rms_norm_applies(x, w))
        fail("rms_norm: x ", x.sizes(), " (", x.scalar_type(), ") and w ", w.sizes(), " (", w.scalar_type(),
             ") do not fit the kernel: need float32 or bf16, the same dtype and w of size x.size(-1)");
}
}  // namespace

at::Tensor rms_norm_forward(const at::Tensor& x_in, const at::Tensor& w_in, double eps, bool one_plus, at::Tensor* inv_out) {
    check(x_in, w_in);
    at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
    const int64_t C = x.size(-1), N = x.numel() / C;
    at::Tensor y = at::empty_like(x);
    at::Tensor inv = at::empty({N}, x.options().dtype(at::kFloat));
    CAI_KERNELS_CALL(rms_norm_forward, x.data_ptr(), w.data_ptr(), y.data_ptr(), inv.data_ptr<float>(), N, C,
                     (float)eps, one_plus, x.scalar_type() == at::kBFloat16);
    if (inv_out) *inv_out = inv;
    return y;
}

std::pair<at::Tensor, at::Tensor> rms_norm_backward(const at::Tensor& dy_in, const at::Tensor& x_in,
                                                    const at::Tensor& w_in, const at::Tensor& inv_in, bool one_plus) {
    check(x_in, w_in);
    if (dy_in.sizes() != x_in.sizes()) fail("rms_norm_backward: dy ", dy_in.sizes(), " does not match x ", x_in.sizes());
    at::Tensor x = x_in.contiguous(), w = w_in.contiguous(), dy = dy_in.to(x.scalar_type()).contiguous();
    at::Tensor inv = inv_in.to(at::kFloat).contiguous();
    const int64_t C = x.size(-1), N = x.numel() / C;
    if (inv.numel() != N) fail("rms_norm_backward: inv has ", inv.numel(), " values for ", N, " rows");
    at::Tensor dx = at::empty_like(x);
    at::Tensor dw = at::zeros({C}, x.options().dtype(at::kFloat));
    CAI_KERNELS_CALL(rms_norm_backward, dy.data_ptr(), x.data_ptr(), w.data_ptr(), inv.data_ptr<float>(),
                     dx.data_ptr(), dw.data_ptr<float>(), N, C, one_plus, x.scalar_type() == at::kBFloat16);
    return {dx, dw.to(w.scalar_type())};
}

namespace {

struct rms_norm_function : torch::autograd::Function<rms_norm_function> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                              double eps, bool one_plus) {
        at::Tensor inv;
        at::Tensor y = rms_norm_forward(x, w, eps, one_plus, &inv);
        ctx->save_for_backward({x, w, inv});
        ctx->saved_data["one_plus"] = one_plus;
        return y;
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        auto saved = ctx->get_saved_variables();
        auto [dx, dw] = rms_norm_backward(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["one_plus"].toBool());
        return {dx, dw, at::Tensor(), at::Tensor()};
    }
};

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus) {
    if (!at::GradMode::is_enabled() || !(x.requires_grad() || w.requires_grad())) return rms_norm_forward(x, w, eps, one_plus);
    return rms_norm_function::apply(x, w, eps, one_plus);
}

}  // namespace cai::kernels

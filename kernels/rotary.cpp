#include "kernels/rotary.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"
#include "kernels/dispatch.h"

namespace cai::kernels {

bool rotary_applies(const at::Tensor& x, const at::Tensor& cos) {
    if (!available() || !x.defined() || !cos.defined() || x.dim() != 4 || cos.dim() != 3) return false;
    const at::ScalarType type = x.scalar_type();
    if (type != at::kFloat && type != at::kBFloat16) return false;
    return cos.scalar_type() == type && x.device().is_cpu() && x.size(0) == cos.size(0) && x.size(1) == cos.size(1) &&
           x.size(3) == cos.size(2) && x.size(3) % 2 == 0;
}

namespace {

void run(const at::Tensor& x, at::Tensor& y, const at::Tensor& cos_in, const at::Tensor& sin_in, bool inverse) {
    if (!rotary_applies(x, cos_in) || sin_in.sizes() != cos_in.sizes() || sin_in.scalar_type() != cos_in.scalar_type())
        fail("rotary: x ", x.sizes(), " (", x.scalar_type(), "), cos ", cos_in.sizes(), " and sin ", sin_in.sizes(),
             " do not fit the kernel: need x (B, T, heads, D) and cos, sin (B, T, D) of x's dtype, D even");
    const int64_t B = x.size(0), T = x.size(1), heads = x.size(2), D = x.size(3);
    // x and y are addressed as (B*T, heads, D) with strides; both must be laid out alike.
    if (x.stride(3) != 1 || x.stride(0) != T * x.stride(1) || y.strides() != x.strides())
        fail("rotary: x ", x.sizes(), " must have contiguous heads and a (B*T) token stride");
    at::Tensor cos = cos_in.contiguous(), sin = sin_in.contiguous();
    CAI_KERNELS_CALL(rotary, x.data_ptr(), y.data_ptr(), cos.data_ptr(), sin.data_ptr(), B * T, heads, D, x.stride(2),
                     x.stride(1), inverse, x.scalar_type() == at::kBFloat16);
}

}  // namespace

at::Tensor rotary_forward(const at::Tensor& x_in, const at::Tensor& cos, const at::Tensor& sin, bool inverse) {
    at::Tensor x = x_in.contiguous();
    at::Tensor y = at::empty_like(x);
    run(x, y, cos, sin, inverse);
    return y;
}

void rotary_forward_(at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) { run(x, x, cos, sin, false); }

at::Tensor rotary_backward(const at::Tensor& dy, const at::Tensor& cos, const at::Tensor& sin) {
    return rotary_forward(dy, cos, sin, /*inverse=*/true);
}

namespace {

struct rotary_function : torch::autograd::Function<rotary_function> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                              const at::Tensor& sin) {
        ctx->save_for_backward({cos, sin});
        return rotary_forward(x, cos, sin);
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        auto saved = ctx->get_saved_variables();
        return {rotary_backward(grads[0].to(saved[0].scalar_type()), saved[0], saved[1]), at::Tensor(), at::Tensor()};
    }
};

}  // namespace

at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    if (!at::GradMode::is_enabled() || !x.requires_grad()) return rotary_forward(x, cos, sin);
    return rotary_function::apply(x, cos, sin);
}

}  // namespace cai::kernels

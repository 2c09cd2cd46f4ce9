#include "kernels/gate.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"
#include "kernels/dispatch.h"

namespace cai::kernels {

bool gate_activation(const std::string& name, gate_act* act) {
    if (name == "silu" || name == "swish") *act = gate_act::silu;
    else if (name == "gelu_pytorch_tanh" || name == "gelu_new") *act = gate_act::gelu_tanh;
    else if (name == "gelu") *act = gate_act::gelu_erf;
    else if (name == "relu") *act = gate_act::relu;
    else return false;
    return true;
}

bool gate_applies(const at::Tensor& g, const at::Tensor& u) {
    if (!available() || !g.defined() || !u.defined()) return false;
    const at::ScalarType type = g.scalar_type();
    if (type != at::kFloat && type != at::kBFloat16) return false;
    return u.scalar_type() == type && g.sizes() == u.sizes() && g.device().is_cpu() && u.device().is_cpu();
}

namespace {
void check(const at::Tensor& g, const at::Tensor& u) {
    if (!gate_applies(g, u))
        fail("gate: g ", g.sizes(), " (", g.scalar_type(), ") and u ", u.sizes(), " (", u.scalar_type(),
             ") do not fit the kernel: need the same shape and dtype, float32 or bf16");
}
}  // namespace

at::Tensor gate_forward(const at::Tensor& g_in, const at::Tensor& u_in, gate_act act) {
    check(g_in, u_in);
    at::Tensor g = g_in.contiguous(), u = u_in.contiguous();
    at::Tensor y = at::empty_like(g);
    CAI_KERNELS_CALL(gate_forward, g.data_ptr(), u.data_ptr(), y.data_ptr(), g.numel(), act,
                     g.scalar_type() == at::kBFloat16);
    return y;
}

std::pair<at::Tensor, at::Tensor> gate_backward(const at::Tensor& dy_in, const at::Tensor& g_in, const at::Tensor& u_in,
                                                gate_act act) {
    check(g_in, u_in);
    if (dy_in.sizes() != g_in.sizes()) fail("gate_backward: dy ", dy_in.sizes(), " does not match g ", g_in.sizes());
    at::Tensor g = g_in.contiguous(), u = u_in.contiguous(), dy = dy_in.to(g.scalar_type()).contiguous();
    at::Tensor dg = at::empty_like(g), du = at::empty_like(u);
    CAI_KERNELS_CALL(gate_backward, dy.data_ptr(), g.data_ptr(), u.data_ptr(), dg.data_ptr(), du.data_ptr(), g.numel(),
                     act, g.scalar_type() == at::kBFloat16);
    return {dg, du};
}

namespace {

struct gate_function : torch::autograd::Function<gate_function> {
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& g, const at::Tensor& u,
                              int64_t act) {
        ctx->save_for_backward({g, u});
        ctx->saved_data["act"] = act;
        return gate_forward(g, u, (gate_act)act);
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                   torch::autograd::variable_list grads) {
        auto saved = ctx->get_saved_variables();
        auto [dg, du] = gate_backward(grads[0], saved[0], saved[1], (gate_act)ctx->saved_data["act"].toInt());
        return {dg, du, at::Tensor()};
    }
};

}  // namespace

at::Tensor gate(const at::Tensor& g, const at::Tensor& u, gate_act act) {
    if (!at::GradMode::is_enabled() || !(g.requires_grad() || u.requires_grad())) return gate_forward(g, u, act);
    return gate_function::apply(g, u, (int64_t)act);
}

}  // namespace cai::kernels

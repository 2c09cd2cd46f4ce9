// The gated feed-forward product y = act(g) * u (SwiGLU with silu, GeGLU with
// gelu), in float32 with one rounding, and its backward.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "kernels/ops_isa.h"

namespace cai::kernels {

// The kernel's activation for a config's hidden_act name; false when it has none.
bool gate_activation(const std::string& hidden_act, gate_act* act);

// Whether gate takes g and u: kernels on, same shape and dtype (float32 or bf16).
bool gate_applies(const at::Tensor& g, const at::Tensor& u);

// g, u: (..., I) -> y: (..., I)
at::Tensor gate_forward(const at::Tensor& g, const at::Tensor& u, gate_act act);
// dy, g, u: (..., I) -> {dg, du}
std::pair<at::Tensor, at::Tensor> gate_backward(const at::Tensor& dy, const at::Tensor& g, const at::Tensor& u,
                                                gate_act act);

// gate_forward as an autograd function.
at::Tensor gate(const at::Tensor& g, const at::Tensor& u, gate_act act);

}  // namespace cai::kernels

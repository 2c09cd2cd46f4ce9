#include "train/optim.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/strings.h"

namespace cai {

bool is_no_decay_name(const std::string& name) {
    return ends_with(name, "bias") || name.find("norm") != std::string::npos || name.find("ln_") != std::string::npos;
}

adamw::adamw(std::vector<named_parameter> params, const adamw_options& options)
    : params_(std::move(params)), options_(options) {
    if (!(options.beta1 >= 0 && options.beta1 < 1)) fail("adamw: beta1 must be in [0, 1), got ", options.beta1);
    if (!(options.beta2 >= 0 && options.beta2 < 1)) fail("adamw: beta2 must be in [0, 1), got ", options.beta2);
    if (!(options.eps >= 0)) fail("adamw: eps must be >= 0, got ", options.eps);
    if (!(options.weight_decay >= 0)) fail("adamw: weight_decay must be >= 0, got ", options.weight_decay);
    std::set<std::string> seen;
    for (const auto& p : params_) {
        if (!p.value.defined()) fail("adamw: parameter \"", p.name, "\" is undefined");
        if (!at::isFloatingType(p.value.scalar_type()))
            fail("adamw: parameter \"", p.name, "\" must be a floating-point tensor");
        if (!seen.insert(p.name).second) fail("adamw: parameter name \"", p.name, "\" appears twice");
        slot s;
        s.exp_avg = at::zeros_like(p.value, at::MemoryFormat::Preserve);
        s.exp_avg_sq = at::zeros_like(p.value, at::MemoryFormat::Preserve);
        state_.push_back(s);
    }
}

void adamw::step(double lr) {
    at::NoGradGuard no_grad;
    const double beta1 = options_.beta1, beta2 = options_.beta2;
    for (size_t i = 0; i < params_.size(); ++i) {
        at::Tensor p = params_[i].value;
        const at::Tensor& grad = p.grad();
        if (!grad.defined()) continue;
        slot& s = state_[i];
        s.step += 1;
        if (params_[i].weight_decay) p.mul_(1 - lr * options_.weight_decay);
        s.exp_avg.mul_(beta1).add_(grad, 1 - beta1);
        s.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
        const double bias_correction1 = 1 - std::pow(beta1, double(s.step));
        const double bias_correction2 = 1 - std::pow(beta2, double(s.step));
        const double step_size = lr / bias_correction1;
        const double bias_correction2_sqrt = std::sqrt(bias_correction2);
        at::Tensor denom = (s.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(options_.eps);
        p.addcdiv_(s.exp_avg, denom, -step_size);
    }
}

void adamw::zero_grad() {
    for (auto& p : params_) {
        if (p.value.grad().defined()) p.value.mutable_grad() = at::Tensor();
    }
}

std::vector<std::pair<std::string, at::Tensor>> adamw::state_tensors() const {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (size_t i = 0; i < params_.size(); ++i) {
        const std::string& name = params_[i].name;
        out.emplace_back("exp_avg/" + name, state_[i].exp_avg);
        out.emplace_back("exp_avg_sq/" + name, state_[i].exp_avg_sq);
        out.emplace_back("step/" + name, at::scalar_tensor(state_[i].step, at::kLong));
    }
    return out;
}

void adamw::load_state_tensors(const std::map<std::string, at::Tensor>& state, const std::string& where) {
    at::NoGradGuard no_grad;
    auto find = [&](const std::string& key) -> const at::Tensor& {
        auto it = state.find(key);
        if (it == state.end()) fail(where, ": optimizer state has no tensor \"", key, "\"");
        return it->second;
    };
    for (size_t i = 0; i < params_.size(); ++i) {
        const std::string& name = params_[i].name;
        const at::Tensor& m = find("exp_avg/" + name);
        const at::Tensor& v = find("exp_avg_sq/" + name);
        const at::Tensor& t = find("step/" + name);
        if (m.sizes() != params_[i].value.sizes() || v.sizes() != params_[i].value.sizes())
            fail(where, ": optimizer state for \"", name, "\" has shape ", m.sizes(), " but the parameter has ",
                 params_[i].value.sizes());
        state_[i].exp_avg.copy_(m);
        state_[i].exp_avg_sq.copy_(v);
        state_[i].step = t.item<int64_t>();
    }
}

double grad_norm(const std::vector<named_parameter>& params) {
    std::vector<at::Tensor> norms;
    for (const auto& p : params) {
        const at::Tensor& g = p.value.grad();
        // In the gradient's dtype like torch, but at least float32 (bf16 sums lose too much).
        if (g.defined()) norms.push_back(at::norm(g.scalar_type() == at::kDouble ? g.detach() : g.detach().to(at::kFloat), 2));
    }
    if (norms.empty()) return 0.0;
    for (auto& n : norms) n = n.to(at::kDouble);
    return at::norm(at::stack(norms), 2).item<double>();
}

double clip_grad_norm(const std::vector<named_parameter>& params, double max_norm) {
    if (!(max_norm > 0)) fail("clip_grad_norm: max_grad_norm must be positive, got ", max_norm);
    const double total_norm = grad_norm(params);
    const double clip_coef = std::min(1.0, max_norm / (total_norm + 1e-6));
    at::NoGradGuard no_grad;
    for (const auto& p : params) {
        at::Tensor g = p.value.grad();
        if (g.defined()) g.mul_(clip_coef);
    }
    return total_norm;
}

void check_finite(const char* what, double value, int64_t step) {
    if (std::isfinite(value)) return;
    fail("training: ", what, " is ", std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf"), " at step ", step,
         "; lower the learning rate, set max_grad_norm, check the batch for empty or very long sequences, "
         "or resume from the last checkpoint");
}

}  // namespace cai

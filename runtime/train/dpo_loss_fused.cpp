// DPO losses fused over the batch (see dpo_loss_fused.h). Each loss is written with
// its derivative by hand; z = beta * x is the scaled margin, s(z) the
// sigmoid, ls(z) = log s(z), and s'(z) = s(z) s(-z).
#include "train/dpo_loss_fused.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace cai {
namespace {

double sig(double z) { return z >= 0 ? 1 / (1 + std::exp(-z)) : std::exp(z) / (1 + std::exp(z)); }
double log_sig(double z) { return z >= 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z)); }

// -(1 - ls) log s(z) - ls log s(-z), and its derivative in z.
void smoothed(double z, double ls, double& loss, double& dz) {
    loss = -(1 - ls) * log_sig(z) - ls * log_sig(-z);
    dz = -(1 - ls) * sig(-z) + ls * sig(z);
}

// Indices that sort v ascending (stable).
std::vector<int64_t> argsort(const std::vector<double>& v) {
    std::vector<int64_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return v[a] < v[b]; });
    return idx;
}

std::vector<double> values_of(const at::Tensor& t) {
    at::Tensor d = t.detach().to(at::kDouble).contiguous();
    return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

at::Tensor tensor_of(const std::vector<double>& v) { return at::tensor(v, at::kDouble); }

}  // namespace

dpo_loss_pass dpo_loss_pass_forward(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                                    const at::Tensor& reference_chosen, const at::Tensor& reference_rejected,
                                    double beta, const std::string& t, double label_smoothing, bool reference_free,
                                    double tau) {
    dpo_loss_check_inputs(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta, t,
                          label_smoothing, tau);
    const std::vector<double> pc = values_of(policy_chosen), pr = values_of(policy_rejected);
    const std::vector<double> rc = values_of(reference_chosen), rr = values_of(reference_rejected);
    const int64_t n = (int64_t)pc.size();
    const double u = reference_free ? 0.0 : 1.0, ls = label_smoothing;
    std::vector<double> loss(n), c[4], chosen_rewards(n), rejected_rewards(n);
    std::vector<int64_t> index[4];
    for (int j = 0; j < 4; ++j) {
        c[j].assign(n, 0.0);
        index[j].resize(n);
        std::iota(index[j].begin(), index[j].end(), 0);
    }
    // d loss / d x where x = (pc - pr) - u (rc - rr).
    auto through_logits = [&](int64_t i, double dx) {
        c[0][i] = dx;
        c[1][i] = -dx;
        c[2][i] = -u * dx;
        c[3][i] = u * dx;
    };
    double metric_acc = 0, margin = 0, mean_c = 0, mean_r = 0, logp_c = 0, logp_r = 0;
    std::vector<int64_t> sort_a, sort_b;
    if (t == "aot_pair") {
        std::vector<double> a(n), b(n);
        for (int64_t i = 0; i < n; ++i) a[i] = pc[i] - rc[i], b[i] = pr[i] - rr[i];
        sort_a = argsort(a);
        sort_b = argsort(b);
    } else if (t == "aot") {
        std::vector<double> a(n), b(n);
        for (int64_t i = 0; i < n; ++i) a[i] = pc[i] - pr[i], b[i] = rc[i] - rr[i];
        sort_a = argsort(a);
        sort_b = argsort(b);
    }
    for (int64_t i = 0; i < n; ++i) {
        const double x = (pc[i] - pr[i]) - u * (rc[i] - rr[i]);
        const double z = beta * x;
        double l = 0, dz = 0;
        if (t == "sigmoid") {
            smoothed(z, ls, l, dz);
            through_logits(i, beta * dz);
        } else if (t == "robust") {
            l = (-(1 - ls) * log_sig(z) + ls * log_sig(-z)) / (1 - 2 * ls);
            dz = (-(1 - ls) * sig(-z) - ls * sig(z)) / (1 - 2 * ls);
            through_logits(i, beta * dz);
        } else if (t == "exo_pair") {
            const double eps = ls == 0 ? 1e-3 : ls;
            const double a = log_sig(z) - std::log(1 - eps), b = log_sig(-z) - std::log(eps);
            l = sig(z) * a + sig(-z) * b;
            dz = sig(z) * sig(-z) * (a - b);
            through_logits(i, beta * dz);
        } else if (t == "hinge") {
            l = std::max(0.0, 1 - z);
            through_logits(i, 1 - z > 0 ? -beta : 0.0);
        } else if (t == "ipo") {
            const double d = x - 1 / (2 * beta);
            l = d * d;
            through_logits(i, 2 * d);
        } else if (t == "sppo_hard") {
            const double a = pc[i] - rc[i] - 0.5 / beta, b = pr[i] - rr[i] + 0.5 / beta;
            l = a * a + b * b;
            c[0][i] = 2 * a, c[2][i] = -2 * a, c[1][i] = 2 * b, c[3][i] = -2 * b;
        } else if (t == "nca_pair") {
            const double cr = beta * (pc[i] - rc[i]), rj = beta * (pr[i] - rr[i]);
            l = -log_sig(cr) - 0.5 * log_sig(-cr) - 0.5 * log_sig(-rj);
            const double dc = -sig(-cr) + 0.5 * sig(cr), dr = 0.5 * sig(rj);
            c[0][i] = beta * dc, c[2][i] = -beta * dc, c[1][i] = beta * dr, c[3][i] = -beta * dr;
        } else if (t == "aot_pair" || t == "aot") {
            // Rank i compares the i-th smallest of two sorted sides.
            const int64_t a = sort_a[i], b = sort_b[i];
            const double delta = t == "aot_pair" ? (pc[a] - rc[a]) - (pr[b] - rr[b]) : (pc[a] - pr[a]) - (rc[b] - rr[b]);
            smoothed(beta * delta, ls, l, dz);
            const double k = beta * dz;
            if (t == "aot_pair") {
                index[0][i] = a, index[2][i] = a, index[1][i] = b, index[3][i] = b;
                c[0][i] = k, c[2][i] = -k, c[1][i] = -k, c[3][i] = k;
            } else {
                index[0][i] = a, index[1][i] = a, index[2][i] = b, index[3][i] = b;
                c[0][i] = k, c[1][i] = -k, c[2][i] = -k, c[3][i] = k;
            }
        } else if (t == "apo_zero") {
            const double cl = beta * (pc[i] - u * rc[i]), rl = beta * (pr[i] - u * rr[i]);
            l = 1 - sig(cl) + sig(rl);
            const double dc = -beta * sig(cl) * sig(-cl), dr = beta * sig(rl) * sig(-rl);
            c[0][i] = dc, c[2][i] = -u * dc, c[1][i] = dr, c[3][i] = -u * dr;
        } else if (t == "apo_down") {
            const double cl = pc[i] - u * rc[i], rl = pr[i] - u * rr[i];
            const double zc = beta * cl, zd = beta * (cl - rl);
            l = sig(zc) + 1 - sig(zd);
            const double dd = -beta * sig(zd) * sig(-zd);  // d loss / d (cl - rl)
            const double dc = beta * sig(zc) * sig(-zc) + dd, dr = -dd;
            c[0][i] = dc, c[2][i] = -u * dc, c[1][i] = dr, c[3][i] = -u * dr;
        } else {  // discopop: always against the reference
            const double s = beta * ((pc[i] - pr[i]) - (rc[i] - rr[i]));
            const double mod = sig(s / tau), dmod = mod * (1 - mod) / tau;
            const double e = std::exp(-s);
            l = -log_sig(s) * (1 - mod) + e * mod;
            const double ds = -sig(-s) * (1 - mod) + log_sig(s) * dmod - e * mod + e * dmod;
            c[0][i] = beta * ds, c[1][i] = -beta * ds, c[2][i] = -beta * ds, c[3][i] = beta * ds;
        }
        loss[i] = l;
        chosen_rewards[i] = beta * (pc[i] - rc[i]);
        rejected_rewards[i] = beta * (pr[i] - rr[i]);
        mean_c += chosen_rewards[i];
        mean_r += rejected_rewards[i];
        metric_acc += chosen_rewards[i] > rejected_rewards[i] ? 1 : 0;
        margin += chosen_rewards[i] - rejected_rewards[i];
        logp_c += pc[i];
        logp_r += pr[i];
    }
    dpo_loss_pass out;
    out.losses = tensor_of(loss);
    out.chosen_rewards = tensor_of(chosen_rewards);
    out.rejected_rewards = tensor_of(rejected_rewards);
    for (int j = 0; j < 4; ++j) {
        out.coef[j] = tensor_of(c[j]);
        out.index[j] = at::tensor(index[j], at::kLong);
    }
    const double count = double(n);
    out.metrics["rewards/chosen"] = mean_c / count;
    out.metrics["rewards/rejected"] = mean_r / count;
    out.metrics["rewards/accuracies"] = metric_acc / count;
    out.metrics["rewards/margins"] = margin / count;
    out.metrics["logps/chosen"] = logp_c / count;
    out.metrics["logps/rejected"] = logp_r / count;
    return out;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct dpo_loss_function : public torch::autograd::Function<dpo_loss_function> {
    // Returns the losses (N); pass holds what the backward pass needs.
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& pc, const at::Tensor& pr, const at::Tensor& rc,
                              const at::Tensor& rr, const at::Tensor& losses, const std::vector<at::Tensor>& coef,
                              const std::vector<at::Tensor>& index) {
        std::vector<at::Tensor> saved;
        for (int j = 0; j < 4; ++j) saved.push_back(coef[j]);
        for (int j = 0; j < 4; ++j) saved.push_back(index[j]);
        ctx->save_for_backward(saved);
        ctx->saved_data["types"] = std::vector<int64_t>{(int64_t)pc.scalar_type(), (int64_t)pr.scalar_type(),
                                                        (int64_t)rc.scalar_type(), (int64_t)rr.scalar_type()};
        return losses.clone();
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        // d input_j[index_j[i]] += grad[i] * coef_j[i]
        const at::Tensor g = grads[0].to(at::kDouble);  // (N)
        variable_list saved = ctx->get_saved_variables();
        const std::vector<int64_t> types = ctx->saved_data["types"].toIntVector();
        variable_list out(7);
        for (int j = 0; j < 4; ++j) {
            at::Tensor d = at::zeros_like(g).index_add_(0, saved[4 + j], g * saved[j]);
            out[j] = d.to((at::ScalarType)types[j]);
        }
        return out;
    }
};

}  // namespace

dpo_loss_result dpo_loss_fused(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                               const at::Tensor& reference_chosen, const at::Tensor& reference_rejected, double beta,
                               const std::string& loss_type, double label_smoothing, bool reference_free,
                               double discopop_tau, std::map<std::string, double>* metrics) {
    dpo_loss_pass pass = dpo_loss_pass_forward(policy_chosen, policy_rejected, reference_chosen, reference_rejected,
                                               beta, loss_type, label_smoothing, reference_free, discopop_tau);
    const at::ScalarType type = at::promote_types(
        at::promote_types(policy_chosen.scalar_type(), policy_rejected.scalar_type()),
        at::promote_types(reference_chosen.scalar_type(), reference_rejected.scalar_type()));
    dpo_loss_result r;
    r.losses = dpo_loss_function::apply(policy_chosen, policy_rejected, reference_chosen, reference_rejected,
                                        pass.losses.to(type), std::vector<at::Tensor>(pass.coef, pass.coef + 4),
                                        std::vector<at::Tensor>(pass.index, pass.index + 4));
    r.chosen_rewards = pass.chosen_rewards.to(type);
    r.rejected_rewards = pass.rejected_rewards.to(type);
    if (metrics) *metrics = pass.metrics;
    return r;
}

}  // namespace cai

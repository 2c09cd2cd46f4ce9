#include "train/dpo_loss.h"

#include <cmath>
#include <tuple>

#include "core/error.h"

namespace cai {
namespace {

void check_pair_tensor(const at::Tensor& t, const char* name, int64_t n) {
    if (!t.defined()) fail("dpo_loss: ", name, " is undefined");
    if (t.dim() != 1) fail("dpo_loss: ", name, " must be a 1-D tensor (N), got ", t.dim(), " dimensions");
    if (t.size(0) != n)
        fail("dpo_loss: ", name, " has ", t.size(0), " entries but policy_chosen has ", n,
             "; all four inputs need one value per pair");
    if (!at::isFloatingType(t.scalar_type())) fail("dpo_loss: ", name, " must be a floating-point tensor");
}

// -log sigmoid(beta * logits) weighted by (1 - ls), plus -log sigmoid(-beta * logits) weighted by ls.
at::Tensor smoothed_sigmoid_loss(const at::Tensor& scaled, double label_smoothing) {
    return -at::log_sigmoid(scaled) * (1 - label_smoothing) - at::log_sigmoid(-scaled) * label_smoothing;
}

at::Tensor sorted(const at::Tensor& t) { return std::get<0>(at::sort(t, 0)); }

}  // namespace

const std::vector<std::string>& dpo_loss_types() {
    static const std::vector<std::string> names = {"sigmoid",  "robust",   "ipo",      "hinge",
                                                   "exo_pair", "sppo_hard", "nca_pair", "apo_zero",
                                                   "apo_down", "aot",       "aot_pair", "discopop"};
    return names;
}

bool is_dpo_loss_type(const std::string& name) {
    for (const auto& n : dpo_loss_types())
        if (n == name) return true;
    return false;
}

std::string dpo_loss_types_joined() {
    std::string out;
    for (const auto& n : dpo_loss_types()) out += (out.empty() ? "" : ", ") + n;
    return out;
}

void dpo_loss_check_inputs(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                           const at::Tensor& reference_chosen, const at::Tensor& reference_rejected, double beta,
                           const std::string& loss_type, double label_smoothing, double discopop_tau) {
    if (!is_dpo_loss_type(loss_type))
        fail("dpo_loss: unknown loss \"", loss_type, "\"; valid losses: ", dpo_loss_types_joined());
    if (!policy_chosen.defined() || policy_chosen.dim() != 1)
        fail("dpo_loss: policy_chosen must be a 1-D tensor (N)");
    const int64_t n = policy_chosen.size(0);
    check_pair_tensor(policy_chosen, "policy_chosen", n);
    check_pair_tensor(policy_rejected, "policy_rejected", n);
    check_pair_tensor(reference_chosen, "reference_chosen", n);
    check_pair_tensor(reference_rejected, "reference_rejected", n);
    if (!(beta > 0) || !std::isfinite(beta)) fail("dpo_loss: beta must be a positive number, got ", beta);
    if (!(label_smoothing >= 0 && label_smoothing <= 0.5))
        fail("dpo_loss: label_smoothing must be in [0, 0.5], got ", label_smoothing);
    if (loss_type == "robust" && label_smoothing >= 0.5)
        fail("dpo_loss: the robust loss divides by (1 - 2 * label_smoothing); label_smoothing must be < 0.5");
    if (!(discopop_tau > 0)) fail("dpo_loss: discopop_tau must be positive, got ", discopop_tau);
}

dpo_loss_result dpo_loss_forward(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                                 const at::Tensor& reference_chosen, const at::Tensor& reference_rejected,
                                 double beta, const std::string& loss_type, double label_smoothing,
                                 bool reference_free, double discopop_tau) {
    dpo_loss_check_inputs(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta, loss_type,
                          label_smoothing, discopop_tau);

    // All (N). The reference is dropped from these three when reference_free.
    const double use_reference = reference_free ? 0.0 : 1.0;
    at::Tensor chosen_logratios = policy_chosen - use_reference * reference_chosen;
    at::Tensor rejected_logratios = policy_rejected - use_reference * reference_rejected;
    at::Tensor logratios = policy_chosen - policy_rejected;
    at::Tensor ref_logratios = use_reference * (reference_chosen - reference_rejected);
    at::Tensor logits = logratios - ref_logratios;

    at::Tensor losses;
    const std::string& t = loss_type;
    if (t == "sigmoid") {
        losses = smoothed_sigmoid_loss(beta * logits, label_smoothing);
    } else if (t == "robust") {
        at::Tensor scaled = beta * logits;
        losses = (-at::log_sigmoid(scaled) * (1 - label_smoothing) + at::log_sigmoid(-scaled) * label_smoothing) /
                 (1 - 2 * label_smoothing);
    } else if (t == "exo_pair") {
        // EXO eqn (16): KL between the model's pair distribution and the smoothed labels.
        const double eps = label_smoothing == 0 ? 1e-3 : label_smoothing;
        at::Tensor scaled = beta * logits;
        losses = at::sigmoid(scaled) * (at::log_sigmoid(scaled) - std::log(1 - eps)) +
                 at::sigmoid(-scaled) * (at::log_sigmoid(-scaled) - std::log(eps));
    } else if (t == "hinge") {
        losses = at::relu(1 - beta * logits);
    } else if (t == "ipo") {
        // IPO eqn (17): regress the log-ratio gap onto 1 / (2 beta).
        losses = at::pow(logits - 1 / (2 * beta), 2);
    } else if (t == "sppo_hard") {
        // SPPO with hard probabilities: chosen log-ratio -> +1/(2 beta), rejected -> -1/(2 beta).
        at::Tensor a = policy_chosen - reference_chosen;
        at::Tensor b = policy_rejected - reference_rejected;
        losses = at::pow(a - 0.5 / beta, 2) + at::pow(b + 0.5 / beta, 2);
    } else if (t == "nca_pair") {
        at::Tensor chosen_reward = (policy_chosen - reference_chosen) * beta;
        at::Tensor rejected_reward = (policy_rejected - reference_rejected) * beta;
        losses = -at::log_sigmoid(chosen_reward) - 0.5 * at::log_sigmoid(-chosen_reward) -
                 0.5 * at::log_sigmoid(-rejected_reward);
    } else if (t == "aot_pair") {
        // AOT, paired: sort each side's policy/reference log-ratios over the batch, then compare rank by rank.
        at::Tensor chosen_sorted = sorted(policy_chosen - reference_chosen);
        at::Tensor rejected_sorted = sorted(policy_rejected - reference_rejected);
        at::Tensor delta = chosen_sorted - rejected_sorted;
        losses = smoothed_sigmoid_loss(beta * delta, label_smoothing);
    } else if (t == "aot") {
        at::Tensor logratios_sorted = sorted(policy_chosen - policy_rejected);
        at::Tensor ref_logratios_sorted = sorted(reference_chosen - reference_rejected);
        at::Tensor delta = logratios_sorted - ref_logratios_sorted;
        losses = smoothed_sigmoid_loss(beta * delta, label_smoothing);
    } else if (t == "apo_zero") {
        // APO eqn (7): raise the chosen likelihood, lower the rejected one.
        at::Tensor losses_chosen = 1 - at::sigmoid(beta * chosen_logratios);
        at::Tensor losses_rejected = at::sigmoid(beta * rejected_logratios);
        losses = losses_chosen + losses_rejected;
    } else if (t == "apo_down") {
        // APO eqn (8): lower the chosen likelihood, and the rejected one more.
        at::Tensor losses_chosen = at::sigmoid(beta * chosen_logratios);
        at::Tensor losses_rejected = 1 - at::sigmoid(beta * (chosen_logratios - rejected_logratios));
        losses = losses_chosen + losses_rejected;
    } else {  // discopop
        // DiscoPOP eqn (5): blend the logistic and exponential losses by sigmoid(beta * logits / tau).
        at::Tensor scaled = (logratios - (reference_chosen - reference_rejected)) * beta;
        at::Tensor log_ratio_modulation = at::sigmoid(scaled / discopop_tau);
        at::Tensor logistic_component = -at::log_sigmoid(scaled);
        at::Tensor exp_component = at::exp(-scaled);
        losses = logistic_component * (1 - log_ratio_modulation) + exp_component * log_ratio_modulation;
    }

    dpo_loss_result result;
    result.losses = losses;
    result.chosen_rewards = (beta * (policy_chosen - reference_chosen)).detach();
    result.rejected_rewards = (beta * (policy_rejected - reference_rejected)).detach();
    return result;
}

std::map<std::string, double> dpo_metrics(const dpo_loss_result& result, const at::Tensor& policy_chosen,
                                          const at::Tensor& policy_rejected) {
    const at::Tensor& chosen = result.chosen_rewards;
    const at::Tensor& rejected = result.rejected_rewards;
    std::map<std::string, double> m;
    m["rewards/chosen"] = chosen.mean().item<double>();
    m["rewards/rejected"] = rejected.mean().item<double>();
    m["rewards/accuracies"] = (chosen > rejected).to(at::kDouble).mean().item<double>();
    m["rewards/margins"] = (chosen - rejected).mean().item<double>();
    m["logps/chosen"] = policy_chosen.detach().mean().item<double>();
    m["logps/rejected"] = policy_rejected.detach().mean().item<double>();
    return m;
}

}  // namespace cai

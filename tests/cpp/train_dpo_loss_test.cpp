// runtime/train/dpo_loss: every loss type against values worked out by hand
// from TRL's formulas, gradients against finite differences, and the errors.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/dpo_loss.h"
#include "test_util.h"

namespace {

using test_util::error_of;

using at::Tensor;

Tensor vec(std::vector<double> v) { return at::tensor(v, at::kDouble); }

// Three pairs, beta = 0.5:
//   logratios     = pc - pr = [ 1,   -1,   0.5]
//   ref_logratios = rc - rr = [ 0,    0,   1  ]
//   logits                  = [ 1,   -1,  -0.5]
//   a = pc - rc             = [ 0.5, -0.5, -1 ]   (chosen log-ratio)
//   b = pr - rr             = [-0.5,  0.5, -0.5]  (rejected log-ratio)
// e.g. sigmoid: -log sigmoid(0.5 * 1) = log(1 + e^-0.5) = 0.474077;
//      ipo: (logits - 1/(2*0.5))^2 = [0, 4, 2.25]; hinge: relu(1 - 0.5*logits) = [0.5, 1.5, 1.25];
//      sppo_hard: (a - 1)^2 + (b + 1)^2 = [0.5, 4.5, 4.25];
//      aot: sort(logratios) - sort(ref_logratios) = [-1, 0.5, 1] - [0, 0, 1] = [-1, 0.5, 0].
const std::vector<double> pc = {-1.0, -2.0, -3.0};
const std::vector<double> pr = {-2.0, -1.0, -3.5};
const std::vector<double> rc = {-1.5, -1.5, -2.0};
const std::vector<double> rr = {-1.5, -1.5, -3.0};
const double beta = 0.5;

struct expected_row {
    const char* loss;
    double label_smoothing;
    std::vector<double> losses;
};

const std::vector<expected_row> expected = {
    {"sigmoid", 0, {0.474076984180, 0.974076984180, 0.825939419879}},
    {"sigmoid", 0.1, {0.524076984180, 0.924076984180, 0.800939419879}},
    {"robust", 0, {0.474076984180, 0.974076984180, 0.825939419879}},
    {"robust", 0.1, {0.411576984180, 1.036576984180, 0.857189419879}},
    {"ipo", 0, {0.0, 4.0, 2.25}},
    {"hinge", 0, {0.5, 1.5, 1.25}},
    {"exo_pair", 0, {1.945734000110, 3.637327142047, 3.198420439613}},  // eps = 1e-3
    {"exo_pair", 0.2, {0.083678732983, 0.423208093607, 0.317090369789}},
    {"sppo_hard", 0, {0.5, 4.5, 4.25}},
    {"nca_pair", 0, {1.276878839758, 1.526878839758, 1.499085186210}},
    {"apo_zero", 0, {0.875646998228, 1.124353001772, 1.060282830316}},
    {"apo_down", 0, {0.939717169684, 1.060282830316, 0.939717169684}},
    {"aot", 0, {0.974076984180, 0.575939419879, 0.693147180560}},
    {"aot", 0.1, {0.924076984180, 0.600939419879, 0.693147180560}},
    {"aot_pair", 0, {0.825939419879, 0.693147180560, 0.693147180560}},
    {"aot_pair", 0.1, {0.800939419879, 0.693147180560, 0.693147180560}},
    {"discopop", 0, {0.606524646598, 0.974107611593, 0.829005321166}},  // tau = 0.05
};

void require_values(const Tensor& t, const std::vector<double>& want, double tol, const std::string& what) {
    INFO(what);
    REQUIRE(t.dim() == 1);
    REQUIRE(t.size(0) == (int64_t)want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        INFO("entry " << i);
        REQUIRE(t[i].item<double>() == Approx(want[i]).margin(tol));
    }
}

}  // namespace

TEST_CASE("dpo_loss: every loss type matches the hand-worked table") {
    REQUIRE(cai::dpo_loss_types().size() == 12);
    for (const auto& row : expected) {
        auto r = cai::dpo_loss_forward(vec(pc), vec(pr), vec(rc), vec(rr), beta, row.loss, row.label_smoothing);
        require_values(r.losses, row.losses, 1e-9, std::string(row.loss) + " ls=" + std::to_string(row.label_smoothing));
        // Rewards are beta * (policy - reference) for every loss type.
        require_values(r.chosen_rewards, {0.25, -0.25, -0.5}, 1e-12, "chosen_rewards");
        require_values(r.rejected_rewards, {-0.25, 0.25, -0.25}, 1e-12, "rejected_rewards");
    }
    // Every type appears in the table.
    for (const auto& name : cai::dpo_loss_types()) {
        bool seen = false;
        for (const auto& row : expected) seen = seen || name == row.loss;
        INFO(name);
        REQUIRE(seen);
    }
}

TEST_CASE("dpo_loss: float32 inputs give float32 results close to the table") {
    auto r = cai::dpo_loss_forward(vec(pc).to(at::kFloat), vec(pr).to(at::kFloat), vec(rc).to(at::kFloat),
                                   vec(rr).to(at::kFloat), beta, "sigmoid");
    REQUIRE(r.losses.scalar_type() == at::kFloat);
    require_values(r.losses, {0.474076984180, 0.974076984180, 0.825939419879}, 1e-6, "sigmoid fp32");
}

TEST_CASE("dpo_loss: reference_free drops the reference from logits and log-ratios") {
    // logits = logratios = [1, -1, 0.5]; rewards still use the reference.
    auto sig = cai::dpo_loss_forward(vec(pc), vec(pr), vec(rc), vec(rr), beta, "sigmoid", 0, true);
    require_values(sig.losses, {0.474076984180, 0.974076984180, 0.575939419879}, 1e-9, "sigmoid");
    require_values(sig.chosen_rewards, {0.25, -0.25, -0.5}, 1e-12, "chosen_rewards");
    auto ipo = cai::dpo_loss_forward(vec(pc), vec(pr), vec(rc), vec(rr), beta, "ipo", 0, true);
    require_values(ipo.losses, {0.0, 4.0, 0.25}, 1e-12, "ipo");
    // apo_zero with chosen/rejected log-ratios pc and pr: 1 - sigmoid(0.5 pc) + sigmoid(0.5 pr).
    auto apo = cai::dpo_loss_forward(vec(pc), vec(pr), vec(rc), vec(rr), beta, "apo_zero", 0, true);
    require_values(apo.losses, {0.891400752572, 1.108599247428, 0.965621674225}, 1e-9, "apo_zero");
}

TEST_CASE("dpo_loss: sigmoid gradient is -beta * sigmoid(-beta * logits), opposite for rejected") {
    Tensor c = vec(pc).requires_grad_(true);
    Tensor r = vec(pr).requires_grad_(true);
    auto out = cai::dpo_loss_forward(c, r, vec(rc), vec(rr), beta, "sigmoid");
    REQUIRE_FALSE(out.chosen_rewards.requires_grad());
    REQUIRE_FALSE(out.rejected_rewards.requires_grad());
    out.losses.sum().backward();
    // logits = [1, -1, -0.5]: -0.5 * sigmoid(-0.5), -0.5 * sigmoid(0.5), -0.5 * sigmoid(0.25)
    std::vector<double> want = {-0.5 * 0.377540668798, -0.5 * 0.622459331202, -0.5 * 0.562176500886};
    require_values(c.grad(), want, 1e-9, "d/d policy_chosen");
    require_values(r.grad(), {-want[0], -want[1], -want[2]}, 1e-9, "d/d policy_rejected");
}

TEST_CASE("dpo_loss: autograd matches central finite differences for every loss type") {
    const double h = 1e-6;
    // The sorting losses are not differentiable at ties: b here is [-0.5, 0.5, -0.6].
    const std::vector<double> rr = {-1.5, -1.5, -2.9};
    for (const auto& name : cai::dpo_loss_types()) {
        for (double ls : {0.0, 0.1}) {
            Tensor c = vec(pc).requires_grad_(true);
            Tensor r = vec(pr).requires_grad_(true);
            cai::dpo_loss_forward(c, r, vec(rc), vec(rr), beta, name, ls).losses.sum().backward();
            for (int side = 0; side < 2; ++side) {
                for (int i = 0; i < 3; ++i) {
                    std::vector<double> plus_c = pc, minus_c = pc, plus_r = pr, minus_r = pr;
                    if (side == 0) {
                        plus_c[i] += h;
                        minus_c[i] -= h;
                    } else {
                        plus_r[i] += h;
                        minus_r[i] -= h;
                    }
                    double f_plus = cai::dpo_loss_forward(vec(plus_c), vec(plus_r), vec(rc), vec(rr), beta, name, ls)
                                        .losses.sum().item<double>();
                    double f_minus = cai::dpo_loss_forward(vec(minus_c), vec(minus_r), vec(rc), vec(rr), beta, name, ls)
                                         .losses.sum().item<double>();
                    double numeric = (f_plus - f_minus) / (2 * h);
                    double analytic = (side == 0 ? c : r).grad()[i].item<double>();
                    INFO(name << " ls=" << ls << (side == 0 ? " chosen[" : " rejected[") << i << "]");
                    REQUIRE(analytic == Approx(numeric).margin(1e-6));
                }
            }
        }
    }
}

TEST_CASE("dpo_loss: metrics use TRL's names and means") {
    auto r = cai::dpo_loss_forward(vec(pc), vec(pr), vec(rc), vec(rr), beta, "sigmoid");
    auto m = cai::dpo_metrics(r, vec(pc), vec(pr));
    REQUIRE(m.at("rewards/chosen") == Approx((0.25 - 0.25 - 0.5) / 3));
    REQUIRE(m.at("rewards/rejected") == Approx((-0.25 + 0.25 - 0.25) / 3));
    REQUIRE(m.at("rewards/accuracies") == Approx(1.0 / 3));  // only pair 0 has chosen > rejected
    REQUIRE(m.at("rewards/margins") == Approx((0.5 - 0.5 - 0.25) / 3));
    REQUIRE(m.at("logps/chosen") == Approx(-2.0));
    REQUIRE(m.at("logps/rejected") == Approx(-6.5 / 3));
}

TEST_CASE("dpo_loss: errors name the input and list the valid losses") {
    std::string e = error_of([] { cai::dpo_loss_forward(vec(pc), vec(pr), vec(rc), vec(rr), beta, "kto"); });
    REQUIRE(e.find("unknown loss \"kto\"") != std::string::npos);
    REQUIRE(e.find("sigmoid, robust, ipo, hinge, exo_pair, sppo_hard, nca_pair, apo_zero, apo_down, aot, aot_pair, "
                   "discopop") != std::string::npos);
    e = error_of([] { cai::dpo_loss_forward(vec(pc), vec({-1, -2}), vec(rc), vec(rr), beta, "sigmoid"); });
    REQUIRE(e.find("policy_rejected has 2 entries") != std::string::npos);
    e = error_of([] { cai::dpo_loss_forward(vec(pc), vec(pr), vec(rc), vec(rr), 0.0, "sigmoid"); });
    REQUIRE(e.find("beta must be a positive number") != std::string::npos);
    e = error_of([] { cai::dpo_loss_forward(vec(pc), vec(pr), vec(rc), vec(rr), beta, "robust", 0.5); });
    REQUIRE(e.find("label_smoothing must be < 0.5") != std::string::npos);
    e = error_of([] { cai::dpo_loss_forward(vec(pc), vec(pr), vec(rc), vec(rr), beta, "sigmoid", 0.7); });
    REQUIRE(e.find("label_smoothing must be in [0, 0.5]") != std::string::npos);
}

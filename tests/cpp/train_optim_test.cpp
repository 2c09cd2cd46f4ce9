// runtime/train/optim and schedule: AdamW steps worked out by hand from
// torch.optim.AdamW's update rule, clipping as clip_grad_norm_, and the
// transformers learning-rate schedules as literal tables.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "test_util.h"

namespace {

using test_util::error_of;

using at::Tensor;

Tensor vec(std::vector<double> v) { return at::tensor(v, at::kDouble); }

void set_grad(Tensor& p, std::vector<double> g) { p.mutable_grad() = vec(g); }

}  // namespace

TEST_CASE("adamw: three steps match the hand-worked torch.optim.AdamW update") {
    // lr = 0.1, weight_decay = 0.01, betas (0.9, 0.999), eps = 1e-8.
    // Step 1 with g = [0.5, -1]: p *= 0.999 -> [0.999, -1.998]; m = 0.1 g, v = 0.001 g^2;
    // bias corrections 0.1 and 0.001 make the update lr * g / (|g| + 1e-8), so
    // p = [0.999 - 0.1 * 0.5 / 0.50000001, -1.998 + 0.1 / 1.00000001] = [0.899000002, -1.898000001].
    Tensor w = vec({1.0, -2.0}).requires_grad_(true);
    Tensor b = vec({0.5}).requires_grad_(true);
    cai::adamw_options o;
    o.weight_decay = 0.01;
    cai::adamw opt({{"layer.weight", w, true}, {"layer.bias", b, false}}, o);

    const std::vector<std::vector<double>> w_grads = {{0.5, -1.0}, {0.25, 0.5}, {-1.0, 0.0}};
    const std::vector<std::vector<double>> b_grads = {{0.5}, {0.25}, {-1.0}};
    const std::vector<std::vector<double>> w_want = {{0.899000002000000, -1.898000001000000},
                                                     {0.804883040475462, -1.869468297369903},
                                                     {0.824713859842936, -1.847010899033080}};
    // The bias has no decay: step 1 is 0.5 - 0.1 * 0.5 / 0.50000001.
    const std::vector<double> b_want = {0.400000002000000, 0.306782040477462, 0.327417742885411};
    for (int t = 0; t < 3; ++t) {
        set_grad(w, w_grads[t]);
        set_grad(b, b_grads[t]);
        opt.step(0.1);
        INFO("step " << t + 1);
        REQUIRE(w[0].item<double>() == Approx(w_want[t][0]).margin(1e-12));
        REQUIRE(w[1].item<double>() == Approx(w_want[t][1]).margin(1e-12));
        REQUIRE(b[0].item<double>() == Approx(b_want[t]).margin(1e-12));
    }
    REQUIRE(w.requires_grad());
    opt.zero_grad();
    REQUIRE_FALSE(w.grad().defined());
}

TEST_CASE("adamw: a parameter without a gradient is skipped and keeps its own step count") {
    Tensor a = vec({1.0}).requires_grad_(true);
    Tensor c = vec({1.0}).requires_grad_(true);
    cai::adamw opt({{"a", a, true}, {"c", c, true}}, cai::adamw_options{});
    set_grad(a, {0.5});
    opt.step(0.1);
    REQUIRE(c[0].item<double>() == 1.0);
    // c's first update, at optimizer step 2, is still a bias-corrected first step: lr * sign(g).
    set_grad(c, {-2.0});
    opt.step(0.1);
    REQUIRE(c[0].item<double>() == Approx(1.1).margin(1e-8));
    auto state = opt.state_tensors();
    REQUIRE(state.size() == 6);
    REQUIRE(state[2].first == "step/a");
    REQUIRE(state[2].second.item<int64_t>() == 2);
    REQUIRE(state[5].second.item<int64_t>() == 1);
}

TEST_CASE("adamw: state round-trips through state_tensors and continues identically") {
    auto run = [](int split) {
        Tensor w = vec({0.3, -0.7, 1.1}).requires_grad_(true);
        cai::adamw_options o;
        o.weight_decay = 0.1;
        auto opt = std::make_unique<cai::adamw>(std::vector<cai::named_parameter>{{"w", w, true}}, o);
        for (int t = 0; t < 6; ++t) {
            if (t == split) {  // rebuild the optimizer from its saved state
                std::map<std::string, Tensor> saved;
                for (auto& kv : opt->state_tensors()) saved[kv.first] = kv.second.clone();
                opt = std::make_unique<cai::adamw>(std::vector<cai::named_parameter>{{"w", w, true}}, o);
                opt->load_state_tensors(saved, "test");
            }
            set_grad(w, {std::sin(t + 1.0), std::cos(t * 2.0), 0.1 * t});
            opt->step(0.05);
        }
        return w.detach().clone();
    };
    Tensor straight = run(-1);
    Tensor resumed = run(3);
    REQUIRE(at::equal(straight, resumed));
    std::string e = error_of([] {
        Tensor w = vec({1.0}).requires_grad_(true);
        cai::adamw opt({{"w", w, true}}, cai::adamw_options{});
        opt.load_state_tensors({}, "ckpt/optimizer.safetensors");
    });
    REQUIRE(e == "ckpt/optimizer.safetensors: optimizer state has no tensor \"exp_avg/w\"");
}

TEST_CASE("adamw: bad options and duplicate names are errors") {
    Tensor w = vec({1.0}).requires_grad_(true);
    cai::adamw_options o;
    o.beta1 = 1.0;
    REQUIRE(error_of([&] { cai::adamw({{"w", w, true}}, o); }).find("beta1 must be in [0, 1)") != std::string::npos);
    REQUIRE(error_of([&] { cai::adamw({{"w", w, true}, {"w", w, true}}, cai::adamw_options{}); })
                .find("\"w\" appears twice") != std::string::npos);
}

TEST_CASE("is_no_decay_name: biases and norms") {
    REQUIRE(cai::is_no_decay_name("model.layers.0.self_attn.q_proj.bias"));
    REQUIRE(cai::is_no_decay_name("model.layers.0.input_layernorm.weight"));
    REQUIRE(cai::is_no_decay_name("model.norm.weight"));
    REQUIRE_FALSE(cai::is_no_decay_name("model.layers.0.self_attn.q_proj.lora_A.weight"));
    REQUIRE_FALSE(cai::is_no_decay_name("model.embed_tokens.weight"));
}

TEST_CASE("clip_grad_norm: returns the pre-clip norm and scales to max_norm") {
    Tensor a = vec({3.0}).requires_grad_(true);
    Tensor b = vec({0.0, 4.0}).requires_grad_(true);
    Tensor none = vec({1.0}).requires_grad_(true);
    std::vector<cai::named_parameter> ps = {{"a", a, true}, {"b", b, true}, {"none", none, true}};
    set_grad(a, {3.0});
    set_grad(b, {0.0, -4.0});
    // global norm sqrt(9 + 16) = 5; coef = 1 / (5 + 1e-6)
    REQUIRE(cai::clip_grad_norm(ps, 1.0) == Approx(5.0).margin(1e-9));
    REQUIRE(a.grad()[0].item<double>() == Approx(3.0 / (5.0 + 1e-6)).margin(1e-12));
    REQUIRE(b.grad()[1].item<double>() == Approx(-4.0 / (5.0 + 1e-6)).margin(1e-12));
    // Below the limit nothing changes (coef clamps to 1).
    double before = a.grad()[0].item<double>();
    REQUIRE(cai::clip_grad_norm(ps, 10.0) == Approx(1.0).margin(1e-6));
    REQUIRE(a.grad()[0].item<double>() == before);
}

TEST_CASE("check_finite: names the quantity and the step") {
    cai::check_finite("loss", 0.7, 3);
    std::string e = error_of([] { cai::check_finite("loss", std::nan(""), 12); });
    REQUIRE(e.rfind("training: loss is nan at step 12;", 0) == 0);
    e = error_of([] { cai::check_finite("grad norm", std::numeric_limits<double>::infinity(), 4); });
    REQUIRE(e.rfind("training: grad norm is inf at step 4;", 0) == 0);
}

TEST_CASE("lr schedules: transformers' formulas as literal tables") {
    auto table = [](cai::lr_schedule s) {
        std::vector<double> out;
        for (int64_t step = 0; step <= s.total_steps; ++step) out.push_back(cai::lr_multiplier(s, step));
        return out;
    };
    auto require_table = [](const std::vector<double>& got, const std::vector<double>& want) {
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < want.size(); ++i) {
            INFO("step " << i);
            REQUIRE(got[i] == Approx(want[i]).margin(1e-12));
        }
    };
    cai::lr_schedule s;
    s.total_steps = 10;
    s.warmup_steps = 2;
    s.type = "linear";  // warmup 0, 1/2, then (10 - step) / 8
    require_table(table(s), {0, 0.5, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0});
    s.type = "cosine";  // 0.5 * (1 + cos(pi * (step - 2) / 8))
    require_table(table(s), {0, 0.5, 1, 0.961939766255643, 0.853553390593274, 0.691341716182545, 0.5,
                             0.308658283817455, 0.146446609406726, 0.038060233744357, 0});
    s.type = "constant_with_warmup";
    s.warmup_steps = 4;
    require_table(table(s), {0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1});
    s.type = "constant";
    s.warmup_steps = 0;
    require_table(table(s), {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
    // Past the end linear and cosine stay at 0.
    s.type = "linear";
    REQUIRE(cai::lr_multiplier(s, 12) == 0.0);
}

TEST_CASE("lr schedules: warmup_ratio rounds up like transformers") {
    cai::lr_schedule s;
    s.type = "linear";
    s.total_steps = 100;
    s.warmup_ratio = 0.07;  // 100 * 0.07 = 7.000000000000001 in doubles -> ceil = 8
    REQUIRE(cai::warmup_steps_of(s) == 8);
    s.total_steps = 30;
    s.warmup_ratio = 0.1;
    REQUIRE(cai::warmup_steps_of(s) == 3);
    REQUIRE(cai::lr_multiplier(s, 1) == Approx(1.0 / 3));
}

TEST_CASE("lr schedules: bad settings are errors naming the field") {
    cai::lr_schedule s;
    s.total_steps = 10;
    s.type = "cosine_with_restarts";
    REQUIRE(error_of([&] { cai::lr_multiplier(s, 0); }).find("unknown type \"cosine_with_restarts\"") !=
            std::string::npos);
    s.type = "linear";
    s.warmup_steps = 2;
    s.warmup_ratio = 0.1;
    REQUIRE(error_of([&] { cai::lr_multiplier(s, 0); }).find("not both") != std::string::npos);
    s.warmup_ratio = 0;
    s.type = "constant";
    REQUIRE(error_of([&] { cai::lr_multiplier(s, 0); }).find("use \"constant_with_warmup\"") != std::string::npos);
}

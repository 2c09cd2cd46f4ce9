// runtime/train/checkpoint, metrics and interrupt: files written atomically,
// and a run stopped by Ctrl-C then resumed from its checkpoint gives the
// same parameters, losses and metrics.jsonl bytes as a run never stopped.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <stdlib.h>

#include <csignal>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "train/checkpoint.h"
#include "train/data_order.h"
#include "train/interrupt.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "test_util.h"

namespace {

using test_util::error_of;
using test_util::temp_dir;

using at::Tensor;

std::map<std::string, Tensor> by_name(const cai::named_tensors& tensors) {
    std::map<std::string, Tensor> out;
    for (const auto& kv : tensors) out[kv.first] = kv.second;
    return out;
}

// A tiny regression "model" trained with everything a real trainer uses:
// token-budget batches over epochs, dropout from the ATen generator, AdamW
// with and without decay, a cosine schedule with warmup, clipping, metrics,
// a Ctrl-C flag polled between steps, checkpoints, and resume.
struct tiny_run {
    std::string out;
    std::vector<double> losses;
    Tensor w, b;
};

tiny_run train_tiny(const std::string& out, int64_t total_steps, int64_t interrupt_after) {
    const uint64_t seed = 1234;
    at::manual_seed(seed);
    Tensor x = at::randn({29, 3}, at::kDouble);
    Tensor y = x.matmul(at::tensor({1.5, -2.0, 0.5}, at::kDouble)) + 0.3;
    std::vector<int64_t> lengths;
    for (int i = 0; i < 29; ++i) lengths.push_back(1 + (i * 5) % 9);

    tiny_run run;
    run.out = out;
    run.w = at::zeros({3}, at::kDouble).requires_grad_(true);
    run.b = at::zeros({1}, at::kDouble).requires_grad_(true);
    cai::adamw_options o;
    o.weight_decay = 0.1;
    std::vector<cai::named_parameter> params = {{"w", run.w, true}, {"b", run.b, false}};
    cai::adamw opt(params, o);
    cai::lr_schedule schedule;
    schedule.type = "cosine";
    schedule.total_steps = total_steps;
    schedule.warmup_ratio = 0.1;
    cai::batching batching;
    batching.seed = seed;
    batching.max_tokens = 24;
    cai::batch_sampler sampler(lengths, batching);
    cai::metrics_log metrics(cai::path_join(out, "metrics.jsonl"));

    int64_t step = 0;
    at::manual_seed(seed * 31 + 7);  // the dropout stream
    std::string resume = cai::latest_checkpoint(out);
    if (!resume.empty()) {
        cai::checkpoint_state state = cai::load_checkpoint(resume);
        auto tensors = by_name(state.tensors);
        {
            at::NoGradGuard no_grad;
            run.w.copy_(tensors.at("w"));
            run.b.copy_(tensors.at("b"));
        }
        opt.load_state_tensors(by_name(state.optimizer), resume);
        cai::set_torch_rng_state(state.torch_rng);
        sampler.seek(state.data);
        step = state.step;
        metrics.truncate_after(step);
    }
    while (step < total_steps) {
        std::vector<int64_t> rows = sampler.next();
        Tensor index = at::tensor(rows, at::kLong);
        Tensor xb = at::dropout(x.index_select(0, index), 0.2, /*train=*/true);  // (B, 3)
        Tensor prediction = xb.matmul(run.w) + run.b;                           // (B)
        Tensor loss = (prediction - y.index_select(0, index)).pow(2).mean();
        cai::check_finite("loss", loss.item<double>(), step);
        loss.backward();
        double norm = cai::clip_grad_norm(params, 1.0);
        double lr = 0.2 * cai::lr_multiplier(schedule, step);
        opt.step(lr);
        opt.zero_grad();
        step += 1;
        run.losses.push_back(loss.item<double>());
        metrics.append(step, {{"loss", loss.item<double>()}, {"learning_rate", lr}, {"grad_norm", norm}});
        if (step == interrupt_after) cai::request_interrupt();  // as if Ctrl-C arrived during this step
        if (cai::interrupt_requested()) {
            cai::checkpoint_state state;
            state.step = step;
            state.seed = seed;
            state.data = sampler.position();
            state.tensors = {{"w", run.w}, {"b", run.b}};
            state.optimizer = opt.state_tensors();
            state.torch_rng = cai::torch_rng_state();
            state.metadata = R"({"lr": 0.05, "note": "tiny"})";
            state.files = {{"adapter_config.json", "{}\n"}};
            cai::save_checkpoint(out, state);
            cai::clear_interrupt();
            break;
        }
    }
    return run;
}

}  // namespace

TEST_CASE("checkpoint: a run interrupted and resumed equals a run never stopped") {
    const int64_t total = 20;
    std::string straight_dir = temp_dir();
    tiny_run straight = train_tiny(straight_dir, total, -1);
    REQUIRE(straight.losses.size() == (size_t)total);
    // Training works: the full-data loss (no dropout) falls from the zero start.
    {
        at::manual_seed(1234);
        Tensor x = at::randn({29, 3}, at::kDouble);
        Tensor y = x.matmul(at::tensor({1.5, -2.0, 0.5}, at::kDouble)) + 0.3;
        double start = y.pow(2).mean().item<double>();
        double end = (x.matmul(straight.w) + straight.b - y).pow(2).mean().item<double>();
        INFO("start " << start << " end " << end);
        REQUIRE(end < 0.5 * start);
    }

    std::string dir = temp_dir();
    tiny_run first = train_tiny(dir, total, 7);
    REQUIRE(first.losses.size() == 7);
    REQUIRE(cai::latest_checkpoint(dir) == cai::checkpoint_dir(dir, 7));
    // A line logged after the checkpoint (as a crash could leave) is dropped on resume.
    cai::metrics_log(cai::path_join(dir, "metrics.jsonl")).append(8, {{"loss", 99.0}});
    tiny_run second = train_tiny(dir, total, -1);
    REQUIRE(second.losses.size() == (size_t)(total - 7));

    for (size_t i = 0; i < 7; ++i) REQUIRE(first.losses[i] == straight.losses[i]);
    for (size_t i = 7; i < (size_t)total; ++i) REQUIRE(second.losses[i - 7] == straight.losses[i]);
    REQUIRE(at::equal(second.w, straight.w));
    REQUIRE(at::equal(second.b, straight.b));
    REQUIRE(cai::read_file(cai::path_join(dir, "metrics.jsonl")) ==
            cai::read_file(cai::path_join(straight_dir, "metrics.jsonl")));
}

TEST_CASE("checkpoint: files, metadata and round trip") {
    std::string out = temp_dir();
    cai::checkpoint_state s;
    s.step = 12;
    s.seed = 18446744073709551615ULL;
    s.data = {2, 5};
    s.tensors = {{"layer.lora_A.weight", at::arange(6, at::kFloat).reshape({2, 3})},
                 {"layer.lora_B.weight", at::ones({3, 2}, at::kBFloat16)}};
    s.optimizer = {{"step/layer.lora_A.weight", at::scalar_tensor(12, at::kLong)}};
    s.torch_rng = cai::torch_rng_state();
    s.metadata = R"({"config": {"beta": 0.1}, "best": [1, 2]})";
    s.files = {{"adapter_config.json", "{\"r\": 8}\n"}};
    std::string dir = cai::save_checkpoint(out, s);
    REQUIRE(dir == out + "/checkpoints/step-12");
    for (const char* f : {"tensors.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer_state.json",
                          "adapter_config.json"})
        REQUIRE(cai::file_exists(cai::path_join(dir, f)));
    // Nothing temporary is left behind.
    int entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(out + "/checkpoints")) {
        (void)e;
        ++entries;
    }
    REQUIRE(entries == 1);

    cai::checkpoint_state back = cai::load_checkpoint(dir);
    REQUIRE(back.step == 12);
    REQUIRE(back.seed == 18446744073709551615ULL);
    REQUIRE(back.data.epoch == 2);
    REQUIRE(back.data.batch == 5);
    REQUIRE(back.metadata == R"({"config":{"beta":0.1},"best":[1,2]})");
    auto t = by_name(back.tensors);
    REQUIRE(at::equal(t.at("layer.lora_A.weight"), s.tensors[0].second));
    REQUIRE(t.at("layer.lora_B.weight").scalar_type() == at::kBFloat16);
    REQUIRE(at::equal(back.torch_rng, s.torch_rng));
    REQUIRE(by_name(back.optimizer).at("step/layer.lora_A.weight").item<int64_t>() == 12);

    // Saving the same step again replaces it; later steps win in latest_checkpoint.
    s.data = {3, 0};
    cai::save_checkpoint(out, s);
    REQUIRE(cai::load_checkpoint(dir).data.epoch == 3);
    s.step = 30;
    cai::save_checkpoint(out, s);
    s.step = 4;
    cai::save_checkpoint(out, s);
    // An interrupted save (no trainer_state.json) is not a checkpoint.
    cai::make_directories(out + "/checkpoints/step-99.tmp.1");
    cai::make_directories(out + "/checkpoints/step-98");
    REQUIRE(cai::latest_checkpoint(out) == cai::checkpoint_dir(out, 30));
    cai::prune_checkpoints(out, 2);
    REQUIRE_FALSE(cai::file_exists(cai::checkpoint_dir(out, 4)));
    REQUIRE(cai::file_exists(cai::checkpoint_dir(out, 12)));
    REQUIRE(cai::file_exists(cai::checkpoint_dir(out, 30)));
}

TEST_CASE("checkpoint: errors name the directory and what is wrong") {
    std::string out = temp_dir();
    REQUIRE(cai::latest_checkpoint(out).empty());
    REQUIRE(error_of([&] { cai::load_checkpoint(out); }).find("not a checkpoint (no trainer_state.json)") !=
            std::string::npos);
    cai::checkpoint_state s;
    s.metadata = "[1, 2]";
    REQUIRE(error_of([&] { cai::save_checkpoint(out, s); }) == "save_checkpoint: metadata must be a JSON object");
    s.metadata = "{";
    REQUIRE(error_of([&] { cai::save_checkpoint(out, s); }).find("metadata is not valid JSON") != std::string::npos);
    s.metadata = "{}";
    s.files = {{"../evil", "x"}};
    REQUIRE(error_of([&] { cai::save_checkpoint(out, s); }).find("must be a plain file name") != std::string::npos);
    s.files.clear();
    std::string dir = cai::save_checkpoint(out, s);
    cai::write_file_atomic(cai::path_join(dir, "trainer_state.json"), R"({"format": 1, "step": "x"})");
    REQUIRE(error_of([&] { cai::load_checkpoint(dir); }).find("field \"step\" must be an integer") !=
            std::string::npos);
}

TEST_CASE("metrics_log: one object per line, in order, null for non-finite") {
    std::string out = temp_dir();
    cai::metrics_log m(out + "/run/metrics.jsonl");
    m.append(1, {{"loss", 0.5}, {"rewards/chosen", -0.25}});
    m.append(2, {{"loss", std::nan("")}});
    REQUIRE(cai::read_file(out + "/run/metrics.jsonl") ==
            "{\"step\":1,\"loss\":0.5,\"rewards/chosen\":-0.25}\n{\"step\":2,\"loss\":null}\n");
    m.truncate_after(1);
    REQUIRE(cai::read_file(out + "/run/metrics.jsonl") == "{\"step\":1,\"loss\":0.5,\"rewards/chosen\":-0.25}\n");
    REQUIRE(error_of([&] { m.append(3, {{"step", 1.0}}); }).find("\"step\" is reserved") != std::string::npos);
}

TEST_CASE("interrupt: SIGINT sets the flag once; clear re-arms it; uninstall restores the old handler") {
    static volatile sig_atomic_t previous_called = 0;
    signal(SIGINT, [](int) { previous_called = 1; });
    cai::install_interrupt_handler();
    REQUIRE_FALSE(cai::interrupt_requested());
    raise(SIGINT);
    REQUIRE(cai::interrupt_requested());
    cai::clear_interrupt();
    REQUIRE_FALSE(cai::interrupt_requested());
    raise(SIGINT);  // handled again, not fatal: clear_interrupt re-installed the handler
    REQUIRE(cai::interrupt_requested());
    cai::clear_interrupt();
    REQUIRE(previous_called == 0);
    cai::uninstall_interrupt_handler();
    raise(SIGINT);
    REQUIRE(previous_called == 1);
    REQUIRE_FALSE(cai::interrupt_requested());
    signal(SIGINT, SIG_DFL);
}

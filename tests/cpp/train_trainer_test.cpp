// runtime/train/trainer: the shared loop. A run stopped by Ctrl-C in the
// middle of a logging window and resumed gives the same parameters, losses,
// checkpoints and metrics.jsonl bytes as a run never stopped.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "train/interrupt.h"
#include "train/trainer.h"
#include "test_util.h"

namespace {

using test_util::error_of;
using test_util::temp_dir;

using at::Tensor;

struct result {
    std::vector<double> losses;
    Tensor w, b;
    int64_t total_steps = 0;
    std::string resumed_from;
};

cai::trainer_options options_for(const std::string& out) {
    cai::trainer_options o;
    o.out_dir = out;
    o.seed = 7;
    o.epochs = 3;
    o.gradient_accumulation_steps = 2;
    o.learning_rate = 0.2;
    o.adamw.weight_decay = 0.05;
    o.max_grad_norm = 1.0;
    o.schedule.type = "cosine";
    o.schedule.warmup_ratio = 0.1;
    o.batches.max_tokens = 20;
    o.logging_steps = 3;
    o.save_steps = 4;
    o.save_total_limit = 2;
    return o;
}

// Linear regression with input dropout, trained through trainer_loop.
result run(const std::string& out, int64_t interrupt_after) {
    at::manual_seed(99);
    Tensor x = at::randn({31, 3}, at::kDouble);
    Tensor y = x.matmul(at::tensor({1.5, -2.0, 0.5}, at::kDouble)) + 0.3;
    std::vector<int64_t> lengths;
    for (int i = 0; i < 31; ++i) lengths.push_back(1 + (i * 7) % 10);

    result r;
    r.w = at::zeros({3}, at::kDouble).requires_grad_(true);
    r.b = at::zeros({1}, at::kDouble).requires_grad_(true);
    cai::trainer_loop loop(options_for(out), {{"w", r.w, true}, {"b", r.b, false}}, lengths);
    loop.metadata = R"({"task": "regression"})";
    loop.extra_files = [] { return std::vector<std::pair<std::string, std::string>>{{"note.txt", "tiny\n"}}; };
    r.total_steps = loop.total_steps();
    r.resumed_from = loop.resume();
    while (!loop.done()) {
        auto micro = loop.next_micro_batches();
        double loss_sum = 0;
        double abs_error = 0;
        for (const auto& rows : micro) {
            Tensor index = at::tensor(rows, at::kLong);
            Tensor xb = at::dropout(x.index_select(0, index), 0.1, /*train=*/true);  // (B, 3)
            Tensor error = xb.matmul(r.w) + r.b - y.index_select(0, index);         // (B)
            Tensor loss = error.pow(2).mean();
            (loss / double(micro.size())).backward();
            loss_sum += loss.item<double>();
            abs_error += error.abs().mean().item<double>() / micro.size();
        }
        r.losses.push_back(loss_sum / micro.size());
        loop.finish_step(loss_sum / micro.size(), {{"abs_error", abs_error}});
        if (loop.step() == interrupt_after) cai::request_interrupt();  // Ctrl-C during the next step
    }
    loop.save_final();
    return r;
}

}  // namespace

TEST_CASE("trainer_loop: interrupted and resumed equals never stopped") {
    std::string straight_dir = temp_dir();
    result straight = run(straight_dir, -1);
    // 31 examples in token-budget batches over 3 epochs, 2 micro-batches per step.
    REQUIRE(straight.total_steps > 10);
    REQUIRE((int64_t)straight.losses.size() == straight.total_steps);
    REQUIRE(straight.resumed_from.empty());

    std::string dir = temp_dir();
    result first = run(dir, 6);  // the flag is seen after step 7, in the middle of the window 7..9
    REQUIRE(first.losses.size() == 7);
    REQUIRE(cai::latest_checkpoint(dir) == cai::checkpoint_dir(dir, 7));
    result second = run(dir, -1);
    REQUIRE(second.resumed_from == cai::checkpoint_dir(dir, 7));
    REQUIRE(first.losses.size() + second.losses.size() == straight.losses.size());
    for (size_t i = 0; i < straight.losses.size(); ++i) {
        double got = i < 7 ? first.losses[i] : second.losses[i - 7];
        INFO("step " << i + 1);
        REQUIRE(got == straight.losses[i]);
    }
    REQUIRE(at::equal(second.w, straight.w));
    REQUIRE(at::equal(second.b, straight.b));
    std::string metrics = cai::read_file(cai::path_join(dir, "metrics.jsonl"));
    REQUIRE(metrics == cai::read_file(cai::path_join(straight_dir, "metrics.jsonl")));
    REQUIRE(metrics.rfind("{\"step\":3,\"loss\":", 0) == 0);
    REQUIRE(metrics.find("\"abs_error\":") != std::string::npos);

    // save_total_limit 2: the last two checkpoints remain, the final one included.
    int64_t last = straight.total_steps;
    REQUIRE(cai::file_exists(cai::checkpoint_dir(straight_dir, last) + "/note.txt"));
    REQUIRE(cai::latest_checkpoint(straight_dir) == cai::checkpoint_dir(straight_dir, last));
    REQUIRE_FALSE(cai::file_exists(cai::checkpoint_dir(straight_dir, 4)));

    // Training worked: the full-data loss fell well below its zero-weight start.
    at::manual_seed(99);
    Tensor x = at::randn({31, 3}, at::kDouble);
    Tensor y = x.matmul(at::tensor({1.5, -2.0, 0.5}, at::kDouble)) + 0.3;
    REQUIRE((x.matmul(straight.w) + straight.b - y).pow(2).mean().item<double>() < 0.5 * y.pow(2).mean().item<double>());
}

TEST_CASE("trainer_loop: a finished run resumes to done; a different seed is refused") {
    std::string dir = temp_dir();
    result done = run(dir, -1);
    result again = run(dir, -1);
    REQUIRE(again.losses.empty());
    REQUIRE(at::equal(again.w, done.w));
    cai::trainer_options o = options_for(dir);
    o.seed = 8;
    Tensor w = at::zeros({3}, at::kDouble).requires_grad_(true);
    Tensor b = at::zeros({1}, at::kDouble).requires_grad_(true);
    cai::trainer_loop loop(o, {{"w", w, true}, {"b", b, false}}, std::vector<int64_t>(31, 1));
    REQUIRE(error_of([&] { loop.resume(); }).find("was written with seed 7 but this run has seed 8") !=
            std::string::npos);
}

TEST_CASE("trainer_loop: a non-finite loss stops with the step named") {
    std::string dir = temp_dir();
    Tensor w = at::zeros({1}, at::kDouble).requires_grad_(true);
    cai::trainer_options o = options_for(dir);
    cai::trainer_loop loop(o, {{"w", w, true}}, std::vector<int64_t>(8, 1));
    loop.next_micro_batches();
    REQUIRE(error_of([&] { loop.finish_step(std::nan("")); }).rfind("training: loss is nan at step 1;", 0) == 0);
}

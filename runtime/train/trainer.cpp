#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "dist/dist.h"
#include "train/interrupt.h"

namespace cai {
namespace {

batching with_seed(batching b, uint64_t seed) {
    b.seed = seed;
    return b;
}

void add_to(std::vector<std::pair<std::string, double>>& sums, const std::string& key, double value) {
    for (auto& kv : sums) {
        if (kv.first == key) {
            kv.second += value;
            return;
        }
    }
    sums.emplace_back(key, value);
}

}  // namespace

trainer_loop::trainer_loop(trainer_options options, std::vector<named_parameter> params, std::vector<int64_t> lengths)
    : options_(std::move(options)),
      optimizer_(std::move(params), options_.adamw),
      sampler_(std::move(lengths), with_seed(options_.batches, options_.seed)),
      metrics_(path_join(options_.out_dir, "metrics.jsonl")) {
    const trainer_options& o = options_;
    if (o.out_dir.empty()) fail("trainer: out_dir is required");
    if (o.gradient_accumulation_steps < 1)
        fail("trainer: gradient_accumulation_steps must be >= 1, got ", o.gradient_accumulation_steps);
    if (o.epochs < 1 && o.max_steps <= 0) fail("trainer: epochs must be >= 1 (or set max_steps), got ", o.epochs);
    if (!(o.learning_rate >= 0)) fail("trainer: learning_rate must be >= 0, got ", o.learning_rate);
    if (!(o.max_grad_norm >= 0)) fail("trainer: max_grad_norm must be >= 0, got ", o.max_grad_norm);
    if (o.logging_steps < 1) fail("trainer: logging_steps must be >= 1, got ", o.logging_steps);
    if (o.save_steps < 0 || o.save_total_limit < 0) fail("trainer: save_steps and save_total_limit must be >= 0");
    if (o.report_to_tensorboard) metrics_.report_to_tensorboard(path_join(o.out_dir, "tensorboard"));
    micro_batches_per_epoch_ = sampler_.batches_in_epoch(0);
    if (o.max_steps > 0) {
        total_steps_ = o.max_steps;
    } else {
        int64_t micro = 0;
        for (int64_t e = 0; e < o.epochs; ++e) micro += sampler_.batches_in_epoch(e);
        total_steps_ = (micro + o.gradient_accumulation_steps - 1) / o.gradient_accumulation_steps;
    }
    options_.schedule.total_steps = total_steps_;
    check_lr_schedule(options_.schedule);
    install_interrupt_handler();
}

trainer_loop::~trainer_loop() { uninstall_interrupt_handler(); }

double trainer_loop::epoch() const {
    return double(step_ * options_.gradient_accumulation_steps) / double(std::max<int64_t>(1, micro_batches_per_epoch_));
}

double trainer_loop::current_lr() const {
    return options_.learning_rate * lr_multiplier(options_.schedule, std::min(step_, total_steps_));
}

std::string trainer_loop::resume() {
    std::string dir = latest_checkpoint(options_.out_dir);
    if (dir.empty()) return "";
    checkpoint_state state = load_checkpoint(dir);
    if (state.seed != options_.seed)
        fail(dir, ": was written with seed ", state.seed, " but this run has seed ", options_.seed,
             "; use the same seed to resume, or another out directory");
    std::map<std::string, at::Tensor> saved(state.tensors.begin(), state.tensors.end());
    {
        at::NoGradGuard no_grad;
        for (const auto& p : optimizer_.parameters()) {
            auto it = saved.find(p.name);
            if (it == saved.end()) fail(dir, "/tensors.safetensors: no tensor \"", p.name, "\" to resume from");
            if (it->second.sizes() != p.value.sizes())
                fail(dir, "/tensors.safetensors: \"", p.name, "\" has shape ", it->second.sizes(),
                     " but the parameter has ", p.value.sizes());
            p.value.copy_(it->second);
        }
    }
    optimizer_.load_state_tensors(std::map<std::string, at::Tensor>(state.optimizer.begin(), state.optimizer.end()),
                                  dir + "/optimizer.safetensors");
    if (state.torch_rng.defined()) set_torch_rng_state(state.torch_rng);
    sampler_.seek(state.data);
    window_sums_.clear();
    window_steps_ = 0;
    auto meta = nlohmann::ordered_json::parse(state.metadata);
    if (meta.contains("log_window")) {
        const auto& w = meta["log_window"];
        window_steps_ = w.at("steps").get<int64_t>();
        for (const auto& kv : w.at("sums").items()) window_sums_.emplace_back(kv.key(), kv.value().is_number() ? kv.value().get<double>() : NAN);
        meta.erase("log_window");
    }
    resumed_metadata_ = meta.dump();
    step_ = state.step;
    saved_step_ = state.step;
    metrics_.truncate_after(step_);  // rank 0 only; the others wait for it
    dist::barrier("resuming from " + dir);
    log_info("trainer: resumed from ", dir, " at step ", step_, " of ", total_steps_);
    return dir;
}

std::vector<std::vector<int64_t>> trainer_loop::next_micro_batches() {
    if (done()) fail("trainer: next_micro_batches called after training is done (step ", step_, ")");
    std::vector<std::vector<int64_t>> out;
    for (int64_t i = 0; i < options_.gradient_accumulation_steps; ++i) out.push_back(sampler_.next());
    return out;
}

void trainer_loop::finish_step(double loss, const std::vector<std::pair<std::string, double>>& metrics_in) {
    std::vector<std::pair<std::string, double>> metrics = metrics_in;
    bool interrupted = interrupt_requested();
    const auto& params = optimizer_.parameters();
    if (dist::active()) {
        // Each rank brought its share: the sums are the step's values. Ctrl-C
        // on any rank stops all of them at the same step.
        std::vector<double> values = {loss, interrupted ? 1.0 : 0.0};
        for (const auto& kv : metrics) values.push_back(kv.second);
        dist::all_reduce_sum(values, "the loss and metrics of step " + std::to_string(step_ + 1));
        loss = values[0];
        interrupted = values[1] > 0;
        for (size_t i = 0; i < metrics.size(); ++i) metrics[i].second = values[i + 2];
        std::vector<at::Tensor> tensors;
        for (const auto& p : params) tensors.push_back(p.value);
        dist::all_reduce_gradients(tensors);
    }
    check_finite("loss", loss, step_ + 1);
    const double norm = options_.max_grad_norm > 0 ? clip_grad_norm(params, options_.max_grad_norm) : grad_norm(params);
    check_finite("grad norm", norm, step_ + 1);
    const double lr = current_lr();
    optimizer_.step(lr);
    optimizer_.zero_grad();
    step_ += 1;

    add_to(window_sums_, "loss", loss);
    for (const auto& kv : metrics) add_to(window_sums_, kv.first, kv.second);
    window_steps_ += 1;
    if (step_ % options_.logging_steps == 0 || step_ == total_steps_) log_line(norm, lr);

    if (interrupted) {
        stopped_ = true;
        clear_interrupt();
        std::string dir = save();
        log_info("trainer: interrupted; saved ", dir, ". Run the same command again to resume.");
        return;
    }
    if (options_.save_steps > 0 && step_ % options_.save_steps == 0) save();
}

void trainer_loop::log_metrics(const std::vector<std::pair<std::string, double>>& values) {
    metrics_.append(step_, values);  // rank 0 only
    // Not on a terminal (nohup, Slurm, CI) there is no progress bar: a line
    // per logging step instead, as TRL prints its logs.
    if (dist::is_main() && !::isatty(2)) {
        std::string text;
        for (const auto& kv : values) text += (text.empty() ? "" : ", ") + kv.first + " " + format_metric(kv.second);
        log_info(options_.name, ": step ", step_, "/", total_steps_, ": ", text);
    }
}

void trainer_loop::log_line(double last_grad_norm, double last_lr) {
    std::vector<std::pair<std::string, double>> values;
    for (const auto& kv : window_sums_) values.emplace_back(kv.first, kv.second / double(window_steps_));
    values.emplace_back("grad_norm", last_grad_norm);
    values.emplace_back("learning_rate", last_lr);
    values.emplace_back("epoch", epoch());
    log_metrics(values);
    // Every rank reads the line back (on_log) once it is there.
    dist::barrier("the metrics line of step " + std::to_string(step_));
    window_sums_.clear();
    window_steps_ = 0;
}

std::string trainer_loop::save() {
    checkpoint_state state;
    state.step = step_;
    state.seed = options_.seed;
    state.data = sampler_.position();
    for (const auto& p : optimizer_.parameters()) state.tensors.emplace_back(p.name, p.value);
    state.optimizer = optimizer_.state_tensors();
    state.torch_rng = torch_rng_state();
    // The caller's metadata plus the unlogged metric sums, so a resumed run
    // writes the same metrics lines as one never stopped.
    nlohmann::ordered_json meta;
    try {
        meta = nlohmann::ordered_json::parse(metadata);
    } catch (const std::exception& e) {
        fail("trainer: metadata is not valid JSON: ", e.what());
    }
    if (!meta.is_object()) fail("trainer: metadata must be a JSON object");
    nlohmann::ordered_json sums = nlohmann::ordered_json::object();
    for (const auto& kv : window_sums_) sums[kv.first] = kv.second;
    meta["log_window"] = {{"steps", window_steps_}, {"sums", sums}};
    state.metadata = meta.dump();
    // Only rank 0 writes (the ranks hold the same tensors); the others wait
    // until the checkpoint is complete, so a resume on any rank sees it.
    std::string dir = checkpoint_dir(options_.out_dir, step_);
    if (dist::is_main()) {
        if (extra_files) state.files = extra_files();
        dir = save_checkpoint(options_.out_dir, state);
        if (options_.save_total_limit > 0) prune_checkpoints(options_.out_dir, options_.save_total_limit);
    }
    dist::barrier("saving " + dir);
    saved_step_ = step_;
    return dir;
}

std::string trainer_loop::save_final() {
    if (saved_step_ == step_) return checkpoint_dir(options_.out_dir, step_);
    return save();
}

}  // namespace cai

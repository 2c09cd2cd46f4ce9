#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/dist.h"
#include "train/interrupt.h"

namespace cai {
namespace {

batching with_seed(batching b, uint64_t seed) {
    b.seed = seed;
    return b;
}

void add_to(metric_values& sums, const std::string& key, double value) {
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

void trainer_loop::begin(const std::string& name, trainer_eval eval) {
    options_.name = name;
    const trainer_options& o = options_;
    if (o.eval.eval_steps < 0) fail(name, ": eval_steps must be >= 0, got ", o.eval.eval_steps);
    if (eval.has_set && o.eval.eval_steps == 0)
        fail(name, ": ", eval.set_option, " is given but eval_steps is 0; set eval_steps = N to evaluate every N steps");
    if (!o.eval.keep_best.empty() && !eval.has_set)
        fail(name, ": keep_best needs an eval set (", eval.set_option, ") and eval_steps");
    if (!o.eval.keep_best.empty())
        keeper_ = std::make_unique<best_keeper>(o.out_dir, o.eval.keep_best, eval.metrics, eval.save_best, name.c_str());
    eval_ = std::move(eval);
    if (!o.resume && !latest_checkpoint(o.out_dir).empty())
        fail(name, ": ", o.out_dir, " already holds checkpoints (", latest_checkpoint(o.out_dir),
             "); pass resume = true to continue that run, or choose another out directory");
    if (o.resume) resume();
    // The log as resume() left it: its last line is the result if no step is left to run.
    uint64_t offset = 0;
    for (const auto& line : read_new_lines(metrics_.path(), offset))
        if (line.find("\"eval_") == std::string::npos) last_line_ = line;
    if (o.show_progress && dist::is_main()) {  // one bar for the job
        bar_ = std::make_unique<progress>(name, (long)total_steps_, "step");
        bar_->update((long)step_);
    }
    started_ = std::chrono::steady_clock::now();
}

train_result trainer_loop::finish() {
    if (bar_) bar_->finish();
    train_result r;
    r.interrupted = stopped_;
    // After Ctrl-C the loop has saved this step already.
    r.final_checkpoint = stopped_ ? latest_checkpoint(options_.out_dir) : save_final();
    r.steps = step_;
    r.resumed_from = resumed_from_;
    r.last_metrics = last_line_.empty() ? "{}" : last_line_;
    if (keeper_ && keeper_->best_step() >= 0) {
        r.best_checkpoint = keeper_->dir();
        r.best_step = keeper_->best_step();
        r.best_value = keeper_->best_value();
    }
    return r;
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
    resumed_from_ = dir;
    return dir;
}

std::vector<std::vector<int64_t>> trainer_loop::next_micro_batches() {
    if (done()) fail("trainer: next_micro_batches called after training is done (step ", step_, ")");
    std::vector<std::vector<int64_t>> out;
    for (int64_t i = 0; i < options_.gradient_accumulation_steps; ++i) out.push_back(sampler_.next());
    return out;
}

void trainer_loop::finish_step(double loss, const metric_values& metrics_in, int64_t tokens) {
    metric_values metrics = metrics_in;
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
    } else if (options_.save_steps > 0 && step_ % options_.save_steps == 0) {
        save();
    }
    if (!stopped_ && eval_.has_set && eval_.evaluate && eval_due(options_.eval, step_)) evaluate();
    tokens_seen_ += tokens;
    if (bar_) {
        std::string extra = "loss " + format_metric(loss) + " lr " + format_metric(lr);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
        if (tokens_seen_ > 0) extra += " " + format_metric(secs > 0 ? tokens_seen_ / secs : 0) + " tok/s";
        bar_->update((long)step_, extra);
    }
    std::vector<std::string> lines;
    lines.swap(new_lines_);
    if (options_.on_log)
        for (const std::string& line : lines) options_.on_log(line);
}

void trainer_loop::evaluate() {
    const metric_values values = eval_.evaluate();
    new_lines_.push_back(log_metrics(values));
    if (keeper_) keeper_->offer(step_, values);
}

std::string trainer_loop::log_metrics(const metric_values& values) {
    std::string line = metrics_.append(step_, values);  // rank 0 writes; every rank gets the line
    // Not on a terminal (nohup, Slurm, CI) there is no progress bar: a line
    // per logging step instead, as TRL prints its logs.
    if (dist::is_main() && !::isatty(2)) {
        std::string text;
        for (const auto& kv : values) text += (text.empty() ? "" : ", ") + kv.first + " " + format_metric(kv.second);
        log_info(options_.name, ": step ", step_, "/", total_steps_, ": ", text);
    }
    return line;
}

void trainer_loop::log_line(double last_grad_norm, double last_lr) {
    metric_values values;
    for (const auto& kv : window_sums_) values.emplace_back(kv.first, kv.second / double(window_steps_));
    values.emplace_back("grad_norm", last_grad_norm);
    values.emplace_back("learning_rate", last_lr);
    values.emplace_back("epoch", epoch());
    last_line_ = log_metrics(values);
    new_lines_.push_back(last_line_);
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
    if (!options_.fingerprint.empty()) {
        try {
            meta["fingerprint"] = nlohmann::ordered_json::parse(options_.fingerprint);
        } catch (const std::exception& e) {
            fail("trainer: fingerprint is not valid JSON: ", e.what());
        }
    }
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

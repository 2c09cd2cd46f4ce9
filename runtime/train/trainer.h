// The loop every trainer (SFT, DPO, LoRA or full) shares, independent of
// what it trains: data order, gradient accumulation, AdamW with a schedule,
// clipping, the non-finite check, metrics.jsonl and on_log, evaluation every
// eval_steps with keep_best, the progress bar, checkpoints every save_steps,
// resume from the latest checkpoint, Ctrl-C -> save and stop, and the one
// train_result. The caller owns the forward/backward (and the evaluation):
//
//   cai::trainer_loop loop(options, params, lengths);
//   loop.begin("sft", eval);                           // resume, keep_best, progress bar
//   while (!loop.done()) {
//       double loss_sum = 0;
//       auto micro = loop.next_micro_batches();
//       for (const auto& rows : micro) {
//           at::Tensor loss = compute_loss(rows);          // mean over the rows
//           (loss / double(micro.size())).backward();
//           loss_sum += loss.item<double>();
//       }
//       loop.finish_step(loss_sum / micro.size(), {{"rewards/margins", m}});
//   }
//   cai::train_result r = loop.finish();                // final checkpoint
//
// (begin and finish are optional: without them resume() and save_final()
// drive a bare loop, with no progress bar and no evaluation.)
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/checkpoint.h"
#include "train/data_order.h"
#include "train/eval.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/schedule.h"

namespace cai {

class progress;

struct trainer_options {
    std::string out_dir;                     // metrics.jsonl and checkpoints/ go here
    uint64_t seed = 42;                      // data order and batches (batching.seed is set from it)
    int64_t epochs = 1;                      // num_train_epochs
    int64_t max_steps = 0;                   // > 0: exactly this many optimizer steps instead
    int64_t gradient_accumulation_steps = 1;
    double learning_rate = 5e-6;
    adamw_options adamw;
    double max_grad_norm = 1.0;              // 0: no clipping (the norm is still logged)
    lr_schedule schedule;                    // type and warmup; total_steps is filled in
    batching batches;                        // batch_size or max_tokens, shuffle, ...
    int64_t logging_steps = 10;              // a metrics line every this many steps (and the last)
    int64_t save_steps = 0;                  // a checkpoint every this many steps (0: none until the end)
    int64_t save_total_limit = 0;            // keep only the newest this many checkpoints (0: all)
    bool report_to_tensorboard = false;      // also out_dir/tensorboard/events.out.tfevents.cairun
    std::string name = "train";              // the stage in log lines; begin() sets it ("sft", "dpo")
    bool resume = true;                      // continue from the latest checkpoint under out_dir; false: refuse one
    bool show_progress = true;               // a progress bar (rank 0)
    eval_options eval;                       // eval_steps and keep_best (the trainer says what to evaluate)
    // Called with every metrics line (JSON text), training and eval lines, in
    // the order they are written, on every rank.
    std::function<void(const std::string&)> on_log;
    std::string fingerprint;                 // JSON object: what made the run (kept in every checkpoint's
                                             // metadata as "fingerprint"; the caller compares it on resume)
};

using metric_values = std::vector<std::pair<std::string, double>>;

// Examples (or pairs) per forward pass outside the training steps (the eval
// set, a reference cache): batches.batch_size, else 8.
inline size_t scoring_batch_size(const trainer_options& o) {
    return o.batches.batch_size > 0 ? (size_t)o.batches.batch_size : 8;
}

// What the trainer gives begin() for evaluation and keep_best.
struct trainer_eval {
    std::string set_option;            // the option that holds the eval set ("eval_data"), for errors
    bool has_set = false;              // an eval set was given
    std::vector<std::string> metrics;  // the names evaluate() returns, keep_best's choices
    // Scores the eval set (dropout off, no gradient) -> {"eval_loss", ...}, on every rank.
    std::function<metric_values()> evaluate;
    // Writes the model's state (adapter or full model) into a new directory; rank 0 only.
    std::function<void(const std::string&)> save_best;
};

// What a training run returns, SFT and DPO alike.
struct train_result {
    int64_t steps = 0;             // optimizer steps done in total (including resumed ones)
    bool interrupted = false;      // stopped by Ctrl-C (a checkpoint was saved)
    std::string resumed_from;      // checkpoint directory, or ""
    std::string final_checkpoint;  // the last checkpoint written
    std::string last_metrics;      // the last training metrics line (JSON text), "{}" if none
    std::string best_checkpoint;   // out/best when keep_best saved one, else ""
    int64_t best_step = -1;
    double best_value = 0;
};

class trainer_loop {
public:
    // lengths: one token count per example (for token-budget batches; any
    // positive numbers for fixed-size batches).
    trainer_loop(trainer_options options, std::vector<named_parameter> params, std::vector<int64_t> lengths);
    ~trainer_loop();  // Ctrl-C acts as usual again
    trainer_loop(const trainer_loop&) = delete;
    trainer_loop& operator=(const trainer_loop&) = delete;

    // Before the first step, for a trainer named `name` ("sft", "dpo"): checks
    // the eval options against eval, refuses existing checkpoints when
    // options.resume is false, else resumes, and starts the progress bar.
    void begin(const std::string& name, trainer_eval eval = {});
    // After the last step: the final checkpoint (unless Ctrl-C saved one) and the result.
    train_result finish();

    // Restores the latest checkpoint under out_dir, if any: parameters (by
    // name, shapes checked), optimizer, ATen RNG, data position, step, and
    // drops metrics lines logged after it. Returns its directory or "".
    std::string resume();

    bool done() const { return step_ >= total_steps_ || stopped_; }
    bool interrupted() const { return stopped_; }
    int64_t step() const { return step_; }
    int64_t total_steps() const { return total_steps_; }
    double epoch() const;          // fractional epochs done, as transformers logs it
    double current_lr() const;     // the learning rate of the next update

    // The example indexes of the next optimizer step's micro-batches.
    std::vector<std::vector<int64_t>> next_micro_batches();

    // After the caller's backward passes: check the loss, clip, update,
    // zero the gradients, log, save when due or when Ctrl-C was pressed
    // (then done() is true), evaluate when due (not after Ctrl-C) and keep
    // the best, move the progress bar, and hand this step's lines to on_log.
    // A metrics line holds the means of loss and the caller's metrics since
    // the last line (as TRL averages them), then this step's grad_norm
    // (pre-clip) and learning_rate (the one it used), and epoch. tokens: this
    // rank's tokens in the step, for the bar's tokens/s (0: not shown).
    //
    // Data-parallel (dist::active()): every rank computes its share of each
    // micro-batch (dist::shard_of), scaled so that the SUM over ranks of the
    // gradients, of loss and of each metric is the step's value; finish_step
    // sums them (every rank must pass the same metric names in the same
    // order), so all ranks take the same update. Only rank 0 writes
    // metrics.jsonl and checkpoints; the others wait at a barrier after it.
    void finish_step(double loss, const metric_values& metrics = {}, int64_t tokens = 0);

    // Writes a checkpoint of the current step now; returns its directory.
    std::string save();

    // A metrics line at the current step through the one log (metrics.jsonl,
    // TensorBoard, a line off a terminal); returns the line (JSON text) on every rank.
    std::string log_metrics(const metric_values& values);
    // At the end of training: a final checkpoint unless this step has one.
    std::string save_final();

    // Set by the trainer: JSON metadata and extra files stored in each checkpoint.
    std::string metadata = "{}";
    std::function<std::vector<std::pair<std::string, std::string>>()> extra_files;

    const std::vector<named_parameter>& parameters() const { return optimizer_.parameters(); }
    const trainer_options& options() const { return options_; }
    // The metadata stored in the checkpoint resume() restored ("{}" if none).
    const std::string& resumed_metadata() const { return resumed_metadata_; }

private:
    void log_line(double last_grad_norm, double last_lr);
    void evaluate();

    trainer_options options_;
    adamw optimizer_;
    batch_sampler sampler_;
    metrics_log metrics_;
    int64_t total_steps_ = 0;
    int64_t micro_batches_per_epoch_ = 0;
    int64_t step_ = 0;
    int64_t saved_step_ = -1;
    bool stopped_ = false;
    std::string resumed_metadata_ = "{}";
    std::string resumed_from_;
    // Running sums for the next metrics line.
    int64_t window_steps_ = 0;
    metric_values window_sums_;
    // This step's lines for on_log, and the last training line.
    std::vector<std::string> new_lines_;
    std::string last_line_;
    trainer_eval eval_;
    std::unique_ptr<best_keeper> keeper_;
    std::unique_ptr<progress> bar_;
    int64_t tokens_seen_ = 0;
    std::chrono::steady_clock::time_point started_;
};

}  // namespace cai

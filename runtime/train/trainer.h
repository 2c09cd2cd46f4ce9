// The loop every trainer (SFT, DPO, LoRA or full) shares, independent of
// what it trains: data order, gradient accumulation, AdamW with a schedule,
// clipping, the non-finite check, metrics.jsonl, checkpoints every
// save_steps, resume from the latest checkpoint, and Ctrl-C -> save and stop.
// The caller owns the forward/backward:
//
//   cai::trainer_loop loop(options, params, lengths);
//   loop.resume();
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
//   loop.save_final();
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "train/checkpoint.h"
#include "train/data_order.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/schedule.h"

namespace cai {

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
    std::string name = "train";              // the stage in log lines ("sft", "dpo")
};

// options with its name set (the stage that log lines name).
inline trainer_options named_trainer_options(trainer_options options, const char* name) {
    options.name = name;
    return options;
}

class trainer_loop {
public:
    // lengths: one token count per example (for token-budget batches; any
    // positive numbers for fixed-size batches).
    trainer_loop(trainer_options options, std::vector<named_parameter> params, std::vector<int64_t> lengths);
    ~trainer_loop();  // Ctrl-C acts as usual again
    trainer_loop(const trainer_loop&) = delete;
    trainer_loop& operator=(const trainer_loop&) = delete;

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
    // (then done() is true). A metrics line holds the means of loss and the
    // caller's metrics since the last line (as TRL averages them), then this
    // step's grad_norm (pre-clip) and learning_rate (the one it used), and epoch.
    //
    // Data-parallel (dist::active()): every rank computes its share of each
    // micro-batch (dist::shard_of), scaled so that the SUM over ranks of the
    // gradients, of loss and of each metric is the step's value; finish_step
    // sums them (every rank must pass the same metric names in the same
    // order), so all ranks take the same update. Only rank 0 writes
    // metrics.jsonl and checkpoints; the others wait at a barrier after it.
    void finish_step(double loss, const std::vector<std::pair<std::string, double>>& metrics = {});

    // Writes a checkpoint of the current step now; returns its directory.
    std::string save();

    // An extra metrics line at the current step (eval metrics), through the
    // same log as the training lines (TensorBoard too, and a line off a terminal).
    void log_metrics(const std::vector<std::pair<std::string, double>>& values);
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
    // Running sums for the next metrics line.
    int64_t window_steps_ = 0;
    std::vector<std::pair<std::string, double>> window_sums_;
};

}  // namespace cai

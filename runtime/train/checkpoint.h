// Training checkpoints: out/checkpoints/step-N/ holds
//   tensors.safetensors    the trained tensors (full weights or LoRA factors)
//   optimizer.safetensors  adamw::state_tensors()
//   rng.safetensors        "torch_cpu": the ATen CPU generator state (dropout)
//   trainer_state.json     {"format": 1, "step", "seed", "data": {"epoch", "batch"}, "metadata": {...}}
//   + any extra files the trainer adds (adapter_config.json, ...)
// The directory is written as step-N.tmp.<pid> and renamed into place, so a
// step-N directory is always complete. Random streams of training are
// derived from (seed, purpose, step), so the seed and step are their state.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "train/data_order.h"

namespace cai {

using named_tensors = std::vector<std::pair<std::string, at::Tensor>>;

struct checkpoint_state {
    int64_t step = 0;              // optimizer steps taken (the scheduler's step)
    uint64_t seed = 0;
    data_position data;            // the next batch to take
    named_tensors tensors;         // trained tensors, by name
    named_tensors optimizer;       // optimizer state, by name
    at::Tensor torch_rng;          // uint8 generator state; undefined = not saved
    std::string metadata = "{}";   // any JSON object (text): run config, metrics, ...
    std::vector<std::pair<std::string, std::string>> files;  // extra files: name, bytes
};

// "<out_dir>/checkpoints/step-<step>"
std::string checkpoint_dir(const std::string& out_dir, int64_t step);

// Writes the checkpoint atomically and returns its directory. An existing
// step-N is replaced (the new one is complete before the old one goes).
std::string save_checkpoint(const std::string& out_dir, const checkpoint_state& state);

// Reads a step-N directory; a missing or malformed file is an error naming it.
// Extra files are not read (the trainer reads what it wrote).
checkpoint_state load_checkpoint(const std::string& dir);

// The complete checkpoint with the highest step under out_dir, or "" if none
// (temporary directories of interrupted saves are ignored).
std::string latest_checkpoint(const std::string& out_dir);

// Deletes all but the newest keep_last checkpoints (keep_last >= 1).
void prune_checkpoints(const std::string& out_dir, int64_t keep_last);

// The ATen default CPU generator's state, and setting it back.
at::Tensor torch_rng_state();
void set_torch_rng_state(const at::Tensor& state);

}  // namespace cai

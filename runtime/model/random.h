// Random checkpoints for tests and benchmarks: every tensor a model_config
// asks for, under its Hugging Face name, drawn from cai::rng (same seed,
// same bytes on every machine), and a writer for a loadable HF directory.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"

namespace cai {

// Linear and embedding weights ~ N(0, std^2), biases ~ N(0, std^2), norm
// weights 1 + N(0, 0.1^2) (gemma: N(0, 0.1^2), as it scales by 1 + w).
std::vector<std::pair<std::string, at::Tensor>> random_model_tensors(const model_config& config, uint64_t seed,
                                                                     double std = 0.02);

// The checkpoint of a *ForSequenceClassification reward model instead: the
// same body, no lm_head, and a random score head "score.weight" (labels, C).
std::vector<std::pair<std::string, at::Tensor>> random_reward_tensors(const model_config& config, uint64_t seed,
                                                                      int64_t labels = 1, double std = 0.02);

// Writes config.json (the given text) and model.safetensors (tensors in
// `dtype`) into dir, creating it.
void write_model_dir(const std::string& dir, const std::string& config_json,
                     const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                     at::ScalarType dtype = at::kFloat);

}  // namespace cai

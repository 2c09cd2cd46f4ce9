// Supervised fine-tuning: prompt/response examples, loss on response tokens only.
//
// Each example is tokenized as tokenize_pair(prompt, response) — the prompt
// with the tokenizer's special tokens (BOS), the response on its own — plus
// EOS when `eos`, so the boundary is the one m:logprobs scores. The loss is
// the mean token cross-entropy over the response (and EOS) tokens of a
// micro-batch; prompt and padding positions are labelled out (-100 in HF).
// Training runs through trainer_loop (metrics.jsonl, checkpoints, resume,
// Ctrl-C) over the model's LoRA adapters, or all weights with `full`.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "train/eval.h"
#include "train/trainer.h"

namespace cai {

class model;

struct sft_example {
    std::string prompt, response;
};

// One tokenized example: ids[response_start:] are trained.
struct sft_tokens {
    std::vector<int32_t> ids;
    size_t response_start = 0;
    bool has_eos = false;
};

struct sft_options {
    trainer_options trainer;
    bool full = false;        // train all weights instead of the LoRA adapters
    bool eos = true;          // append the tokenizer's EOS to every response
    int64_t preview = 3;      // log the mask of this many first examples
    bool show_progress = true;
    bool resume = true;       // continue from the latest checkpoint under out_dir; false: refuse one
    // Called after every metrics line with that line (a JSON object as text).
    std::function<void(const std::string&)> on_log;
    // Eval set: its response-token cross-entropy logged as eval_loss every
    // eval.eval_steps steps; eval.keep_best = "eval_loss" keeps the best in out/best/.
    std::vector<sft_example> eval_data;
    eval_options eval;
};

struct sft_result {
    int64_t steps = 0;             // optimizer steps done in total (including resumed ones)
    bool interrupted = false;      // stopped by Ctrl-C (a checkpoint was saved)
    std::string resumed_from;      // checkpoint directory, or ""
    std::string final_checkpoint;  // the last checkpoint written
    std::string last_metrics;      // the last metrics line (JSON text), "{}" if none
    std::string best_checkpoint;   // out/best when keep_best saved one, else ""
    int64_t best_step = -1;
    double best_value = 0;
};

// Tokenizes and checks every example; an empty response (no trained token)
// is an error naming the record (1-based, as Lua counts).
std::vector<sft_tokens> sft_tokenize(const model& m, const std::vector<sft_example>& data, bool eos);

// Loss of a batch from its logits: logits (B, T, V) for the rows padded to
// T; mean cross-entropy over the trained (response) positions.
at::Tensor sft_loss_from_logits(const at::Tensor& logits, const std::vector<const sft_tokens*>& rows);
// Forward + sft_loss_from_logits for rows of a dataset.
// min_length: pad the rows at least this long (a data-parallel rank pads its
// share as long as the whole micro-batch, so it computes one process's shapes).
at::Tensor sft_loss(const model& m, const std::vector<const sft_tokens*>& rows, int64_t min_length = 0);

sft_result sft_train(model& m, const std::vector<sft_example>& data, const sft_options& options);

}  // namespace cai

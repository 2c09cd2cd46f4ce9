// Supervised fine-tuning: prompt/response examples, loss on response tokens only.
//
// Each example is tokenized as tokenize_pair(prompt, response) — the prompt
// with the tokenizer's special tokens (BOS), the response on its own — plus
// EOS when `eos`, so the boundary is the one m:logprobs scores. A
// conversation rendered by a chat template comes as segments instead: each
// piece encoded on its own and concatenated, the assistant pieces trained
// (TRL's assistant_only_loss). The loss is the mean token cross-entropy over
// the trained tokens of a micro-batch; prompt and padding positions are
// labelled out (-100 in HF).
// Training runs through trainer_loop (metrics.jsonl, checkpoints, resume,
// Ctrl-C) over the model's LoRA adapters, or all weights with `full`.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "train/trainer.h"

namespace cai {

class model;

// One piece of a rendered conversation (see sft_example::segments).
struct sft_segment {
    std::string text;
    bool trained = false;
};

struct sft_example {
    std::string prompt, response;
    // When not empty, replaces prompt/response: the pieces of one rendered
    // text in order, each encoded on its own (the first with special tokens
    // when sft_options::add_special_tokens) and concatenated, so no token
    // spans a piece boundary; the ids of trained pieces carry the loss.
    std::vector<sft_segment> segments = {};
};

// One tokenized example: ids[response_start:] are trained, unless `trained`
// (one flag per id) says which are, as for a conversation's assistant turns.
struct sft_tokens {
    std::vector<int32_t> ids;
    size_t response_start = 0;  // the first trained id
    bool has_eos = false;
    std::vector<uint8_t> trained;  // empty, or 1 per id in the loss
    // Whether ids[j] is in the loss (ids[0] never is: nothing comes before it).
    bool trains(size_t j) const {
        return j >= 1 && j < ids.size() && (trained.empty() ? j >= response_start : trained[j] != 0);
    }
    size_t n_trained() const {
        size_t n = 0;
        for (size_t j = 1; j < ids.size(); ++j) n += trains(j);
        return n;
    }
};

struct sft_options {
    trainer_options trainer;  // also resume, show_progress, on_log and eval (eval_steps, keep_best)
    bool full = false;        // train all weights instead of the LoRA adapters
    bool eos = true;          // append the tokenizer's EOS to every response
    // Encode prompts (the first segment) with the tokenizer's special tokens;
    // false for text a chat template rendered, which writes them itself.
    bool add_special_tokens = true;
    int64_t preview = 3;      // log the mask of this many first examples
    // > 0: cut every tokenized example to this many tokens (keeping the start,
    // as TRL's SFTConfig.max_length does) and say how many were cut; 0: refuse
    // an example longer than the model's max_position_embeddings, naming it.
    int64_t max_length = 0;
    // Eval set: its response-token cross-entropy logged as eval_loss every
    // trainer.eval.eval_steps steps; keep_best = "eval_loss" keeps the best in out/best/.
    std::vector<sft_example> eval_data;
};

// Tokenizes and checks every example; an empty response (no trained token)
// is an error naming the record (1-based, as Lua counts).
// max_length as in sft_options; field names the records in errors ("data", "eval_data").
std::vector<sft_tokens> sft_tokenize(const model& m, const std::vector<sft_example>& data, bool eos,
                                     bool add_special_tokens = true, int64_t max_length = 0,
                                     const char* field = "data");

// Mean cross-entropy over the trained (response) tokens of rows, from the
// model's token log-probs (model::target_logprobs).
// min_length: pad the rows at least this long (a data-parallel rank pads its
// share as long as the whole micro-batch, so it computes one process's shapes).
at::Tensor sft_loss(const model& m, const std::vector<const sft_tokens*>& rows, int64_t min_length = 0);

train_result sft_train(model& m, const std::vector<sft_example>& data, const sft_options& options);

}  // namespace cai

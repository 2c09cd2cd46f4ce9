// Reward-model training, as TRL's RewardTrainer does it: a causal LM's
// decoder with a one-output score head read at each text's last token
// (reward_model), trained on preference pairs with the Bradley-Terry loss
//
//   loss = -log σ(r_chosen − r_rejected)  [+ center_rewards_coefficient · mean((r_chosen + r_rejected)²)]
//
// averaged over the pairs of a micro-batch. The score head always trains;
// the backbone trains through its LoRA adapters (PEFT's SEQ_CLS task keeps
// the head trainable the same way), or all its weights with `full`.
// Texts are whole sequences ("Instruction: ...\nResponse: ..."), tokenized as
// reward_model::score_texts tokenizes them (special tokens as the tokenizer
// config says, no EOS), so the trained model scores what it was trained on.
// Metrics: accuracy (share of pairs with r_chosen > r_rejected), margin
// (mean r_chosen − r_rejected), mean_reward, and the same with "eval_" on
// eval_pairs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace cai {

class reward_model;

struct reward_text_pair {
    std::string chosen, rejected;
};

struct reward_options {
    trainer_options trainer;  // also resume, show_progress, on_log and eval (eval_steps, keep_best)
    bool full = false;        // train every backbone weight (else the LoRA adapters, which must be present)
    double center_rewards_coefficient = 0.0;  // TRL's option: pushes rewards toward mean zero
    bool add_special_tokens = true;
    // > 0: cut each text to this many tokens keeping the start (the score is
    // read at the cut's last token); 0: refuse a text longer than the
    // model's max_position_embeddings, naming it.
    int64_t max_length = 0;
    std::vector<reward_text_pair> eval_pairs;
};

train_result reward_train(reward_model& rm, const std::vector<reward_text_pair>& pairs, const reward_options& options);

}  // namespace cai

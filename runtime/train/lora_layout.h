// Inside the LoRA implementation (lora.cpp attaches and merges, lora_peft.cpp
// reads and writes PEFT's files): the projections an adapter can sit on,
// their PEFT key names and the one way an adapter is attached.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace cai::lora_detail {

// One LoRA-capable projection of a decoder layer: its short name (PEFT's
// target_modules entry), its module path inside the layer, the member.
struct target_slot {
    const char* name;
    const char* module;
    linear decoder_layer::*member;
};

constexpr size_t slot_count = 7;
extern const target_slot slots[slot_count];  // transformers' order: q k v o gate up down

// Sub-stream keys: A's values and the dropout masks of layer i, slot k.
constexpr uint64_t init_stream = 1, dropout_stream = 2;

// Which slots a target list selects ("all-linear" selects every one); errors name `where`.
std::vector<bool> select_targets(const std::vector<std::string>& targets, const std::string& where);
// "base_model.model.model.layers.{layer}.{module}": PEFT's key prefix of layer `layer`, slot k.
std::string key_prefix(size_t layer, size_t k);
// Makes a (r, in) and b (out, r) the adapter of l, trainable and switched on.
void attach(linear& l, at::Tensor a, at::Tensor b, int64_t r, double alpha, bool rslora, double dropout,
            uint64_t dropout_seed);
// r >= 1, alpha > 0 and finite, dropout in [0, 1); errors name `where`.
void check_options(int64_t r, double alpha, double dropout, const std::string& where);

}  // namespace cai::lora_detail

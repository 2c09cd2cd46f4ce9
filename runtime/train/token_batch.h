// A batch of token rows for the trainers: right-padded ids, the attention
// mask and the targets model::target_logprobs scores, where each row's tokens
// from `start` on (a response or a completion) are the scored ones.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace cai {

class model;

// One row: ids[start:] are scored, each at the position before it (start >=
// 1), unless `trained` (one flag per id) says which are (ids[0] never is).
struct token_row {
    const std::vector<int32_t>* ids = nullptr;
    size_t start = 0;
    const std::vector<uint8_t>* trained = nullptr;
};

struct token_batch {
    at::Tensor ids;      // (B, T) int64, padded with the tokenizer's pad id (0 without one)
    at::Tensor mask;     // (B, T) int64, 1 on real tokens
    at::Tensor targets;  // (B, T) int64: targets[b, t] = ids[b, t+1] where t+1 is scored, else -100
    at::Tensor scored;   // (B, T) float32, 1 where a target is scored
};

// T is the longest row, at least min_length (a data-parallel rank pads its
// share as long as the whole micro-batch, so it computes one process's shapes).
token_batch pad_token_rows(const model& m, const std::vector<token_row>& rows, int64_t min_length = 0);

}  // namespace cai

// Choosing the next token from one row of logits, in transformers' order:
// repetition penalty, then temperature, top-k, top-p, min-p, then a draw
// from the row's own cai::rng stream. temperature == 0 is greedy (argmax,
// lowest id on ties).
#pragma once

#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace cai {

struct sampling_options {
    double temperature = 0;          // 0: greedy
    int64_t top_k = 0;               // 0: off
    double top_p = 1.0;              // 1: off
    double min_p = 0.0;              // 0: off
    double repetition_penalty = 1.0; // 1: off; > 1 discourages tokens already in the context

    void check() const;  // throws naming the bad option
};

// The distribution the sampler draws from (zeros for removed tokens); for
// greedy decoding, one-hot on the argmax. context: prompt and generated ids.
std::vector<double> sampling_distribution(const float* logits, int64_t vocab, const sampling_options& options,
                                          const std::vector<int32_t>& context);

int32_t sample_token(const float* logits, int64_t vocab, const sampling_options& options,
                     const std::vector<int32_t>& context, rng& r);

}  // namespace cai

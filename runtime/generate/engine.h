// The continuous-batching engine behind generate() (generate.h): slots,
// chunked prefill, one decode step for all running rows, shared prompt
// prefixes over a paged KV pool. generate() checks the arguments and shares
// the prompts among ranks; this runs one rank's share.
#pragma once

#include <vector>

#include "generate/generate.h"

namespace cai {

class progress;

std::vector<generation> generate_continuous(const model& m, const std::vector<std::vector<int32_t>>& prompts,
                                            const generate_options& options, progress* bar);

}  // namespace cai

// Whether a KV cache fits in the machine's memory, checked before it is
// allocated: a cache that cannot fit is an error naming the sizes and what to
// lower, not an allocator failure (max_new_tokens = 1e12 on a model with a
// very long context).
#pragma once

#include <cstdint>

namespace cai {

class model;

// Fails when rows x positions of m's keys and values exceed physical memory.
void check_kv_cache_fits(const model& m, int64_t rows, int64_t positions);

}  // namespace cai

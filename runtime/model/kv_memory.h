// Whether a KV cache fits in the memory this process may use, checked before it is
// allocated: a cache that cannot fit is an error naming the sizes and what to
// lower, not an allocator failure (max_new_tokens = 1e12 on a model with a
// very long context).
#pragma once

#include <cstdint>
#include <string>

namespace cai {

class model;

// The memory this process may use: physical memory, or its cgroup's limit
// (v2 memory.max, v1 memory.limit_in_bytes) where that is lower; bytes 0 when
// neither is known. source names which, for messages. cgroup_root: where the
// cgroup files are (tests point it elsewhere).
struct memory_limit {
    double bytes = 0;
    std::string source;
};
memory_limit process_memory_limit(const std::string& cgroup_root = "/sys/fs/cgroup");

// Fails when rows x positions of m's keys and values, with m's weights,
// exceed that memory.
void check_kv_cache_fits(const model& m, int64_t rows, int64_t positions);
// Fails when a stated KV pool budget (bytes), with m's weights, exceeds it.
void check_kv_budget_fits(const model& m, double budget);

}  // namespace cai

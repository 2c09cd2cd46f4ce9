// Where a model's matrices live: large blocks of memory that the kernel is
// asked to back with 2 MiB pages (transparent huge pages, madvise mode).
//
// Decode reads every weight once per token. With 4 KiB pages that stream
// pays a TLB miss every 4 KiB and the hardware prefetcher stops at each page
// boundary; on this machine class fp32 matrix-vector products over the
// weights of a ~100M model read ~18 GB/s from 4 KiB pages and ~24 GB/s from
// 2 MiB pages (bench/kernels.cpp measures the whole decode step). Where the
// kernel has transparent huge pages off, the blocks are ordinary memory.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

namespace cai {

class weight_memory {
public:
    // Blocks are at least block_bytes (rounded up to 2 MiB); a larger tensor gets a block of its own.
    explicit weight_memory(int64_t block_bytes = int64_t(64) << 20);

    // A contiguous copy of t in a block; the copy keeps its block alive.
    at::Tensor place(const at::Tensor& t);

private:
    struct block;
    std::shared_ptr<block> current_;
    int64_t used_ = 0;
    int64_t block_bytes_;
};

// Whether CAI_HUGE_PAGES is unset or not "0": models place their matrices in
// weight_memory unless it is "0" (benchmarks compare both).
bool huge_pages_wanted();

}  // namespace cai

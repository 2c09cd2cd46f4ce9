// How cairun asks glibc to reuse freed memory; header-only, so that cairun's
// thin main (which does not link libcai) and the benchmarks share it.
//
// libtorch frees and allocates its activation and gradient buffers anew at
// every step. glibc serves blocks above its mmap threshold (128 KiB at
// first) with fresh mappings, so each step page-faults and zeroes them
// again: about half of a small model's training time on this machine
// class. Blocks up to 32 MiB stay in the heap and the heap is trimmed only
// above 256 MiB free, so freed memory is reused. The user's settings win.
#pragma once

#include <malloc.h>
#include <stdlib.h>

inline void keep_freed_memory(void) {
    if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_") || getenv("GLIBC_TUNABLES")) return;
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

// What this machine can do, measured in the benchmark's own process so the
// figures and the benchmark share the same noise: fp32 GEMM GFLOP/s and
// DRAM read bandwidth. Benchmarks print their results beside these.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdlib>
#include <unistd.h>
#include <cstdio>
#include <vector>

#include "cli/memory_reuse.h"
#include "kernels/cpu.h"
#include "model/weight_memory.h"

namespace bench {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best of `repeats` timings of fn().
template <class F>
double best_time(F&& fn, int repeats = 5) {
    double best = 1e30;
    for (int i = 0; i < repeats; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        fn();
        best = std::min(best, seconds_since(t0));
    }
    return best;
}

inline double gemm_gflops(int n = 1024, at::ScalarType dtype = at::kFloat) {
    at::Tensor a = at::randn({n, n}).to(dtype), b = at::randn({n, n}).to(dtype);
    at::mm(a, b);  // warm up
    double t = best_time([&] { at::mm(a, b); });
    return 2.0 * n * n * n / t / 1e9;
}

// Reads a buffer much larger than the caches: bytes read per second, the
// best of the buffer in ordinary 4 KiB pages and in 2 MiB pages (where the
// kernel grants them), as the model's weights are held (model/weight_memory.h),
// each read by one thread and by one thread per CPU the process may use
// (kernels::cpu_count(), the matrix-vector product's threads). libtorch may run fewer
// intra-op threads than there are cores (half the cores by default), and one
// core does not always reach the machine's bandwidth: a bound taken from one
// thread alone would flatter whatever runs against it.
inline double memory_bandwidth_gbs(int64_t bytes = int64_t(1) << 30) {
    const int before = at::get_num_threads();
    const int cores = cai::kernels::cpu_count();
    std::vector<int> thread_counts = {1};
    if (cores > 1) thread_counts.push_back(cores);
    double best = 0;
    for (bool huge : {false, true}) {
        at::Tensor data = at::ones({bytes / 4}, at::kFloat);
        cai::weight_memory memory;
        if (huge) data = memory.place(data);
        for (int threads : thread_counts) {
            at::set_num_threads(threads);
            volatile float sink = data.sum().item<float>();  // warm up, touch every page
            double t = best_time([&] { sink = data.sum().item<float>(); }, 5);
            (void)sink;
            best = std::max(best, bytes / t / 1e9);
        }
    }
    at::set_num_threads(before);
    return best;
}

// Benchmarks run outside cairun, so they make the same OpenBLAS kernel
// choice cairun makes (see runtime/cli/main.cpp) by re-executing themselves,
// and reuse freed memory as cairun does (runtime/cli/memory_reuse.h).
inline void use_openblas_avx512_kernels(char** argv) {
    keep_freed_memory();
    if (std::getenv("OPENBLAS_CORETYPE")) return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) return;
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    execv("/proc/self/exe", argv);
}

inline void print_machine() {
    std::printf("machine: fp32 GEMM %.1f GFLOP/s, bf16 GEMM %.1f GFLOP/s, memory read %.1f GB/s, threads %d\n",
                gemm_gflops(1024, at::kFloat), gemm_gflops(1024, at::kBFloat16), memory_bandwidth_gbs(),
                at::get_num_threads());
}

}  // namespace bench

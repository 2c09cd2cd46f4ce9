// What this machine can do, measured in the benchmark's own process so the
// figures and the benchmark share the same noise: fp32 GEMM GFLOP/s and
// DRAM read bandwidth. Benchmarks print their results beside these.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <vector>

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

// Sums a buffer much larger than the caches: bytes read per second.
inline double memory_bandwidth_gbs(size_t bytes = size_t(512) << 20) {
    std::vector<float> data(bytes / sizeof(float), 1.0f);
    volatile float sink = 0;
    double t = best_time([&] {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        const float* p = data.data();
        size_t n = data.size();
        for (size_t i = 0; i + 8 <= n; i += 8) {
            s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3];
            s4 += p[i + 4]; s5 += p[i + 5]; s6 += p[i + 6]; s7 += p[i + 7];
        }
        sink = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    }, 3);
    (void)sink;
    return bytes / t / 1e9;
}

inline void print_machine() {
    std::printf("machine: fp32 GEMM %.1f GFLOP/s, bf16 GEMM %.1f GFLOP/s, memory read %.1f GB/s, threads %d\n",
                gemm_gflops(1024, at::kFloat), gemm_gflops(1024, at::kBFloat16), memory_bandwidth_gbs(),
                at::get_num_threads());
}

}  // namespace bench

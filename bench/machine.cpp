// bench_machine: the machine's GEMM throughput and memory bandwidth, and the
// OpenBLAS kernel choice ratio (the reason cairun sets OPENBLAS_CORETYPE).
#include <cstdlib>

#include "machine.h"

int main(int argc, char** argv) {
    bench::use_openblas_avx512_kernels(argv);
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    std::printf("OPENBLAS_CORETYPE=%s\n", coretype ? coretype : "(unset)");
    for (int n : {256, 1024, 2048})
        std::printf("fp32 GEMM %4d: %7.1f GFLOP/s\n", n, bench::gemm_gflops(n, at::kFloat));
    std::printf("bf16 GEMM 1024: %7.1f GFLOP/s\n", bench::gemm_gflops(1024, at::kBFloat16));
    std::printf("memory read:   %7.1f GB/s\n", bench::memory_bandwidth_gbs());
    return 0;
}

#pragma once
// What the fused kernels may use on this CPU, and the switch that turns them
// off (the plain ATen path, used by tests and benchmarks to compare against).
//
// Kernels whose file name ends in _avx512.cpp or _avx2.cpp are compiled for
// that instruction set only (see CMakeLists.txt); callers pick one at run time
// with cpu_isa(). Those files keep to raw pointers, <ATen/cpu/vec/vec.h> and
// at::parallel_for, whose vector types live in a per-ISA namespace.

namespace cai::kernels {

enum class isa { generic, avx2, avx512 };

// The best instruction set both this CPU and this build support, lowered by
// CAI_KERNELS_ISA=generic|avx2|avx512 (never raised above what the CPU has).
isa cpu_isa();
const char* isa_name(isa);
// AVX512-BF16 dot products (vdpbf16ps) are available on this CPU.
bool cpu_has_avx512_bf16();
// The avx512 kernels run and the CPU has AVX512-VNNI (int8 dot products: kernels::matvec_i8).
bool cpu_has_avx512_vnni();

// The CPUs this process may run on (its affinity mask; at least 1).
int cpu_count();

// Threads the matrix-vector products of decode run on: one per CPU this
// process may use (cpu_count()). Memory bandwidth, not arithmetic,
// limits them, and one core does not reach the machine's bandwidth, while
// libtorch's intra-op pool defaults to half the cores (one on a 2-core
// machine). OMP_NUM_THREADS, when set, decides instead (libtorch's count).
int matvec_threads();

// Fused kernels on (the default) or off. CAI_KERNELS=0 turns them off for the
// whole process; set_enabled() changes it for this process at run time.
bool enabled();
void set_enabled(bool on);

// Runs a scope with the kernels switched on or off, restoring the old state.
class scoped_enabled {
 public:
  explicit scoped_enabled(bool on) : old_(enabled()) { set_enabled(on); }
  ~scoped_enabled() { set_enabled(old_); }
  scoped_enabled(const scoped_enabled&) = delete;
  scoped_enabled& operator=(const scoped_enabled&) = delete;

 private:
  bool old_;
};

}  // namespace cai::kernels

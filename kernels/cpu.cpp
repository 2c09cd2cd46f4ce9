#include "kernels/cpu.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace cai::kernels {
namespace {

isa detect() {
  __builtin_cpu_init();
  isa best = isa::generic;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = isa::avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    best = isa::avx512;
  const char* want = std::getenv("CAI_KERNELS_ISA");
  if (want == nullptr || *want == '\0') return best;
  isa asked;
  if (std::strcmp(want, "generic") == 0) asked = isa::generic;
  else if (std::strcmp(want, "avx2") == 0) asked = isa::avx2;
  else if (std::strcmp(want, "avx512") == 0) asked = isa::avx512;
  else fail("CAI_KERNELS_ISA must be one of generic, avx2, avx512; got \"", want, "\"");
  return static_cast<int>(asked) < static_cast<int>(best) ? asked : best;
}

bool initial_enabled() {
  const char* v = std::getenv("CAI_KERNELS");
  if (v == nullptr || *v == '\0') return true;
  if (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0 || std::strcmp(v, "false") == 0) return false;
  if (std::strcmp(v, "1") == 0 || std::strcmp(v, "on") == 0 || std::strcmp(v, "true") == 0) return true;
  fail("CAI_KERNELS must be 0 or 1 (off/on); got \"", v, "\"");
}

std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> flag{initial_enabled()};
  return flag;
}

}  // namespace

isa cpu_isa() {
  static const isa chosen = detect();
  return chosen;
}

const char* isa_name(isa i) {
  switch (i) {
    case isa::generic: return "generic";
    case isa::avx2: return "avx2";
    case isa::avx512: return "avx512";
  }
  return "?";
}

bool cpu_has_avx512_bf16() {
  static const bool has = [] {
    __builtin_cpu_init();
    return cpu_isa() == isa::avx512 && __builtin_cpu_supports("avx512bf16");
  }();
  return has;
}

bool cpu_has_avx512_vnni() {
  static const bool has = [] {
    __builtin_cpu_init();
    return cpu_isa() == isa::avx512 && __builtin_cpu_supports("avx512vnni");
  }();
  return has;
}

int cpu_count() {
  static const int cpus = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
  }();
  return cpus;
}

int matvec_threads() {
  static const bool omp_set = [] {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    return omp != nullptr && *omp != '\0';
  }();
  return omp_set ? at::get_num_threads() : cpu_count();
}

bool enabled() { return enabled_flag().load(std::memory_order_relaxed); }
void set_enabled(bool on) { enabled_flag().store(on, std::memory_order_relaxed); }

}  // namespace cai::kernels

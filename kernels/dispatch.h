#pragma once
// Calls the chosen instruction set's inner loop (kernels/ops_isa.h). Only
// valid when cpu_isa() is not generic: the wrappers fall back to plain ATen
// before they get here.
#include "kernels/cpu.h"
#include "kernels/ops_isa.h"

#define CAI_KERNELS_CALL(fn, ...) \
    (::cai::kernels::cpu_isa() == ::cai::kernels::isa::avx512 ? ::cai::kernels::avx512::fn(__VA_ARGS__) \
                                                               : ::cai::kernels::avx2::fn(__VA_ARGS__))

namespace cai::kernels {

// The kernels run on this CPU and are switched on.
inline bool available() { return enabled() && cpu_isa() != isa::generic; }

}  // namespace cai::kernels

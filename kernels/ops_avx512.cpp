// The decode and layer kernels' inner loops compiled for AVX512 (see kernels/ops_impl.h).
#define CAI_ISA_NS avx512
#include "kernels/ops_impl.h"

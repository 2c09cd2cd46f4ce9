// The decode and layer kernels' inner loops compiled for AVX2 (see kernels/ops_impl.h).
#define CAI_ISA_NS avx2
#include "kernels/ops_impl.h"

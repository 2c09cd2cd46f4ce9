// The causal attention's inner loops compiled for AVX2 (see kernels/causal_attention_impl.h).
#define CAI_ISA_NS avx2
#include "kernels/causal_attention_impl.h"

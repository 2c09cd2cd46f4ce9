// The causal attention's inner loops compiled for AVX512 (see kernels/causal_attention_impl.h).
#define CAI_ISA_NS avx512
#include "kernels/causal_attention_impl.h"

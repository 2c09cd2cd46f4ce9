// linear_logprob's inner loops for AVX2 (see linear_logprob_isa.h).
#include "kernels/linear_logprob_isa.h"

// Helpers shared by the per-instruction-set kernel files (kernels/ops_impl.h,
// kernels/causal_attention_impl.h): float32/bf16 loads and stores, the
// ISA's vector register and a thread split. Included once per translation
// unit with CAI_ISA_NS naming the namespace; at::vec::Vectorized<float> has
// that ISA's width there.
#pragma once
// GCC 12 warns about the undefined upper lanes its own AVX-512 widening intrinsics use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <immintrin.h>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/ops_isa.h"

#ifndef CAI_ISA_NS
#error "define CAI_ISA_NS before including kernels/vec_impl.h"
#endif

namespace cai::kernels::CAI_ISA_NS {
namespace {

using fvec = at::vec::Vectorized<float>;
constexpr int W = fvec::size();

// bf16 <-> float32 (round to nearest even, as c10::BFloat16 does).
inline float bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint16_t float_to_bf16(float f) {
    if (std::isnan(f)) return 0x7fc0;
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

#if defined(CPU_CAPABILITY_AVX512)
inline fvec load_bf16(const uint16_t* p) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}
#else
inline fvec load_bf16(const uint16_t* p) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}
#endif
inline fvec load_bf16(const uint16_t* p, int64_t count) {
    uint16_t tmp[W] = {};
    std::memcpy(tmp, p, count * 2);
    return load_bf16(tmp);
}

// Rounds float32 lanes to bf16 (nearest even) and stores W of them. NaNs are
// kept NaN by the scalar path only (the model never stores NaN on purpose).
#if defined(CPU_CAPABILITY_AVX512)
inline __m512i round_bits(const fvec& v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    return _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
}
inline void store_bf16_full(uint16_t* p, const fvec& v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(round_bits(v)));
}
inline fvec round_bf16(const fvec& v) { return _mm512_castsi512_ps(_mm512_slli_epi32(round_bits(v), 16)); }
inline bool any_nan(const fvec& v) { return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0; }
#else
inline __m256i round_bits(const fvec& v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    return _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
}
inline void store_bf16_full(uint16_t* p, const fvec& v) {
    __m256i b = round_bits(v);
    __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
}
inline fvec round_bf16(const fvec& v) { return _mm256_castsi256_ps(_mm256_slli_epi32(round_bits(v), 16)); }
inline bool any_nan(const fvec& v) { return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0; }
#endif

inline void store_bf16(uint16_t* p, const fvec& v, int64_t count = W) {
    if (count == W && !any_nan(v)) {
        store_bf16_full(p, v);
        return;
    }
    float tmp[W];
    v.store(tmp);
    for (int64_t i = 0; i < count; ++i) p[i] = float_to_bf16(tmp[i]);
}

// Loads and stores of float32 or bf16 data as float32 vectors.
template <bool BF>
inline fvec load(const void* p, int64_t i, int64_t count = W) {
    if constexpr (BF) {
        const uint16_t* q = static_cast<const uint16_t*>(p) + i;
        return count == W ? load_bf16(q) : load_bf16(q, count);
    } else {
        return fvec::loadu(static_cast<const float*>(p) + i, count);
    }
}
template <bool BF>
inline void store(void* p, int64_t i, const fvec& v, int64_t count = W) {
    if constexpr (BF) store_bf16(static_cast<uint16_t*>(p) + i, v, count);
    else v.store(static_cast<float*>(p) + i, count);
}
template <bool BF>
inline float load1(const void* p, int64_t i) {
    if constexpr (BF) return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    else return static_cast<const float*>(p)[i];
}
template <bool BF>
inline void store1(void* p, int64_t i, float v) {
    if constexpr (BF) static_cast<uint16_t*>(p)[i] = float_to_bf16(v);
    else static_cast<float*>(p)[i] = v;
}
// Rounds to the storage dtype and back (the plain path's intermediate cast).
template <bool BF>
inline float round_to(float v) {
    if constexpr (BF) return bf16_to_float(float_to_bf16(v));
    else return v;
}

inline float hsum(const fvec& v) {
#if defined(CPU_CAPABILITY_AVX512)
    return _mm512_reduce_add_ps(v);  // a shuffle tree instead of 16 scalar adds (a matvec row pays it once)
#else
    float tmp[W];
    v.store(tmp);
    float s = 0;
    for (int i = 0; i < W; ++i) s += tmp[i];
    return s;
#endif
}

// The ISA's vector register. Accumulators are kept in these, not in
// at::vec::Vectorized: GCC keeps an array of Vectorized in memory, storing and
// reloading every accumulator each step (a 1.5x slower matvec at one row).
#if defined(CPU_CAPABILITY_AVX512)
using vreg = __m512;
inline vreg vzero() { return _mm512_setzero_ps(); }
inline vreg vfma(vreg a, vreg b, vreg c) { return _mm512_fmadd_ps(a, b, c); }
inline float vsum(vreg v) { return _mm512_reduce_add_ps(v); }
#else
using vreg = __m256;
inline vreg vzero() { return _mm256_setzero_ps(); }
inline vreg vfma(vreg a, vreg b, vreg c) { return _mm256_fmadd_ps(a, b, c); }
inline float vsum(vreg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#endif

// Runs fn(begin, end) over [0, total) split into one contiguous part per
// thread, at most `threads` OpenMP threads and parts of at least `grain`,
// part edges on multiples of `align`. (at::parallel_for would take libtorch's
// intra-op thread count instead.)
template <class F>
void parallel_parts(int64_t total, int64_t grain, int64_t align, int threads, const F& fn) {
    const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, total / std::max<int64_t>(grain, 1)));
#if defined(_OPENMP)
    if (parts > 1) {
#pragma omp parallel num_threads((int)parts)
        {
            const int64_t n = omp_get_num_threads(), p = omp_get_thread_num();
            const int64_t chunk = (total / n + align - 1) / align * align;
            const int64_t begin = std::min(total, p * chunk), end = p == n - 1 ? total : std::min(total, begin + chunk);
            if (begin < end) fn(begin, end);
        }
        return;
    }
#endif
    fn(0, total);
}

}  // namespace
}  // namespace cai::kernels::CAI_ISA_NS

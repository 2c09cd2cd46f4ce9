// The inner loops of kernels/ops_isa.h, included once per instruction set by
// kernels/ops_avx512.cpp and kernels/ops_avx2.cpp with CAI_ISA_NS naming the
// namespace; at::vec::Vectorized<float> has that ISA's width there.
// Raw pointers, at::vec and at::parallel_for only.
#include <type_traits>

#include "kernels/vec_impl.h"

namespace cai::kernels::CAI_ISA_NS {
namespace {

// ---------------------------------------------------------------- matvec

// The weight rows a row block reads next, asked of the memory ahead of time:
// row n0 + i + ahead for each of the block's ROWS rows, `offset` bytes in
// (bytes a row). The hardware prefetcher follows so few streams too slowly
// once a block computes for several input rows: 4 rows ahead (16 with 8-row
// blocks) made 4-32 input rows 1.3-1.8x faster on bf16 weights out of cache.
// One float input row streams fast enough without (and slowed with it in
// float32); int8 rows, a quarter as long, gain at one input row too.
template <int ROWS>
inline void prefetch_rows(const void* w, int64_t row_bytes, int64_t n0, int64_t offset) {
    constexpr int64_t ahead = ROWS >= 8 ? 16 : 4;
    // Addresses past the weights are fine to prefetch (never a fault); they
    // are formed as integers, not as pointers past the array.
    const uintptr_t p = reinterpret_cast<uintptr_t>(w) + (uintptr_t)((n0 + ahead) * row_bytes + offset);
    for (int i = 0; i < ROWS; ++i) _mm_prefetch(reinterpret_cast<const char*>(p + (uintptr_t)(i * row_bytes)), _MM_HINT_T0);
}

// ROWS output rows n0.. of one segment for R input rows: each weight vector
// is loaded once and multiplied into every input row.
template <bool BF, int R, int ROWS>
inline void matvec_rows(const void* w, const float* x, int64_t K, int64_t n0, float (&out)[ROWS][R]) {
    vreg acc[ROWS][R];
    _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i)
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) acc[i][r] = vzero();
    int64_t k = 0;
    for (; k + W <= K; k += W) {
        vreg xv[R];
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) xv[r] = fvec::loadu(x + r * K + k);
        if constexpr (R > 1) prefetch_rows<ROWS>(w, K * (BF ? 2 : 4), n0, k * (BF ? 2 : 4));
        _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i) {
            const vreg wv = load<BF>(w, (n0 + i) * K + k);
            _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) acc[i][r] = vfma(wv, xv[r], acc[i][r]);
        }
    }
    if (k < K) {
        const int64_t rest = K - k;
        _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i) {
            const vreg wv = load<BF>(w, (n0 + i) * K + k, rest);
            _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) acc[i][r] = vfma(wv, fvec::loadu(x + r * K + k, rest), acc[i][r]);
        }
    }
    _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i)
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) out[i][r] = vsum(acc[i][r]);
}

#if defined(CPU_CAPABILITY_AVX512)
// bf16 weights times bf16 x with vdpbf16ps: 32 products per instruction, each
// exact in float32 (x came from bf16, so rounding it back is exact), summed
// in float32. xb: (R, K) bf16 bits.
template <int R, int ROWS>
inline void matvec_rows_dp(const uint16_t* w, const uint16_t* xb, int64_t K, int64_t n0, float (&out)[ROWS][R]) {
    __m512 acc[ROWS][R];
    for (int i = 0; i < ROWS; ++i)
        for (int r = 0; r < R; ++r) acc[i][r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512i xv[R];
        for (int r = 0; r < R; ++r) xv[r] = _mm512_loadu_si512(xb + r * K + k);
        if constexpr (R > 1) prefetch_rows<ROWS>(w, 2 * K, n0, 2 * k);
        for (int i = 0; i < ROWS; ++i) {
            __m512i wv = _mm512_loadu_si512(w + (n0 + i) * K + k);
            for (int r = 0; r < R; ++r) acc[i][r] = _mm512_dpbf16_ps(acc[i][r], (__m512bh)wv, (__m512bh)xv[r]);
        }
    }
    if (k < K) {
        const __mmask32 m = (__mmask32)((1ull << (K - k)) - 1);
        for (int i = 0; i < ROWS; ++i) {
            __m512i wv = _mm512_maskz_loadu_epi16(m, w + (n0 + i) * K + k);
            for (int r = 0; r < R; ++r)
                acc[i][r] = _mm512_dpbf16_ps(acc[i][r], (__m512bh)wv, (__m512bh)_mm512_maskz_loadu_epi16(m, xb + r * K + k));
        }
    }
    for (int i = 0; i < ROWS; ++i)
        for (int r = 0; r < R; ++r) out[i][r] = _mm512_reduce_add_ps(acc[i][r]);
}

inline bool has_dpbf16() {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512bf16") != 0;
    }();
    return has;
}
#endif

// Output rows [n, end) of one segment for R input rows: blocks of ROWS
// weight rows, then the rest one at a time. rows(n, out) computes a block
// into out, a float[k][R] with k = ROWS or 1 (block_rows<decltype(out)>);
// finish(n, r, v) stores one result.
template <class Out>
constexpr int block_rows = (int)std::extent_v<std::remove_reference_t<Out>>;

template <int ROWS, int R, class Rows, class Finish>
inline void over_row_blocks(int64_t n, int64_t end, const Rows& rows, const Finish& finish) {
    for (; n + ROWS <= end; n += ROWS) {
        float out[ROWS][R];
        rows(n, out);
        for (int i = 0; i < ROWS; ++i)
            for (int r = 0; r < R; ++r) finish(n + i, r, out[i][r]);
    }
    for (; n < end; ++n) {
        float out[1][R];
        rows(n, out);
        for (int r = 0; r < R; ++r) finish(n, r, out[0][r]);
    }
}

// The weight rows of all segments (one after another) split over `threads`
// OpenMP threads in parts of at least `grain`; each part is walked in tiles
// of `tile` rows, and every 8-row chunk of x runs over a tile while it is in
// cache. chunk(c, s, lo, hi) computes x's chunk c for rows [lo, hi) of
// segment s, whose out already points at the chunk's first output row
// (elem bytes a value).
template <class Chunk>
void over_weight_tiles(const mv_segment* segs, int nsegs, int64_t chunks, int64_t tile, int64_t grain, int64_t elem,
                       int threads, const Chunk& chunk) {
    int64_t total = 0;
    for (int i = 0; i < nsegs; ++i) total += segs[i].n;
    parallel_parts(total, grain, 8, threads, [&](int64_t begin, int64_t end) {
        for (int64_t t0 = begin, t1; t0 < end; t0 = t1) {
            t1 = t0 + std::min(tile, end - t0);
            for (int64_t c = 0; c < chunks; ++c) {
                int64_t base = 0;
                for (int i = 0; i < nsegs && base < t1; base += segs[i].n, ++i) {
                    const int64_t lo = std::max(t0, base) - base, hi = std::min(t1, base + segs[i].n) - base;
                    if (lo >= hi) continue;
                    mv_segment s = segs[i];
                    s.out = static_cast<char*>(s.out) + 8 * c * s.n * elem;
                    chunk(c, s, lo, hi);
                }
            }
        }
    });
}

// bf16 rows (n values) widened to float32 into buf.
inline const float* widened_bf16(const void* x, int64_t n, std::vector<float>& buf) {
    buf.resize((size_t)n);
    for (int64_t i = 0; i < n; ++i) buf[(size_t)i] = bf16_to_float(static_cast<const uint16_t*>(x)[i]);
    return buf.data();
}

template <bool BF, int R>
void matvec_range(const float* x, const uint16_t* xb, int64_t K, const mv_segment& s, int64_t begin, int64_t end) {
    // Weight rows read side by side: more of them keep more memory reads in
    // flight (8 rows reach ~30% more bandwidth than 4 at one input row), as
    // many as the vector registers hold next to the R inputs.
    constexpr int ROWS = W == 16 ? (R <= 2 ? 8 : (R <= 4 ? 4 : 2)) : (R >= 4 ? 1 : (R >= 2 ? 2 : 4));
    auto finish = [&](int64_t n, int r, float v) {
        if (s.bias) v += load1<BF>(s.bias, n);
        store1<BF>(s.out, r * s.n + n, v);
    };
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (BF) {
        if (xb) {
            const uint16_t* w = static_cast<const uint16_t*>(s.w);
            return over_row_blocks<ROWS, R>(
                begin, end, [&](int64_t n, auto& out) { matvec_rows_dp<R, block_rows<decltype(out)>>(w, xb, K, n, out); },
                finish);
        }
    }
#endif
    over_row_blocks<ROWS, R>(
        begin, end, [&](int64_t n, auto& out) { matvec_rows<BF, R, block_rows<decltype(out)>>(s.w, x, K, n, out); },
        finish);
}


// f(std::integral_constant<int, R>{}) with R = rows (1 to 8): a register
// block's input rows as a compile-time constant.
template <class F>
inline void with_block_rows(int64_t rows, const F& f) {
    switch (rows) {
        case 1: return f(std::integral_constant<int, 1>{});
        case 2: return f(std::integral_constant<int, 2>{});
        case 3: return f(std::integral_constant<int, 3>{});
        case 4: return f(std::integral_constant<int, 4>{});
        case 5: return f(std::integral_constant<int, 5>{});
        case 6: return f(std::integral_constant<int, 6>{});
        case 7: return f(std::integral_constant<int, 7>{});
        case 8: return f(std::integral_constant<int, 8>{});
    }
}

// x: (R, K) in the weights' dtype, any R. bf16 x goes to vdpbf16ps as it is
// where the CPU has it, and is widened to float32 once otherwise. The rows go
// 8 at a time (one register block); with more than 8, each thread takes its
// weight rows in tiles of 32 and runs every 8-row chunk over a tile while it
// is in cache, so R rows cost about one pass over the weights from memory.
template <bool BF>
void matvec_typed(const void* x_in, int64_t R, int64_t K, const mv_segment* segs, int nsegs, int threads) {
    const int64_t grain = std::max<int64_t>(16, (int64_t)(65536 / std::max<int64_t>(K, 1)));
    const float* x = BF ? nullptr : static_cast<const float*>(x_in);
    const uint16_t* xb = nullptr;
    std::vector<float> widened;
#if defined(CPU_CAPABILITY_AVX512)
    if (BF && has_dpbf16()) xb = static_cast<const uint16_t*>(x_in);
#endif
    if (BF && !xb) x = widened_bf16(x_in, R * K, widened);
    const int64_t chunks = (R + 7) / 8;
    const int64_t tile = chunks == 1 ? std::numeric_limits<int64_t>::max() : 32;
    over_weight_tiles(segs, nsegs, chunks, tile, grain, BF ? 2 : 4, threads,
                      [&](int64_t c, const mv_segment& s, int64_t lo, int64_t hi) {
                          const float* xc = x ? x + 8 * c * K : nullptr;
                          const uint16_t* xbc = xb ? xb + 8 * c * K : nullptr;
                          with_block_rows(std::min<int64_t>(8, R - 8 * c), [&](auto rows) {
                              matvec_range<BF, decltype(rows)::value>(xc, xbc, K, s, lo, hi);
                          });
                      });
}

// ------------------------------------------------------------ int8 matvec

// W weights stored as uint8 (int8 + 128) widened to their int8 values in float32 lanes.
inline vreg load_i8(const uint8_t* p) {
#if defined(CPU_CAPABILITY_AVX512)
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(v, _mm512_set1_epi32(128)));
#else
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(128)));
#endif
}
inline vreg load_i8(const uint8_t* p, int64_t count) {
    uint8_t tmp[W];
    std::memset(tmp, 128, sizeof tmp);
    std::memcpy(tmp, p, (size_t)count);
    return load_i8(tmp);
}

// ROWS output rows n0.. of the weights for R float32 input rows; the sums
// before the row scale (integers times x, accumulated in float32).
template <int R, int ROWS>
inline void matvec_rows_i8(const uint8_t* w, const float* x, int64_t K, int64_t n0, float (&out)[ROWS][R]) {
    vreg acc[ROWS][R];
    _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i)
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) acc[i][r] = vzero();
    int64_t k = 0;
    for (; k + W <= K; k += W) {
        vreg xv[R];
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) xv[r] = fvec::loadu(x + r * K + k);
        prefetch_rows<ROWS>(w, K, n0, k);
        _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i) {
            const vreg wv = load_i8(w + (n0 + i) * K + k);
            _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) acc[i][r] = vfma(wv, xv[r], acc[i][r]);
        }
    }
    if (k < K) {
        const int64_t rest = K - k;
        _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i) {
            const vreg wv = load_i8(w + (n0 + i) * K + k, rest);
            _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) acc[i][r] = vfma(wv, fvec::loadu(x + r * K + k, rest), acc[i][r]);
        }
    }
    _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i)
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) out[i][r] = vsum(acc[i][r]);
}

#if defined(CPU_CAPABILITY_AVX512)
// x quantized for vpdpbusd: per row r and 64-wide block b, xs[r][b] =
// max|x| / 127 and xq = round(x / xs) (int8, nearest even; zero past K);
// corr[r] = 128 * sum_b xs[r][b] * sum(xq of block b), what the weights'
// +128 offset adds.
constexpr int64_t qblock = 64;
struct quantized_x {
    const int8_t* q = nullptr;     // (R, Kp)
    const float* scale = nullptr;  // (R, nb)
    float corr[8] = {};            // (R)
    int64_t Kp = 0, nb = 0;
};
// Quantizes R <= 8 rows of x (K each) into q (R, Kp) and scale (R, nb), which out then names.
inline void quantize_x(const float* x, int R, int64_t K, int8_t* q, float* scale, quantized_x& out) {
    out.nb = (K + qblock - 1) / qblock;
    out.Kp = out.nb * qblock;
    out.q = q;
    out.scale = scale;
    for (int r = 0; r < R; ++r) {
        double corr = 0;
        for (int64_t b = 0; b < out.nb; ++b) {
            const int64_t k0 = b * qblock, n = std::min(K, k0 + qblock) - k0;
            const float* xb = x + r * K + k0;
            __m512 v[4];
            __m512 amax = _mm512_setzero_ps();
            for (int j = 0; j < 4; ++j) {
                const int64_t left = n - 16 * j;
                const __mmask16 m = left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
                v[j] = _mm512_maskz_loadu_ps(m, xb + 16 * j);
                amax = _mm512_max_ps(amax, _mm512_abs_ps(v[j]));
            }
            const float a = _mm512_reduce_max_ps(amax);
            const float sc = a / 127.f, inv = a > 0 ? 127.f / a : 0.f;
            __m512i sum = _mm512_setzero_si512();
            int8_t* qb = q + r * out.Kp + k0;
            for (int j = 0; j < 4; ++j) {
                const __m512i qv = _mm512_cvtps_epi32(_mm512_mul_ps(v[j], _mm512_set1_ps(inv)));  // nearest even
                sum = _mm512_add_epi32(sum, qv);
                _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16 * j), _mm512_cvtsepi32_epi8(qv));
            }
            scale[r * out.nb + b] = sc;
            corr += 128.0 * (double)sc * (double)_mm512_reduce_add_epi32(sum);
        }
        out.corr[r] = (float)corr;
    }
}

inline bool has_vnni() {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512vnni") != 0;
    }();
    return has;
}

// ROWS output rows n0.. for R quantized input rows: per 64-wide block one
// vpdpbusd (64 products uint8 x int8 into 16 int32 lanes), widened to float
// and scaled by the block's x scale. Before the +128 correction and the row scale.
template <int R, int ROWS>
inline void matvec_rows_vnni(const uint8_t* w, const quantized_x& x, int64_t K, int64_t n0, float (&out)[ROWS][R]) {
    __m512 acc[ROWS][R];
    _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i)
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) acc[i][r] = _mm512_setzero_ps();
    const int64_t full = K / qblock, nb = x.nb, Kp = x.Kp;
    const int8_t* xq = x.q;
    const float* xs = x.scale;
    const uint8_t* wrow[ROWS];
    _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i) wrow[i] = w + (n0 + i) * K;
    const __m512i zero = _mm512_setzero_si512();
    auto block = [&](int64_t b, __mmask64 m) {
        const int64_t k = b * qblock;
        __m512i xv[R];
        __m512 sv[R];
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
            xv[r] = _mm512_loadu_si512(xq + r * Kp + k);
            sv[r] = _mm512_set1_ps(xs[r * nb + b]);
        }
        prefetch_rows<ROWS>(w, K, n0, k);
        _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i) {
            const __m512i wv = _mm512_maskz_loadu_epi8(m, wrow[i] + k);
            _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r)
                acc[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, wv, xv[r])), sv[r], acc[i][r]);
        }
    };
    for (int64_t b = 0; b < full; ++b) block(b, ~(__mmask64)0);
    if (full < nb) block(full, ((__mmask64)1 << (K - full * qblock)) - 1);
    _Pragma("GCC unroll 16") for (int i = 0; i < ROWS; ++i)
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) out[i][r] = _mm512_reduce_add_ps(acc[i][r]) - x.corr[r];
}
#endif

template <bool BF, int R>
void matvec_i8_range(const float* x, const void* xq, int64_t K, const mv_segment& s, int64_t begin, int64_t end) {
    // A quarter of float32's bytes per weight: more rows side by side keep
    // the memory reads in flight.
    constexpr int ROWS = W == 16 ? (R <= 2 ? 8 : (R <= 4 ? 4 : 2)) : (R >= 4 ? 1 : (R >= 2 ? 2 : 4));
    const uint8_t* w = static_cast<const uint8_t*>(s.w);
    auto finish = [&](int64_t n, int r, float v) {
        v *= s.scale[n];
        if (s.bias) v += load1<BF>(s.bias, n);
        store1<BF>(s.out, r * s.n + n, v);
    };
#if defined(CPU_CAPABILITY_AVX512)
    if (xq) {
        const quantized_x& q = *static_cast<const quantized_x*>(xq);
        return over_row_blocks<ROWS, R>(
            begin, end, [&](int64_t n, auto& out) { matvec_rows_vnni<R, block_rows<decltype(out)>>(w, q, K, n, out); },
            finish);
    }
#else
    (void)xq;
#endif
    over_row_blocks<ROWS, R>(
        begin, end, [&](int64_t n, auto& out) { matvec_rows_i8<R, block_rows<decltype(out)>>(w, x, K, n, out); },
        finish);
}

// x: (R, K) float32 or bf16 (widened to float32 once), any R. The rows go 8
// at a time (one register block); each thread takes its weight rows in tiles
// of 32 and runs every 8-row chunk of x over a tile while it is in cache, so
// R rows cost about one pass over the weights from memory, and a row's result
// never depends on the rows computed with it.
template <bool BF>
void matvec_i8_typed(const void* x_in, int64_t R, int64_t K, const mv_segment* segs, int nsegs, int threads) {
    const int64_t grain = std::max<int64_t>(16, (int64_t)(262144 / std::max<int64_t>(K, 1)));
    std::vector<float> widened;
    const float* x = BF ? widened_bf16(x_in, R * K, widened) : static_cast<const float*>(x_in);
    const int64_t chunks = (R + 7) / 8;
    auto rows_of = [&](int64_t c) { return std::min<int64_t>(8, R - 8 * c); };
    std::vector<const void*> xq((size_t)chunks, nullptr);
#if defined(CPU_CAPABILITY_AVX512)
    std::vector<quantized_x> q((size_t)chunks);
    std::vector<int8_t> qbuf;
    std::vector<float> sbuf;
    if (has_vnni()) {
        const int64_t nb = (K + qblock - 1) / qblock;
        qbuf.resize((size_t)(R * nb * qblock));
        sbuf.resize((size_t)(R * nb));
        for (int64_t c = 0; c < chunks; ++c) {
            quantize_x(x + 8 * c * K, (int)rows_of(c), K, qbuf.data() + 8 * c * nb * qblock, sbuf.data() + 8 * c * nb,
                       q[(size_t)c]);
            xq[(size_t)c] = &q[(size_t)c];
        }
    }
#endif
    over_weight_tiles(segs, nsegs, chunks, 32, grain, BF ? 2 : 4, threads,
                      [&](int64_t c, const mv_segment& s, int64_t lo, int64_t hi) {
                          with_block_rows(rows_of(c), [&](auto rows) {
                              matvec_i8_range<BF, decltype(rows)::value>(x + 8 * c * K, xq[(size_t)c], K, s, lo, hi);
                          });
                      });
}

// ------------------------------------------------------------- attention

template <bool BF>
void attention_typed(const void* q, const void* k, const void* v, void* out, const int64_t* positions,
                     const int64_t* filled, const attention_shape& s) {
    const int64_t groups = s.H / s.Hkv, D = s.D;
    const int64_t kv_token = s.Hkv * D, kv_row = s.capacity * kv_token;
    const int64_t elem = BF ? 2 : 4, vec_bytes = D * elem;
    // The cache lines of the head vector at offset `at` (elements), asked for
    // a few slots ahead: a paged row's slots lie in blocks all over the pool,
    // and each vector is one of Hkv in its slot.
    auto prefetch_vector = [&](const void* base, int64_t at) {
        const char* p = static_cast<const char*>(base) + at * elem;
        for (int64_t b = 0; b < vec_bytes; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
    };
    constexpr int64_t ahead = 8;  // slots
    // Parts of at least 4 (row, token, head) tasks.
    parallel_parts(s.B * s.T * s.H, 4, 1, s.threads, [&](int64_t begin, int64_t end) {
        std::vector<float> score((size_t)std::max<int64_t>(s.key_len, 1)), qf((size_t)D);
        std::vector<int64_t> slot_at((size_t)std::max<int64_t>(s.key_len, 1) + ahead);
        for (int64_t task = begin; task < end; ++task) {
            const int64_t h = task % s.H, bt = task / s.H, b = bt / s.T;
            const int64_t kh = h / groups;
            const int64_t q_off = task * D;
            const int64_t pos = positions[bt];
            // Slots this query may see: filled, not in its future, inside the window.
            int64_t lo = 0, hi = std::min(filled[b], pos + 1);
            hi = std::min(hi, s.key_len);
            if (s.window > 0) lo = std::max<int64_t>(0, pos - s.window + 1);
            bool uniform = false;
            if (hi <= lo) {  // nothing visible: the plain path's softmax over all-masked scores is uniform
                lo = 0;
                hi = s.key_len;
                uniform = true;
            }
            // Offset (elements) of slot j's head kh: in row b of the cache, or in its block of the pool.
            const int64_t* table = s.block_table ? s.block_table + b * s.table_cols : nullptr;
            const int64_t base = table ? kh * D : b * kv_row + kh * D;
            // slot_at[j - lo]: the offset of slot j, walked block by block (no division a slot);
            // the `ahead` entries past hi repeat the last slot, for the prefetches.
            if (!table) {
                for (int64_t j = lo; j < hi; ++j) slot_at[(size_t)(j - lo)] = base + j * kv_token;
            } else {
                int64_t block = lo / s.block_size, in_block = lo % s.block_size;
                for (int64_t j = lo; j < hi; ++j) {
                    slot_at[(size_t)(j - lo)] = (table[block] * s.block_size + in_block) * kv_token + base;
                    if (++in_block == s.block_size) in_block = 0, ++block;
                }
            }
            for (int64_t i = 0; i < ahead; ++i) slot_at[(size_t)(hi - lo + i)] = slot_at[(size_t)(hi - lo - 1)];
            // Raw scores q.k, one slot at a time (q widened to float32 once).
            const int64_t n = hi - lo;
            for (int64_t d = 0; d < D; ++d) qf[(size_t)d] = load1<BF>(q, q_off + d);
            if (uniform) std::fill(score.begin(), score.begin() + n, 0.0f);
            else {
                for (int64_t j = 0; j < n; ++j) {
                    prefetch_vector(k, slot_at[(size_t)(j + ahead)]);
                    const int64_t kj = slot_at[(size_t)j];
                    vreg a = vzero();
                    int64_t d = 0;
                    for (; d + W <= D; d += W) a = vfma(fvec::loadu(qf.data() + d), load<BF>(k, kj + d), a);
                    if (d < D) a = vfma(fvec::loadu(qf.data() + d, D - d), load<BF>(k, kj + d, D - d), a);
                    score[(size_t)j] = vsum(a);
                }
            }
            // Scaled, soft-capped, then the softmax's exponentials, W slots at a time.
            fvec top(-INFINITY);
            for (int64_t j = 0; j < n; j += W) {
                const int64_t cnt = std::min<int64_t>(W, n - j);
                fvec x = fvec::loadu(score.data() + j, cnt);
                if (!uniform) {
                    x = x * fvec(s.scale);
                    if (s.softcap > 0) x = (x / fvec(s.softcap)).tanh() * fvec(s.softcap);
                    x.store(score.data() + j, cnt);
                }
                top = at::vec::maximum(top, fvec::set(fvec(-INFINITY), x, cnt));
            }
            float lanes[W];
            top.store(lanes);
            const float mx = *std::max_element(lanes, lanes + W);
            fvec total(0.0f);
            for (int64_t j = 0; j < n; j += W) {
                const int64_t cnt = std::min<int64_t>(W, n - j);
                const fvec e = (fvec::loadu(score.data() + j, cnt) - fvec(mx)).exp();
                e.store(score.data() + j, cnt);
                total = total + fvec::set(fvec(0.0f), e, cnt);
            }
            const float sum = hsum(total);
            for (int64_t j = lo; j < hi; ++j) score[j - lo] = round_to<BF>(score[j - lo] / sum);
            // The weighted values, up to 4 vectors of D at a time held in registers over all
            // slots (an accumulator stored and reloaded every slot waited on the store each time).
            for (int64_t d0 = 0; d0 < D; d0 += 4 * W) {
                const int64_t n = std::min<int64_t>(4 * W, D - d0);
                vreg a[4] = {vzero(), vzero(), vzero(), vzero()};
                if (n == 4 * W) {
                    for (int64_t j = lo; j < hi; ++j) {
                        if (d0 == 0) prefetch_vector(v, slot_at[(size_t)(j - lo + ahead)]);
                        const vreg p = fvec(score[j - lo]);
                        const int64_t vj = slot_at[(size_t)(j - lo)] + d0;
                        _Pragma("GCC unroll 4") for (int i = 0; i < 4; ++i) a[i] = vfma(p, load<BF>(v, vj + i * W), a[i]);
                    }
                } else {
                    for (int64_t j = lo; j < hi; ++j) {
                        if (d0 == 0) prefetch_vector(v, slot_at[(size_t)(j - lo + ahead)]);
                        const vreg p = fvec(score[j - lo]);
                        const int64_t vj = slot_at[(size_t)(j - lo)] + d0;
                        for (int i = 0; i < 4 && i * W < n; ++i)
                            a[i] = vfma(p, load<BF>(v, vj + i * W, std::min<int64_t>(W, n - i * W)), a[i]);
                    }
                }
                for (int i = 0; i < 4 && i * W < n; ++i) store<BF>(out, q_off + d0 + i * W, fvec(a[i]), std::min<int64_t>(W, n - i * W));
            }
        }
    });
}

// -------------------------------------------------------------- rms_norm

template <bool BF>
float sum_squares(const void* x, int64_t off, int64_t C) {
    fvec a(0.0f);
    int64_t c = 0;
    for (; c + W <= C; c += W) {
        fvec xv = load<BF>(x, off + c);
        a = at::vec::fmadd(xv, xv, a);
    }
    if (c < C) {
        fvec xv = load<BF>(x, off + c, C - c);
        a = at::vec::fmadd(xv, xv, a);
    }
    return hsum(a);
}

template <bool BF>
void rms_norm_forward_typed(const void* x, const void* w, void* y, float* inv, int64_t N, int64_t C, float eps,
                            bool one_plus) {
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)), [&](int64_t begin, int64_t end) {
        for (int64_t n = begin; n < end; ++n) {
            const int64_t off = n * C;
            const float r = 1.0f / std::sqrt(sum_squares<BF>(x, off, C) / (float)C + eps);
            inv[n] = r;
            const fvec rv(r), one(1.0f);
            for (int64_t c = 0; c < C; c += W) {
                const int64_t cnt = std::min<int64_t>(W, C - c);
                fvec normed = load<BF>(x, off + c, cnt) * rv;
                fvec wv = load<BF>(w, c, cnt);
                fvec out;
                if (one_plus) {
                    out = normed * (wv + one);
                } else if constexpr (BF) {  // llama casts the normed value back before scaling
                    out = round_bf16(normed) * wv;
                } else {
                    out = normed * wv;
                }
                store<BF>(y, off + c, out, cnt);
            }
        }
    });
}

template <bool BF>
void rms_norm_backward_typed(const void* dy, const void* x, const void* w, const float* inv, void* dx, float* dw,
                             int64_t N, int64_t C, bool one_plus) {
    const int threads = at::get_num_threads();
    std::vector<float> dw_part(dw ? (size_t)threads * C : 0, 0.0f);
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)), [&](int64_t begin, int64_t end) {
        float* part = dw ? dw_part.data() + (size_t)at::get_thread_num() * C : nullptr;
        for (int64_t n = begin; n < end; ++n) {
            const int64_t off = n * C;
            const fvec rv(inv[n]), one(1.0f);
            // dot = sum(dn * normed) where dn = dy * w (or dy * (1 + w)).
            fvec dotv(0.0f);
            for (int64_t c = 0; c < C; c += W) {
                const int64_t cnt = std::min<int64_t>(W, C - c);
                fvec normed = load<BF>(x, off + c, cnt) * rv;
                fvec g = load<BF>(dy, off + c, cnt), wv = load<BF>(w, c, cnt);
                fvec dn = one_plus ? g * (wv + one) : g * wv;
                dotv = at::vec::fmadd(dn, normed, dotv);
                if (part) {
                    fvec nv = normed;
                    if constexpr (BF) {
                        if (!one_plus) nv = round_bf16(nv);
                    }
                    at::vec::fmadd(g, nv, fvec::loadu(part + c, cnt)).store(part + c, cnt);
                }
            }
            const fvec mean(hsum(dotv) / (float)C);
            for (int64_t c = 0; c < C; c += W) {
                const int64_t cnt = std::min<int64_t>(W, C - c);
                fvec normed = load<BF>(x, off + c, cnt) * rv;
                fvec g = load<BF>(dy, off + c, cnt), wv = load<BF>(w, c, cnt);
                fvec dn = one_plus ? g * (wv + one) : g * wv;
                store<BF>(dx, off + c, (dn - normed * mean) * rv, cnt);
            }
        }
    });
    if (dw)
        for (int t = 0; t < threads; ++t)
            for (int64_t c = 0; c < C; ++c) dw[c] += dw_part[(size_t)t * C + c];
}

// ---------------------------------------------------------------- rotary

template <bool BF>
void rotary_typed(const void* x, void* y, const void* cos, const void* sin, int64_t BT, int64_t heads, int64_t D,
                  int64_t head_stride, int64_t token_stride, bool inverse) {
    const int64_t half = D / 2;
    at::parallel_for(0, BT * heads, std::max<int64_t>(1, 4096 / std::max<int64_t>(D, 1)), [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
            const int64_t bt = task / heads, h = task % heads;
            const int64_t off = bt * token_stride + h * head_stride, cs = bt * D;
            for (int64_t i = 0; i < half; i += W) {
                const int64_t cnt = std::min<int64_t>(W, half - i);
                fvec a = load<BF>(x, off + i, cnt), b = load<BF>(x, off + half + i, cnt);
                fvec c1 = load<BF>(cos, cs + i, cnt), c2 = load<BF>(cos, cs + half + i, cnt);
                fvec s1 = load<BF>(sin, cs + i, cnt), s2 = load<BF>(sin, cs + half + i, cnt);
                fvec ya, yb;
                if (!inverse) {  // y = x cos + rotate_half(x) sin, rotate_half(x) = (-b, a)
                    ya = a * c1 - b * s1;
                    yb = b * c2 + a * s2;
                } else {  // the transpose: dx = dy cos + rotate_half^T(dy sin)
                    ya = a * c1 + b * s2;
                    yb = b * c2 - a * s1;
                }
                store<BF>(y, off + i, ya, cnt);
                store<BF>(y, off + half + i, yb, cnt);
            }
        }
    });
}

// ------------------------------------------------------------------ gate

constexpr float kSqrt2OverPi = 0.7978845608028654f, kGeluC = 0.044715f, kInvSqrt2 = 0.7071067811865476f;

inline fvec act_forward(const fvec& g, gate_act act) {
    const fvec one(1.0f), half(0.5f);
    switch (act) {
        case gate_act::silu: return g / (one + g.neg().exp());
        case gate_act::gelu_tanh: {
            fvec inner = fvec(kSqrt2OverPi) * (g + fvec(kGeluC) * g * g * g);
            return half * g * (one + inner.tanh());
        }
        case gate_act::gelu_erf: return half * g * (one + (g * fvec(kInvSqrt2)).erf());
        case gate_act::relu: return at::vec::maximum(g, fvec(0.0f));
    }
    return g;
}

// d act(g) / dg
inline fvec act_derivative(const fvec& g, gate_act act) {
    const fvec one(1.0f), half(0.5f);
    switch (act) {
        case gate_act::silu: {
            fvec s = one / (one + g.neg().exp());
            return s * (one + g * (one - s));
        }
        case gate_act::gelu_tanh: {
            fvec g2 = g * g;
            fvec t = (fvec(kSqrt2OverPi) * (g + fvec(kGeluC) * g2 * g)).tanh();
            fvec dinner = fvec(kSqrt2OverPi) * (one + fvec(3 * kGeluC) * g2);
            return half * (one + t) + half * g * (one - t * t) * dinner;
        }
        case gate_act::gelu_erf: {
            fvec cdf = half * (one + (g * fvec(kInvSqrt2)).erf());
            fvec pdf = (g * g * fvec(-0.5f)).exp() * fvec(0.3989422804014327f);
            return cdf + g * pdf;
        }
        case gate_act::relu: {
            float tmp[W];
            g.store(tmp);
            for (int i = 0; i < W; ++i) tmp[i] = tmp[i] > 0 ? 1.0f : 0.0f;
            return fvec::loadu(tmp);
        }
    }
    return one;
}

template <bool BF>
void gate_forward_typed(const void* g, const void* u, void* y, int64_t n, gate_act act) {
    at::parallel_for(0, (n + W - 1) / W, 256, [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk) {
            const int64_t i = blk * W, cnt = std::min<int64_t>(W, n - i);
            store<BF>(y, i, act_forward(load<BF>(g, i, cnt), act) * load<BF>(u, i, cnt), cnt);
        }
    });
}

template <bool BF>
void gate_backward_typed(const void* dy, const void* g, const void* u, void* dg, void* du, int64_t n, gate_act act) {
    at::parallel_for(0, (n + W - 1) / W, 256, [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk) {
            const int64_t i = blk * W, cnt = std::min<int64_t>(W, n - i);
            fvec gv = load<BF>(g, i, cnt), dyv = load<BF>(dy, i, cnt);
            if (dg) store<BF>(dg, i, dyv * load<BF>(u, i, cnt) * act_derivative(gv, act), cnt);
            if (du) store<BF>(du, i, dyv * act_forward(gv, act), cnt);
        }
    });
}

}  // namespace

void matvec(const void* x, int64_t R, int64_t K, const mv_segment* segs, int nsegs, bool bf16, int threads) {
    if (bf16) matvec_typed<true>(x, R, K, segs, nsegs, threads);
    else matvec_typed<false>(x, R, K, segs, nsegs, threads);
}

void matvec_i8(const void* x, int64_t R, int64_t K, const mv_segment* segs, int nsegs, bool bf16, int threads) {
    if (bf16) matvec_i8_typed<true>(x, R, K, segs, nsegs, threads);
    else matvec_i8_typed<false>(x, R, K, segs, nsegs, threads);
}

void attention_decode(const void* q, const void* k, const void* v, void* out, const int64_t* positions,
                      const int64_t* filled, const attention_shape& s, bool bf16) {
    if (bf16) attention_typed<true>(q, k, v, out, positions, filled, s);
    else attention_typed<false>(q, k, v, out, positions, filled, s);
}

void rms_norm_forward(const void* x, const void* w, void* y, float* inv, int64_t N, int64_t C, float eps,
                      bool one_plus, bool bf16) {
    if (bf16) rms_norm_forward_typed<true>(x, w, y, inv, N, C, eps, one_plus);
    else rms_norm_forward_typed<false>(x, w, y, inv, N, C, eps, one_plus);
}

void rms_norm_backward(const void* dy, const void* x, const void* w, const float* inv, void* dx, float* dw,
                       int64_t N, int64_t C, bool one_plus, bool bf16) {
    if (bf16) rms_norm_backward_typed<true>(dy, x, w, inv, dx, dw, N, C, one_plus);
    else rms_norm_backward_typed<false>(dy, x, w, inv, dx, dw, N, C, one_plus);
}

void rotary(const void* x, void* y, const void* cos, const void* sin, int64_t BT, int64_t heads, int64_t D,
            int64_t x_head_stride, int64_t x_token_stride, bool inverse, bool bf16) {
    if (bf16) rotary_typed<true>(x, y, cos, sin, BT, heads, D, x_head_stride, x_token_stride, inverse);
    else rotary_typed<false>(x, y, cos, sin, BT, heads, D, x_head_stride, x_token_stride, inverse);
}

void gate_forward(const void* g, const void* u, void* y, int64_t n, gate_act act, bool bf16) {
    if (bf16) gate_forward_typed<true>(g, u, y, n, act);
    else gate_forward_typed<false>(g, u, y, n, act);
}

void gate_backward(const void* dy, const void* g, const void* u, void* dg, void* du, int64_t n, gate_act act,
                   bool bf16) {
    if (bf16) gate_backward_typed<true>(dy, g, u, dg, du, n, act);
    else gate_backward_typed<false>(dy, g, u, dg, du, n, act);
}

}  // namespace cai::kernels::CAI_ISA_NS

// Inner loops of the causal attention without a cache (kernels/attention.h),
// included once per instruction set by causal_attention_avx512.cpp and
// causal_attention_avx2.cpp with CAI_ISA_NS naming the namespace.
//
// One task per (batch row, key/value head), tasks split over OpenMP threads.
// A task packs its keys and values once into float32 panels padded to whole
// vectors, then runs each query head of its group in blocks of QB queries:
// the scores against the keys up to the block's last query only (the rest
// are in the causal future), an exact softmax per row, the weighted values.
// The backward pass recomputes the weights from the saved log-sum-exp, as
// flash attention does, so no (T, T) tensor outlives a block. Every product
// goes through one register-tiled loop, gemm_tile.
#include "kernels/vec_impl.h"

#include <limits>

namespace cai::kernels::CAI_ISA_NS {
namespace {

// Register tile of gemm_tile: MR rows by NV vectors of accumulators, plus NV
// loaded vectors and a broadcast (AVX-512: 24 + 4 + 1 of 32 registers; AVX2:
// 12 + 2 + 1 of 16).
#if defined(CPU_CAPABILITY_AVX512)
constexpr int MR = 6, NV = 4;
inline vreg vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vreg v) { _mm512_storeu_ps(p, v); }
inline vreg vbroadcast(const float* p) { return _mm512_set1_ps(*p); }
#else
constexpr int MR = 6, NV = 2;
inline vreg vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vreg v) { _mm256_storeu_ps(p, v); }
inline vreg vbroadcast(const float* p) { return _mm256_broadcast_ss(p); }
#endif
constexpr int64_t QB = 24;  // queries per block: a multiple of MR
constexpr float kInf = std::numeric_limits<float>::infinity();

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// C (R, V*W) = (ACC: +=) sum over k < K of A[r*sa_m + k*sa_k] * B[k*ldb + n].
// A is read one element at a time, so it may be a transposed view.
template <int R, int V, bool ACC>
inline void gemm_tile(const float* A, int64_t sa_m, int64_t sa_k, const float* B, int64_t ldb, int64_t K, float* C,
                      int64_t ldc) {
    vreg acc[R][V];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r)
        _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] = ACC ? vload(C + r * ldc + v * W) : vzero();
    for (int64_t k = 0; k < K; ++k) {
        vreg b[V];
        _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) b[v] = vload(B + k * ldb + v * W);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r) {
            const vreg a = vbroadcast(A + r * sa_m + k * sa_k);
            _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] = vfma(a, b[v], acc[r][v]);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r)
        _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) vstore(C + r * ldc + v * W, acc[r][v]);
}

// gemm_tile with run-time rows (1..MR) and vectors (1..NV).
template <bool ACC, int R, int V = NV>
inline void gemm_tile_cols(int nv, const float* A, int64_t sa_m, int64_t sa_k, const float* B, int64_t ldb, int64_t K,
                           float* C, int64_t ldc) {
    if (nv == V) return gemm_tile<R, V, ACC>(A, sa_m, sa_k, B, ldb, K, C, ldc);
    if constexpr (V > 1) gemm_tile_cols<ACC, R, V - 1>(nv, A, sa_m, sa_k, B, ldb, K, C, ldc);
}
template <bool ACC, int R = MR>
inline void gemm_tile_any(int mr, int nv, const float* A, int64_t sa_m, int64_t sa_k, const float* B, int64_t ldb,
                          int64_t K, float* C, int64_t ldc) {
    if (mr == R) return gemm_tile_cols<ACC, R>(nv, A, sa_m, sa_k, B, ldb, K, C, ldc);
    if constexpr (R > 1) gemm_tile_any<ACC, R - 1>(mr, nv, A, sa_m, sa_k, B, ldb, K, C, ldc);
}

// C (M, N) = (ACC: +=) A (M, K) B (K, N); N a multiple of W.
// A[m*sa_m + k*sa_k]; B and C rows ldb and ldc apart.
template <bool ACC>
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t sa_m, int64_t sa_k, const float* B, int64_t ldb,
          float* C, int64_t ldc) {
    for (int64_t n = 0; n < N; n += NV * W) {
        const int nv = (int)std::min<int64_t>(NV, (N - n) / W);
        for (int64_t m = 0; m < M; m += MR) {
            const int mr = (int)std::min<int64_t>(MR, M - m);
            gemm_tile_any<ACC>(mr, nv, A + m * sa_m, sa_m, sa_k, B + n, ldb, K, C + m * ldc + n, ldc);
        }
    }
}

// One batch row and key/value head's view of the tensors.
struct task_view {
    const causal_attention_shape& s;
    int64_t b, kh;
    int64_t Tp, Sp, Dp;        // T, S and D rounded up to whole vectors
    const uint8_t* valid;      // (S) key_valid of row b
    const int64_t* positions;  // (S) of row b, or null without a window
};

// dst (Tp, Dp) = rows t of src with token stride st, zero-padded.
template <bool BF>
void pack_rows(const void* src, int64_t off, int64_t st, int64_t T, int64_t D, int64_t Tp, int64_t Dp, float* dst) {
    std::fill(dst, dst + Tp * Dp, 0.0f);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t d = 0; d < D; ++d) dst[t * Dp + d] = load1<BF>(src, off + t * st + d);
}

// dst (D, Tp) = the transpose of src's rows, zero-padded.
template <bool BF>
void pack_cols(const void* src, int64_t off, int64_t st, int64_t T, int64_t D, int64_t Tp, float* dst) {
    std::fill(dst, dst + D * Tp, 0.0f);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t d = 0; d < D; ++d) dst[d * Tp + t] = load1<BF>(src, off + t * st + d);
}

// The scores s (n of them, raw q.k) of the query at key index t become the
// scaled, soft-capped logits, with -inf where the mask forbids. Returns their
// maximum (-inf: none allowed).
inline float logits_row(const task_view& v, int64_t t, float* s, int64_t n) {
    const float scale = v.s.scale, cap = v.s.softcap;
    const int64_t seen = std::min(n, t + 1);  // keys after t are in the future
    fvec mx(-kInf);
    for (int64_t j = 0; j < seen; j += W) {
        const int64_t cnt = std::min<int64_t>(W, seen - j);
        fvec x = fvec::loadu(s + j, cnt) * fvec(scale);
        if (cap > 0) x = (x / fvec(cap)).tanh() * fvec(cap);
        x.store(s + j, cnt);
    }
    for (int64_t j = 0; j < seen; ++j)
        if (!v.valid[j] || (v.s.window > 0 && v.positions[t] - v.positions[j] >= v.s.window)) s[j] = -kInf;
    for (int64_t j = seen; j < n; ++j) s[j] = -kInf;
    for (int64_t j = 0; j < seen; j += W) {
        const int64_t cnt = std::min<int64_t>(W, seen - j);
        fvec x = cnt == W ? fvec::loadu(s + j) : fvec::set(fvec(-kInf), fvec::loadu(s + j, cnt), cnt);
        mx = at::vec::maximum(mx, x);
    }
    float lanes[W];
    mx.store(lanes);
    float m = -kInf;
    for (int i = 0; i < W; ++i) m = std::max(m, lanes[i]);
    return m;
}

// s[j] = exp(s[j] - shift) for j < n; returns their sum.
inline float exp_row(float* s, int64_t n, float shift) {
    fvec sum(0.0f);
    for (int64_t j = 0; j < n; j += W) {
        fvec e = (fvec::loadu(s + j) - fvec(shift)).exp();
        e.store(s + j);
        sum = sum + e;
    }
    return hsum(sum);
}

template <bool BF>
void forward_task(const task_view& tv, const void* q, const void* k, const void* v, void* out, float* lse,
                  std::vector<float>& buf) {
    const causal_attention_shape& s = tv.s;
    const int64_t T = s.T, S = s.S, off = S - T, D = s.D, Tp = tv.Tp, Sp = tv.Sp, Dp = tv.Dp, G = s.H / s.Hkv;
    buf.resize((size_t)(D * Sp + Sp * Dp + Tp * Dp + QB * Sp + QB * Dp));
    float* kt = buf.data();      // (D, Sp) keys, transposed
    float* vf = kt + D * Sp;     // (Sp, Dp) values
    float* qf = vf + Sp * Dp;    // (Tp, Dp) one head's queries
    float* sc = qf + Tp * Dp;    // (QB, Sp) one block's scores, then weights
    float* o = sc + QB * Sp;     // (QB, Dp) one block's output
    pack_cols<BF>(k, tv.b * s.k_stride[0] + tv.kh * s.k_stride[2], s.k_stride[1], S, D, Sp, kt);
    pack_rows<BF>(v, tv.b * s.v_stride[0] + tv.kh * s.v_stride[2], s.v_stride[1], S, D, Sp, Dp, vf);
    for (int64_t g = 0; g < G; ++g) {
        const int64_t h = tv.kh * G + g;
        pack_rows<BF>(q, tv.b * s.q_stride[0] + h * s.q_stride[2], s.q_stride[1], T, D, Tp, Dp, qf);
        float* row_lse = lse + (tv.b * s.H + h) * T;
        for (int64_t t0 = 0; t0 < T; t0 += QB) {
            const int64_t rows = std::min(QB, T - t0), kn = std::min(round_up(off + t0 + rows, W), Sp);
            // sc (rows, kn) = q kᵀ over the keys up to the block's last query
            gemm<false>(rows, kn, D, qf + t0 * Dp, Dp, 1, kt, Sp, sc, Sp);
            for (int64_t i = 0; i < rows; ++i) {
                float* p = sc + i * Sp;
                const float mx = logits_row(tv, off + t0 + i, p, kn);
                if (mx == -kInf) {  // sees no key: weights 0 here, the uniform average is added below
                    std::fill(p, p + kn, 0.0f);
                    row_lse[t0 + i] = kInf;
                    continue;
                }
                const float sum = exp_row(p, kn, mx);
                row_lse[t0 + i] = mx + std::log(sum);
                const fvec inv(1.0f / sum);
                for (int64_t j = 0; j < kn; j += W) (fvec::loadu(p + j) * inv).store(p + j);
            }
            // o (rows, Dp) = weights (rows, kn) v (kn, Dp)
            gemm<false>(rows, Dp, kn, sc, Sp, 1, vf, Dp, o, Dp);
            for (int64_t i = 0; i < rows; ++i) {
                const int64_t t = t0 + i;
                float* orow = o + i * Dp;
                if (row_lse[t] == kInf) {
                    // The plain path's softmax over all-masked scores is uniform over every key.
                    std::fill(orow, orow + Dp, 0.0f);
                    for (int64_t j = 0; j < S; ++j)
                        for (int64_t d = 0; d < Dp; d += W) (fvec::loadu(orow + d) + fvec::loadu(vf + j * Dp + d)).store(orow + d);
                    const fvec inv(1.0f / (float)S);
                    for (int64_t d = 0; d < Dp; d += W) (fvec::loadu(orow + d) * inv).store(orow + d);
                }
                const int64_t dst = ((tv.b * T + t) * s.H + h) * D;
                for (int64_t d = 0; d < D; d += W) store<BF>(out, dst + d, fvec::loadu(orow + d), std::min<int64_t>(W, D - d));
            }
        }
    }
}

template <bool BF>
void backward_task(const task_view& tv, const void* q, const void* k, const void* v, const void* out,
                   const void* dout, const float* lse, void* dq, void* dk, void* dv, std::vector<float>& buf) {
    const causal_attention_shape& s = tv.s;
    const int64_t T = s.T, D = s.D, Tp = tv.Tp, Dp = tv.Dp, G = s.H / s.Hkv;
    const float scale = s.scale, cap = s.softcap;
    buf.resize((size_t)(2 * D * Tp + 5 * Tp * Dp + 3 * QB * Tp + QB * Dp + Tp));
    float* kt = buf.data();      // (D, Tp) keys, transposed
    float* vt = kt + D * Tp;     // (D, Tp) values, transposed
    float* kf = vt + D * Tp;     // (Tp, Dp) keys
    float* qf = kf + Tp * Dp;    // (Tp, Dp) one head's queries
    float* gof = qf + Tp * Dp;   // (Tp, Dp) one head's output gradient
    float* gk = gof + Tp * Dp;   // (Tp, Dp) key gradient, summed over the group
    float* gv = gk + Tp * Dp;    // (Tp, Dp) value gradient, summed over the group
    float* p = gv + Tp * Dp;     // (QB, Tp) one block's weights
    float* gs = p + QB * Tp;     // (QB, Tp) one block's weight, then score, gradients
    float* capd = gs + QB * Tp;  // (QB, Tp) d capped / d raw logit (with a soft cap)
    float* gq = capd + QB * Tp;  // (QB, Dp) one block's query gradient
    float* delta = gq + QB * Dp; // (Tp) sum over d of dout * out per query
    const int64_t k_off = tv.b * s.k_stride[0] + tv.kh * s.k_stride[2];
    const int64_t v_off = tv.b * s.v_stride[0] + tv.kh * s.v_stride[2];
    pack_cols<BF>(k, k_off, s.k_stride[1], T, D, Tp, kt);
    pack_cols<BF>(v, v_off, s.v_stride[1], T, D, Tp, vt);
    pack_rows<BF>(k, k_off, s.k_stride[1], T, D, Tp, Dp, kf);
    std::fill(gk, gk + 2 * Tp * Dp, 0.0f);
    const int64_t o_stride = s.H * D;  // token stride of out and dout
    for (int64_t g = 0; g < G; ++g) {
        const int64_t h = tv.kh * G + g;
        pack_rows<BF>(q, tv.b * s.q_stride[0] + h * s.q_stride[2], s.q_stride[1], T, D, Tp, Dp, qf);
        pack_rows<BF>(dout, tv.b * T * o_stride + h * D, o_stride, T, D, Tp, Dp, gof);
        for (int64_t t = 0; t < T; ++t) {
            const int64_t o_off = (tv.b * T + t) * o_stride + h * D;
            fvec acc(0.0f);
            for (int64_t d = 0; d < D; d += W) {
                const int64_t cnt = std::min<int64_t>(W, D - d);
                acc = at::vec::fmadd(fvec::loadu(gof + t * Dp + d, cnt), load<BF>(out, o_off + d, cnt), acc);
            }
            delta[t] = hsum(acc);
        }
        const float* row_lse = lse + (tv.b * s.H + h) * T;
        for (int64_t t0 = 0; t0 < T; t0 += QB) {
            const int64_t rows = std::min(QB, T - t0), kn = std::min(round_up(t0 + rows, W), Tp);
            // Recompute the weights: p = exp(logits - lse), 0 where masked.
            gemm<false>(rows, kn, D, qf + t0 * Dp, Dp, 1, kt, Tp, p, Tp);
            for (int64_t i = 0; i < rows; ++i) {
                const int64_t t = t0 + i;
                float* pr = p + i * Tp;
                if (row_lse[t] == kInf) {
                    // Sees no key: the weights are uniform over every key and
                    // constant, so v alone gets a gradient, dout / T per key.
                    std::fill(pr, pr + kn, 0.0f);
                    const fvec share(1.0f / (float)T);
                    for (int64_t j = 0; j < T; ++j)
                        for (int64_t d = 0; d < Dp; d += W)
                            at::vec::fmadd(fvec::loadu(gof + t * Dp + d), share, fvec::loadu(gv + j * Dp + d))
                                .store(gv + j * Dp + d);
                    continue;
                }
                logits_row(tv, t, pr, kn);
                if (cap > 0) {  // 1 - (capped / cap)^2; 0 where masked (-inf)
                    float* cr = capd + i * Tp;
                    for (int64_t j = 0; j < kn; j += W) {
                        const fvec c = fvec::loadu(pr + j) / fvec(cap);
                        at::vec::maximum(fvec(1.0f) - c * c, fvec(0.0f)).store(cr + j);
                    }
                }
                exp_row(pr, kn, row_lse[t]);
            }
            // dv (kn, Dp) += pᵀ (kn, rows) dout (rows, Dp)
            gemm<true>(kn, Dp, rows, p, 1, Tp, gof + t0 * Dp, Dp, gv, Dp);
            // gs (rows, kn) = dout vᵀ, then the score gradient p (gs - delta) softcap' scale
            gemm<false>(rows, kn, D, gof + t0 * Dp, Dp, 1, vt, Tp, gs, Tp);
            for (int64_t i = 0; i < rows; ++i) {
                const float* pr = p + i * Tp;
                const float* cr = capd + i * Tp;
                float* gr = gs + i * Tp;
                const fvec dl(delta[t0 + i]), sv(scale);
                for (int64_t j = 0; j < kn; j += W) {
                    fvec x = fvec::loadu(pr + j) * (fvec::loadu(gr + j) - dl) * sv;
                    if (cap > 0) x = x * fvec::loadu(cr + j);
                    x.store(gr + j);
                }
            }
            // dq (rows, Dp) = gs (rows, kn) k (kn, Dp)
            gemm<false>(rows, Dp, kn, gs, Tp, 1, kf, Dp, gq, Dp);
            for (int64_t i = 0; i < rows; ++i) {
                const int64_t dst = ((tv.b * T + t0 + i) * s.H + h) * D;
                for (int64_t d = 0; d < D; d += W) store<BF>(dq, dst + d, fvec::loadu(gq + i * Dp + d), std::min<int64_t>(W, D - d));
            }
            // dk (kn, Dp) += gsᵀ (kn, rows) q (rows, Dp)
            gemm<true>(kn, Dp, rows, gs, 1, Tp, qf + t0 * Dp, Dp, gk, Dp);
        }
    }
    for (int64_t j = 0; j < T; ++j) {
        const int64_t dst = ((tv.b * T + j) * s.Hkv + tv.kh) * D;
        for (int64_t d = 0; d < D; d += W) {
            const int64_t cnt = std::min<int64_t>(W, D - d);
            store<BF>(dk, dst + d, fvec::loadu(gk + j * Dp + d), cnt);
            store<BF>(dv, dst + d, fvec::loadu(gv + j * Dp + d), cnt);
        }
    }
}

task_view view_of(const causal_attention_shape& s, int64_t task, const uint8_t* key_valid, const int64_t* positions) {
    const int64_t b = task / s.Hkv;
    return task_view{s, b, task % s.Hkv, round_up(s.T, W), round_up(s.S, W), round_up(s.D, W), key_valid + b * s.S,
                     s.window > 0 ? positions + b * s.S : nullptr};
}

}  // namespace

void causal_attention_forward(const void* q, const void* k, const void* v, const uint8_t* key_valid,
                              const int64_t* positions, void* out, float* lse, const causal_attention_shape& s,
                              bool bf16, int threads) {
    parallel_parts(s.B * s.Hkv, 1, 1, threads, [&](int64_t begin, int64_t end) {
        std::vector<float> buf;
        for (int64_t task = begin; task < end; ++task) {
            const task_view tv = view_of(s, task, key_valid, positions);
            if (bf16) forward_task<true>(tv, q, k, v, out, lse, buf);
            else forward_task<false>(tv, q, k, v, out, lse, buf);
        }
    });
}

void causal_attention_backward(const void* q, const void* k, const void* v, const void* out, const void* dout,
                               const uint8_t* key_valid, const int64_t* positions, const float* lse, void* dq,
                               void* dk, void* dv, const causal_attention_shape& s, bool bf16, int threads) {
    parallel_parts(s.B * s.Hkv, 1, 1, threads, [&](int64_t begin, int64_t end) {
        std::vector<float> buf;
        for (int64_t task = begin; task < end; ++task) {
            const task_view tv = view_of(s, task, key_valid, positions);
            if (bf16) backward_task<true>(tv, q, k, v, out, dout, lse, dq, dk, dv, buf);
            else backward_task<false>(tv, q, k, v, out, dout, lse, dq, dk, dv, buf);
        }
    });
}

}  // namespace cai::kernels::CAI_ISA_NS

#pragma once
// Raw-pointer inner loops of the decode and layer kernels, compiled once per
// instruction set (kernels/ops_avx512.cpp, kernels/ops_avx2.cpp from
// kernels/ops_impl.h). The tensor-level wrappers (matvec.h, attention.h,
// rms_norm.h, rotary.h, gate.h) check shapes and pick one with cpu_isa().
// bf16 values travel as uint16_t bit patterns; all math is float32.

#include <cstdint>

namespace cai::kernels {

// One projection of a fused matrix-vector product: out (R, n) = x (R, K) w^T + bias.
struct mv_segment {
    const void* w;     // (n, K) float32 or bf16, contiguous (matvec_i8: uint8, the int8 value + 128)
    const void* bias;  // (n) same dtype as w, or null (matvec_i8: x's dtype)
    void* out;         // (R, n) same dtype as w (matvec_i8: x's dtype)
    int64_t n;
    const float* scale = nullptr;  // matvec_i8: (n) float32, row i of w times scale[i]
};

// Shapes of a decode attention over a (B, capacity, Hkv, D) cache, or over a
// pool of (blocks, block_size, Hkv, D) where row b's slot j lives in block
// block_table[b * table_cols + j / block_size] at j % block_size.
struct attention_shape {
    int64_t B, T, H, Hkv, D, capacity;
    int64_t key_len;   // slots attended at most (the plain path's S)
    int64_t window;    // sliding window (0: none)
    float scale;       // applied to q.k
    float softcap;     // 0: none; else tanh(s / cap) * cap
    const int64_t* block_table = nullptr;  // (B, table_cols), or null: row b is cache row b
    int64_t block_size = 0, table_cols = 0;
    int threads = 1;   // OpenMP threads over the (row, token, head) tasks
};

// Shapes of a causal attention (training, prefill): q (B, T, H, D), k and v
// (B, S, Hkv, D) with S >= T, each with its own strides (elements) for
// batch, token and head, and D contiguous. The queries are the last T of the
// S positions (S == T without a cache; backward only then): query t is key
// t + S - T and sees keys j <= t + S - T whose key_valid[b, j] is set (and
// positions[b, t + S - T] - positions[b, j] < window).
struct causal_attention_shape {
    int64_t B, T, H, Hkv, D;
    int64_t q_stride[3], k_stride[3], v_stride[3];  // batch, token, head
    int64_t window;                                 // sliding window (0: none)
    float scale;                                    // applied to q.k
    float softcap;                                  // 0: none; else tanh(s / cap) * cap
    int64_t S;                                      // keys (>= T)
};

enum class gate_act { silu, gelu_tanh, gelu_erf, relu };

#define CAI_KERNELS_DECLARE_ISA(ns)                                                                          \
    namespace ns {                                                                                           \
    /* x: (R, K) in the weights' dtype; R in 1..8; rows split over up to `threads` OpenMP threads */        \
    void matvec(const void* x, int64_t R, int64_t K, const mv_segment* segs, int nsegs, bool bf16,          \
                int threads);                                                                                \
    /* the same with uint8 weights (the int8 value + 128) and per-row float32 scales; x, bias, out in */    \
    /* float32 or bf16 (bf16), any R. With AVX512-VNNI x is quantized per 64-wide block to int8 */        \
    void matvec_i8(const void* x, int64_t R, int64_t K, const mv_segment* segs, int nsegs, bool bf16,       \
                   int threads);                                                                             \
    /* q, out: (B, T, H, D); k, v: (B, capacity, Hkv, D); positions: (B, T); filled: (B) */                  \
    void attention_decode(const void* q, const void* k, const void* v, void* out, const int64_t* positions, \
                          const int64_t* filled, const attention_shape& s, bool bf16);                       \
    /* q, k, v: see causal_attention_shape; key_valid: (B, S); positions: (B, S), read when window > 0; */  \
    /* out: (B, T, H, D) contiguous; lse: (B, H, T) float32 (written; +inf where a query sees no key) */   \
    void causal_attention_forward(const void* q, const void* k, const void* v, const uint8_t* key_valid,   \
                                  const int64_t* positions, void* out, float* lse,                          \
                                  const causal_attention_shape& s, bool bf16, int threads);                 \
    /* dout: (B, T, H, D) contiguous like out; dq: (B, T, H, D), dk, dv: (B, T, Hkv, D), contiguous */      \
    void causal_attention_backward(const void* q, const void* k, const void* v, const void* out,          \
                                   const void* dout, const uint8_t* key_valid, const int64_t* positions,   \
                                   const float* lse, void* dq, void* dk, void* dv,                          \
                                   const causal_attention_shape& s, bool bf16, int threads);                \
    /* x, y: (N, C); w: (C); inv: (N) float32 1/rms (written) */                                             \
    void rms_norm_forward(const void* x, const void* w, void* y, float* inv, int64_t N, int64_t C,          \
                          float eps, bool one_plus, bool bf16);                                              \
    /* dy, x, dx: (N, C); dw: (C) float32 (accumulated into); x's dtype also dy's and dx's */                \
    void rms_norm_backward(const void* dy, const void* x, const void* w, const float* inv, void* dx,        \
                           float* dw, int64_t N, int64_t C, bool one_plus, bool bf16);                      \
    /* x, y: (B, T, heads, D) with row strides; cos, sin: (B, T, D); y may equal x; inverse: -sin */         \
    void rotary(const void* x, void* y, const void* cos, const void* sin, int64_t BT, int64_t heads,       \
                int64_t D, int64_t x_head_stride, int64_t x_token_stride, bool inverse, bool bf16);          \
    /* g, u, y: (n) */                                                                                        \
    void gate_forward(const void* g, const void* u, void* y, int64_t n, gate_act act, bool bf16);           \
    /* dy, g, u, dg, du: (n) */                                                                              \
    void gate_backward(const void* dy, const void* g, const void* u, void* dg, void* du, int64_t n,        \
                       gate_act act, bool bf16);                                                            \
    }

CAI_KERNELS_DECLARE_ISA(avx512)
CAI_KERNELS_DECLARE_ISA(avx2)

}  // namespace cai::kernels

// Attention with GQA, a sliding window and logit soft-capping, without
// building the (B, H, T, S) mask and score tensors:
// - decode: a few new tokens over a key/value cache, one pass per (row,
//   token, head): scores, softmax in float32 and the weighted sum of values;
// - causal attention without a cache (training, scoring), differentiable:
//   scores only for keys up to each block's last query, the softmax's
//   log-sum-exp kept for the backward pass instead of the (T, T) weights;
//   its forward also serves a prompt chunk over a cache (suffix_attention).
// All match the masks model.cpp builds and attention_plain.
#pragma once

#include <ATen/ATen.h>

namespace cai::kernels {

struct attention_options {
    int64_t key_len = 0;   // slots to consider: the longest row's filled length (the plain path's S)
    int64_t window = 0;    // sliding window (0: none); a query at p sees slots > p - window
    double scale = 1.0;    // multiplies q.k
    double softcap = 0;    // 0: none; else scores = tanh(scores / softcap) * softcap
};

// Whether attention_decode_forward takes these: kernels on, q and the cache
// share a dtype (float32 or bf16), are contiguous and no gradient is wanted.
bool attention_decode_applies(const at::Tensor& q, const at::Tensor& k_cache);

// q: (B, T, H, D); k_cache, v_cache: (B, capacity, Hkv, D) with row b's keys in
// slots [0, filled[b]); positions: (B, T) int64, the slot/position of each query;
// filled: (B) int64. A query at p sees slots s < filled[b] with s <= p (and
// s > p - window). -> (B, T, H * D)
// Paged: with block_table (B, cols) int64, k_cache and v_cache are a pool of
// (blocks, block_size, Hkv, D) and row b's slot s is at block
// block_table[b, s / block_size], offset s % block_size (capacity cols * block_size).
at::Tensor attention_decode_forward(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                    const at::Tensor& positions, const at::Tensor& filled,
                                    const attention_options& options, const at::Tensor& block_table = {});

// Whether causal_attention takes these: kernels on, q, k and v share a dtype
// (float32 or bf16), are 4-D CPU tensors with the head dimension contiguous,
// and the heads divide into groups.
bool causal_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// q: (B, T, H, D); k, v: (B, T, Hkv, D), any strides with D contiguous;
// key_valid: (B, T) bool (false: padding); positions: (B, T) int64, read with
// a window. Query t sees key j when j <= t, key_valid[b, j] and, with a
// window, positions[b, t] - positions[b, j] < window. A query that sees no key
// averages all T values, as the plain path's softmax over all-masked scores
// does. options.key_len is not used. -> (B, T, H * D), differentiable in q, k, v.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_valid,
                            const at::Tensor& positions, const attention_options& options);

// Whether suffix_attention takes these: as causal_attention_applies, but k
// and v may hold more tokens (S) than q (T).
bool suffix_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// A prompt chunk over a cache, without autograd: q (B, T, H, D) are the last
// T of the S positions whose keys and values are k, v (B, S, Hkv, D), any
// strides with D contiguous; key_valid, positions: (B, S). Query t sees key j
// when j <= t + S - T, key_valid[b, j] and, with a window,
// positions[b, t + S - T] - positions[b, j] < window (a query that sees no
// key averages all S values). Rows with fewer keys are aligned to the right,
// their first keys invalid. -> (B, T, H * D)
at::Tensor suffix_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_valid,
                            const at::Tensor& positions, const attention_options& options);

// The two passes without autograd (check causal_attention_applies first; the
// forward also takes suffix_attention's shapes, S >= T); threads: OpenMP
// threads over the tasks (0: libtorch's intra-op count).
struct causal_attention_saved {
    at::Tensor out;  // (B, T, H, D) in q's dtype
    at::Tensor lse;  // (B, H, T) float32 log-sum-exp of each query's scores; +inf where it sees no key
};
causal_attention_saved causal_attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                const at::Tensor& key_valid, const at::Tensor& positions,
                                                const attention_options& options, int threads = 0);
// grad_out: (B, T, H, D). Returns d q (B, T, H, D), d k and d v (B, T, Hkv, D).
std::tuple<at::Tensor, at::Tensor, at::Tensor> causal_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const causal_attention_saved& saved, const at::Tensor& key_valid, const at::Tensor& positions,
    const attention_options& options);

// The plain ATen composition: masked scores, float32 softmax, weighted values.
// query: (B, T, H, D); keys, values: (B, Hkv, S, D); allowed: (B, 1, T, S)
// bool. -> (B, T, H * D)
at::Tensor attention_plain(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                           const at::Tensor& allowed, const attention_options& options);

// The mask causal_attention applies, for attention_plain: key_valid,
// positions: (B, T) -> (B, 1, T, T) bool.
at::Tensor causal_mask(const at::Tensor& key_valid, const at::Tensor& positions, int64_t window);

}  // namespace cai::kernels

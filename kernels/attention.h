// Attention of a few new tokens over a key/value cache (decode), with GQA,
// a sliding window and logit soft-capping, in one pass per (row, token, head):
// scores, softmax in float32 and the weighted sum of values, without building
// the (B, H, T, S) mask and score tensors. Matches the masks model.cpp builds.
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
at::Tensor attention_decode_forward(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                    const at::Tensor& positions, const at::Tensor& filled,
                                    const attention_options& options);

}  // namespace cai::kernels

// The forward pass. Names follow the math of transformers' modeling_llama.py,
// modeling_qwen3.py, modeling_gemma2.py and modeling_gemma3.py; shapes: B batch, T new tokens, S key slots,
// C hidden, H query heads, Hkv key/value heads, D head_dim, V vocabulary.
#include "model/model.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "core/strings.h"
#include "model/kv_memory.h"
#include "kernels/cpu.h"
#include "kernels/linear_logprob.h"
#include "kernels/attention.h"
#include "kernels/gate.h"
#include "kernels/gemm.h"
#include "kernels/lora_linear.h"
#include "kernels/matvec.h"
#include "model/weight_memory.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary.h"

namespace cai {

at::ScalarType parse_dtype(const std::string& name) {
    if (name == "fp32" || name == "float32") return at::kFloat;
    if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
    fail("model: dtype must be \"fp32\" or \"bf16\", got \"", name, "\"");
}

std::string dtype_name(at::ScalarType type) { return type == at::kBFloat16 ? "bf16" : "fp32"; }

namespace {

// Inverted dropout's mask for x: 1 / (1 - p) with probability 1 - p, else 0.
at::Tensor dropout_mask(rng& r, at::IntArrayRef sizes, double p) {
    at::Tensor mask = at::empty(sizes, at::kFloat);
    float* m = mask.data_ptr<float>();
    const float keep = p >= 1 ? 0.0f : (float)(1.0 / (1.0 - p));
    for (int64_t i = 0, n = mask.numel(); i < n; ++i) m[i] = r.uniform() < p ? 0.0f : keep;
    return mask;
}

}  // namespace

namespace {

bool lora_active(const linear& l) { return l.lora_enabled && l.lora_a.defined() && l.lora_b.defined(); }

// Whether kernels::linear_logprob computes this head exactly: no bias, no enabled adapter, on the CPU.
bool head_fusable(const linear& head) {
    return !lora_active(head) && !head.bias.defined() && (head.quantized() ? head.weight_q : head.weight).device().is_cpu();
}

// x times the adapter's dropout mask when dropout is on in training, else undefined.
at::Tensor lora_dropped(const linear& l, const at::Tensor& x) {
    if (!l.training || l.lora_dropout <= 0) return at::Tensor();
    if (!l.lora_rng) fail("linear: LoRA dropout is on but the adapter has no generator");
    return x * dropout_mask(*l.lora_rng, x.sizes(), l.lora_dropout);
}

// y + the adapter's delta for x (y unchanged when no adapter is on).
at::Tensor add_lora(const linear& l, const at::Tensor& x, const at::Tensor& y) {
    if (!lora_active(l)) return y;
    const at::Tensor& lora_a = l.lora_a;
    const at::Tensor& lora_b = l.lora_b;
    const double lora_scale = l.lora_scale;
    at::Tensor lora_x = x.to(lora_a.scalar_type());  // (..., in) float32
    if (at::Tensor dropped = lora_dropped(l, lora_x); dropped.defined()) lora_x = dropped;
    at::Tensor delta = at::linear(at::linear(lora_x, lora_a), lora_b) * lora_scale;  // (..., out) float32
    return (y + delta).to(y.scalar_type());
}

// Several linears applied to the same x: one pass over all their weights
// with the decode kernel when it applies, else one at::linear each.
std::vector<at::Tensor> project(const at::Tensor& x, std::initializer_list<const linear*> ls) {
    bool fused = true, fused_i8 = true;
    for (const linear* l : ls) {
        fused = fused && !l->quantized() && kernels::matvec_applies(x, l->weight, l->bias);
        fused_i8 = fused_i8 && l->quantized() && kernels::matvec_i8_applies(x, l->weight_q, l->weight_scale, l->bias);
    }
    std::vector<at::Tensor> out;
    if (!fused && !fused_i8) {
        for (const linear* l : ls) out.push_back(l->forward(x));
        return out;
    }
    std::vector<at::Tensor> ws, ss, bs;
    for (const linear* l : ls) {
        ws.push_back(fused_i8 ? l->weight_q : l->weight);
        ss.push_back(l->weight_scale);
        bs.push_back(l->bias);
    }
    out = fused_i8 ? kernels::matvec_i8_forward_many(x, ws, ss, bs) : kernels::matvec_forward_many(x, ws, bs);
    size_t i = 0;
    for (const linear* l : ls) {
        out[i] = add_lora(*l, x, out[i]);
        ++i;
    }
    return out;
}

}  // namespace

at::Tensor linear::forward(const at::Tensor& x) const {
    if (quantized()) {
        if (kernels::matvec_i8_applies(x, weight_q, weight_scale, bias))
            return add_lora(*this, x, kernels::matvec_i8_forward_many(x, {weight_q}, {weight_scale}, {bias})[0]);
    } else if (kernels::matvec_applies(x, weight, bias)) {
        return add_lora(*this, x, kernels::matvec_forward(x, weight, bias));
    }
    // int8 weights elsewhere (prefill without VNNI, training): this layer's
    // weights widened for the call, a constant to autograd (only the adapters train).
    const at::Tensor w =
        quantized() ? kernels::int8_dequantize_rows(weight_q, weight_scale, x.scalar_type()) : weight;
    if (lora_active(*this) && kernels::lora_linear_applies(x, w, bias, lora_a, lora_b)) {
        return kernels::lora_linear(x, w, bias, lora_a, lora_b, lora_scale, lora_dropped(*this, x));
    }
    const at::Tensor base =
        kernels::gemm_linear_applies(x, w, bias) ? kernels::gemm_linear(x, w, bias) : at::linear(x, w, bias);
    return add_lora(*this, x, base);
}

at::Tensor rms_norm::forward(const at::Tensor& x) const {
    if (kernels::rms_norm_applies(x, weight)) return kernels::rms_norm(x, weight, eps, one_plus);
    at::Tensor x32 = x.to(at::kFloat);
    at::Tensor variance = x32.pow(2).mean(-1, /*keepdim=*/true);
    at::Tensor normed = x32 * at::rsqrt(variance + eps);
    if (one_plus) return (normed * (1.0 + weight.to(at::kFloat))).to(x.scalar_type());
    return weight * normed.to(x.scalar_type());
}

// Mirrors transformers' rope initialisation in float32, op for op.
at::Tensor rope_inv_freq(const model_config& c, bool local) {
    const int64_t dim = c.head_dim;
    at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / (double)dim;
    at::Tensor inv_freq = at::pow(local ? c.rope_local_theta : c.rope_theta, exponent).reciprocal() * 1.0;
    if (local) return inv_freq;  // gemma3_text's sliding layers: the default rotation
    if (c.rope_type == "linear") {
        inv_freq = inv_freq / c.rope_factor;
    } else if (c.rope_type == "llama3") {
        const double factor = c.rope_factor, low = c.rope_low_freq_factor, high = c.rope_high_freq_factor;
        const double old_context = (double)c.rope_original_max_position_embeddings;
        const double low_freq_wavelen = old_context / low, high_freq_wavelen = old_context / high;
        at::Tensor wavelen = inv_freq.reciprocal() * (2 * M_PI);
        // Long wavelengths are divided by factor, short ones kept, the band between interpolated.
        at::Tensor inv_freq_llama = at::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
        at::Tensor smooth_factor = (wavelen.reciprocal() * old_context - low) / (high - low);
        at::Tensor smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama;
        at::Tensor is_medium = at::logical_not(wavelen < high_freq_wavelen) * at::logical_not(wavelen > low_freq_wavelen);
        inv_freq = at::where(is_medium, smoothed, inv_freq_llama);
    }
    return inv_freq;
}

namespace {

at::Tensor rotate_half(const at::Tensor& x) {
    int64_t half = x.size(-1) / 2;
    return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// x: (B, T, heads, D); cos, sin: (B, T, D). The kernel rotates x in place
// when no gradient is wanted (x is the projection's fresh output).
at::Tensor apply_rotary(at::Tensor x, const at::Tensor& cos, const at::Tensor& sin) {
    if (kernels::rotary_applies(x, cos)) {
        if (at::GradMode::is_enabled() && x.requires_grad()) return kernels::rotary(x, cos, sin);
        if (x.is_contiguous()) {
            kernels::rotary_forward_(x, cos, sin);
            return x;
        }
        return kernels::rotary_forward(x, cos, sin);
    }
    at::Tensor c = cos.unsqueeze(2), s = sin.unsqueeze(2);
    return x * c + rotate_half(x) * s;
}

at::Tensor activation(const std::string& name, const at::Tensor& x) {
    if (name == "silu" || name == "swish") return at::silu(x);
    if (name == "gelu_pytorch_tanh" || name == "gelu_new") return at::gelu(x, "tanh");
    if (name == "gelu") return at::gelu(x);
    if (name == "relu") return at::relu(x);
    fail("model: unsupported activation \"", name, "\"");
}

at::Tensor softcap(const at::Tensor& x, double cap) { return at::tanh(x / cap) * cap; }

// act(gate) * up, fused when the kernel has the activation.
at::Tensor gated(const std::string& name, const at::Tensor& gate, const at::Tensor& up) {
    kernels::gate_act act;
    if (kernels::gate_activation(name, &act) && kernels::gate_applies(gate, up)) return kernels::gate(gate, up, act);
    return activation(name, gate) * up;
}

}  // namespace

std::pair<at::Tensor, at::Tensor> model::rotary(const at::Tensor& positions, bool local) const {
    if (local && !inv_freq_local.defined()) fail("model: ", config.model_type, " has no local rotary frequencies");
    // freqs: (B, T, D/2) = position * inv_freq, in float32 as transformers does.
    const at::Tensor& f = local ? inv_freq_local : inv_freq;
    at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * f.view({1, 1, -1});
    at::Tensor emb = at::cat({freqs, freqs}, -1);  // (B, T, D)
    return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

namespace {

// cache[rows[i], slots[i]] = src[rows[i], cols[i]] for every real token i.
// cache: (B, capacity, Hkv, D); src: (B, T, Hkv, D); rows, cols, slots: (N)
// int64. Paged (pool defined: (N) int64): the pool (blocks, block_size, Hkv,
// D) gets token i at flat slot pool[i] instead. With the kernels on and both
// contiguous in one dtype, one copy per token; otherwise the indexing ops (a
// decode step would spend more on their dispatch than on the copy).
void write_cache(at::Tensor& cache, const at::Tensor& src, const at::Tensor& rows, const at::Tensor& cols,
                 const at::Tensor& slots, const at::Tensor& pool) {
    auto plain_index = [](const at::Tensor& t) { return t.scalar_type() == at::kLong && t.is_contiguous(); };
    const bool paged = pool.defined();
    if (!kernels::enabled() || !cache.is_contiguous() || !src.is_contiguous() ||
        cache.scalar_type() != src.scalar_type() || !plain_index(rows) || !plain_index(cols) || !plain_index(slots) ||
        (paged && !plain_index(pool))) {
        if (paged)
            cache.view({-1, cache.size(2), cache.size(3)}).index_put_({pool}, src.index({rows, cols}).to(cache.scalar_type()));
        else
            cache.index_put_({rows, slots}, src.index({rows, cols}));
        return;
    }
    const int64_t token = src.size(2) * src.size(3) * src.element_size();  // bytes of one token's heads
    const int64_t T = src.size(1), capacity = cache.size(1);
    const int64_t* r = rows.data_ptr<int64_t>();
    const int64_t* c = cols.data_ptr<int64_t>();
    const int64_t* s = slots.data_ptr<int64_t>();
    const int64_t* p = paged ? pool.data_ptr<int64_t>() : nullptr;
    auto* out = static_cast<char*>(cache.data_ptr());
    const auto* in = static_cast<const char*>(src.data_ptr());
    for (int64_t i = 0, n = rows.numel(); i < n; ++i) {
        const int64_t at = p ? p[i] : r[i] * capacity + s[i];
        std::memcpy(out + at * token, in + (r[i] * T + c[i]) * token, (size_t)token);
    }
}

// The token of (row, slot) in a cache's k/v viewed as (tokens, Hkv, D): row * capacity + slot,
// or paged, the pool slot block_table[row, slot / block_size] * block_size + slot % block_size.
at::Tensor cache_token(const kv_cache& cache, const at::Tensor& rows, const at::Tensor& slots) {
    if (!cache.paged()) return rows * cache.capacity + slots;
    const int64_t bs = cache.block_size;
    return cache.block_table.index({rows, at::floor_divide(slots, bs)}) * bs + at::remainder(slots, bs);
}

}  // namespace

const at::Tensor& model::attention_inputs::plain_mask(bool sliding) const {
    at::Tensor& mask = sliding ? allowed_sliding : allowed;
    if (mask.defined()) return mask;
    const int64_t w = sliding ? window : 0;
    if (!cache) return mask = kernels::causal_mask(real, positions, w);  // (B, 1, T, T)
    const int64_t B = positions.size(0), T = positions.size(1);
    at::Tensor key_pos = at::arange(key_len, at::kLong);                                        // (S)
    at::Tensor key_valid = key_pos.view({1, key_len}) < filled.view({B, 1});                   // (B, S)
    at::Tensor distance = positions.view({B, 1, T, 1}) - key_pos.view({1, 1, 1, key_len});  // (B, 1, T, S)
    mask = key_valid.view({B, 1, 1, key_len}) & (distance >= 0);
    if (w > 0) mask = mask & (distance < w);
    return mask;
}

const at::Tensor& model::attention_inputs::plain_key_pool() const {
    if (key_pool.defined()) return key_pool;
    const int64_t B = positions.size(0);
    at::Tensor rows = at::arange(B, at::kLong).view({B, 1}).expand({B, key_len});      // (B, S)
    at::Tensor slots = at::arange(key_len, at::kLong).view({1, key_len}).expand({B, key_len});  // (B, S)
    return key_pool = cache_token(*cache, rows, slots).reshape({-1}).contiguous();
}

at::Tensor model::layer_forward(size_t index, const at::Tensor& x, const attention_inputs& in) const {
    const decoder_layer& layer = layers[index];
    const model_config& c = config;
    const int64_t B = x.size(0), T = x.size(1), H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
    kv_cache* cache = in.cache;

    // Attention block.
    at::Tensor residual = x;
    at::Tensor h = layer.input_norm.forward(x);                       // (B, T, C)
    std::vector<at::Tensor> qkv = project(h, {&layer.q_proj, &layer.k_proj, &layer.v_proj});
    at::Tensor query = qkv[0].view({B, T, H, D});    // (B, T, H, D)
    at::Tensor key = qkv[1].view({B, T, Hkv, D});    // (B, T, Hkv, D)
    at::Tensor value = qkv[2].view({B, T, Hkv, D});  // (B, T, Hkv, D)
    if (c.qk_norm) {  // qwen3, gemma3_text: RMSNorm over each head's D values, before the rotation
        query = layer.q_norm.forward(query);  // (B, T, H, D)
        key = layer.k_norm.forward(key);      // (B, T, Hkv, D)
    }
    const at::Tensor& cos = layer.local_rope ? in.cos_local : in.cos;  // (B, T, D)
    const at::Tensor& sin = layer.local_rope ? in.sin_local : in.sin;  // (B, T, D)
    query = apply_rotary(query, cos, sin);
    key = apply_rotary(key, cos, sin);

    kernels::attention_options o;
    o.window = layer.sliding ? c.sliding_window : 0;
    o.scale = c.attn_scale;
    o.softcap = c.attn_logit_softcapping;
    at::Tensor attended;  // (B, T, H*D)
    if (cache) {
        // Store each real token at its row's next free slot, then attend over the slots.
        write_cache(cache->k[index], key, in.write_rows, in.write_cols, in.write_slots, in.write_pool);
        write_cache(cache->v[index], value, in.write_rows, in.write_cols, in.write_slots, in.write_pool);
        if (in.fresh && T > kernels::matvec_max_rows && kernels::causal_attention_applies(query, key, value)) {
            // A first prompt chunk: its keys are all there is, so attend as without a cache
            // (each real token sees the real ones up to itself, as in the slots just written).
            attended = kernels::causal_attention(query, key, value, in.real, in.positions, o);
        } else if (T <= kernels::matvec_max_rows && kernels::attention_decode_applies(query, cache->k[index])) {
            // Decode: scores, softmax and the weighted values in one pass over the cache.
            o.key_len = in.key_len;
            attended = kernels::attention_decode_forward(query, cache->k[index], cache->v[index], in.positions,
                                                         in.filled, o, cache->block_table);
        } else if (in.suffix_index.defined() && kernels::suffix_attention_applies(query, key, value)) {
            // A later prompt chunk (one over a shared prefix): the cached keys, right-aligned per
            // row, with the chunk's queries as the last T, through the causal kernel's tiles.
            auto gather = [&](const at::Tensor& c) {
                return c.view({-1, Hkv, D}).index_select(0, in.suffix_index).view({B, in.key_len, Hkv, D});
            };
            attended = kernels::suffix_attention(query, gather(cache->k[index]), gather(cache->v[index]),
                                                 in.suffix_valid, in.suffix_positions, o);
        } else {
            at::Tensor keys, values;  // (B, Hkv, S, D)
            if (cache->paged()) {  // each row's slots gathered from the pool's blocks
                auto gather = [&](const at::Tensor& pool) {
                    return pool.view({-1, Hkv, D}).index_select(0, in.plain_key_pool()).view({B, in.key_len, Hkv, D}).transpose(1, 2);
                };
                keys = gather(cache->k[index]);
                values = gather(cache->v[index]);
            } else {
                keys = cache->k[index].narrow(1, 0, in.key_len).transpose(1, 2);
                values = cache->v[index].narrow(1, 0, in.key_len).transpose(1, 2);
            }
            attended = kernels::attention_plain(query, keys, values, in.plain_mask(layer.sliding), o);
        }
    } else if (kernels::causal_attention_applies(query, key, value)) {
        // Scores only where the causal mask may allow them; no (B, H, T, T) tensors kept for backward.
        attended = kernels::causal_attention(query, key, value, in.real, in.positions, o);
    } else {
        attended = kernels::attention_plain(query, key.transpose(1, 2), value.transpose(1, 2),
                                            in.plain_mask(layer.sliding), o);
    }
    at::Tensor attn_out = layer.o_proj.forward(attended);  // (B, T, C)
    if (c.sandwich_norms) attn_out = layer.post_attention_norm.forward(attn_out);
    return feed_forward(layer, residual + attn_out);
}

at::Tensor model::feed_forward(const decoder_layer& layer, const at::Tensor& after_attention) const {
    const model_config& c = config;
    // Feed-forward block: down(act(gate(h)) * up(h)).
    at::Tensor h = c.sandwich_norms ? layer.pre_feedforward_norm.forward(after_attention)
                                    : layer.post_attention_norm.forward(after_attention);
    std::vector<at::Tensor> gate_up = project(h, {&layer.gate_proj, &layer.up_proj});  // (B, T, I) each
    at::Tensor gated_up = gated(c.hidden_act, gate_up[0], gate_up[1]);                // (B, T, I)
    at::Tensor mlp_out = layer.down_proj.forward(gated_up);                           // (B, T, C)
    if (c.sandwich_norms) mlp_out = layer.post_feedforward_norm.forward(mlp_out);
    return after_attention + mlp_out;
}

at::Tensor model::hidden_states(const at::Tensor& ids_in, const at::Tensor& attention_mask, kv_cache* cache) const {
    if (ids_in.dim() != 2) fail("model: ids must have shape (B, T), got ", ids_in.dim(), " dimensions");
    const int64_t B = ids_in.size(0), T = ids_in.size(1);
    if (B == 0 || T == 0) fail("model: ids must not be empty (shape [", B, ", ", T, "])");
    at::Tensor ids = ids_in.to(at::kLong);
    at::Tensor mask = attention_mask.defined() ? attention_mask.to(at::kLong) : at::ones({B, T}, at::kLong);
    if (mask.sizes() != ids.sizes())
        fail("model: attention_mask shape ", mask.sizes(), " does not match ids shape ", ids.sizes());
    at::Tensor real = mask.ne(0);  // (B, T)
    at::Tensor real_ids = ids.masked_select(real);
    if (real_ids.numel() > 0) {
        int64_t lo = real_ids.min().item<int64_t>(), hi = real_ids.max().item<int64_t>();
        if (lo < 0 || hi >= config.vocab_size)
            fail("model: token id ", (lo < 0 ? lo : hi), " is outside the vocabulary [0, ", config.vocab_size, ")");
    }
    ids = ids.masked_fill(at::logical_not(real), 0);

    at::Tensor x = at::embedding(embed_tokens, ids);  // (B, T, C)
    if (config.scale_embeddings)  // sqrt(C), rounded to the compute dtype as transformers does
        x = x * at::scalar_tensor(std::sqrt((double)config.hidden_size), x.options());

    attention_inputs in;
    in.cache = cache;
    in.real = real;
    in.window = config.sliding_window;
    at::Tensor counts = real.sum(1);  // (B) real tokens per row
    if (!cache) {
        in.positions = (real.to(at::kLong).cumsum(1) - 1).clamp_min(0);  // (B, T)
    } else {
        if (cache->batch() != B) fail("model: cache holds ", cache->batch(), " rows, ids have ", B);
        at::Tensor offset = at::tensor(cache->length, at::kLong).view({B, 1});
        in.fresh = std::all_of(cache->length.begin(), cache->length.end(), [](int64_t n) { return n == 0; });
        in.positions = (offset + real.to(at::kLong).cumsum(1) - 1).clamp_min(0);  // (B, T)
        in.filled = offset.view({B}) + counts;                                    // (B)
        int64_t key_len = in.filled.max().item<int64_t>();
        if (key_len > cache->capacity)
            fail("model: the cache holds ", cache->capacity, " positions per row, ", key_len, " are needed");
        in.key_len = key_len = std::max<int64_t>(key_len, 1);
        at::Tensor where_real = real.nonzero();  // (N, 2)
        in.write_rows = where_real.select(1, 0).contiguous();
        in.write_cols = where_real.select(1, 1).contiguous();
        in.write_slots = in.positions.index({in.write_rows, in.write_cols});
        const at::Tensor& table = cache->block_table;  // paged: (B, blocks per row)
        if (cache->paged() && (table.dim() != 2 || table.size(0) != B || table.scalar_type() != at::kLong ||
                               cache->block_size < 1 || table.size(1) * cache->block_size != cache->capacity))
            fail("model: a paged cache needs a (", B, ", ", cache->capacity, " / block_size) int64 block_table");
        if (cache->paged()) in.write_pool = cache_token(*cache, in.write_rows, in.write_slots).contiguous();
        if (!in.fresh && T > kernels::matvec_max_rows) {
            // Row b's slot s is key j = s + S - filled[b]: its chunk's queries are then the last T keys.
            at::Tensor key_pos = at::arange(key_len, at::kLong).view({1, key_len});
            at::Tensor slot = key_pos - (key_len - in.filled).view({B, 1});  // (B, S)
            in.suffix_valid = slot >= 0;
            in.suffix_positions = slot.clamp_min(0);  // a slot is its token's position
            at::Tensor rows = at::arange(B, at::kLong).view({B, 1}).expand({B, key_len});
            in.suffix_index = cache_token(*cache, rows, in.suffix_positions).reshape({-1}).contiguous();
        }
    }
    std::tie(in.cos, in.sin) = rotary(in.positions);
    if (config.local_rope) std::tie(in.cos_local, in.sin_local) = rotary(in.positions, /*local=*/true);
    for (size_t i = 0; i < layers.size(); ++i) x = layer_forward(i, x, in);
    if (cache) {
        auto n = counts.accessor<int64_t, 1>();
        for (int64_t b = 0; b < B; ++b) cache->length[b] += n[b];
    }
    return final_norm.forward(x);
}

at::Tensor model::logits_from_hidden(const at::Tensor& hidden) const {
    at::Tensor logits = lm_head.forward(hidden);  // (B, T, V)
    if (config.final_logit_softcapping > 0) logits = softcap(logits, config.final_logit_softcapping);
    return logits;
}

at::Tensor model::forward(const at::Tensor& ids, const at::Tensor& attention_mask, kv_cache* cache) const {
    return logits_from_hidden(hidden_states(ids, attention_mask, cache));
}

at::Tensor model::target_logprobs(const at::Tensor& ids, const at::Tensor& attention_mask,
                                  const at::Tensor& targets_in) const {
    // ids, attention_mask, targets: (B, T)
    if (targets_in.sizes() != ids.sizes())
        fail("model: targets shape ", targets_in.sizes(), " does not match ids shape ", ids.sizes());
    at::Tensor hidden = hidden_states(ids, attention_mask);  // (B, T, C)
    const int64_t B = hidden.size(0), T = hidden.size(1), C = hidden.size(2);
    const at::Tensor targets = targets_in.to(at::kLong);
    const int64_t highest = targets.max().item<int64_t>();
    if (highest >= config.vocab_size)
        fail("model: target id ", highest, " is outside the vocabulary [0, ", config.vocab_size, ")");
    at::Tensor scored = targets.ge(0);  // (B, T)
    if (kernels::enabled() && head_fusable(lm_head)) {
        // Fused head: the scored rows only, their logits never held whole.
        at::Tensor positions = scored.reshape({-1}).nonzero().view({-1});                   // (N) b * T + t
        at::Tensor rows = hidden.reshape({B * T, C}).index_select(0, positions);           // (N, C)
        at::Tensor row_targets = targets.reshape({-1}).index_select(0, positions);         // (N)
        // An int8 head is widened for the call (log-probs are scored in batches, not per token).
        const at::Tensor head_weight =
            lm_head.quantized() ? kernels::int8_dequantize_rows(lm_head.weight_q, lm_head.weight_scale, dtype)
                                : lm_head.weight;
        at::Tensor picked = kernels::linear_logprob(rows, head_weight, row_targets,
                                                    config.final_logit_softcapping);  // (N)
        return at::zeros({B * T}, at::kFloat).index_copy(0, positions, picked).view({B, T});
    }
    // Plain head over the columns up to the last scored one.
    at::Tensor any = scored.any(0).nonzero();  // (K, 1) columns with a scored row
    if (any.numel() == 0) return at::zeros({B, T}, at::kFloat);
    const int64_t L = any.max().item<int64_t>() + 1;
    at::Tensor logits = logits_from_hidden(hidden.narrow(1, 0, L));                   // (B, L, V)
    at::Tensor picked = kernels::logits_logprob(logits, targets.narrow(1, 0, L));  // (B, L)
    return L == T ? picked : at::cat({picked, at::zeros({B, T - L}, at::kFloat)}, 1);
}

at::Tensor model::logprobs(const at::Tensor& ids, const at::Tensor& attention_mask) const {
    if (ids.dim() != 2) fail("model: ids must have shape (B, T), got ", ids.dim(), " dimensions");
    const int64_t B = ids.size(0), T = ids.size(1);
    // Position t is scored against the next token when both are real.
    at::Tensor targets = at::full({B, T}, -100, at::kLong);  // (B, T)
    if (T > 1) {
        at::Tensor next = ids.to(at::kLong).narrow(1, 1, T - 1);  // (B, T-1)
        if (attention_mask.defined() && attention_mask.sizes() == ids.sizes()) {  // else hidden_states says so
            at::Tensor real = attention_mask.ne(0);
            next = next.masked_fill(at::logical_not(real.narrow(1, 1, T - 1) & real.narrow(1, 0, T - 1)), -100);
        }
        targets.narrow(1, 0, T - 1).copy_(next);
    }
    at::Tensor picked = target_logprobs(ids, attention_mask, targets);  // (B, T)
    return at::cat({at::zeros({B, 1}, at::kFloat), picked.narrow(1, 0, T - 1)}, 1);
}

memory_limit process_memory_limit(const std::string& cgroup_root) {
    memory_limit out;
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        out.bytes = double(pages) * double(page);
        out.source = "this machine's memory";
    }
    // A container's cgroup may allow less: v2 memory.max ("max": no limit), v1 memory.limit_in_bytes.
    for (const std::string& file : {cgroup_root + "/memory.max", cgroup_root + "/memory/memory.limit_in_bytes"}) {
        std::ifstream in(file);
        std::string text;
        if (!(in >> text) || text == "max") continue;
        char* end = nullptr;
        const double limit = std::strtod(text.c_str(), &end);
        if (end && *end == '\0' && limit > 0 && (out.bytes <= 0 || limit < out.bytes)) {
            out.bytes = limit;
            out.source = "the cgroup limit (" + file + ")";
        }
        break;
    }
    return out;
}

namespace {
// Fails, as "generate: <need>; with the model's weights ... ; <lower>", when `bytes` beside m's
// weights exceed the memory the process may use.
void check_fits_beside_weights(const model& m, double bytes, const std::string& need, const std::string& lower) {
    const memory_limit limit = process_memory_limit();
    const double weights = double(m.weight_bytes());
    if (limit.bytes > 0 && bytes + weights > limit.bytes)
        fail("generate: ", need, "; with the model's weights (", format_bytes(weights), ") that is more than the ",
             format_bytes(limit.bytes), " of ", limit.source, "; ", lower);
}
}  // namespace

void check_kv_cache_fits(const model& m, int64_t rows, int64_t positions) {
    const model_config& config = m.config;
    const double bytes = 2.0 * double(m.layers.size()) * double(rows) * double(positions) *
                         double(config.num_kv_heads) * double(config.head_dim) * double(c10::elementSize(m.dtype));
    check_fits_beside_weights(m, bytes,
                              "a KV cache for " + std::to_string(rows) + " row(s) of " + std::to_string(positions) +
                                  " positions needs " + format_bytes(bytes),
                              "lower max_new_tokens (each row stops at max_position_embeddings = " +
                                  std::to_string(config.max_position_embeddings) + ") or batch_size");
}

void check_kv_budget_fits(const model& m, double budget) {
    check_fits_beside_weights(m, budget, "kv_cache_mb = " + format_bytes(budget), "lower kv_cache_mb");
}

kv_cache model::new_cache(int64_t batch, int64_t capacity) const {
    check_kv_cache_fits(*this, batch, capacity);
    kv_cache cache;
    cache.capacity = capacity;
    cache.length.assign(batch, 0);
    auto opts = at::TensorOptions().dtype(dtype);
    for (size_t i = 0; i < layers.size(); ++i) {
        cache.k.push_back(at::zeros({batch, capacity, config.num_kv_heads, config.head_dim}, opts));
        cache.v.push_back(at::zeros({batch, capacity, config.num_kv_heads, config.head_dim}, opts));
    }
    return cache;
}

namespace {
template <class Model, class Fn>
void for_each_linear(Model& m, Fn&& fn) {
    for (auto& l : m.layers)
        for (auto* p : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj}) fn(*p);
}
}  // namespace

bool model::has_lora() const {
    bool any = false;
    for_each_linear(*this, [&](const linear& l) { any = any || (l.lora_a.defined() && l.lora_b.defined()); });
    return any;
}

void model::set_lora_enabled(bool enabled) {
    for_each_linear(*this, [&](const linear& l) {
        if (!enabled && l.lora_merged)
            fail("model: the LoRA adapters are merged into the weights; call m:unmerge_lora() before use_lora = false");
    });
    for_each_linear(*this, [&](linear& l) {
        if (l.lora_a.defined() && l.lora_b.defined() && !l.lora_merged) l.lora_enabled = enabled;
    });
}

void model::quantize_int8() {
    // The int8 matrices go to 2 MiB pages as the loader's float ones did (weight_memory.h).
    const bool huge_pages = huge_pages_wanted();
    weight_memory matrices;
    auto quantize = [&](linear& l) {
        if (l.quantized()) return;
        if (l.lora_merged) fail("model: unmerge the LoRA adapters before quantizing the weights to int8");
        auto [q, scale] = kernels::int8_quantize_rows(l.weight);
        l.weight_q = huge_pages ? matrices.place(q) : q;
        l.weight_scale = scale;
        l.weight = at::Tensor();
    };
    for_each_linear(*this, quantize);
    // The head is the largest matrix a decode step reads; tied to the
    // embeddings it gets its own int8 copy (the lookups keep embed_tokens).
    quantize(lm_head);
}

bool model::int8_weights() const {
    bool any = lm_head.quantized();
    for_each_linear(*this, [&](const linear& l) { any = any || l.quantized(); });
    return any;
}

int64_t model::parameter_count() const {
    int64_t n = embed_tokens.numel() + final_norm.weight.numel();
    if (!config.tie_word_embeddings) n += lm_head.out_features() * lm_head.in_features();
    for (const auto& l : layers) {
        for (const linear* p : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
            n += p->out_features() * p->in_features() + (p->bias.defined() ? p->bias.numel() : 0);
        for (const rms_norm* p : {&l.input_norm, &l.post_attention_norm, &l.pre_feedforward_norm,
                                  &l.post_feedforward_norm, &l.q_norm, &l.k_norm})
            if (p->weight.defined()) n += p->weight.numel();
    }
    return n;
}

int64_t model::weight_bytes() const {
    auto bytes = [](const at::Tensor& t) { return t.defined() ? (int64_t)t.nbytes() : (int64_t)0; };
    auto linear_bytes = [&](const linear& l) {
        return bytes(l.weight) + bytes(l.bias) + bytes(l.weight_q) + bytes(l.weight_scale) + bytes(l.lora_a) +
               bytes(l.lora_b);
    };
    int64_t n = bytes(embed_tokens) + bytes(final_norm.weight);
    if (!config.tie_word_embeddings || lm_head.quantized()) n += linear_bytes(lm_head);  // int8: a copy of its own
    for (const auto& l : layers) {
        for (const linear* p : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
            n += linear_bytes(*p);
        for (const rms_norm* p : {&l.input_norm, &l.post_attention_norm, &l.pre_feedforward_norm,
                                  &l.post_feedforward_norm, &l.q_norm, &l.k_norm})
            n += bytes(p->weight);
    }
    return n;
}

}  // namespace cai

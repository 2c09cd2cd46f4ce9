#include "kernels/attention.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <limits>

#include "core/error.h"
#include "kernels/dispatch.h"

namespace cai::kernels {

bool attention_decode_applies(const at::Tensor& q, const at::Tensor& k_cache) {
    if (!available() || !q.defined() || !k_cache.defined() || q.dim() != 4 || k_cache.dim() != 4) return false;
    const at::ScalarType type = q.scalar_type();
    if (type != at::kFloat && type != at::kBFloat16) return false;
    if (k_cache.scalar_type() != type || !q.device().is_cpu() || !k_cache.is_contiguous()) return false;
    if (at::GradMode::is_enabled() && (q.requires_grad() || k_cache.requires_grad())) return false;
    return true;
}

at::Tensor attention_decode_forward(const at::Tensor& q_in, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                    const at::Tensor& positions_in, const at::Tensor& filled_in,
                                    const attention_options& o, const at::Tensor& block_table_in) {
    if (!attention_decode_applies(q_in, k_cache))
        fail("attention: q ", q_in.sizes(), " (", q_in.scalar_type(), ") and the cache ", k_cache.sizes(),
             " do not fit the kernel (check attention_decode_applies first)");
    const int64_t B = q_in.size(0), T = q_in.size(1), H = q_in.size(2), D = q_in.size(3);
    const bool paged = block_table_in.defined();
    at::Tensor block_table;
    int64_t capacity = k_cache.size(1);
    const int64_t Hkv = k_cache.size(2);
    if (paged) {
        block_table = block_table_in.to(at::kLong).contiguous();
        if (block_table.dim() != 2 || block_table.size(0) != B)
            fail("attention: block_table must be (", B, ", blocks), got ", block_table.sizes());
        const int64_t* t = block_table.data_ptr<int64_t>();
        for (int64_t i = 0, n = block_table.numel(); i < n; ++i)
            if (t[i] < 0 || t[i] >= k_cache.size(0))
                fail("attention: block_table names block ", t[i], ", outside the pool's ", k_cache.size(0));
        capacity = block_table.size(1) * k_cache.size(1);
    } else if (k_cache.size(0) != B) {
        fail("attention: cache shapes k ", k_cache.sizes(), ", v ", v_cache.sizes(), " do not fit q ", q_in.sizes());
    }
    if (k_cache.size(3) != D || v_cache.sizes() != k_cache.sizes())
        fail("attention: cache shapes k ", k_cache.sizes(), ", v ", v_cache.sizes(), " do not fit q ", q_in.sizes());
    if (Hkv == 0 || H % Hkv != 0) fail("attention: ", H, " query heads are not a multiple of ", Hkv, " key/value heads");
    if (v_cache.scalar_type() != q_in.scalar_type() || !v_cache.is_contiguous())
        fail("attention: the value cache must be contiguous ", q_in.scalar_type());
    at::Tensor positions = positions_in.to(at::kLong).contiguous(), filled = filled_in.to(at::kLong).contiguous();
    if (positions.dim() != 2 || positions.size(0) != B || positions.size(1) != T)
        fail("attention: positions must be (", B, ", ", T, "), got ", positions.sizes());
    if (filled.dim() != 1 || filled.size(0) != B) fail("attention: filled must be (", B, "), got ", filled.sizes());
    if (o.key_len < 1 || o.key_len > capacity)
        fail("attention: key_len ", o.key_len, " must be in [1, ", capacity, "]");
    at::Tensor q = q_in.contiguous();
    at::Tensor out = at::empty({B, T, H, D}, q.options());
    attention_shape s{B, T, H, Hkv, D, capacity, o.key_len, o.window, (float)o.scale, (float)o.softcap};
    if (paged) {
        s.block_table = block_table.data_ptr<int64_t>();
        s.block_size = k_cache.size(1);
        s.table_cols = block_table.size(1);
    }
    // Like the matrix-vector products it runs between, a read of the cache:
    // on their threads (libtorch's intra-op count is one on a 2-core machine).
    s.threads = matvec_threads();
    CAI_KERNELS_CALL(attention_decode, q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), out.data_ptr(),
                     positions.data_ptr<int64_t>(), filled.data_ptr<int64_t>(), s, q.scalar_type() == at::kBFloat16);
    return out.view({B, T, H * D});
}

namespace {

bool head_rows(const at::Tensor& t) { return t.defined() && t.dim() == 4 && t.stride(3) == 1 && t.device().is_cpu(); }

// q, k, v in the kernel's dtypes and layout; k and v with S >= T tokens.
bool causal_shapes_fit(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    if (!available() || !head_rows(q) || !head_rows(k) || !head_rows(v)) return false;
    const at::ScalarType type = q.scalar_type();
    if (type != at::kFloat && type != at::kBFloat16) return false;
    if (k.scalar_type() != type || v.scalar_type() != type) return false;
    if (k.sizes() != v.sizes() || k.size(0) != q.size(0) || k.size(1) < q.size(1) || k.size(3) != q.size(3))
        return false;
    return k.size(2) > 0 && q.size(2) % k.size(2) == 0 && q.size(1) > 0;
}

// The kernel's shapes: keys as many as queries (suffix false) or at least as many.
void check_causal(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_valid,
                  const at::Tensor& positions, const attention_options& o, bool suffix = false) {
    if (!causal_shapes_fit(q, k, v) || (!suffix && k.size(1) != q.size(1)))
        fail("attention: q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes(), " (", q.scalar_type(),
             ") do not fit the causal kernel (check ", suffix ? "suffix" : "causal", "_attention_applies first)");
    const int64_t B = q.size(0), S = k.size(1);
    if (!key_valid.defined() || key_valid.dim() != 2 || key_valid.size(0) != B || key_valid.size(1) != S)
        fail("attention: key_valid must be (", B, ", ", S, ")");
    if (o.window > 0 && (!positions.defined() || positions.dim() != 2 || positions.size(0) != B || positions.size(1) != S))
        fail("attention: a sliding window needs positions of shape (", B, ", ", S, ")");
}

causal_attention_shape shape_of(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const attention_options& o) {
    causal_attention_shape s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3), {}, {}, {}, o.window,
                             (float)o.scale, (float)o.softcap, k.size(1)};
    for (int i = 0; i < 3; ++i) {
        s.q_stride[i] = q.stride(i);
        s.k_stride[i] = k.stride(i);
        s.v_stride[i] = v.stride(i);
    }
    return s;
}

// key_valid as bytes and positions as int64 (a placeholder without a window).
std::pair<at::Tensor, at::Tensor> mask_inputs(const at::Tensor& key_valid, const at::Tensor& positions,
                                              const attention_options& o) {
    at::Tensor valid = key_valid.to(at::kByte).contiguous();
    at::Tensor pos = o.window > 0 ? positions.to(at::kLong).contiguous() : at::zeros({1}, at::kLong);
    return {valid, pos};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct causal_attention_function : public torch::autograd::Function<causal_attention_function> {
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& key_valid, const at::Tensor& positions, int64_t window, double scale,
                              double softcap) {
        attention_options o;
        o.window = window;
        o.scale = scale;
        o.softcap = softcap;
        causal_attention_saved saved = causal_attention_forward(q, k, v, key_valid, positions, o);
        ctx->saved_data["window"] = window;
        ctx->saved_data["scale"] = scale;
        ctx->saved_data["softcap"] = softcap;
        ctx->saved_data["lse"] = saved.lse;
        ctx->saved_data["key_valid"] = key_valid;
        ctx->saved_data["positions"] = positions;
        ctx->save_for_backward({q, k, v, saved.out});
        return saved.out;
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        variable_list saved = ctx->get_saved_variables();
        attention_options o;
        o.window = ctx->saved_data["window"].toInt();
        o.scale = ctx->saved_data["scale"].toDouble();
        o.softcap = ctx->saved_data["softcap"].toDouble();
        causal_attention_saved s{saved[3], ctx->saved_data["lse"].toTensor()};
        auto [dq, dk, dv] = causal_attention_backward(grads[0], saved[0], saved[1], saved[2], s,
                                                      ctx->saved_data["key_valid"].toTensor(),
                                                      ctx->saved_data["positions"].toTensor(), o);
        return {dq, dk, dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

}  // namespace

bool causal_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    return causal_shapes_fit(q, k, v) && k.size(1) == q.size(1);
}

bool suffix_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) return false;
    return causal_shapes_fit(q, k, v);
}

causal_attention_saved causal_attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                const at::Tensor& key_valid, const at::Tensor& positions,
                                                const attention_options& o, int threads) {
    // q: (B, T, H, D); k, v: (B, S, Hkv, D), S >= T; key_valid, positions: (B, S)
    check_causal(q, k, v, key_valid, positions, o, /*suffix=*/true);
    const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3);
    auto [valid, pos] = mask_inputs(key_valid, positions, o);
    causal_attention_saved saved;
    saved.out = at::empty({B, T, H, D}, q.options().requires_grad(false));
    saved.lse = at::empty({B, H, T}, at::kFloat);
    CAI_KERNELS_CALL(causal_attention_forward, q.data_ptr(), k.data_ptr(), v.data_ptr(), valid.data_ptr<uint8_t>(),
                     pos.data_ptr<int64_t>(), saved.out.data_ptr(), saved.lse.data_ptr<float>(), shape_of(q, k, v, o),
                     q.scalar_type() == at::kBFloat16, threads > 0 ? threads : at::get_num_threads());
    return saved;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> causal_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const causal_attention_saved& saved, const at::Tensor& key_valid, const at::Tensor& positions,
    const attention_options& o) {
    // grad_out, q: (B, T, H, D); k, v: (B, T, Hkv, D)
    check_causal(q, k, v, key_valid, positions, o);
    if (grad_out.sizes() != q.sizes() || saved.out.sizes() != q.sizes())
        fail("attention: the output gradient ", grad_out.sizes(), " and saved output ", saved.out.sizes(),
             " must match q ", q.sizes());
    at::Tensor dout = grad_out.to(q.scalar_type()).contiguous(), out = saved.out.contiguous();
    at::Tensor lse = saved.lse.to(at::kFloat).contiguous();
    auto [valid, pos] = mask_inputs(key_valid, positions, o);
    at::Tensor dq = at::empty(q.sizes(), q.options().requires_grad(false));
    at::Tensor dk = at::empty(k.sizes(), k.options().requires_grad(false));
    at::Tensor dv = at::empty(v.sizes(), v.options().requires_grad(false));
    CAI_KERNELS_CALL(causal_attention_backward, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                     dout.data_ptr(), valid.data_ptr<uint8_t>(), pos.data_ptr<int64_t>(), lse.data_ptr<float>(),
                     dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), shape_of(q, k, v, o),
                     q.scalar_type() == at::kBFloat16, at::get_num_threads());
    return {dq, dk, dv};
}

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_valid,
                            const at::Tensor& positions, const attention_options& o) {
    // q: (B, T, H, D); k, v: (B, T, Hkv, D); key_valid, positions: (B, T)
    check_causal(q, k, v, key_valid, positions, o);
    const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3);
    at::Tensor out;
    if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad()))
        out = causal_attention_function::apply(q, k, v, key_valid, positions, o.window, o.scale, o.softcap);
    else  // no gradient (prefill, scoring): between oneDNN products, on their threads (docs/kernels.md)
        out = causal_attention_forward(q, k, v, key_valid, positions, o, matvec_threads()).out;
    return out.view({B, T, H * D});
}

at::Tensor suffix_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_valid,
                            const at::Tensor& positions, const attention_options& o) {
    // q: (B, T, H, D); k, v: (B, S, Hkv, D); key_valid, positions: (B, S)
    if (!suffix_attention_applies(q, k, v))
        fail("attention: q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes(), " (", q.scalar_type(),
             ") do not fit suffix_attention, which has no backward pass (check suffix_attention_applies first)");
    const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3);
    // A prefill chunk: between the products, on their threads (docs/kernels.md).
    return causal_attention_forward(q, k, v, key_valid, positions, o, matvec_threads()).out.view({B, T, H * D});
}

at::Tensor causal_mask(const at::Tensor& key_valid, const at::Tensor& positions, int64_t window) {
    // key_valid, positions: (B, T) -> (B, 1, T, T)
    const int64_t B = key_valid.size(0), T = key_valid.size(1);
    at::Tensor causal = at::ones({T, T}, at::kBool).tril();                                    // (T, T)
    at::Tensor allowed = causal.view({1, 1, T, T}) & key_valid.to(at::kBool).view({B, 1, 1, T});  // (B, 1, T, T)
    if (window > 0) {
        at::Tensor distance = positions.view({B, 1, T, 1}) - positions.view({B, 1, 1, T});
        allowed = allowed & (distance < window);
    }
    return allowed;
}

at::Tensor attention_plain(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values,
                           const at::Tensor& allowed, const attention_options& o) {
    // query: (B, T, H, D); keys, values: (B, Hkv, S, D); allowed: (B, 1, T, S)
    const int64_t B = query.size(0), T = query.size(1), H = query.size(2), D = query.size(3);
    const int64_t Hkv = keys.size(1), S = keys.size(2), groups = H / Hkv;
    const at::ScalarType type = query.scalar_type();
    const double lowest = type == at::kBFloat16 ? (double)std::numeric_limits<c10::BFloat16>::lowest()
                                                : (double)std::numeric_limits<float>::lowest();
    // Query heads sharing a key/value head are stacked along the query axis (GQA without copying K and V).
    at::Tensor grouped_query = query.transpose(1, 2).reshape({B, Hkv, groups * T, D});
    at::Tensor scores = at::matmul(grouped_query, keys.transpose(-1, -2)).view({B, H, T, S}) * o.scale;
    if (o.softcap > 0) scores = at::tanh(scores / o.softcap) * o.softcap;
    scores = scores.masked_fill(at::logical_not(allowed), lowest);
    at::Tensor weights = at::softmax(scores, -1, at::kFloat).to(type);                  // (B, H, T, S)
    at::Tensor attended = at::matmul(weights.view({B, Hkv, groups * T, S}), values);  // (B, Hkv, groups*T, D)
    return attended.view({B, H, T, D}).transpose(1, 2).reshape({B, T, H * D});
}

}  // namespace cai::kernels

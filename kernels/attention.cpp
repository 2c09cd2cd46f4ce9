#include "kernels/attention.h"

#include <ATen/core/grad_mode.h>

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
                                    const attention_options& o) {
    if (!attention_decode_applies(q_in, k_cache))
        fail("attention: q ", q_in.sizes(), " (", q_in.scalar_type(), ") and the cache ", k_cache.sizes(),
             " do not fit the kernel (check attention_decode_applies first)");
    const int64_t B = q_in.size(0), T = q_in.size(1), H = q_in.size(2), D = q_in.size(3);
    const int64_t capacity = k_cache.size(1), Hkv = k_cache.size(2);
    if (k_cache.size(0) != B || k_cache.size(3) != D || v_cache.sizes() != k_cache.sizes())
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
    CAI_KERNELS_CALL(attention_decode, q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), out.data_ptr(),
                     positions.data_ptr<int64_t>(), filled.data_ptr<int64_t>(), s, q.scalar_type() == at::kBFloat16);
    return out.view({B, T, H * D});
}

}  // namespace cai::kernels

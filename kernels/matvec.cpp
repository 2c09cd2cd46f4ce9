#include "kernels/matvec.h"

#include <ATen/core/grad_mode.h>

#include <vector>

#include "core/error.h"
#include "kernels/cpu.h"
#include "kernels/dispatch.h"

namespace cai::kernels {

bool matvec_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    if (!available() || !x.defined() || !w.defined() || x.dim() < 1 || w.dim() != 2) return false;
    const at::ScalarType type = w.scalar_type();
    if (type != at::kFloat && type != at::kBFloat16) return false;
    if (x.scalar_type() != type || !x.device().is_cpu() || !w.device().is_cpu() || !w.is_contiguous()) return false;
    if (bias.defined() && (bias.scalar_type() != type || bias.dim() != 1 || bias.size(0) != w.size(0))) return false;
    const int64_t K = w.size(1);
    if (x.size(-1) != K || K == 0 || w.size(0) == 0) return false;
    const int64_t rows = x.numel() / K;
    if (rows < 1 || rows > matvec_batch_rows) return false;
    if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (bias.defined() && bias.requires_grad())))
        return false;
    return true;
}

std::vector<at::Tensor> matvec_forward_many(const at::Tensor& x, const std::vector<at::Tensor>& ws,
                                            const std::vector<at::Tensor>& biases) {
    if (ws.empty()) fail("matvec: no weights given");
    if (!biases.empty() && biases.size() != ws.size())
        fail("matvec: ", ws.size(), " weights but ", biases.size(), " biases");
    for (size_t i = 0; i < ws.size(); ++i) {
        const at::Tensor& b = biases.empty() ? at::Tensor() : biases[i];
        if (!matvec_applies(x, ws[i], b))
            fail("matvec: weight ", i, " ", ws[i].sizes(), " (", ws[i].scalar_type(), ") does not fit x ", x.sizes(),
                 " (", x.scalar_type(), "): need the same dtype, contiguous weights and at most ", matvec_batch_rows,
                 " rows of x (check matvec_applies first)");
    }
    const int64_t K = x.size(-1), R = x.numel() / K;
    const bool bf16 = ws[0].scalar_type() == at::kBFloat16;
    // x as (R, K) in its own dtype: no tensor op where x is already contiguous
    // (a decode step makes dozens of these calls on a few thousand numbers).
    const at::Tensor xc = x.is_contiguous() ? x : x.contiguous();
    std::vector<at::Tensor> outs;  // each (..., N_i): x's leading dimensions
    std::vector<mv_segment> segs;
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    for (size_t i = 0; i < ws.size(); ++i) {
        const int64_t N = ws[i].size(0);
        shape.back() = N;
        outs.push_back(at::empty(shape, ws[i].options()));
        const at::Tensor b = biases.empty() || !biases[i].defined() ? at::Tensor() : biases[i].contiguous();
        segs.push_back({ws[i].data_ptr(), b.defined() ? b.data_ptr() : nullptr, outs.back().data_ptr(), N});
    }
    CAI_KERNELS_CALL(matvec, xc.data_ptr(), R, K, segs.data(), (int)segs.size(), bf16, matvec_threads());
    return outs;
}

at::Tensor matvec_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
    return matvec_forward_many(x, {w}, {bias})[0];
}

std::pair<at::Tensor, at::Tensor> int8_quantize_rows(const at::Tensor& w) {
    if (w.dim() != 2) fail("int8_quantize_rows: weights must be (N, K), got ", w.sizes());
    at::Tensor w32 = w.detach().to(at::kFloat);
    at::Tensor scale = w32.abs().amax(1) / 127.0;                              // (N)
    scale = at::where(scale > 0, scale, at::ones_like(scale));                 // an all-zero row
    at::Tensor q = (at::round(w32 / scale.unsqueeze(1)).clamp(-127, 127) + 128).to(at::kByte).contiguous();
    return {q, scale.contiguous()};
}

at::Tensor int8_dequantize_rows(const at::Tensor& w_q, const at::Tensor& scale, at::ScalarType dtype) {
    return ((w_q.to(at::kFloat) - 128.0) * scale.unsqueeze(1)).to(dtype);
}

bool matvec_i8_applies(const at::Tensor& x, const at::Tensor& w_q, const at::Tensor& scale, const at::Tensor& bias) {
    if (!available() || !x.defined() || !w_q.defined() || x.dim() < 1 || w_q.dim() != 2) return false;
    const at::ScalarType type = x.scalar_type();
    if (type != at::kFloat && type != at::kBFloat16) return false;
    if (w_q.scalar_type() != at::kByte || !w_q.is_contiguous() || !x.device().is_cpu()) return false;
    if (!scale.defined() || scale.scalar_type() != at::kFloat || scale.dim() != 1 || scale.size(0) != w_q.size(0) ||
        !scale.is_contiguous())
        return false;
    if (bias.defined() && (bias.scalar_type() != type || bias.dim() != 1 || bias.size(0) != w_q.size(0))) return false;
    const int64_t K = w_q.size(1);
    if (x.size(-1) != K || K == 0 || w_q.size(0) == 0) return false;
    const int64_t rows = x.numel() / K;
    // With VNNI every row count takes the kernel (8 rows a register block, the
    // weights read once from memory), so a row's result never depends on how
    // many rows came with it.
    if (rows < 1 || (rows > matvec_max_rows && !cpu_has_avx512_vnni())) return false;
    if (at::GradMode::is_enabled() && (x.requires_grad() || (bias.defined() && bias.requires_grad()))) return false;
    return true;
}

std::vector<at::Tensor> matvec_i8_forward_many(const at::Tensor& x, const std::vector<at::Tensor>& ws_q,
                                               const std::vector<at::Tensor>& scales,
                                               const std::vector<at::Tensor>& biases) {
    if (ws_q.empty() || scales.size() != ws_q.size()) fail("matvec_i8: give one scale per weight");
    if (!biases.empty() && biases.size() != ws_q.size())
        fail("matvec_i8: ", ws_q.size(), " weights but ", biases.size(), " biases");
    for (size_t i = 0; i < ws_q.size(); ++i) {
        const at::Tensor& b = biases.empty() ? at::Tensor() : biases[i];
        if (!matvec_i8_applies(x, ws_q[i], scales[i], b))
            fail("matvec_i8: weight ", i, " ", ws_q[i].sizes(), " does not fit x ", x.sizes(), " (",
                 x.scalar_type(), "): need int8 weights, float32 scales, x in float32 or bf16 with at most ",
                 matvec_max_rows, " rows (check matvec_i8_applies first)");
    }
    const int64_t K = x.size(-1), R = x.numel() / K;
    const bool bf16 = x.scalar_type() == at::kBFloat16;
    const at::Tensor xc = x.is_contiguous() ? x : x.contiguous();
    std::vector<at::Tensor> outs;
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    for (size_t i = 0; i < ws_q.size(); ++i) {
        shape.back() = ws_q[i].size(0);
        outs.push_back(at::empty(shape, x.options()));
    }
    std::vector<mv_segment> segs;
    for (size_t i = 0; i < ws_q.size(); ++i) {
        const int64_t N = ws_q[i].size(0);
        const at::Tensor b = biases.empty() || !biases[i].defined() ? at::Tensor() : biases[i].contiguous();
        mv_segment seg{ws_q[i].data_ptr(), b.defined() ? b.data_ptr() : nullptr, outs[i].data_ptr(), N};
        seg.scale = scales[i].data_ptr<float>();
        segs.push_back(seg);
    }
    CAI_KERNELS_CALL(matvec_i8, xc.data_ptr(), R, K, segs.data(), (int)segs.size(), bf16, matvec_threads());
    return outs;
}

}  // namespace cai::kernels

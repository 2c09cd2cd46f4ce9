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
    if (rows < 1 || rows > matvec_max_rows) return false;
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
                 " (", x.scalar_type(), "): need the same dtype, contiguous weights and at most ", matvec_max_rows,
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

}  // namespace cai::kernels

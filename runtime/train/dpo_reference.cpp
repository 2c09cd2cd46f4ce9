// The DPO reference's vocabulary check, fingerprint and cache (see dpo_reference.h).
#include "train/dpo_reference.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "dist/dist.h"
#include "model/model.h"
#include "model/save.h"
#include "tokenizer/tokenizer.h"
#include "train/dpo.h"
#include "train/lora.h"

namespace cai {

namespace {

// FNV-1a 64 over everything fed to it.
struct fnv64 {
    uint64_t h = 1469598103934665603ull;
    void bytes(const void* p, size_t n) {
        const auto* c = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
    }
    void str(const std::string& s) {
        const uint64_t n = s.size();
        bytes(&n, sizeof n);
        bytes(s.data(), s.size());
    }
    void num(int64_t v) { bytes(&v, sizeof v); }
};

// A tensor's identity: name, dtype, shape, its float32 sum and up to 256
// evenly spaced elements.
void hash_tensor(fnv64& f, const std::string& name, const at::Tensor& t) {
    f.str(name);
    f.str(std::string(c10::toString(t.scalar_type())));
    for (int64_t d : t.sizes()) f.num(d);
    at::Tensor flat = t.detach().reshape({-1}).to(at::kCPU, at::kFloat);
    const double sum = flat.sum().item<double>();
    f.bytes(&sum, sizeof sum);
    const int64_t n = flat.numel();
    if (n == 0) return;
    at::Tensor idx = at::linspace(0, (double)(n - 1), std::min<int64_t>(n, 256), at::kDouble).to(at::kLong);
    at::Tensor sample = flat.index_select(0, idx).contiguous();
    f.bytes(sample.data_ptr<float>(), (size_t)sample.numel() * sizeof(float));
}

}  // namespace

std::string dpo_reference_fingerprint(const model& reference, bool adapter_off, const tokenizer& tok,
                                      const std::vector<dpo_pair>& pairs, bool eos, bool average,
                                      bool add_special_tokens, int64_t max_length) {
    fnv64 f;
    f.str("cai.dpo.reference_logps.v1");
    if (!add_special_tokens) f.str("prompts without special tokens");
    if (max_length > 0) f.num(max_length);  // absent when 0, so older caches keep their key
    f.num(adapter_off);
    f.num(eos);
    f.num(average);
    f.num((int64_t)pairs.size());
    for (const auto& p : pairs) {
        f.str(p.prompt);
        f.str(p.chosen);
        f.str(p.rejected);
    }
    f.str(reference.config.json);
    f.str(dtype_name(reference.dtype));
    at::NoGradGuard no_grad;
    for (const auto& [name, t] : model_named_tensors(reference)) hash_tensor(f, name, t);
    if (!adapter_off && lora_present(reference))
        for (const auto& [name, t] : lora_named_tensors(reference)) hash_tensor(f, name, t);
    f.num(tok.vocab_size());
    for (int32_t id = 0; id < tok.vocab_size(); ++id) f.str(tok.id_to_piece(id));
    f.num(tok.bos_id);
    f.num(tok.eos_id);
    f.num(tok.pad_id);
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)f.h);
    return hex;
}

// The reference model has the policy's vocabulary: same size, and (where it
// has a tokenizer) the same piece for every id.
void dpo_check_reference_vocabulary(const model& policy, const model& reference) {
    if (reference.config.vocab_size != policy.config.vocab_size)
        fail("dpo: reference model: vocab_size ", reference.config.vocab_size, " differs from the policy's ",
             policy.config.vocab_size, "; the reference must share the policy's tokenizer");
    if (!reference.tok) return;
    const tokenizer& a = *policy.tok;
    const tokenizer& b = *reference.tok;
    if (a.vocab_size() != b.vocab_size())
        fail("dpo: reference model: tokenizer vocabulary of ", b.vocab_size(), " pieces differs from the policy's ",
             a.vocab_size());
    for (int32_t id = 0; id < a.vocab_size(); ++id)
        if (a.id_to_piece(id) != b.id_to_piece(id))
            fail("dpo: reference model: token ", id, " is \"", b.id_to_piece(id), "\" but \"", a.id_to_piece(id),
                 "\" for the policy; the reference must share the policy's tokenizer");
}

dpo_reference_logps dpo_reference_cache(const std::string& out_dir, const std::string& fingerprint, size_t pairs,
                                        size_t chunk, const std::function<at::Tensor(size_t, size_t)>& compute) {
    dpo_reference_logps out;
    const std::string cache_path = path_join(out_dir, "reference_logps.json");
    if (file_exists(cache_path)) {
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(read_file(cache_path));
        } catch (const std::exception& e) {
            log_info("dpo: ", cache_path, " is unreadable (", e.what(), "); recomputing");
        }
        if (j.is_object() && j.value("fingerprint", "") == fingerprint && j["chosen"].size() == pairs &&
            j["rejected"].size() == pairs) {
            out.chosen = j["chosen"].get<std::vector<float>>();
            out.rejected = j["rejected"].get<std::vector<float>>();
            log_info("dpo: reference log-probs from ", cache_path);
            return out;
        }
        if (j.is_object())
            log_info("dpo: ", cache_path, " was computed for other pairs, model, tokenizer or options (fingerprint ",
                     j.value("fingerprint", "?"), ", now ", fingerprint, "); recomputing");
    }
    for (size_t s = 0; s < pairs; s += chunk) {
        const size_t e = std::min(pairs, s + chunk), n = e - s;
        at::Tensor r = compute(s, e).to(at::kCPU, at::kFloat).contiguous();  // (2n)
        const float* p = r.data_ptr<float>();
        out.chosen.insert(out.chosen.end(), p, p + n);
        out.rejected.insert(out.rejected.end(), p + n, p + 2 * n);
    }
    nlohmann::json j = {{"fingerprint", fingerprint}, {"chosen", out.chosen}, {"rejected", out.rejected}};
    make_directories(out_dir);
    if (dist::is_main()) write_file_atomic(cache_path, j.dump());  // every rank computed the same
    log_info("dpo: reference log-probs of ", pairs, " pairs written to ", cache_path);
    return out;
}

}  // namespace cai

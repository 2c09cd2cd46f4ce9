// DPO's reference beside the policy: a separate reference model must share
// the policy's vocabulary, and with reference_cache = true the reference
// log-probs of all pairs are computed once and kept in
// out/reference_logps.json, keyed by a fingerprint of everything that changes
// them (see dpo_options::reference_cache).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

namespace cai {

class model;
class tokenizer;
struct dpo_pair;

// The reference model has the policy's vocabulary: the same size and (where
// it has a tokenizer) the same piece for every id; an error names the first difference.
void dpo_check_reference_vocabulary(const model& policy, const model& reference);

// The fingerprint the reference cache is keyed by (hex): the pairs' text,
// eos, the ipo averaging, whether the reference is the adapters-off policy,
// the reference's config, dtype and weights (and a separate reference's
// adapters), and the tokenizer's pieces and special ids.
// Prompts encoded without special tokens (add_special_tokens = false), or
// cut to max_length > 0 tokens, key another cache.
std::string dpo_reference_fingerprint(const model& reference, bool adapter_off, const tokenizer& tok,
                                      const std::vector<dpo_pair>& pairs, bool eos, bool average,
                                      bool add_special_tokens = true, int64_t max_length = 0);

// The reference log-prob of each pair's chosen and rejected completion.
struct dpo_reference_logps {
    std::vector<float> chosen, rejected;
};

// out_dir/reference_logps.json when it holds `pairs` pairs under this
// fingerprint; otherwise (missing, unreadable or another fingerprint, said in
// a log line) computes them `chunk` pairs at a time with compute(begin, end)
// -> (2 (end - begin)) float32, the chosen completions of pairs [begin, end)
// then their rejected ones, and writes the file atomically (rank 0).
dpo_reference_logps dpo_reference_cache(const std::string& out_dir, const std::string& fingerprint, size_t pairs,
                                        size_t chunk, const std::function<at::Tensor(size_t, size_t)>& compute);

}  // namespace cai

// transformers' side of a tokenizer directory: tokenizer_config.json,
// special_tokens_map.json and added_tokens.json (special token names, added_tokens_decoder,
// add_bos_token/add_eos_token, legacy, clean_up_tokenization_spaces).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tokenizer/vocab.h"

namespace cai::tok {

class pipeline;

struct hf_config {
    std::string dir;
    std::string tokenizer_class;  // "" when absent
    std::optional<std::string> bos_token, eos_token, unk_token, pad_token;
    std::optional<std::string> sep_token, cls_token, mask_token;  // encoders
    std::vector<std::string> additional_special_tokens;
    std::vector<added_token> added_tokens_decoder;
    std::optional<bool> add_bos_token, add_eos_token, legacy, add_prefix_space, clean_up_tokenization_spaces;
    std::optional<bool> do_lower_case, split_by_punct;  // DebertaV2Tokenizer

    static hf_config read(const std::string& dir);  // missing files are fine; malformed ones are errors
    bool is_llama_like() const;  // LlamaTokenizer(Fast), CodeLlama, Gemma: bos/eos from add_*_token
    bool is_gemma() const;
};

// Registers the config's added tokens and special tokens (as transformers'
// fast tokenizers do: special tokens become special added tokens), then
// sets bos_id/eos_id/pad_id and the clean-up flag.
void apply_hf_config(pipeline& p, const hf_config& config);

// Post-processor of Llama/Gemma fast tokenizers: [bos] text [eos] per add_bos/add_eos.
void set_bos_eos_template(pipeline& p, bool add_bos, bool add_eos);

}  // namespace cai::tok

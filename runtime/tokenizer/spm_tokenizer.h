// A sentencepiece tokenizer.model served like transformers' LlamaTokenizerFast
// / GemmaTokenizerFast: added/special tokens split out of the text first,
// legacy true/false, add_bos_token/add_eos_token, byte fallback.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace cai {

// Reads dir/tokenizer.model (+ tokenizer_config.json, special_tokens_map.json).
std::shared_ptr<tokenizer> load_spm_tokenizer(const std::string& dir);

}  // namespace cai

// Hugging Face tokenizer.json: a BPE model (byte-level as in GPT-2, Qwen2,
// Llama 3; or byte-fallback as in sentencepiece conversions) with its
// normalizer, pre-tokenizer, post-processor, decoder and added tokens.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace cai {

// Reads dir/tokenizer.json (+ tokenizer_config.json, special_tokens_map.json).
// Unsupported components are errors naming them.
std::shared_ptr<tokenizer> load_bpe_tokenizer(const std::string& dir);

}  // namespace cai

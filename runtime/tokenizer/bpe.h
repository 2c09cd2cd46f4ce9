// Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Qwen2,
// Llama 3 style): NFC normalizer, Split/ByteLevel pre-tokenizers with the
// model's regex, merges by rank, added tokens, ByteLevel decoder.
#pragma once

#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace cai {

// Reads dir/tokenizer.json (+ tokenizer_config.json). Unsupported components
// are errors naming them.
std::shared_ptr<tokenizer> load_bpe_tokenizer(const std::string& dir);

// True when the tokenizer.json is a sentencepiece conversion (Metaspace
// pre-tokenizer, or a BPE model with byte_fallback and no ByteLevel step).
bool bpe_json_is_sentencepiece_style(const std::string& json_path);

}  // namespace cai

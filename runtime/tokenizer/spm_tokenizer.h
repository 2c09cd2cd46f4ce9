// A sentencepiece tokenizer.model served exactly as transformers'
// LlamaTokenizerFast / GemmaTokenizerFast serve it after converting it
// (convert_slow_tokenizer.py): BPE merges ordered by piece score (or the
// Unigram model), byte fallback, legacy true/false, add_bos/add_eos, added
// and special tokens split out of the text first. Reading the model needs
// no sentencepiece library: the .model file is a small protobuf read here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace cai {

struct spm_proto {
    enum piece_type { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };
    struct piece {
        std::string text;
        float score = 0;
        int type = normal;
    };
    std::vector<piece> pieces;
    int model_type = 1;  // 1 unigram, 2 bpe, 3 word, 4 char
    bool byte_fallback = false;
    int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
    std::string unk_piece = "<unk>";
    bool add_dummy_prefix = true;

    static spm_proto parse(const std::string& bytes, const std::string& name);
};

// Reads dir/tokenizer.model (+ tokenizer_config.json, special_tokens_map.json).
std::shared_ptr<tokenizer> load_spm_tokenizer(const std::string& dir);

}  // namespace cai

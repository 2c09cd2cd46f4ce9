// A sentencepiece tokenizer.model served exactly as transformers'
// LlamaTokenizerFast / GemmaTokenizerFast serve it after converting it
// (convert_slow_tokenizer.py): BPE merges ordered by piece score (or the
// Unigram model), byte fallback, legacy true/false, add_bos/add_eos, added
// and special tokens split out of the text first. DeBERTa-v2/v3's spm.model
// is converted as DebertaV2TokenizerFast converts it (DebertaV2Converter).
// Reading the model needs no sentencepiece library: the .model file is a
// small protobuf read here.
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
    std::string precompiled_charsmap;  // normalizer_spec.precompiled_charsmap ("" for identity)

    static spm_proto parse(const std::string& bytes, const std::string& name);
};

// Reads dir/tokenizer.model (+ tokenizer_config.json, special_tokens_map.json).
std::shared_ptr<tokenizer> load_spm_tokenizer(const std::string& dir);

// Reads dir/spm.model (DeBERTa-v2/v3: + tokenizer_config.json, added_tokens.json,
// special_tokens_map.json) as DebertaV2TokenizerFast serves it: Unigram with
// the model's unk_id and byte_fallback; normalizer [Lowercase when
// do_lower_case] Strip, Precompiled charsmap, Replace(" {2,}" -> " ");
// pre-tokenizer [Punctuation when split_by_punct] Metaspace (prepend always);
// [CLS] A [SEP] (B [SEP] in segment 1); Metaspace decoder.
std::shared_ptr<tokenizer> load_deberta_spm_tokenizer(const std::string& dir);

// Trains a sentencepiece model on text files and writes a tokenizer
// directory (tokenizer.model + tokenizer_config.json) that load() and
// transformers' AutoTokenizer both read. The directory appears complete or
// not at all (built under a temporary name, then renamed).
struct spm_train_options {
    std::vector<std::string> input;  // text files, one sentence per line
    std::string dir;                 // output directory (must not exist)
    int vocab_size = 8000;
    std::string model_type = "bpe";  // "bpe" or "unigram"
    std::string style = "llama";     // "llama": <unk>,<s>,</s>,<pad> = 0..3, dummy prefix;
                                     // "gemma": <pad>,<eos>,<bos>,<unk> = 0..3, no dummy prefix
    double character_coverage = 1.0;
    bool byte_fallback = true, split_digits = true;
    std::vector<std::string> user_defined_symbols, control_symbols;
    int threads = 1;                 // 1 keeps training byte-for-byte reproducible
    long long input_sentence_size = 0;  // 0: all sentences
    int max_sentence_length = 16384;
};
void train_spm_tokenizer(const spm_train_options& options);

}  // namespace cai

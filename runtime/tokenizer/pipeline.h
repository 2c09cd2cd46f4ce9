// The Hugging Face tokenizer pipeline, as the `tokenizers` library runs it:
//   added tokens split out (raw text) -> normalizer -> added tokens split out
//   (normalized text) -> pre-tokenizer -> model (BPE or Unigram) ->
//   post-processor (special tokens);  decode: ids -> pieces -> decoder.
// load_bpe_tokenizer fills it from tokenizer.json; load_spm_tokenizer fills
// it from tokenizer.model the way transformers converts Llama and Gemma
// sentencepiece models to their fast tokenizers.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace cai::tok {

class regex;  // PCRE2 pattern, compiled with UTF, UCP and JIT

struct normalizer_step {
    enum kind_t { nfc, prepend, replace } kind;
    std::string a, b;  // prepend: a; replace: a -> b
};

struct pre_tokenizer_step {
    enum kind_t { split, byte_level, metaspace } kind;
    // split
    std::shared_ptr<regex> pattern;
    enum behavior_t { removed, isolated, merged_with_previous, merged_with_next, contiguous } behavior = isolated;
    bool invert = false;
    // byte_level
    bool add_prefix_space = false, use_regex = true;
    // metaspace
    std::string replacement = "\xE2\x96\x81";
    enum prepend_t { always, first, never } prepend_scheme = always;
    bool split_on_replacement = true;
};

struct decoder_step {
    enum kind_t { byte_level, replace, byte_fallback, fuse, strip, metaspace } kind;
    std::string a, b;           // replace: a -> b; strip: a = content; metaspace: a = replacement
    int start = 0, stop = 0;    // strip
    bool prepend = true;        // metaspace: drop the leading space of the first token
};

class pipeline : public cai::tokenizer {
public:
    std::string name;  // for messages: "<dir>/tokenizer.json"
    added_vocab added;
    std::vector<normalizer_step> normalizers;
    std::vector<pre_tokenizer_step> pre_tokenizers;
    std::unique_ptr<bpe_model> bpe;
    std::unique_ptr<unigram_model> unigram;
    std::vector<decoder_step> decoders;
    bool has_decoder = true;
    // Post-processor for a single sequence: ids before and after the text.
    std::vector<int32_t> prefix_ids, suffix_ids;
    bool clean_up_tokenization_spaces = false;

    std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const override;
    std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override;
    std::string id_to_piece(int32_t id) const override;
    int32_t piece_to_id(const std::string& piece) const override;
    int32_t vocab_size() const override;

    // Model vocabulary size (without added tokens beyond it).
    int32_t model_size() const;
    std::string normalize(const std::string& s) const;

private:
    void pre_tokenize(const std::string& s, bool first, std::vector<std::string>& words) const;
};

std::shared_ptr<regex> compile_regex(const std::string& pattern, const std::string& where);
// Non-overlapping matches of re in s as [start, end) byte ranges.
std::vector<std::pair<size_t, size_t>> find_all(const regex& re, const std::string& s);
std::shared_ptr<regex> literal_regex(const std::string& literal, const std::string& where);

// transformers' clean_up_tokenization: " ." -> "." and friends.
std::string clean_up_tokenization(std::string text);

}  // namespace cai::tok

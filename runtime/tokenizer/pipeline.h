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

#include "tokenizer/normalize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace cai::tok {

class regex;  // PCRE2 pattern, compiled with UTF, UCP and JIT

struct normalizer_step {
    enum kind_t { nfc, prepend, replace, bert, lowercase, strip_accents, strip, replace_regex, nfd, nfkd, nfkc,
                  precompiled } kind;
    std::string a, b;  // prepend: a; replace: a -> b; replace_regex: matches -> b
    bert_normalizer_options bert_options{};
    bool left = true, right = true;  // strip
    std::shared_ptr<regex> pattern = nullptr;  // replace_regex
    std::shared_ptr<precompiled_charsmap> charsmap = nullptr;  // precompiled
};

struct pre_tokenizer_step {
    enum kind_t { split, byte_level, metaspace, bert, whitespace_split, punctuation } kind;
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
    // punctuation
    std::string punctuation_behavior = "isolated";
};

// One item of a post-processor template: a special token's ids, or the
// sequence A (0) or B (1), with the segment (type id) it gets.
struct template_item {
    int sequence = -1;  // -1: special token ids
    std::vector<int32_t> ids;
    int32_t type_id = 0;
};

struct decoder_step {
    enum kind_t { byte_level, replace, byte_fallback, fuse, strip, metaspace, wordpiece } kind;
    std::string a, b;           // replace: a -> b; strip: a = content; metaspace: a = replacement; wordpiece: a = prefix
    int start = 0, stop = 0;    // strip
    bool prepend = true;        // metaspace: drop the leading space of the first token
    bool cleanup = true;        // wordpiece: clean up tokenization spaces
};

class pipeline : public cai::tokenizer {
public:
    std::string name;  // for messages: "<dir>/tokenizer.json"
    added_vocab added;
    std::vector<normalizer_step> normalizers;
    std::vector<pre_tokenizer_step> pre_tokenizers;
    std::unique_ptr<bpe_model> bpe;
    std::unique_ptr<unigram_model> unigram;
    std::unique_ptr<wordpiece_model> wordpiece;
    std::vector<decoder_step> decoders;
    bool has_decoder = true;
    // Post-processor for a single sequence: ids before and after the text.
    std::vector<int32_t> prefix_ids, suffix_ids;
    // The post-processor's templates with segments; pair_template empty: no pair template.
    std::vector<template_item> single_template, pair_template;
    bool pair_types_zero = false;  // RobertaProcessing: every segment id 0, special tokens or not
    bool clean_up_tokenization_spaces = false;

    std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const override;
    std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override;
    void encode_with_types(const std::string& text, const std::string* pair, bool add_special_tokens,
                           std::vector<int32_t>& ids, std::vector<int32_t>& type_ids) const override;
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

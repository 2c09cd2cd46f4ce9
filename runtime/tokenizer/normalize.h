// Text normalizers and splitting rules of the encoder tokenizers, as
// Hugging Face tokenizers (Rust) runs them: BertNormalizer (clean_text,
// handle_chinese_chars, strip_accents, lowercase), Lowercase, StripAccents,
// Strip, NFD/NFKD/NFKC (ICU), and the character classes BertPreTokenizer
// and Punctuation split on; plus the WordPiece model.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace cai::tok {

// Unicode normalization form "NFC", "NFD", "NFKC" or "NFKD" of valid UTF-8.
std::string normalize_form(const std::string& s, const std::string& form);
// Each code point's full lowercase mapping on its own (Rust char::to_lowercase).
std::string lowercase(const std::string& s);
// NFD, then drop nonspacing marks (Mn), as tokenizers' strip_accents.
std::string strip_accents(const std::string& s);
// Unicode White_Space at the ends removed (left and/or right).
std::string strip(const std::string& s, bool left, bool right);

struct bert_normalizer_options {
    bool clean_text = true, handle_chinese_chars = true, lowercase = true;
    int strip_accents = -1;  // -1: null (follows lowercase), 0: false, 1: true
};
std::string bert_normalize(const std::string& s, const bert_normalizer_options& options);

// ASCII punctuation or a Unicode P* character (BertPreTokenizer, Punctuation).
bool is_bert_punctuation(uint32_t cp);

// BertPreTokenizer: split on whitespace (removed) and punctuation (each its own word).
void bert_pre_tokenize(const std::string& s, std::vector<std::string>& words);
// WhitespaceSplit: split on Unicode whitespace.
void whitespace_split(const std::string& s, std::vector<std::string>& words);
// Punctuation pre-tokenizer with behavior "isolated" (its default), or
// "removed", "merged_with_previous", "merged_with_next", "contiguous".
void punctuation_split(const std::string& s, const std::string& behavior, std::vector<std::string>& words);

// sentencepiece's precompiled normalization table (normalizer_spec.
// precompiled_charsmap, "Precompiled" in tokenizer.json): a double-array
// trie over UTF-8 keys and the replacement strings. normalize() runs it as
// tokenizers' spm_precompiled does: each extended grapheme cluster shorter
// than 6 bytes is looked up whole; otherwise (or with no entry) each of its
// code points is looked up, and kept when it has none.
class precompiled_charsmap {
public:
    // bytes: the table as stored (u32 trie size, the trie, then the strings).
    precompiled_charsmap(const std::string& bytes, const std::string& where);
    std::string normalize(const std::string& s) const;

private:
    std::vector<uint32_t> trie_;
    std::string normalized_;
    bool transform(const char* p, size_t n, std::string& out) const;
};

// Hugging Face's WordPiece model: greedy longest match from the start of
// each word, continuing pieces prefixed ("##"); a word with no match, or
// longer than max_input_chars_per_word characters, is one unk token.
class wordpiece_model {
public:
    std::vector<std::string> pieces;                 // id -> piece ("" for holes)
    std::unordered_map<std::string, int32_t> vocab;  // piece -> id
    std::string continuing_subword_prefix = "##";
    int64_t max_input_chars_per_word = 100;
    int32_t unk_id = -1;

    void add_piece(const std::string& piece, int32_t id);
    void encode_word(const std::string& word, std::vector<int32_t>& out) const;
};

}  // namespace cai::tok

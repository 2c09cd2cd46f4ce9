// Building blocks shared by both tokenizer implementations:
//  - added_vocab: tokens matched in the text before the model runs
//    (Hugging Face AddedVocabulary: leftmost-longest match, lstrip, rstrip,
//    single_word, normalized);
//  - bpe_model: merges by rank over a vocabulary (Hugging Face BPE model,
//    with unk, fuse_unk, byte_fallback and ignore_merges);
//  - unigram_model: Viterbi segmentation over piece scores (Hugging Face
//    Unigram model, with byte_fallback).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace cai::tok {

struct added_token {
    std::string content;
    int32_t id = -1;
    bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// A piece of input text: plain text (id < 0) or one matched added token.
struct segment {
    std::string text;
    int32_t id = -1;
    size_t offset = 0;  // byte offset in the original text (plain segments of pass 1)
};

class added_vocab {
public:
    void add(const added_token& token);  // a later token with the same content replaces the earlier
    // Splits text on the added tokens whose `normalized` flag equals `normalized`.
    void split(const std::string& text, size_t offset, bool normalized, std::vector<segment>& out) const;
    const added_token* by_id(int32_t id) const;
    const added_token* by_content(const std::string& content) const;
    bool is_special(int32_t id) const;
    const std::vector<added_token>& tokens() const { return tokens_; }

private:
    std::vector<added_token> tokens_;
    std::unordered_map<int32_t, size_t> by_id_;
    std::unordered_map<std::string, size_t> by_content_;
    std::vector<std::vector<size_t>> by_first_byte_ = std::vector<std::vector<size_t>>(256);
};

class bpe_model {
public:
    std::vector<std::string> pieces;                  // id -> piece ("" for holes)
    std::unordered_map<std::string, int32_t> vocab;   // piece -> id
    int32_t unk_id = -1;
    bool fuse_unk = false, byte_fallback = false, ignore_merges = false;

    void add_piece(const std::string& piece, int32_t id);
    // rank: lower merges first. Returns false when a side or the result is not in the vocabulary.
    bool add_merge(const std::string& left, const std::string& right, int32_t rank);
    // Appends the ids of one pre-tokenized word.
    void encode_word(const std::string& word, std::vector<int32_t>& out) const;
    int32_t id_of(const std::string& piece) const {
        auto it = vocab.find(piece);
        return it == vocab.end() ? -1 : it->second;
    }

private:
    struct merge {
        int32_t rank, result;
    };
    std::unordered_map<uint64_t, merge> merges_;
    static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
};

class unigram_model {
public:
    std::vector<std::string> pieces;
    std::vector<double> scores;
    std::unordered_map<std::string, int32_t> vocab;
    int32_t unk_id = 0;
    bool byte_fallback = false;

    void add_piece(const std::string& piece, double score);  // ids in order of addition
    void finish();  // call once after the last add_piece
    void encode_word(const std::string& word, std::vector<int32_t>& out) const;

private:
    double min_score_ = 0;
    size_t max_piece_bytes_ = 1;
};

// "<0x41>" style byte piece name, and its parse (-1 when not one).
std::string byte_piece(unsigned char b);
int parse_byte_piece(const std::string& piece);

}  // namespace cai::tok

// The tokenizer interface the rest of the runtime uses. Implementations:
// sentencepiece (tokenizer.model, through the isolated cai_spm library) and
// Hugging Face byte-level BPE (tokenizer.json). Both behave like
// transformers' AutoTokenizer for the same directory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cai {

class tokenizer {
public:
    virtual ~tokenizer() = default;

    // add_special_tokens: BOS/EOS as the directory's config says (add_bos_token, add_eos_token).
    virtual std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const = 0;
    virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const = 0;
    virtual std::string id_to_piece(int32_t id) const = 0;
    virtual int32_t piece_to_id(const std::string& piece) const = 0;  // -1 when absent
    virtual int32_t vocab_size() const = 0;
    // The encoding of one text, or of a (text, pair) when pair is non-null,
    // with each token's segment (token_type_ids), as the post-processor's
    // single and pair templates say ([CLS] a [SEP] b [SEP]). The default
    // handles single texts only (all segment 0); pairs need a tokenizer.json
    // whose post-processor has a pair template.
    virtual void encode_with_types(const std::string& text, const std::string* pair, bool add_special_tokens,
                                   std::vector<int32_t>& ids, std::vector<int32_t>& type_ids) const;

    int32_t bos_id = -1, eos_id = -1, pad_id = -1;  // -1: none
    bool add_bos = false, add_eos = false;

    // Which implementation: "spm" (tokenizer.model) or "bpe" (tokenizer.json).
    std::string kind;

    // The directory it was loaded from (its tokenizer_config.json holds the chat template).
    std::string dir;

    // encode() of every text, spread over `threads` worker threads (0: all cores).
    // encode() is const and thread-safe; the result does not depend on threads.
    std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts,
                                                   bool add_special_tokens, int threads = 0) const;
    std::vector<std::string> decode_batch(const std::vector<std::vector<int32_t>>& ids,
                                          bool skip_special_tokens, int threads = 0) const;

    // Loads tokenizer.json, tokenizer.model or (DeBERTa-v2/v3) spm.model from an HF directory, with
    // tokenizer_config.json / special_tokens_map.json. Throws cai::error
    // naming the file and what is wrong.
    static std::shared_ptr<tokenizer> load(const std::string& dir);
    // Whether dir holds a file load() reads: tokenizer.json, tokenizer.model or spm.model.
    static bool has_files(const std::string& dir);

private:
    static std::shared_ptr<tokenizer> load_files(const std::string& dir);
};

}  // namespace cai

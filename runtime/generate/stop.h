// Incremental stop-string detection for one generated sequence.
//
// The text a sequence has produced is decoded a few tokens at a time
// instead of from the start at every step: a window of tokens from the last
// committed boundary is decoded, and the part beyond the window's earlier
// text is appended (the way transformers' TextIteratorStreamer and vLLM
// detokenize: decoders that strip a leading space or fuse byte pieces do so
// identically in both decodes of the window, so the difference is exactly
// the new text). A window whose text ends in U+FFFD (an incomplete UTF-8
// character) is not committed until the character completes. The search
// covers only the new text plus the max_stop_len - 1 bytes before it (the
// carry-over a stop string spanning token boundaries needs), so a step costs
// O(new text + longest stop) rather than O(output).
//
// The result equals what decoding the whole output at every step and
// searching it would give: the same step ends the sequence, and text() is
// the whole output's decoded text, cut before the earliest stop string.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cai {

class tokenizer;

class stop_search {
public:
    // stop: non-empty strings; tok decodes with skip_special_tokens = true.
    stop_search(const tokenizer& tok, const std::vector<std::string>& stop);

    // tokens: the whole output so far (one more than at the last call, or
    // more). Returns true when the decoded output now contains a stop string.
    bool add(const std::vector<int32_t>& tokens);

    // The output's text: cut before the earliest stop string once add()
    // returned true, else everything decoded so far.
    const std::string& text() const { return text_; }

private:
    const tokenizer& tok_;
    const std::vector<std::string>& stop_;
    size_t max_stop_len_ = 0;
    std::string committed_;     // text of tokens [0, read_), stable
    std::string text_;          // committed_ + the provisional tail
    size_t prefix_ = 0;         // window start (token index)
    size_t read_ = 0;           // tokens whose text is committed
    std::string prefix_text_;   // decode(tokens[prefix_, read_))
    size_t searched_ = 0;       // text_ up to here held no stop string, and stays
};

}  // namespace cai

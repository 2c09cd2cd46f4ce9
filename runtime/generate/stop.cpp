#include "generate/stop.h"

#include <algorithm>

#include "core/strings.h"
#include "tokenizer/tokenizer.h"

namespace cai {
namespace {

// UTF-8 of U+FFFD, what a decoder writes for an incomplete character.
const std::string replacement = "\xEF\xBF\xBD";

bool ends_with_replacement(const std::string& s) { return ends_with(s, replacement); }

std::vector<int32_t> slice(const std::vector<int32_t>& ids, size_t begin, size_t end) {
    return std::vector<int32_t>(ids.begin() + begin, ids.begin() + end);
}

}  // namespace

stop_search::stop_search(const tokenizer& tok, const std::vector<std::string>& stop) : tok_(tok), stop_(stop) {
    for (const auto& s : stop_) max_stop_len_ = std::max(max_stop_len_, s.size());
}

bool stop_search::add(const std::vector<int32_t>& tokens) {
    const size_t n = tokens.size();
    const std::string window = tok_.decode(slice(tokens, prefix_, n), true);  // tokens [prefix_, n)
    bool whole = false;
    if (window.size() >= prefix_text_.size() && window.compare(0, prefix_text_.size(), prefix_text_) == 0) {
        text_ = committed_ + window.substr(prefix_text_.size());
    } else {  // a decoder whose window text does not extend its prefix: decode everything (exact)
        text_ = tok_.decode(tokens, true);
        whole = true;
    }
    if (!ends_with_replacement(text_)) {  // commit: the next window starts where this one's new tokens did
        committed_ = text_;
        const size_t old_read = read_;
        prefix_ = whole ? 0 : old_read;
        read_ = n;
        prefix_text_ = prefix_ == 0 ? text_ : tok_.decode(slice(tokens, prefix_, read_), true);
    }
    // Nothing ends inside the stable text searched before; search from max_stop_len - 1 bytes before its end.
    // (After a whole decode, everything: the earlier text may have changed.)
    const size_t from = whole ? 0 : searched_ + 1 > max_stop_len_ ? searched_ + 1 - max_stop_len_ : 0;
    size_t best = std::string::npos;
    for (const auto& s : stop_) {
        const size_t at = text_.find(s, from);
        if (at < best) best = at;
    }
    if (best != std::string::npos) {
        text_.resize(best);
        return true;
    }
    searched_ = committed_.size();
    return false;
}

}  // namespace cai

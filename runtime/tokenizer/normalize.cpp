#include "tokenizer/normalize.h"

#include <unicode/ubrk.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <cstring>
#include <memory>

#include "core/error.h"
#include "tokenizer/text.h"

namespace cai::tok {

namespace {

bool is_ascii(const std::string& s) {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

std::u16string to_utf16(const std::string& s) {
    UErrorCode status = U_ZERO_ERROR;
    int32_t len16 = 0;
    u_strFromUTF8(nullptr, 0, &len16, s.data(), int32_t(s.size()), &status);
    if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status)) fail("tokenizer: invalid UTF-8 input");
    status = U_ZERO_ERROR;
    std::u16string out(size_t(len16), u'\0');
    u_strFromUTF8(reinterpret_cast<UChar*>(&out[0]), len16, nullptr, s.data(), int32_t(s.size()), &status);
    if (U_FAILURE(status)) fail("tokenizer: invalid UTF-8 input");
    return out;
}

std::string to_utf8(const UChar* p, int32_t n) {
    UErrorCode status = U_ZERO_ERROR;
    int32_t len8 = 0;
    u_strToUTF8(nullptr, 0, &len8, p, n, &status);
    status = U_ZERO_ERROR;
    std::string out(size_t(len8), '\0');
    u_strToUTF8(&out[0], len8, nullptr, p, n, &status);
    if (U_FAILURE(status)) fail("tokenizer: UTF-16 to UTF-8 conversion failed: ", u_errorName(status));
    return out;
}

// General category C* other than \t \n \r (tokenizers' is_control).
bool is_control(uint32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    int8_t type = u_charType(static_cast<UChar32>(cp));
    return type == U_CONTROL_CHAR || type == U_FORMAT_CHAR || type == U_SURROGATE || type == U_PRIVATE_USE_CHAR ||
           type == U_UNASSIGNED;
}

// The CJK Unified Ideographs blocks BERT pads with spaces.
bool is_chinese_char(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

}  // namespace

std::string normalize_form(const std::string& s, const std::string& form) {
    if (form == "NFC") return text::nfc(s);
    if (is_ascii(s)) return s;  // ASCII is invariant under every form
    UErrorCode status = U_ZERO_ERROR;
    const UNormalizer2* n = form == "NFD"    ? unorm2_getNFDInstance(&status)
                            : form == "NFKD" ? unorm2_getNFKDInstance(&status)
                            : form == "NFKC" ? unorm2_getNFKCInstance(&status)
                                             : nullptr;
    if (!n) fail("tokenizer: unknown normalization form \"", form, "\"");
    if (U_FAILURE(status)) fail("tokenizer: ICU ", form, " normalizer unavailable: ", u_errorName(status));
    std::u16string in = to_utf16(s);
    std::u16string out(in.size() * 4 + 16, u'\0');
    int32_t len = unorm2_normalize(n, reinterpret_cast<const UChar*>(in.data()), int32_t(in.size()),
                                   reinterpret_cast<UChar*>(&out[0]), int32_t(out.size()), &status);
    if (U_FAILURE(status)) fail("tokenizer: ", form, " normalization failed: ", u_errorName(status));
    return to_utf8(reinterpret_cast<const UChar*>(out.data()), len);
}

std::string lowercase(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            out += char(c >= 'A' && c <= 'Z' ? c + 32 : c);
            ++i;
            continue;
        }
        uint32_t cp = text::next_code_point(s, i);
        // One code point at a time: no context (Final_Sigma), as Rust's char::to_lowercase.
        UChar src[2];
        int32_t n = 0;
        U16_APPEND_UNSAFE(src, n, static_cast<UChar32>(cp));
        UChar dst[8];
        UErrorCode status = U_ZERO_ERROR;
        int32_t len = u_strToLower(dst, 8, src, n, "", &status);
        if (U_FAILURE(status)) {
            text::append_utf8(out, cp);
            continue;
        }
        out += to_utf8(dst, len);
    }
    return out;
}

std::string strip_accents(const std::string& s) {
    if (is_ascii(s)) return s;
    std::string d = normalize_form(s, "NFD"), out;
    for (size_t i = 0; i < d.size();) {
        size_t start = i;
        uint32_t cp = text::next_code_point(d, i);
        if (u_charType(static_cast<UChar32>(cp)) != U_NON_SPACING_MARK) out.append(d, start, i - start);
    }
    return out;
}

std::string strip(const std::string& s, bool left, bool right) {
    size_t a = 0, b = s.size();
    if (left) {
        while (a < b) {
            size_t i = a;
            if (!text::is_whitespace(text::next_code_point(s, i))) break;
            a = i;
        }
    }
    if (right) {
        while (b > a) {
            size_t start = b - 1;
            while (start > a && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
            size_t i = start;
            if (!text::is_whitespace(text::next_code_point(s, i))) break;
            b = start;
        }
    }
    return s.substr(a, b - a);
}

std::string bert_normalize(const std::string& input, const bert_normalizer_options& o) {
    std::string s;
    s.reserve(input.size());
    for (size_t i = 0; i < input.size();) {
        size_t start = i;
        uint32_t cp = text::next_code_point(input, i);
        if (o.clean_text) {
            if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
            if (text::is_whitespace(cp)) {
                s += ' ';
                continue;
            }
        }
        if (o.handle_chinese_chars && is_chinese_char(cp)) {
            s += ' ';
            s.append(input, start, i - start);
            s += ' ';
            continue;
        }
        s.append(input, start, i - start);
    }
    const bool accents = o.strip_accents < 0 ? o.lowercase : o.strip_accents == 1;
    if (accents) s = strip_accents(s);
    if (o.lowercase) s = lowercase(s);
    return s;
}

bool is_bert_punctuation(uint32_t cp) {
    if (cp < 0x80) return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
                          (cp >= 123 && cp <= 126);
    return u_ispunct(static_cast<UChar32>(cp));
}

namespace {

// Words between whitespace; with isolate_punctuation each punctuation
// character is also a word of its own (BertPreTokenizer).
void split_words(const std::string& s, bool isolate_punctuation, std::vector<std::string>& words) {
    std::string current;
    for (size_t i = 0; i < s.size();) {
        size_t start = i;
        uint32_t cp = text::next_code_point(s, i);
        if (text::is_whitespace(cp)) {
            if (!current.empty()) words.push_back(std::move(current));
            current.clear();
        } else if (isolate_punctuation && is_bert_punctuation(cp)) {
            if (!current.empty()) words.push_back(std::move(current));
            current.clear();
            words.push_back(s.substr(start, i - start));
        } else {
            current.append(s, start, i - start);
        }
    }
    if (!current.empty()) words.push_back(std::move(current));
}

}  // namespace

void bert_pre_tokenize(const std::string& s, std::vector<std::string>& words) { split_words(s, true, words); }

void whitespace_split(const std::string& s, std::vector<std::string>& words) { split_words(s, false, words); }

void punctuation_split(const std::string& s, const std::string& behavior, std::vector<std::string>& words) {
    // Runs of (is punctuation, text); each punctuation character is its own match.
    std::vector<std::pair<bool, std::string>> parts;
    for (size_t i = 0; i < s.size();) {
        size_t start = i;
        uint32_t cp = text::next_code_point(s, i);
        bool punct = is_bert_punctuation(cp);
        if (!punct && !parts.empty() && !parts.back().first)
            parts.back().second.append(s, start, i - start);
        else
            parts.push_back({punct, s.substr(start, i - start)});
    }
    std::vector<std::string> out;
    if (behavior == "isolated") {
        for (auto& p : parts) out.push_back(p.second);
    } else if (behavior == "removed") {
        for (auto& p : parts)
            if (!p.first) out.push_back(p.second);
    } else if (behavior == "merged_with_previous") {
        bool previous_match = false;
        for (auto& p : parts) {
            if (p.first && !previous_match && !out.empty()) out.back() += p.second;
            else out.push_back(p.second);
            previous_match = p.first;
        }
    } else if (behavior == "merged_with_next") {
        bool previous_match = false;
        std::vector<std::string> rev;
        for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
            if (it->first && !previous_match && !rev.empty()) rev.back() = it->second + rev.back();
            else rev.push_back(it->second);
            previous_match = it->first;
        }
        out.assign(rev.rbegin(), rev.rend());
    } else if (behavior == "contiguous") {
        bool previous_match = false;
        for (auto& p : parts) {
            if (p.first == previous_match && !out.empty()) out.back() += p.second;
            else out.push_back(p.second);
            previous_match = p.first;
        }
    } else {
        fail("tokenizer: Punctuation behavior \"", behavior, "\" is not supported");
    }
    for (auto& w : out)
        if (!w.empty()) words.push_back(std::move(w));
}

precompiled_charsmap::precompiled_charsmap(const std::string& bytes, const std::string& where) {
    if (bytes.size() < 4) fail(where, ": the precompiled charsmap is shorter than its 4-byte header");
    uint32_t trie_bytes = 0;
    std::memcpy(&trie_bytes, bytes.data(), 4);  // little-endian, as sentencepiece writes it
    if (trie_bytes % 4 != 0 || 4 + (size_t)trie_bytes > bytes.size())
        fail(where, ": the precompiled charsmap's trie size ", trie_bytes, " does not fit its ", bytes.size(), " bytes");
    trie_.resize(trie_bytes / 4);
    std::memcpy(trie_.data(), bytes.data() + 4, trie_bytes);
    normalized_ = bytes.substr(4 + trie_bytes);
    if (trie_.empty()) fail(where, ": the precompiled charsmap has an empty trie");
}

// Darts-clone common prefix search; the first (shortest) match's string.
bool precompiled_charsmap::transform(const char* p, size_t n, std::string& out) const {
    auto offset = [](uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); };
    auto label = [](uint32_t unit) { return unit & ((1u << 31) | 0xFFu); };
    auto has_leaf = [](uint32_t unit) { return ((unit >> 8) & 1u) == 1u; };
    auto value = [](uint32_t unit) { return unit & ((1u << 31) - 1); };
    size_t node = 0;
    uint32_t unit = trie_[node];
    node ^= offset(unit);
    for (size_t i = 0; i < n; ++i) {
        const uint32_t c = static_cast<unsigned char>(p[i]);
        if (c == 0) break;
        node ^= c;
        if (node >= trie_.size()) return false;
        unit = trie_[node];
        if (label(unit) != c) return false;
        node ^= offset(unit);
        if (node >= trie_.size()) return false;
        if (has_leaf(unit)) {
            size_t index = value(trie_[node]);
            if (index >= normalized_.size()) return false;
            size_t end = normalized_.find('\0', index);
            out.append(normalized_, index, (end == std::string::npos ? normalized_.size() : end) - index);
            return true;
        }
    }
    return false;
}

std::string precompiled_charsmap::normalize(const std::string& s) const {
    std::string out;
    out.reserve(s.size());
    if (s.empty()) return out;
    // Grapheme clusters by ICU's character break iterator, over UTF-16 offsets mapped back to UTF-8.
    std::u16string u = to_utf16(s);
    std::vector<size_t> byte_at(u.size() + 1, s.size());
    for (size_t i = 0, k = 0; i < s.size();) {
        byte_at[k] = i;
        uint32_t cp = text::next_code_point(s, i);
        k += cp > 0xFFFF ? 2 : 1;
    }
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<UBreakIterator, void (*)(UBreakIterator*)> it(
        ubrk_open(UBRK_CHARACTER, "", reinterpret_cast<const UChar*>(u.data()), int32_t(u.size()), &status),
        ubrk_close);
    if (U_FAILURE(status)) fail("tokenizer: ICU grapheme iterator unavailable: ", u_errorName(status));
    int32_t start = ubrk_first(it.get());
    for (int32_t end = ubrk_next(it.get()); end != UBRK_DONE; start = end, end = ubrk_next(it.get())) {
        const size_t a = byte_at[size_t(start)], b = byte_at[size_t(end)];
        if (b - a < 6 && transform(s.data() + a, b - a, out)) continue;
        for (size_t i = a; i < b;) {
            size_t c = i;
            text::next_code_point(s, i);
            if (!transform(s.data() + c, i - c, out)) out.append(s, c, i - c);
        }
    }
    return out;
}

void wordpiece_model::add_piece(const std::string& piece, int32_t id) {
    if (id < 0) fail("tokenizer: WordPiece id ", id, " of \"", piece, "\" is negative");
    if ((size_t)id >= pieces.size()) pieces.resize(size_t(id) + 1);
    pieces[size_t(id)] = piece;
    vocab[piece] = id;
}

void wordpiece_model::encode_word(const std::string& word, std::vector<int32_t>& out) const {
    size_t chars = 0;
    for (size_t i = 0; i < word.size(); i += text::utf8_len(static_cast<unsigned char>(word[i]))) ++chars;
    auto unk = [&] {
        if (unk_id < 0) fail("tokenizer: WordPiece found no piece for \"", word, "\" and the model has no unk_token");
        out.push_back(unk_id);
    };
    if ((int64_t)chars > max_input_chars_per_word) return unk();
    std::vector<int32_t> found;
    size_t start = 0;
    while (start < word.size()) {
        size_t end = word.size();
        int32_t id = -1;
        while (start < end) {
            std::string piece = word.substr(start, end - start);
            if (start > 0) piece = continuing_subword_prefix + piece;
            auto it = vocab.find(piece);
            if (it != vocab.end()) {
                id = it->second;
                break;
            }
            // Drop the last character.
            --end;
            while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80) --end;
        }
        if (id < 0) return unk();
        found.push_back(id);
        start = end;
    }
    out.insert(out.end(), found.begin(), found.end());
}

}  // namespace cai::tok

#include "tokenizer/pipeline.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "core/error.h"
#include "core/strings.h"
#include "tokenizer/text.h"

namespace cai::tok {

// ---------------------------------------------------------------------- regex

class regex {
public:
    regex(const std::string& pattern, const std::string& where) {
        int code = 0;
        PCRE2_SIZE offset = 0;
        code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
        if (!code_) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(code, message, sizeof message);
            fail(where, ": regex \"", pattern, "\" does not compile at offset ", offset, ": ",
                 reinterpret_cast<const char*>(message));
        }
        pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
    }
    ~regex() { pcre2_code_free(code_); }
    regex(const regex&) = delete;
    regex& operator=(const regex&) = delete;

    std::vector<std::pair<size_t, size_t>> find_all(const std::string& s) const {
        std::vector<std::pair<size_t, size_t>> out;
        pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
        size_t pos = 0;
        while (pos <= s.size()) {
            int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos,
                                 PCRE2_NO_UTF_CHECK, md, nullptr);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                pcre2_match_data_free(md);
                PCRE2_UCHAR message[256];
                pcre2_get_error_message(rc, message, sizeof message);
                fail("tokenizer: regex match failed: ", reinterpret_cast<const char*>(message));
            }
            PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
            size_t start = ov[0], end = ov[1];
            if (end == start) {  // empty match: skip one character
                if (start >= s.size()) break;
                pos = start + text::utf8_len(static_cast<unsigned char>(s[start]));
                continue;
            }
            out.push_back({start, end});
            pos = end;
        }
        pcre2_match_data_free(md);
        return out;
    }

private:
    pcre2_code* code_ = nullptr;
};

std::shared_ptr<regex> compile_regex(const std::string& pattern, const std::string& where) {
    return std::make_shared<regex>(pattern, where);
}

std::shared_ptr<regex> literal_regex(const std::string& literal, const std::string& where) {
    return std::make_shared<regex>("\\Q" + literal + "\\E", where);
}

std::vector<std::pair<size_t, size_t>> find_all(const regex& re, const std::string& s) { return re.find_all(s); }

// ------------------------------------------------------------------- encoding

namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    if (from.empty()) return;
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
        out.append(s, pos, hit - pos);
        out += to;
    }
    out.append(s, pos, std::string::npos);
    s.swap(out);
}

// Hugging Face's Split pre-tokenizer over one piece.
void split_piece(const pre_tokenizer_step& step, const std::string& s, std::vector<std::string>& out) {
    struct part {
        size_t start, end;
        bool is_match;
    };
    std::vector<part> parts;
    size_t prev = 0;
    for (auto [start, end] : step.pattern->find_all(s)) {
        if (start > prev) parts.push_back({prev, start, false});
        parts.push_back({start, end, true});
        prev = end;
    }
    if (prev < s.size()) parts.push_back({prev, s.size(), false});
    if (step.invert)
        for (auto& p : parts) p.is_match = !p.is_match;

    std::vector<std::pair<size_t, size_t>> pieces;
    using B = pre_tokenizer_step;
    switch (step.behavior) {
        case B::isolated:
            for (auto& p : parts) pieces.push_back({p.start, p.end});
            break;
        case B::removed:
            for (auto& p : parts)
                if (!p.is_match) pieces.push_back({p.start, p.end});
            break;
        case B::merged_with_previous: {
            bool previous_match = false;
            for (auto& p : parts) {
                if (p.is_match && !previous_match && !pieces.empty())
                    pieces.back().second = p.end;
                else
                    pieces.push_back({p.start, p.end});
                previous_match = p.is_match;
            }
            break;
        }
        case B::merged_with_next: {
            bool previous_match = false;
            for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
                if (it->is_match && !previous_match && !pieces.empty())
                    pieces.back().first = it->start;
                else
                    pieces.push_back({it->start, it->end});
                previous_match = it->is_match;
            }
            std::reverse(pieces.begin(), pieces.end());
            break;
        }
        case B::contiguous: {
            bool previous_match = false;
            for (auto& p : parts) {
                if (p.is_match == previous_match && !pieces.empty())
                    pieces.back().second = p.end;
                else
                    pieces.push_back({p.start, p.end});
                previous_match = p.is_match;
            }
            break;
        }
    }
    for (auto [a, b] : pieces)
        if (b > a) out.push_back(s.substr(a, b - a));
}

const regex& gpt2_regex() {
    static const std::shared_ptr<regex> re = compile_regex(
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", "ByteLevel");
    return *re;
}

}  // namespace

std::string pipeline::normalize(const std::string& input) const {
    std::string s = input;
    for (const auto& n : normalizers) {
        switch (n.kind) {
            case normalizer_step::nfc:
                s = text::nfc(s);
                break;
            case normalizer_step::prepend:
                if (!s.empty()) s = n.a + s;
                break;
            case normalizer_step::replace:
                replace_all(s, n.a, n.b);
                break;
            case normalizer_step::replace_regex: {
                std::string out;
                size_t prev = 0;
                for (auto [a, b] : n.pattern->find_all(s)) {
                    out.append(s, prev, a - prev);
                    out += n.b;
                    prev = b;
                }
                out.append(s, prev, std::string::npos);
                s.swap(out);
                break;
            }
            case normalizer_step::bert:
                s = bert_normalize(s, n.bert_options);
                break;
            case normalizer_step::lowercase:
                s = tok::lowercase(s);
                break;
            case normalizer_step::strip_accents:
                s = tok::strip_accents(s);
                break;
            case normalizer_step::strip:
                s = tok::strip(s, n.left, n.right);
                break;
            case normalizer_step::nfd:
                s = normalize_form(s, "NFD");
                break;
            case normalizer_step::nfkd:
                s = normalize_form(s, "NFKD");
                break;
            case normalizer_step::nfkc:
                s = normalize_form(s, "NFKC");
                break;
            case normalizer_step::precompiled:
                s = n.charsmap->normalize(s);
                break;
        }
    }
    return s;
}

void pipeline::pre_tokenize(const std::string& s, bool first, std::vector<std::string>& words) const {
    std::vector<std::string> pieces{s}, next;
    for (const auto& step : pre_tokenizers) {
        next.clear();
        for (size_t k = 0; k < pieces.size(); ++k) {
            std::string p = pieces[k];
            switch (step.kind) {
                case pre_tokenizer_step::split:
                    split_piece(step, p, next);
                    break;
                case pre_tokenizer_step::byte_level: {
                    if (step.add_prefix_space && !starts_with(p, " ")) p = " " + p;
                    std::vector<std::string> parts;
                    if (step.use_regex) {
                        for (auto [a, b] : gpt2_regex().find_all(p)) parts.push_back(p.substr(a, b - a));
                    } else {
                        parts.push_back(p);
                    }
                    const auto& alphabet = text::byte_to_unicode();
                    for (const auto& part : parts) {
                        std::string mapped;
                        for (unsigned char c : part) mapped += alphabet[c];
                        if (!mapped.empty()) next.push_back(mapped);
                    }
                    break;
                }
                case pre_tokenizer_step::bert:
                    bert_pre_tokenize(p, next);
                    break;
                case pre_tokenizer_step::whitespace_split:
                    whitespace_split(p, next);
                    break;
                case pre_tokenizer_step::punctuation:
                    punctuation_split(p, step.punctuation_behavior, next);
                    break;
                case pre_tokenizer_step::metaspace: {
                    if (p.empty()) break;
                    replace_all(p, " ", step.replacement);
                    bool prepend = step.prepend_scheme == pre_tokenizer_step::always ||
                                   (step.prepend_scheme == pre_tokenizer_step::first && first && k == 0);
                    if (prepend && !starts_with(p, step.replacement)) p = step.replacement + p;
                    if (!step.split_on_replacement) {
                        if (!p.empty()) next.push_back(p);
                        break;
                    }
                    // MergedWithNext on the replacement character.
                    size_t start = 0;
                    for (size_t hit = p.find(step.replacement, 1); hit != std::string::npos;
                         hit = p.find(step.replacement, hit + step.replacement.size())) {
                        if (hit > start) next.push_back(p.substr(start, hit - start));
                        start = hit;
                    }
                    if (start < p.size()) next.push_back(p.substr(start));
                    break;
                }
            }
        }
        pieces.swap(next);
    }
    for (auto& p : pieces)
        if (!p.empty()) words.push_back(std::move(p));
}

std::vector<int32_t> pipeline::encode(const std::string& input, bool add_special_tokens) const {
    text::check_utf8(input, "tok:encode");
    std::vector<int32_t> ids;
    if (add_special_tokens) ids = prefix_ids;
    std::vector<segment> raw, normalized;
    std::vector<std::string> words;
    added.split(input, 0, false, raw);
    for (const segment& seg : raw) {
        if (seg.id >= 0) {
            ids.push_back(seg.id);
            continue;
        }
        normalized.clear();
        added.split(normalize(seg.text), seg.offset, true, normalized);
        for (const segment& part : normalized) {
            if (part.id >= 0) {
                ids.push_back(part.id);
                continue;
            }
            words.clear();
            pre_tokenize(part.text, part.offset == 0, words);
            for (const auto& w : words) {
                if (bpe)
                    bpe->encode_word(w, ids);
                else if (wordpiece)
                    wordpiece->encode_word(w, ids);
                else
                    unigram->encode_word(w, ids);
            }
        }
    }
    if (add_special_tokens) ids.insert(ids.end(), suffix_ids.begin(), suffix_ids.end());
    return ids;
}

void pipeline::encode_with_types(const std::string& text, const std::string* pair, bool add_special_tokens,
                                 std::vector<int32_t>& ids, std::vector<int32_t>& type_ids) const {
    ids.clear();
    type_ids.clear();
    const std::vector<template_item>& tmpl = pair ? pair_template : single_template;
    if (!add_special_tokens || (!pair && tmpl.empty())) {
        // No template: the sequences one after the other, B in segment 1 (as tokenizers does).
        ids = encode(text, add_special_tokens);
        type_ids.assign(ids.size(), 0);
        if (pair) {
            std::vector<int32_t> b = encode(*pair, false);
            ids.insert(ids.end(), b.begin(), b.end());
            type_ids.resize(ids.size(), pair_types_zero ? 0 : 1);
        }
        return;
    }
    if (tmpl.empty())
        fail(name, ": the post-processor has no pair template, so text pairs cannot be encoded; use a "
             "tokenizer.json whose post_processor is TemplateProcessing with \"pair\", BertProcessing or "
             "RobertaProcessing");
    std::vector<int32_t> a = encode(text, false), b;
    if (pair) b = encode(*pair, false);
    for (const template_item& item : tmpl) {
        const std::vector<int32_t>& part = item.sequence < 0 ? item.ids : item.sequence == 0 ? a : b;
        ids.insert(ids.end(), part.begin(), part.end());
        type_ids.resize(ids.size(), item.type_id);
    }
}

// ------------------------------------------------------------------- decoding

int32_t pipeline::model_size() const {
    return int32_t(bpe ? bpe->pieces.size() : wordpiece ? wordpiece->pieces.size() : unigram->pieces.size());
}

// The model's own piece for id (in range).
static const std::string& model_piece(const pipeline& p, int32_t id) {
    return p.bpe ? p.bpe->pieces[size_t(id)] : p.wordpiece ? p.wordpiece->pieces[size_t(id)] : p.unigram->pieces[size_t(id)];
}

int32_t pipeline::vocab_size() const {
    int32_t n = model_size();
    for (const auto& t : added.tokens()) n = std::max(n, t.id + 1);
    return n;
}

std::string pipeline::id_to_piece(int32_t id) const {
    if (const added_token* t = added.by_id(id)) return t->content;
    if (id < 0 || id >= model_size()) fail(name, ": id ", id, " is out of range [0, ", vocab_size(), ")");
    return model_piece(*this, id);
}

int32_t pipeline::piece_to_id(const std::string& piece) const {
    if (const added_token* t = added.by_content(piece)) return t->id;
    if (bpe) return bpe->id_of(piece);
    if (wordpiece) {
        auto it = wordpiece->vocab.find(piece);
        return it == wordpiece->vocab.end() ? -1 : it->second;
    }
    auto it = unigram->vocab.find(piece);
    return it == unigram->vocab.end() ? -1 : it->second;
}

std::string clean_up_tokenization(std::string s) {
    static const std::pair<const char*, const char*> rules[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (auto [from, to] : rules) replace_all(s, from, to);
    return s;
}

std::string pipeline::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        const int32_t id = ids[i];
        if (skip_special_tokens && added.is_special(id)) continue;
        if (id < 0 || id >= vocab_size())
            fail("tok:decode: ids[", i + 1, "] = ", id, " is out of range [0, ", vocab_size(), ")");
        const added_token* t = added.by_id(id);
        if (!t && id >= model_size()) continue;  // a hole in the vocabulary
        tokens.push_back(t ? t->content : model_piece(*this, id));
    }
    if (!has_decoder) {
        std::string out;
        for (size_t k = 0; k < tokens.size(); ++k) out += (k ? " " : "") + tokens[k];
        return clean_up_tokenization_spaces ? clean_up_tokenization(out) : out;
    }
    for (const auto& step : decoders) {
        switch (step.kind) {
            case decoder_step::byte_level: {
                std::string bytes;
                for (const auto& t : tokens) {
                    std::string mapped;
                    bool all = true;
                    for (size_t i = 0; i < t.size() && all;) {
                        int b = text::byte_from_unicode(text::next_code_point(t, i));
                        if (b < 0)
                            all = false;
                        else
                            mapped += char(b);
                    }
                    bytes += all ? mapped : t;
                }
                tokens.assign(1, text::utf8_lossy(bytes));
                break;
            }
            case decoder_step::replace:
                for (auto& t : tokens) replace_all(t, step.a, step.b);
                break;
            case decoder_step::byte_fallback: {
                std::vector<std::string> out;
                std::string pending;
                size_t pending_count = 0;
                auto flush = [&] {
                    if (!pending_count) return;
                    if (text::invalid_utf8_offset(pending) == std::string::npos) {
                        out.push_back(pending);
                    } else {
                        for (size_t k = 0; k < pending_count; ++k) out.push_back("\xEF\xBF\xBD");
                    }
                    pending.clear();
                    pending_count = 0;
                };
                for (auto& t : tokens) {
                    int b = parse_byte_piece(t);
                    if (b >= 0) {
                        pending += char(b);
                        ++pending_count;
                    } else {
                        flush();
                        out.push_back(std::move(t));
                    }
                }
                flush();
                tokens.swap(out);
                break;
            }
            case decoder_step::fuse: {
                std::string all;
                for (const auto& t : tokens) all += t;
                tokens.assign(1, all);
                break;
            }
            case decoder_step::strip:
                for (auto& t : tokens) {
                    int n = 0;
                    size_t a = 0;
                    while (n < step.start && t.compare(a, step.a.size(), step.a) == 0 && a < t.size()) {
                        a += step.a.size();
                        ++n;
                    }
                    size_t b = t.size();
                    n = 0;
                    while (n < step.stop && b >= a + step.a.size() &&
                           t.compare(b - step.a.size(), step.a.size(), step.a) == 0) {
                        b -= step.a.size();
                        ++n;
                    }
                    t = t.substr(a, b - a);
                }
                break;
            case decoder_step::wordpiece:
                for (size_t k = 0; k < tokens.size(); ++k) {
                    if (k != 0) {
                        if (starts_with(tokens[k], step.a)) tokens[k].erase(0, step.a.size());
                        else tokens[k] = " " + tokens[k];
                    }
                    if (step.cleanup) {
                        tokens[k] = clean_up_tokenization(tokens[k]);
                        replace_all(tokens[k], " do not", " don't");
                    }
                }
                break;
            case decoder_step::metaspace:
                for (size_t k = 0; k < tokens.size(); ++k) {
                    replace_all(tokens[k], step.a, " ");
                    if (k == 0 && step.prepend && starts_with(tokens[k], " ")) tokens[k].erase(0, 1);
                }
                break;
        }
    }
    std::string out;
    for (const auto& t : tokens) out += t;
    return clean_up_tokenization_spaces ? clean_up_tokenization(out) : out;
}

}  // namespace cai::tok

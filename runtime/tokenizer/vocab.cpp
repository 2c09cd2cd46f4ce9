#include "tokenizer/vocab.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <queue>

#include "core/error.h"
#include "tokenizer/text.h"

namespace cai::tok {

// ---------------------------------------------------------------- added_vocab

void added_vocab::add(const added_token& token) {
    if (token.content.empty()) fail("tokenizer: added token ", token.id, " has empty content");
    auto same_id = by_id_.find(token.id);
    if (same_id != by_id_.end() && tokens_[same_id->second].content != token.content)
        fail("tokenizer: added tokens \"", tokens_[same_id->second].content, "\" and \"", token.content,
             "\" have the same id ", token.id, "; every token needs its own id");
    auto it = by_content_.find(token.content);
    if (it != by_content_.end()) {
        by_id_.erase(tokens_[it->second].id);
        tokens_[it->second] = token;
        by_id_[token.id] = it->second;
        return;
    }
    size_t index = tokens_.size();
    tokens_.push_back(token);
    by_id_[token.id] = index;
    by_content_[token.content] = index;
    by_first_byte_[static_cast<unsigned char>(token.content[0])].push_back(index);
}

const added_token* added_vocab::by_id(int32_t id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const added_token* added_vocab::by_content(const std::string& content) const {
    auto it = by_content_.find(content);
    return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

bool added_vocab::is_special(int32_t id) const {
    const added_token* t = by_id(id);
    return t && t->special;
}

namespace {

uint32_t last_code_point(const std::string& s, size_t end) {
    size_t start = end;
    while (start > 0 && (static_cast<unsigned char>(s[start - 1]) & 0xC0) == 0x80) --start;
    if (start > 0) --start;
    size_t i = start;
    return text::next_code_point(s, i);
}

}  // namespace

void added_vocab::split(const std::string& text, size_t offset, bool normalized,
                        std::vector<segment>& out) const {
    size_t start_offset = 0;  // end of the last match
    size_t pos = 0;
    while (pos < text.size()) {
        // Leftmost-longest match at pos among the tokens of this pass.
        const added_token* best = nullptr;
        for (size_t index : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
            const added_token& t = tokens_[index];
            if (t.normalized != normalized) continue;
            if (best && t.content.size() <= best->content.size()) continue;
            if (text.compare(pos, t.content.size(), t.content) == 0) best = &t;
        }
        if (!best) {
            pos += text::utf8_len(static_cast<unsigned char>(text[pos]));
            continue;
        }
        size_t start = pos, stop = pos + best->content.size();
        pos = stop;
        if (best->single_word) {
            bool start_ok = start == 0 || !text::is_word_char(last_code_point(text, start));
            size_t j = stop;
            bool stop_ok = stop == text.size() || !text::is_word_char(text::next_code_point(text, j));
            if (!start_ok || !stop_ok) continue;
        }
        if (best->lstrip) {
            size_t s = start;
            while (s > start_offset) {
                size_t prev = s - 1;
                while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
                size_t j = prev;
                if (!text::is_whitespace(text::next_code_point(text, j))) break;
                s = prev;
            }
            start = s;
        }
        if (best->rstrip) {
            while (stop < text.size()) {
                size_t j = stop;
                if (!text::is_whitespace(text::next_code_point(text, j))) break;
                stop = j;
            }
            pos = stop;
        }
        if (start_offset < start) out.push_back({text.substr(start_offset, start - start_offset), -1, offset + start_offset});
        out.push_back({text.substr(start, stop - start), best->id, offset + start});
        start_offset = stop;
    }
    if (start_offset < text.size() || text.empty())
        out.push_back({text.substr(start_offset), -1, offset + start_offset});
}

// ------------------------------------------------------------------ bpe_model

std::string byte_piece(unsigned char b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    return buf;
}

int parse_byte_piece(const std::string& piece) {
    if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; ++k) {
        char c = piece[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

void bpe_model::add_piece(const std::string& piece, int32_t id) {
    if (id < 0) fail("tokenizer: negative id ", id, " for piece \"", piece, "\"");
    if (size_t(id) >= pieces.size()) pieces.resize(size_t(id) + 1);
    pieces[size_t(id)] = piece;
    vocab[piece] = id;
}

bool bpe_model::add_merge(const std::string& left, const std::string& right, int32_t rank) {
    int32_t a = id_of(left), b = id_of(right), r = id_of(left + right);
    if (a < 0 || b < 0 || r < 0) return false;
    merges_.emplace(key(a, b), merge{rank, r});  // the first (lowest) rank wins
    return true;
}

void bpe_model::encode_word(const std::string& word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (ignore_merges) {
        int32_t whole = id_of(word);
        if (whole >= 0) {
            out.push_back(whole);
            return;
        }
    }
    // Initial symbols: one per character; unknown characters become byte
    // pieces (byte_fallback) or unk (fused when fuse_unk), or are dropped.
    std::vector<int32_t> symbols;
    bool last_unk = false;
    for (size_t i = 0; i < word.size();) {
        size_t n = std::min(text::utf8_len(static_cast<unsigned char>(word[i])), word.size() - i);
        std::string ch = word.substr(i, n);
        i += n;
        int32_t id = id_of(ch);
        if (id >= 0) {
            symbols.push_back(id);
            last_unk = false;
            continue;
        }
        if (byte_fallback) {
            std::vector<int32_t> bytes;
            for (unsigned char b : ch) {
                int32_t bid = id_of(byte_piece(b));
                if (bid < 0) break;
                bytes.push_back(bid);
            }
            if (bytes.size() == ch.size()) {
                symbols.insert(symbols.end(), bytes.begin(), bytes.end());
                last_unk = false;
                continue;
            }
        }
        if (unk_id >= 0) {
            if (!(fuse_unk && last_unk)) symbols.push_back(unk_id);
            last_unk = true;
        }
    }
    // Merge the adjacent pair of lowest rank (leftmost on ties) until none
    // applies: symbols form a linked list, candidate pairs wait in a heap
    // ordered by (rank, position); stale entries are skipped when popped.
    const int n = int(symbols.size());
    if (n > 1) {
        std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
        for (int k = 0; k < n; ++k) {
            prev[size_t(k)] = k - 1;
            next[size_t(k)] = k + 1 < n ? k + 1 : -1;
        }
        struct candidate {
            int32_t rank;
            int pos;
            int32_t left, right;
            bool operator>(const candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
        };
        std::priority_queue<candidate, std::vector<candidate>, std::greater<candidate>> heap;
        auto push = [&](int pos) {
            int nx = next[size_t(pos)];
            if (nx < 0) return;
            auto it = merges_.find(key(symbols[size_t(pos)], symbols[size_t(nx)]));
            if (it != merges_.end()) heap.push({it->second.rank, pos, symbols[size_t(pos)], symbols[size_t(nx)]});
        };
        for (int k = 0; k + 1 < n; ++k) push(k);
        std::vector<bool> alive(static_cast<size_t>(n), true);
        while (!heap.empty()) {
            candidate c = heap.top();
            heap.pop();
            int pos = c.pos, nx = next[size_t(pos)];
            if (!alive[size_t(pos)] || nx < 0 || symbols[size_t(pos)] != c.left || symbols[size_t(nx)] != c.right)
                continue;
            symbols[size_t(pos)] = merges_.at(key(c.left, c.right)).result;
            alive[size_t(nx)] = false;
            next[size_t(pos)] = next[size_t(nx)];
            if (next[size_t(pos)] >= 0) prev[size_t(next[size_t(pos)])] = pos;
            if (prev[size_t(pos)] >= 0) push(prev[size_t(pos)]);
            push(pos);
        }
        for (int k = 0; k >= 0; k = next[size_t(k)]) out.push_back(symbols[size_t(k)]);
        return;
    }
    out.insert(out.end(), symbols.begin(), symbols.end());
}

// -------------------------------------------------------------- unigram_model

void unigram_model::add_piece(const std::string& piece, double score) {
    int32_t id = int32_t(pieces.size());
    pieces.push_back(piece);
    scores.push_back(score);
    vocab.emplace(piece, id);
    max_piece_bytes_ = std::max(max_piece_bytes_, piece.size());
}

void unigram_model::finish() {
    min_score_ = scores.empty() ? 0 : *std::min_element(scores.begin(), scores.end());
}

void unigram_model::encode_word(const std::string& word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    // Viterbi over byte positions at character boundaries. An unknown
    // character costs min_score - 10 (sentencepiece's kUnkPenalty).
    const double unk_score = min_score_ - 10.0;
    const size_t n = word.size();
    std::vector<double> best(n + 1, -std::numeric_limits<double>::infinity());
    std::vector<int32_t> best_id(n + 1, -1);
    std::vector<size_t> best_start(n + 1, 0);
    best[0] = 0;
    for (size_t start = 0; start < n; start += text::utf8_len(static_cast<unsigned char>(word[start]))) {
        if (best[start] == -std::numeric_limits<double>::infinity()) continue;
        size_t char_len = std::min(text::utf8_len(static_cast<unsigned char>(word[start])), n - start);
        bool single_char_found = false;
        for (size_t end = start + char_len; end <= n && end - start <= max_piece_bytes_;
             end += end < n ? text::utf8_len(static_cast<unsigned char>(word[end])) : 1) {
            auto it = vocab.find(word.substr(start, end - start));
            if (it != vocab.end()) {
                if (end == start + char_len) single_char_found = true;
                double s = best[start] + scores[size_t(it->second)];
                if (s > best[end]) {
                    best[end] = s;
                    best_id[end] = it->second;
                    best_start[end] = start;
                }
            }
            if (end >= n) break;
        }
        if (!single_char_found) {
            size_t end = start + char_len;
            double s = best[start] + unk_score;
            if (s > best[end]) {
                best[end] = s;
                best_id[end] = -1;  // unknown
                best_start[end] = start;
            }
        }
    }
    // Back-track, fusing consecutive unknowns as Hugging Face's Unigram does.
    std::vector<std::pair<size_t, int32_t>> path;  // (start, id or -1)
    for (size_t end = n; end > 0; end = best_start[end]) path.push_back({best_start[end], best_id[end]});
    std::reverse(path.begin(), path.end());
    for (size_t k = 0; k < path.size(); ++k) {
        if (path[k].second >= 0) {
            out.push_back(path[k].second);
            continue;
        }
        size_t start = path[k].first;
        while (k + 1 < path.size() && path[k + 1].second < 0) ++k;
        size_t end = k + 1 < path.size() ? path[k + 1].first : n;
        if (byte_fallback) {
            std::vector<int32_t> bytes;
            for (size_t i = start; i < end; ++i) {
                auto it = vocab.find(byte_piece(static_cast<unsigned char>(word[i])));
                if (it == vocab.end()) break;
                bytes.push_back(it->second);
            }
            if (bytes.size() == end - start) {
                out.insert(out.end(), bytes.begin(), bytes.end());
                continue;
            }
        }
        out.push_back(unk_id);
    }
}

}  // namespace cai::tok

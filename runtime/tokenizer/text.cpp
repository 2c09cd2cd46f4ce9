#include "tokenizer/text.h"

#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/uchar.h>

#include <array>
#include <unordered_map>

#include "core/error.h"

namespace cai::text {

uint32_t next_code_point(const std::string& s, size_t& i) {
    unsigned char c = s[i];
    size_t n = utf8_len(c);
    if (n == 1 || i + n > s.size()) {
        ++i;
        return c;
    }
    uint32_t cp = c & (0xFF >> (n + 1));
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += n;
    return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 with *maximal set to the
// length of the maximal invalid subpart (at least 1), following the Unicode
// "substitution of maximal subparts" practice that Rust also uses.
size_t valid_sequence(const std::string& s, size_t i, size_t* maximal) {
    const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = at(i);
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *maximal = 1;
        return 0;
    }
    size_t k = 1;
    for (; k <= need; ++k) {
        if (i + k >= s.size()) break;
        unsigned char b = at(i + k);
        unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) break;
    }
    if (k == need + 1) return need + 1;
    *maximal = k;
    return 0;
}

}  // namespace

size_t invalid_utf8_offset(const std::string& s) {
    size_t maximal = 0;
    for (size_t i = 0; i < s.size();) {
        size_t n = valid_sequence(s, i, &maximal);
        if (n == 0) return i;
        i += n;
    }
    return std::string::npos;
}

void check_utf8(const std::string& s, const char* what) {
    size_t bad = invalid_utf8_offset(s);
    if (bad != std::string::npos) fail(what, ": text is not valid UTF-8 (byte ", bad, ")");
}

std::string utf8_lossy(const std::string& bytes) {
    std::string out;
    out.reserve(bytes.size());
    size_t maximal = 0;
    for (size_t i = 0; i < bytes.size();) {
        size_t n = valid_sequence(bytes, i, &maximal);
        if (n == 0) {
            out += "\xEF\xBF\xBD";
            i += maximal;
        } else {
            out.append(bytes, i, n);
            i += n;
        }
    }
    return out;
}

bool is_whitespace(uint32_t cp) {
    switch (cp) {
        case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
        case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
            return true;
        default:
            return cp >= 0x2000 && cp <= 0x200A;
    }
}

bool is_word_char(uint32_t cp) { return cp == '_' || u_isalnum(static_cast<UChar32>(cp)); }

std::string nfc(const std::string& s) {
    bool ascii = true;
    for (unsigned char c : s) ascii &= c < 0x80;
    if (ascii) return s;  // ASCII is always NFC
    UErrorCode status = U_ZERO_ERROR;
    const UNormalizer2* normalizer = unorm2_getNFCInstance(&status);
    if (U_FAILURE(status)) fail("tokenizer: ICU NFC normalizer unavailable: ", u_errorName(status));
    int32_t len16 = 0;
    u_strFromUTF8(nullptr, 0, &len16, s.data(), int32_t(s.size()), &status);
    if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status)) fail("tokenizer: NFC: invalid UTF-8 input");
    status = U_ZERO_ERROR;
    std::u16string in(size_t(len16), u'\0');
    u_strFromUTF8(reinterpret_cast<UChar*>(&in[0]), len16, nullptr, s.data(), int32_t(s.size()), &status);
    if (unorm2_isNormalized(normalizer, reinterpret_cast<const UChar*>(in.data()), len16, &status) &&
        U_SUCCESS(status))
        return s;
    status = U_ZERO_ERROR;
    std::u16string norm(size_t(len16) * 3 + 16, u'\0');
    int32_t nlen = unorm2_normalize(normalizer, reinterpret_cast<const UChar*>(in.data()), len16,
                                    reinterpret_cast<UChar*>(&norm[0]), int32_t(norm.size()), &status);
    if (U_FAILURE(status)) fail("tokenizer: NFC normalization failed: ", u_errorName(status));
    int32_t len8 = 0;
    u_strToUTF8(nullptr, 0, &len8, reinterpret_cast<const UChar*>(norm.data()), nlen, &status);
    status = U_ZERO_ERROR;
    std::string out(size_t(len8), '\0');
    u_strToUTF8(&out[0], len8, nullptr, reinterpret_cast<const UChar*>(norm.data()), nlen, &status);
    if (U_FAILURE(status)) fail("tokenizer: NFC normalization failed: ", u_errorName(status));
    return out;
}

namespace {

struct byte_alphabet {
    std::vector<std::string> to_unicode = std::vector<std::string>(256);
    std::unordered_map<uint32_t, int> from_unicode;
    byte_alphabet() {
        // Printable bytes keep their code point; the others are moved to 256+n.
        int n = 0;
        for (int b = 0; b < 256; ++b) {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + n++);
            append_utf8(to_unicode[b], cp);
            from_unicode[cp] = b;
        }
    }
};

const byte_alphabet& alphabet() {
    static const byte_alphabet a;
    return a;
}

}  // namespace

const std::vector<std::string>& byte_to_unicode() { return alphabet().to_unicode; }

int byte_from_unicode(uint32_t cp) {
    const auto& m = alphabet().from_unicode;
    auto it = m.find(cp);
    return it == m.end() ? -1 : it->second;
}

}  // namespace cai::text

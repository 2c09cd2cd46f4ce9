// UTF-8 and Unicode helpers shared by the tokenizers: code point iteration,
// lossy decoding the way Rust's String::from_utf8_lossy does it, Unicode
// whitespace, NFC (ICU), and GPT-2's byte <-> printable character alphabet.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cai::text {

// Length of the UTF-8 sequence that starts with byte c (1 for invalid lead bytes).
inline size_t utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c >> 5) == 0x6) return 2;
    if ((c >> 4) == 0xE) return 3;
    if ((c >> 3) == 0x1E) return 4;
    return 1;
}

// Decodes the code point at s[i] (valid UTF-8 assumed) and advances i.
uint32_t next_code_point(const std::string& s, size_t& i);
void append_utf8(std::string& out, uint32_t cp);

// Byte offset of the first invalid UTF-8 sequence, or npos when valid.
size_t invalid_utf8_offset(const std::string& s);
// Throws cai::error "<what>: text is not valid UTF-8 (byte N)" when invalid.
void check_utf8(const std::string& s, const char* what);

// Invalid sequences become U+FFFD, one per maximal invalid subpart.
std::string utf8_lossy(const std::string& bytes);

bool is_whitespace(uint32_t cp);  // Unicode White_Space (Rust char::is_whitespace)
bool is_word_char(uint32_t cp);   // alphanumeric or '_' (regex \w), for single_word tokens

std::string nfc(const std::string& s);  // Unicode NFC of valid UTF-8

// GPT-2's byte-level alphabet: every byte maps to one printable code point.
const std::vector<std::string>& byte_to_unicode();      // 256 UTF-8 strings
int byte_from_unicode(uint32_t cp);                      // -1 when cp is not in the alphabet

}  // namespace cai::text

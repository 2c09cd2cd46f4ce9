// JSON text from files the user gave us (config.json, tokenizer.json, ...).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "core/error.h"

namespace cai {

// Arrays and objects nested deeper than this are refused before parsing:
// converting such a value (to Lua, or recursively) would overflow the stack.
constexpr size_t json_max_depth = 512;

// The offset of the first '[' or '{' nested deeper than max_depth in text
// (strings skipped), or std::string::npos when there is none.
inline size_t json_too_deep_at(const std::string& text, size_t max_depth = json_max_depth) {
    size_t depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) return i;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return std::string::npos;
}

// "line L, column C" of a byte offset (both 1-based).
inline std::string json_position(const std::string& text, size_t offset) {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < offset && i < text.size(); ++i) {
        if (text[i] == '\n') ++line, column = 1;
        else ++column;
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// Parses text; a syntax error is a cai::error "<where>: not valid JSON: ...".
inline nlohmann::json parse_json(const std::string& text, const std::string& where) {
    const size_t deep = json_too_deep_at(text);
    if (deep != std::string::npos)
        fail(where, ": not valid JSON for cairun: arrays/objects nested deeper than ", json_max_depth, " levels at ",
             json_position(text, deep));
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail(where, ": not valid JSON: ", e.what());
    }
}

}  // namespace cai

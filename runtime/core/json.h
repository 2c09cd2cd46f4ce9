// JSON text from files the user gave us (config.json, tokenizer.json, ...).
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

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

// Why text is not JSON in a way nlohmann would miss or crash on, or "" when
// it is not: arrays/objects nested deeper than json_max_depth (converting
// them recurses), or a NUL byte (nlohmann stops reading at one, so
// '{"a":1}<NUL>garbage' would pass).
inline std::string json_precheck(const std::string& text) {
    const size_t deep = json_too_deep_at(text);
    if (deep != std::string::npos)
        return "arrays/objects nested deeper than " + std::to_string(json_max_depth) + " levels at " +
               json_position(text, deep);
    const size_t nul = text.find('\0');
    if (nul != std::string::npos) return "a NUL byte at " + json_position(text, nul);
    return "";
}

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
inline std::string json_error_text(const std::string& what) {
    if (!what.empty() && what[0] == '[') {
        const size_t close = what.find("] ");
        if (close != std::string::npos) return what.substr(close + 2);
    }
    return what;
}

// Parses text; a syntax error is a cai::error "<where>: not valid JSON: ...".
// unique_keys: an object that names one key twice is an error too (the
// safetensors header, where a repeated tensor name would silently hide one).
inline nlohmann::json parse_json(const std::string& text, const std::string& where, bool unique_keys = false) {
    const std::string bad = json_precheck(text);
    if (!bad.empty()) fail(where, ": not valid JSON for cairun: ", bad);
    std::vector<std::vector<std::string>> keys;  // the keys of each open object
    std::string repeated;
    nlohmann::json::parser_callback_t on_event = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        using ev = nlohmann::json::parse_event_t;
        if (event == ev::object_start) keys.emplace_back();
        else if (event == ev::object_end) keys.pop_back();
        else if (event == ev::key && repeated.empty() && !keys.empty()) {
            const std::string& key = parsed.get_ref<const std::string&>();
            auto& seen = keys.back();
            if (std::find(seen.begin(), seen.end(), key) != seen.end()) repeated = key;
            else seen.push_back(key);
        }
        return true;
    };
    nlohmann::json j;
    try {
        j = unique_keys ? nlohmann::json::parse(text, on_event) : nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail(where, ": not valid JSON: ", json_error_text(e.what()));
    }
    if (!repeated.empty()) fail(where, ": the key \"", repeated, "\" appears twice in one object");
    return j;
}

// Typed fields of a JSON object (config.json and its kin): an absent or null
// field gives the default; a wrong type is an error naming where and the field.
// An integer may be written as an integral float (2.0), as Python writes some.
struct json_fields {
    const nlohmann::json& j;
    const std::string& where;

    bool present(const char* key) const { return j.contains(key) && !j[key].is_null(); }

    int64_t integer(const char* key, int64_t def) const {
        if (!present(key)) return def;
        const nlohmann::json& v = j[key];
        if (v.is_number_integer()) return v.get<int64_t>();
        if (v.is_number_float()) {
            const double d = v.get<double>();
            if (std::floor(d) == d && std::fabs(d) <= 9007199254740992.0) return static_cast<int64_t>(d);
        }
        fail(where, ": field \"", key, "\" must be an integer, got ", v.dump());
    }
    int64_t positive(const char* key, int64_t def) const {
        const int64_t n = integer(key, def);
        if (n <= 0) fail(where, ": field \"", key, "\" must be a positive integer, got ", n);
        return n;
    }
    double number(const char* key, double def) const {
        if (!present(key)) return def;
        const nlohmann::json& v = j[key];
        if (!v.is_number()) fail(where, ": field \"", key, "\" must be a number, got ", v.dump());
        return v.get<double>();
    }
    bool boolean(const char* key, bool def) const {
        if (!present(key)) return def;
        const nlohmann::json& v = j[key];
        if (!v.is_boolean()) fail(where, ": field \"", key, "\" must be true or false, got ", v.dump());
        return v.get<bool>();
    }
    std::string string(const char* key, const std::string& def) const {
        if (!present(key)) return def;
        const nlohmann::json& v = j[key];
        if (!v.is_string()) fail(where, ": field \"", key, "\" must be a string, got ", v.dump());
        return v.get<std::string>();
    }
    // One integer or a list of them (eos_token_id); empty when absent.
    std::vector<int64_t> int_or_list(const char* key) const {
        std::vector<int64_t> out;
        if (!present(key)) return out;
        const nlohmann::json& v = j[key];
        if (v.is_number_integer()) {
            out.push_back(v.get<int64_t>());
        } else if (v.is_array()) {
            for (const auto& x : v) {
                if (!x.is_number_integer()) fail(where, ": field \"", key, "\" must hold integers, got ", v.dump());
                out.push_back(x.get<int64_t>());
            }
        } else {
            fail(where, ": field \"", key, "\" must be an integer or a list of integers, got ", v.dump());
        }
        return out;
    }
};

}  // namespace cai

// JSON text from files the user gave us (config.json, tokenizer.json, ...).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "core/error.h"

namespace cai {

// Parses text; a syntax error is a cai::error "<where>: not valid JSON: ...".
inline nlohmann::json parse_json(const std::string& text, const std::string& where) {
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail(where, ": not valid JSON: ", e.what());
    }
}

}  // namespace cai

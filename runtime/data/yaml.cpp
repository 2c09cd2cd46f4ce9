// YAML reading with marks and guards; see yaml.h.
#include "data/yaml.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_set>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include "core/error.h"

namespace cai {
namespace {

int line_of_offset(const std::string& text, std::size_t offset) {
    int line = 1;
    for (std::size_t i = 0; i < offset && i < text.size(); ++i)
        if (text[i] == '\n') ++line;
    return line;
}

// Refuses NUL bytes and invalid UTF-8 (overlongs, surrogates, > U+10FFFF).
void check_text(const std::string& text, const std::string& name) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == 0)
            fail(name, ":", line_of_offset(text, i), ": refused: binary file (NUL byte at offset ", i,
                 "); expected a UTF-8 YAML text");
        if (c < 0x80) { ++i; continue; }
        int len = 0;
        uint32_t cp = 0, min = 0;
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        bool ok = len > 0 && i + len <= n;
        for (int k = 1; ok && k < len; ++k) {
            if ((s[i + k] & 0xC0) != 0x80) ok = false;
            else cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
        if (!ok)
            fail(name, ":", line_of_offset(text, i), ": refused: invalid UTF-8 at byte offset ", i,
                 " (a binary file?); expected a UTF-8 YAML text");
        i += len;
    }
}

yaml_mark to_mark(const YAML::Mark& m) {
    yaml_mark out;
    if (m.line >= 0) {
        out.line = m.line + 1;
        out.column = m.column + 1;
    }
    return out;
}

bool all_of(const std::string& s, std::size_t from, bool (*pred)(char)) {
    if (from >= s.size()) return false;
    for (std::size_t i = from; i < s.size(); ++i)
        if (!pred(s[i])) return false;
    return true;
}
bool is_dec(char c) { return c >= '0' && c <= '9'; }
bool is_oct(char c) { return c >= '0' && c <= '7'; }
bool is_hex(char c) { return is_dec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// YAML 1.2 core schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_core_float(const std::string& s) {
    std::size_t i = 0, n = s.size();
    if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
    std::size_t int_digits = 0, frac_digits = 0;
    while (i < n && is_dec(s[i])) { ++i; ++int_digits; }
    if (i < n && s[i] == '.') {
        ++i;
        while (i < n && is_dec(s[i])) { ++i; ++frac_digits; }
    }
    if (int_digits == 0 && frac_digits == 0) return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
        std::size_t exp_digits = 0;
        while (i < n && is_dec(s[i])) { ++i; ++exp_digits; }
        if (exp_digits == 0) return false;
    }
    return i == n;
}

// Resolves a plain scalar by the core schema; true when it is not a string.
bool resolve_plain(const std::string& s, yaml_node& out) {
    if (s == "true" || s == "True" || s == "TRUE") {
        out.type = yaml_node::kind::boolean;
        out.boolean = true;
        return true;
    }
    if (s == "false" || s == "False" || s == "FALSE") {
        out.type = yaml_node::kind::boolean;
        out.boolean = false;
        return true;
    }
    if (s == "null" || s == "Null" || s == "NULL" || s == "~" || s.empty()) {
        out.type = yaml_node::kind::null;
        return true;
    }
    std::size_t sign = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    if (s.compare(sign, std::string::npos, ".inf") == 0 || s.compare(sign, std::string::npos, ".Inf") == 0 ||
        s.compare(sign, std::string::npos, ".INF") == 0) {
        out.type = yaml_node::kind::number;
        out.number = (sign && s[0] == '-') ? -std::numeric_limits<double>::infinity()
                                           : std::numeric_limits<double>::infinity();
        return true;
    }
    if (s == ".nan" || s == ".NaN" || s == ".NAN") {
        out.type = yaml_node::kind::number;
        out.number = std::numeric_limits<double>::quiet_NaN();
        return true;
    }
    if (s.size() > 2 && s[0] == '0' && s[1] == 'x' && all_of(s, 2, is_hex)) {
        out.type = yaml_node::kind::number;
        out.number = static_cast<double>(std::strtoull(s.c_str() + 2, nullptr, 16));
        return true;
    }
    if (s.size() > 2 && s[0] == '0' && s[1] == 'o' && all_of(s, 2, is_oct)) {
        out.type = yaml_node::kind::number;
        out.number = static_cast<double>(std::strtoull(s.c_str() + 2, nullptr, 8));
        return true;
    }
    if (is_core_float(s)) {
        out.type = yaml_node::kind::number;
        out.number = std::strtod(s.c_str(), nullptr);
        return true;
    }
    return false;
}

struct converter {
    const std::string& name;
    const yaml_limits& limits;
    std::size_t visited = 0;

    [[noreturn]] void refuse(const yaml_mark& m, const std::string& what) {
        if (m.line > 0) fail(name, ":", m.line, ":", m.column, ": ", what);
        fail(name, ": ", what);
    }

    yaml_node convert(const YAML::Node& n, int depth) {
        yaml_node out;
        out.mark = to_mark(n.Mark());
        if (++visited > limits.max_nodes)
            refuse(out.mark, "refused: more than " + std::to_string(limits.max_nodes) +
                                 " nodes once aliases are followed (an alias bomb?); expected a small document");
        if (depth > limits.max_depth)
            refuse(out.mark, "refused: nesting deeper than " + std::to_string(limits.max_depth) +
                                 " levels (or an alias that contains itself)");
        switch (n.Type()) {
        case YAML::NodeType::Undefined:
        case YAML::NodeType::Null:
            out.type = yaml_node::kind::null;
            return out;
        case YAML::NodeType::Scalar: {
            out.text = n.Scalar();
            const std::string& tag = n.Tag();
            if (tag == "?") {
                if (!resolve_plain(out.text, out)) out.type = yaml_node::kind::string;
            } else if (tag == "!" || tag == "tag:yaml.org,2002:str") {
                out.type = yaml_node::kind::string;
            } else if (tag == "tag:yaml.org,2002:int" || tag == "tag:yaml.org,2002:float" ||
                       tag == "tag:yaml.org,2002:bool" || tag == "tag:yaml.org,2002:null") {
                if (!resolve_plain(out.text, out))
                    refuse(out.mark, "value \"" + out.text + "\" does not match its tag " + tag);
            } else {
                refuse(out.mark, "unsupported tag \"" + tag + "\"; expected plain YAML without custom tags");
            }
            return out;
        }
        case YAML::NodeType::Sequence:
            out.type = yaml_node::kind::sequence;
            for (const auto& item : n) out.items.push_back(convert(item, depth + 1));
            return out;
        case YAML::NodeType::Map: {
            out.type = yaml_node::kind::mapping;
            std::unordered_set<std::string> seen;
            for (const auto& kv : n) {
                yaml_entry e;
                e.key_mark = to_mark(kv.first.Mark());
                if (!kv.first.IsScalar())
                    refuse(e.key_mark, "mapping key must be a plain string, got a " +
                                           std::string(kv.first.IsNull() ? "null" : "sequence or mapping"));
                e.key = kv.first.Scalar();
                if (!seen.insert(e.key).second) refuse(e.key_mark, "duplicate key \"" + e.key + "\"");
                if (++visited > limits.max_nodes)
                    refuse(e.key_mark, "refused: more than " + std::to_string(limits.max_nodes) +
                                           " nodes once aliases are followed (an alias bomb?)");
                e.value = convert(kv.second, depth + 1);
                out.entries.push_back(std::move(e));
            }
            return out;
        }
        }
        return out;
    }
};

}  // namespace

const char* yaml_kind_name(yaml_node::kind k) {
    switch (k) {
    case yaml_node::kind::null: return "null";
    case yaml_node::kind::boolean: return "boolean";
    case yaml_node::kind::number: return "number";
    case yaml_node::kind::string: return "string";
    case yaml_node::kind::sequence: return "sequence";
    case yaml_node::kind::mapping: return "mapping";
    }
    return "?";
}

yaml_node yaml_parse(const std::string& text, const std::string& name, const yaml_limits& limits) {
    if (text.size() > limits.max_bytes)
        fail(name, ": refused: ", text.size(), " bytes is larger than the limit of ", limits.max_bytes,
             " bytes for a YAML file");
    check_text(text, name);
    std::vector<YAML::Node> docs;
    try {
        docs = YAML::LoadAll(text);
    } catch (const YAML::DeepRecursion& e) {
        fail(name, ":", e.mark.line + 1, ":", e.mark.column + 1, ": refused: nesting deeper than ", e.depth(),
             " levels; expected a shallow document");
    } catch (const YAML::Exception& e) {
        if (e.mark.line >= 0) fail(name, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg);
        fail(name, ": ", e.msg);
    }
    if (docs.empty()) return yaml_node{};
    if (docs.size() > 1)
        fail(name, ": found ", docs.size(), " YAML documents (separated by ---); expected exactly one");
    converter c{name, limits};
    try {
        return c.convert(docs[0], 0);
    } catch (const YAML::Exception& e) {
        if (e.mark.line >= 0) fail(name, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg);
        fail(name, ": ", e.msg);
    }
}

yaml_node yaml_load_file(const std::string& path, const yaml_limits& limits) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
        fail(path, ": cannot open YAML file: ", std::strerror(errno));
    if (S_ISDIR(st.st_mode)) fail(path, ": is a directory; expected a YAML file");
    if (static_cast<std::size_t>(st.st_size) > limits.max_bytes)
        fail(path, ": refused: ", st.st_size, " bytes is larger than the limit of ", limits.max_bytes,
             " bytes for a YAML file");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open YAML file: ", std::strerror(errno));
    // Read at most one byte past the limit (the file may grow after stat).
    std::string text;
    text.resize(limits.max_bytes + 1);
    in.read(&text[0], static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    return yaml_parse(text, path, limits);
}

}  // namespace cai

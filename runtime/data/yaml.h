// YAML -> a small tree ready to become Lua tables, with the line and column
// of every node, so that a validator can say "x.yaml:12: principles[3].weight".
//
// Guards, all checked before or while converting, never after:
//   - files larger than limits.max_bytes are refused before parsing;
//   - binary input (a NUL byte, invalid UTF-8) is refused before parsing;
//   - an alias bomb is never expanded: every node visited, including each
//     visit through an alias, counts towards limits.max_nodes;
//   - nesting deeper than limits.max_depth is refused (this also stops
//     self-referencing aliases).
// Syntax errors read "FILE:LINE:COL: message" (1-based).
//
// Scalars follow the YAML 1.2 core schema: plain null/~/empty -> null,
// true/false -> boolean, decimal/0x/0o integers, floats, .inf/.nan -> number;
// quoted scalars and everything else are strings ("yes" stays a string).
// Mapping keys are strings; duplicate keys and non-scalar keys are errors.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace cai {

struct yaml_mark {
    int line = 0;    // 1-based; 0 when unknown
    int column = 0;  // 1-based
};

struct yaml_entry;

struct yaml_node {
    enum class kind { null, boolean, number, string, sequence, mapping };
    kind type = kind::null;
    bool boolean = false;
    double number = 0;
    std::string text;                // string value (and the source text of any scalar)
    yaml_mark mark;                  // where the node starts
    std::vector<yaml_node> items;    // sequence
    std::vector<yaml_entry> entries; // mapping, in file order
};

struct yaml_entry {
    std::string key;
    yaml_mark key_mark;  // where the key is written
    yaml_node value;
};

struct yaml_limits {
    std::size_t max_bytes = 4u << 20;  // 4 MiB
    std::size_t max_nodes = 100000;    // visits, aliases included
    int max_depth = 64;
};

// Parses one YAML document (an empty text gives a null node). `name` is the
// file name used in messages. Throws cai::error.
yaml_node yaml_parse(const std::string& text, const std::string& name, const yaml_limits& limits = {});

// Reads and parses a file; the size is checked before the file is read.
yaml_node yaml_load_file(const std::string& path, const yaml_limits& limits = {});

// "null", "boolean", "number", "string", "sequence", "mapping".
const char* yaml_kind_name(yaml_node::kind k);

}  // namespace cai

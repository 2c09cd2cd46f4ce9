// YAML reader: core-schema scalars, marks, and the guards against syntax
// errors, binary input, huge files and alias bombs.
#include <catch2/catch.hpp>

#include <string>

#include "core/error.h"
#include "data/yaml.h"

using cai::yaml_node;
using kind = cai::yaml_node::kind;

namespace {

std::string error_of(const std::string& text, const cai::yaml_limits& limits = {}) {
    try {
        cai::yaml_parse(text, "x.yaml", limits);
    } catch (const cai::error& e) {
        return e.what();
    }
    return "";
}

const yaml_node& field(const yaml_node& map, const std::string& key) {
    for (const auto& e : map.entries)
        if (e.key == key) return e.value;
    FAIL("no key " << key);
    return map;
}

}  // namespace

TEST_CASE("yaml: core schema scalars") {
    auto root = cai::yaml_parse(
        "a: 1\nb: -2.5e1\nc: true\nd: ~\ne:\nf: '1'\ng: yes\nh: 0x1F\ni: .inf\nj: \"null\"\nk: 0o17\n", "x.yaml");
    REQUIRE(root.type == kind::mapping);
    CHECK(field(root, "a").type == kind::number);
    CHECK(field(root, "a").number == 1);
    CHECK(field(root, "b").number == -25);
    CHECK(field(root, "c").type == kind::boolean);
    CHECK(field(root, "c").boolean);
    CHECK(field(root, "d").type == kind::null);
    CHECK(field(root, "e").type == kind::null);
    CHECK(field(root, "f").type == kind::string);  // quoted stays a string
    CHECK(field(root, "f").text == "1");
    CHECK(field(root, "g").type == kind::string);  // YAML 1.2: "yes" is not a boolean
    CHECK(field(root, "h").number == 31);
    CHECK(std::isinf(field(root, "i").number));
    CHECK(field(root, "j").type == kind::string);
    CHECK(field(root, "k").number == 15);
}

TEST_CASE("yaml: marks are 1-based lines and columns, keys in file order") {
    auto root = cai::yaml_parse("name: x\nprinciples:\n  - id: a\n    weight: high\n", "x.yaml");
    REQUIRE(root.entries.size() == 2);
    CHECK(root.entries[0].key == "name");
    CHECK(root.entries[1].key == "principles");
    CHECK(root.entries[1].key_mark.line == 2);
    const auto& list = field(root, "principles");
    REQUIRE(list.type == kind::sequence);
    REQUIRE(list.items.size() == 1);
    CHECK(list.items[0].mark.line == 3);
    CHECK(list.items[0].mark.column == 5);
    CHECK(list.items[0].entries[1].key == "weight");
    CHECK(list.items[0].entries[1].key_mark.line == 4);
    CHECK(list.items[0].entries[1].value.text == "high");
}

TEST_CASE("yaml: empty text is null") {
    CHECK(cai::yaml_parse("", "x.yaml").type == kind::null);
    CHECK(cai::yaml_parse("# only a comment\n", "x.yaml").type == kind::null);
}

TEST_CASE("yaml: syntax errors give FILE:LINE:COL") {
    std::string msg = error_of("a: 1\nb: [1, 2\nc: 3\n");
    CHECK(msg.rfind("x.yaml:", 0) == 0);
    INFO(msg);
    // line and column are numbers
    CHECK(msg.find("x.yaml:") == 0);
    std::string rest = msg.substr(7);
    CHECK(std::isdigit(static_cast<unsigned char>(rest[0])));
    CHECK(rest.find(':') != std::string::npos);
    CHECK(error_of("a: b: c\n").find("x.yaml:1:") == 0);
}

TEST_CASE("yaml: duplicate and complex keys are errors") {
    CHECK(error_of("a: 1\nb: 2\na: 3\n") == "x.yaml:3:1: duplicate key \"a\"");
    CHECK(error_of("? [1, 2]\n: x\n").find("mapping key must be a plain string") != std::string::npos);
}

TEST_CASE("yaml: binary and invalid UTF-8 are refused") {
    std::string nul = std::string("a: 1\nb: ") + '\0' + "x\n";
    CHECK(error_of(nul).find("x.yaml:2: refused: binary file (NUL byte at offset 8)") == 0);
    CHECK(error_of("a: \xff\xfe\n").find("invalid UTF-8 at byte offset 3") != std::string::npos);
    CHECK(error_of("a: \xc0\xaf\n").find("invalid UTF-8") != std::string::npos);  // overlong
    CHECK(cai::yaml_parse("a: caf\xc3\xa9\n", "x.yaml").entries[0].value.text == "caf\xc3\xa9");
}

TEST_CASE("yaml: size limit") {
    cai::yaml_limits small;
    small.max_bytes = 16;
    CHECK(error_of("a: 12345678901234567890\n", small).find("larger than the limit of 16 bytes") !=
          std::string::npos);
}

TEST_CASE("yaml: an alias bomb is refused at the node limit, ordinary aliases work") {
    auto ok = cai::yaml_parse("base: &b {x: 1}\nuse: *b\n", "x.yaml");
    CHECK(field(field(ok, "use"), "x").number == 1);

    std::string bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
    const char* names = "abcdefghij";
    for (int i = 1; i < 10; ++i) {
        bomb += std::string(1, names[i]) + ": &" + names[i] + " [";
        for (int k = 0; k < 9; ++k) bomb += std::string(k ? "," : "") + "*" + names[i - 1];
        bomb += "]\n";
    }
    // 9^10 nodes once expanded: refused when the visit counter passes the
    // limit, whichever limit is set, not after expanding the whole tree
    std::string msg = error_of(bomb);
    INFO(msg);
    CHECK(msg.find("alias bomb") != std::string::npos);
    CHECK(msg.find("x.yaml:") == 0);
    CHECK(msg.find("more than 100000 nodes") != std::string::npos);
    cai::yaml_limits few;
    few.max_nodes = 50;
    std::string early = error_of(bomb, few);
    INFO(early);
    CHECK(early.find("more than 50 nodes") != std::string::npos);
}

TEST_CASE("yaml: deep nesting and self-referencing aliases are refused") {
    std::string deep(200, '[');
    deep += std::string(200, ']');
    std::string msg = error_of(deep);
    CHECK(msg.find("x.yaml:") == 0);
    CHECK(msg.find("nesting deeper than 64 levels") != std::string::npos);
    // deeper than the parser's own guard: refused by the parser, not a stack overflow
    std::string very_deep = error_of(std::string(100000, '['));
    INFO(very_deep);
    CHECK(very_deep.find("x.yaml:1:") == 0);
    CHECK(very_deep.find("nesting deeper than") != std::string::npos);
    std::string self = error_of("a: &a [1, *a]\n");
    INFO(self);
    CHECK(!self.empty());
}

TEST_CASE("yaml: more than one document is an error") {
    CHECK(error_of("a: 1\n---\nb: 2\n").find("found 2 YAML documents") != std::string::npos);
}

TEST_CASE("yaml: missing file names the path") {
    try {
        cai::yaml_load_file("/nonexistent/dir/c.yaml");
        FAIL("no error");
    } catch (const cai::error& e) {
        CHECK(std::string(e.what()).find("/nonexistent/dir/c.yaml: cannot open YAML file") == 0);
    }
}

// cai._yaml: YAML files as Lua tables plus a side table of marks.
//
//   local value, marks = yaml.load(path, { max_bytes=, max_nodes=, max_depth= })
//   local value, marks = yaml.parse(text, name, opts)
//
// Mappings become tables with string keys, sequences 1..n lists, null
// becomes the sentinel yaml.null (so list positions and present-but-empty
// fields survive). marks is a weak-keyed table: marks[tbl] = { line=, column=,
// lines = { [key or index] = line }, columns = { ... }, keys = { k1, k2, ... } }
// (keys: a mapping's keys in file order).
#include <lua.hpp>

#include "core/error.h"
#include "data/yaml.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"

namespace {

using cai::lua_guarded;
using cai::yaml_node;

int null_sentinel_storage;
void* const null_sentinel = &null_sentinel_storage;

void push_mark_fields(lua_State* L, const cai::yaml_mark& m) {  // [mark]
    lua_pushinteger(L, m.line);
    lua_setfield(L, -2, "line");
    lua_pushinteger(L, m.column);
    lua_setfield(L, -2, "column");
}

// Pushes the value of n; registers marks of tables in the table at marks_index.
void push_node(lua_State* L, const yaml_node& n, int marks_index) {
    luaL_checkstack(L, 8, "yaml: nesting too deep");
    switch (n.type) {
    case yaml_node::kind::null:
        lua_pushlightuserdata(L, null_sentinel);
        return;
    case yaml_node::kind::boolean:
        lua_pushboolean(L, n.boolean);
        return;
    case yaml_node::kind::number:
        lua_pushnumber(L, n.number);
        return;
    case yaml_node::kind::string:
        lua_pushlstring(L, n.text.data(), n.text.size());
        return;
    case yaml_node::kind::sequence:
    case yaml_node::kind::mapping:
        break;
    }
    bool is_map = n.type == yaml_node::kind::mapping;
    std::size_t count = is_map ? n.entries.size() : n.items.size();
    lua_createtable(L, is_map ? 0 : static_cast<int>(count), is_map ? static_cast<int>(count) : 0);  // [t]
    int t = lua_gettop(L);
    lua_createtable(L, 0, 5);  // [t, mark]
    int mark = lua_gettop(L);
    push_mark_fields(L, n.mark);
    lua_createtable(L, is_map ? 0 : static_cast<int>(count), is_map ? static_cast<int>(count) : 0);
    int lines = lua_gettop(L);  // [t, mark, lines]
    lua_createtable(L, is_map ? 0 : static_cast<int>(count), is_map ? static_cast<int>(count) : 0);
    int columns = lua_gettop(L);  // [t, mark, lines, columns]
    if (is_map) {
        lua_createtable(L, static_cast<int>(count), 0);  // [t, mark, lines, columns, keys]
        int i = 0;
        for (const auto& e : n.entries) {
            lua_pushlstring(L, e.key.data(), e.key.size());
            lua_rawseti(L, -2, ++i);
            lua_pushlstring(L, e.key.data(), e.key.size());
            lua_pushinteger(L, e.key_mark.line);
            lua_rawset(L, lines);
            lua_pushlstring(L, e.key.data(), e.key.size());
            lua_pushinteger(L, e.key_mark.column);
            lua_rawset(L, columns);
            lua_pushlstring(L, e.key.data(), e.key.size());
            push_node(L, e.value, marks_index);  // [..., keys, key, value]
            lua_rawset(L, t);
        }
        lua_setfield(L, mark, "keys");  // [t, mark, lines, columns]
    } else {
        int i = 0;
        for (const auto& item : n.items) {
            ++i;
            lua_pushinteger(L, item.mark.line);
            lua_rawseti(L, lines, i);
            lua_pushinteger(L, item.mark.column);
            lua_rawseti(L, columns, i);
            push_node(L, item, marks_index);
            lua_rawseti(L, t, i);
        }
    }
    lua_setfield(L, mark, "columns");  // [t, mark, lines]
    lua_setfield(L, mark, "lines");    // [t, mark]
    lua_pushvalue(L, t);               // [t, mark, t]
    lua_insert(L, -2);                 // [t, t, mark]
    lua_rawset(L, marks_index);        // [t]
}

cai::yaml_limits read_limits(lua_State* L, int index, const char* fname) {
    cai::yaml_limits limits;
    if (lua_isnoneornil(L, index)) return limits;
    limits.max_bytes = static_cast<std::size_t>(
        cai::opt_integer(L, index, "max_bytes", static_cast<long long>(limits.max_bytes), fname));
    limits.max_nodes = static_cast<std::size_t>(
        cai::opt_integer(L, index, "max_nodes", static_cast<long long>(limits.max_nodes), fname));
    limits.max_depth = static_cast<int>(cai::opt_integer(L, index, "max_depth", limits.max_depth, fname));
    return limits;
}

// Pushes value and a fresh weak-keyed marks table.
int push_document(lua_State* L, const yaml_node& root) {
    lua_newtable(L);  // [marks]
    int marks = lua_gettop(L);
    lua_createtable(L, 0, 1);  // [marks, mt]
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, marks);   // [marks]
    push_node(L, root, marks);    // [marks, value]
    lua_insert(L, -2);            // [value, marks]
    return 2;
}

// yaml.load(path [, opts]) -> value, marks
int l_yaml_load(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = cai::arg_string(L, 1, "yaml.load", "path");
        cai::yaml_limits limits = read_limits(L, 2, "yaml.load");
        yaml_node root = cai::yaml_load_file(path, limits);
        return push_document(L, root);
    });
}

// yaml.parse(text, name [, opts]) -> value, marks
int l_yaml_parse(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string text = cai::arg_string(L, 1, "yaml.parse", "text");
        std::string name = lua_isnoneornil(L, 2) ? std::string("<string>") : cai::arg_string(L, 2, "yaml.parse", "name");
        cai::yaml_limits limits = read_limits(L, 3, "yaml.parse");
        yaml_node root = cai::yaml_parse(text, name, limits);
        return push_document(L, root);
    });
}

const luaL_Reg yaml_functions[] = {
    {"load", l_yaml_load},
    {"parse", l_yaml_parse},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_yaml(lua_State* L) {
    lua_newtable(L);  // [m]
    luaL_register(L, nullptr, yaml_functions);
    lua_pushlightuserdata(L, null_sentinel);
    lua_setfield(L, -2, "null");  // [m]
    return 1;
}

#include "lua/lua_util.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace cai {

std::string arg_string(lua_State* L, int index, const char* fname, const char* what) {
    if (lua_type(L, index) != LUA_TSTRING)
        fail(fname, ": argument #", index, " '", what, "' must be a string, got ", luaL_typename(L, index));
    size_t n;
    const char* s = lua_tolstring(L, index, &n);
    return std::string(s, n);
}

double arg_number(lua_State* L, int index, const char* fname, const char* what) {
    if (lua_type(L, index) != LUA_TNUMBER)
        fail(fname, ": argument #", index, " '", what, "' must be a number, got ", luaL_typename(L, index));
    return lua_tonumber(L, index);
}

long long arg_integer(lua_State* L, int index, const char* fname, const char* what) {
    double v = arg_number(L, index, fname, what);
    if (std::floor(v) != v || std::fabs(v) > 9007199254740992.0)
        fail(fname, ": argument #", index, " '", what, "' must be an integer, got ", v);
    return static_cast<long long>(v);
}

void arg_table(lua_State* L, int index, const char* fname, const char* what) {
    if (lua_type(L, index) != LUA_TTABLE)
        fail(fname, ": argument #", index, " '", what, "' must be a table, got ", luaL_typename(L, index));
}

void check_option_keys(lua_State* L, int index, const char* fname, const std::vector<std::string>& valid) {
    if (lua_isnoneornil(L, index)) return;
    if (lua_type(L, index) != LUA_TTABLE)
        fail(fname, ": options must be a table, got ", luaL_typename(L, index));
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        lua_pop(L, 1);  // [key]
        std::string key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : std::string("<non-string key>");
        if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
            lua_pop(L, 1);
            std::string list;
            for (const auto& v : valid) list += (list.empty() ? "" : ", ") + v;
            fail(fname, ": unknown option '", key, "' (valid options: ", list, ")");
        }
    }
}

namespace {

// Pushes options[key] (or nil) and returns its Lua type.
int push_option(lua_State* L, int index, const char* key) {
    if (lua_type(L, index) != LUA_TTABLE) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    lua_getfield(L, index, key);
    return lua_type(L, -1);
}

}  // namespace

std::string opt_string(lua_State* L, int index, const char* key, const std::string& def, const char* fname) {
    int t = push_option(L, index, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    if (t != LUA_TSTRING) {
        std::string got = luaL_typename(L, -1);
        lua_pop(L, 1);
        fail(fname, ": option '", key, "' must be a string, got ", got);
    }
    std::string v = lua_tostring(L, -1);
    lua_pop(L, 1);
    return v;
}

double opt_number(lua_State* L, int index, const char* key, double def, const char* fname) {
    int t = push_option(L, index, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    if (t != LUA_TNUMBER) {
        std::string got = luaL_typename(L, -1);
        lua_pop(L, 1);
        fail(fname, ": option '", key, "' must be a number, got ", got);
    }
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

long long opt_integer(lua_State* L, int index, const char* key, long long def, const char* fname) {
    double v = opt_number(L, index, key, static_cast<double>(def), fname);
    if (std::floor(v) != v || std::fabs(v) > 9007199254740992.0)
        fail(fname, ": option '", key, "' must be an integer (at most 2^53 in size), got ", v);
    return static_cast<long long>(v);
}

bool opt_boolean(lua_State* L, int index, const char* key, bool def, const char* fname) {
    int t = push_option(L, index, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    if (t != LUA_TBOOLEAN) {
        std::string got = luaL_typename(L, -1);
        lua_pop(L, 1);
        fail(fname, ": option '", key, "' must be a boolean, got ", got);
    }
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

std::vector<std::string> arg_string_list(lua_State* L, int index, const char* fname, const char* what) {
    arg_table(L, index, fname, what);
    std::vector<std::string> out;
    size_t n = lua_objlen(L, index);
    for (size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, static_cast<int>(i));
        if (lua_type(L, -1) != LUA_TSTRING) {
            std::string got = luaL_typename(L, -1);
            lua_pop(L, 1);
            fail(fname, ": ", what, "[", i, "] must be a string, got ", got);
        }
        size_t len;
        const char* s = lua_tolstring(L, -1, &len);
        out.emplace_back(s, len);
        lua_pop(L, 1);
    }
    return out;
}

std::vector<long long> arg_integer_list(lua_State* L, int index, const char* fname, const char* what) {
    arg_table(L, index, fname, what);
    std::vector<long long> out;
    size_t n = lua_objlen(L, index);
    for (size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, static_cast<int>(i));
        double v = lua_tonumber(L, -1);
        bool ok = lua_type(L, -1) == LUA_TNUMBER && std::floor(v) == v && std::fabs(v) <= 9007199254740992.0;
        lua_pop(L, 1);
        if (!ok) fail(fname, ": ", what, "[", i, "] must be an integer");
        out.push_back(static_cast<long long>(v));
    }
    return out;
}

void throw_type_error(lua_State* L, int index, const char* tname) {
    fail("expected a ", tname, " object at argument #", index, ", got ", luaL_typename(L, index),
         " (call methods with ':' not '.')");
}

void throw_released_error(const char* tname) {
    fail("this ", tname, " object was released; load it again to use it");
}

void new_class_raw(lua_State* L, const char* tname, const luaL_Reg* methods, lua_CFunction release,
                   lua_CFunction index) {
    if (!luaL_newmetatable(L, tname)) {  // [mt]
        lua_pop(L, 1);                   // [] (registered before)
        return;
    }
    lua_newtable(L);  // [mt, methods]
    luaL_register(L, nullptr, methods);
    lua_pushstring(L, tname);             // [mt, methods, tname]
    lua_pushcclosure(L, release, 1);      // [mt, methods, release]
    lua_pushvalue(L, -1);                 // [mt, methods, release, release]
    lua_setfield(L, -3, "release");       // [mt, methods, release]
    lua_setfield(L, -3, "__gc");          // [mt, methods]
    lua_pushvalue(L, -1);                 // [mt, methods, methods]
    lua_setfield(L, -3, "methods");       // [mt, methods]
    if (index) lua_pushcclosure(L, index, 1);  // [mt, index]
    lua_setfield(L, -2, "__index");      // [mt]
    lua_pushstring(L, tname);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);  // []
}

}  // namespace cai

// Helpers shared by the binding files in runtime/lua/.
//
// Every lua_CFunction wraps its body in lua_guarded: a C++ exception is
// caught, its message copied, and luaL_error is raised only after the catch
// block has ended (luaL_error longjmps; it must never run inside catch).
// Only std::exception is caught: LuaJIT raises its own errors (from a Lua
// function the body calls, or a metamethod a lua_* call runs) as foreign
// exceptions that unwind through C++ frames; a catch (...) would swallow
// them and lose the message and traceback, so they pass untouched.
//
// Userdata hold a std::shared_ptr<T>; each type has a registry metatable
// name ("cai.model") and a check_handle<T>(L, i, name). release_handle frees
// early (idempotent); use after release is a clear error.
#pragma once

#include <lua.hpp>

#include <memory>
#include <string>
#include <vector>

namespace cai {

[[noreturn]] void throw_type_error(lua_State* L, int index, const char* tname);
[[noreturn]] void throw_released_error(const char* tname);

template <class Body>
int lua_guarded(lua_State* L, Body&& body) {
    std::string message;
    try {
        return body();
    } catch (const std::exception& e) {
        message = e.what();
    }
    lua_pushlstring(L, message.data(), message.size());
    return lua_error(L);
}

// Argument checks that raise "fname: argument #i 'what' must be ..." errors.
// They throw cai::error, so they belong inside lua_guarded bodies.
std::string arg_string(lua_State* L, int index, const char* fname, const char* what);
double arg_number(lua_State* L, int index, const char* fname, const char* what);
long long arg_integer(lua_State* L, int index, const char* fname, const char* what);
void arg_table(lua_State* L, int index, const char* fname, const char* what);
// Options table at index (may be nil/none): typed field readers with defaults.
// Unknown keys in an options table are errors: check_option_keys lists the valid ones.
void check_option_keys(lua_State* L, int index, const char* fname, const std::vector<std::string>& valid);
std::string opt_string(lua_State* L, int index, const char* key, const std::string& def, const char* fname);
double opt_number(lua_State* L, int index, const char* key, double def, const char* fname);
long long opt_integer(lua_State* L, int index, const char* key, long long def, const char* fname);
bool opt_boolean(lua_State* L, int index, const char* key, bool def, const char* fname);
// List of strings or integer lists from a Lua array.
std::vector<std::string> arg_string_list(lua_State* L, int index, const char* fname, const char* what);
std::vector<long long> arg_integer_list(lua_State* L, int index, const char* fname, const char* what);

// Pushes a new userdata boxing a shared_ptr<T>, with metatable `tname`.
template <class T>
void push_handle(lua_State* L, std::shared_ptr<T> value, const char* tname) {
    void* box = lua_newuserdata(L, sizeof(std::shared_ptr<T>));
    new (box) std::shared_ptr<T>(std::move(value));
    luaL_getmetatable(L, tname);
    lua_setmetatable(L, -2);
}

// The box of userdata at index, or a cai::error naming the expected type.
template <class T>
std::shared_ptr<T>* handle_box(lua_State* L, int index, const char* tname) {
    void* p = lua_touserdata(L, index);
    if (p && lua_getmetatable(L, index)) {
        luaL_getmetatable(L, tname);
        bool same = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (same) return static_cast<std::shared_ptr<T>*>(p);
    }
    throw_type_error(L, index, tname);
    return nullptr;
}

template <class T>
std::shared_ptr<T> check_handle(lua_State* L, int index, const char* tname) {
    auto* box = handle_box<T>(L, index, tname);
    if (!*box) throw_released_error(tname);
    return *box;
}

// __gc and :release(): drop the reference; safe to call twice.
template <class T>
int release_handle(lua_State* L, const char* tname) {
    return lua_guarded(L, [&] {
        handle_box<T>(L, 1, tname)->reset();
        return 0;
    });
}

// __gc and :release() of a class whose upvalue 1 is its metatable name.
template <class T>
int release_upvalue(lua_State* L) {
    return release_handle<T>(L, lua_tostring(L, lua_upvalueindex(1)));
}

// The class builder every Lua type goes through. Registers the metatable
// `tname` once (a second call does nothing) with __name, __gc and a methods
// table holding `methods` plus release (idempotent). __index is the methods
// table, or `index` called with the methods table as its upvalue 1 (for
// types that also expose fields). mt.methods is the methods table, so the
// Lua library can add methods written in Lua.
void new_class_raw(lua_State* L, const char* tname, const luaL_Reg* methods, lua_CFunction release,
                   lua_CFunction index);

template <class T>
void new_class(lua_State* L, const char* tname, const luaL_Reg* methods, lua_CFunction index = nullptr) {
    new_class_raw(L, tname, methods, &release_upvalue<T>, index);
}

}  // namespace cai

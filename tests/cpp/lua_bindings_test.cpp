// The C++/Lua boundary: lua_guarded turns C++ exceptions into Lua errors and
// lets LuaJIT's own errors (raised inside a Lua function that C++ called)
// pass with their message and traceback.
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

#include "lua/host.h"
#include "lua/lua_util.h"

namespace {

// call_lua(fn, ...): calls fn from C++ with lua_call (no pcall), inside lua_guarded.
int l_call_lua(lua_State* L) {
    return cai::lua_guarded(L, [&] {
        lua_call(L, lua_gettop(L) - 1, 1);
        return 1;
    });
}

// throw_cpp(msg): a C++ exception with that message.
int l_throw_cpp(lua_State* L) {
    return cai::lua_guarded(L, [&]() -> int { throw std::runtime_error(lua_tostring(L, 1)); });
}

// read_field(t): lua_getfield on t, which may run an __index metamethod that errors.
int l_read_field(lua_State* L) {
    return cai::lua_guarded(L, [&] {
        lua_getfield(L, 1, "x");
        return 1;
    });
}

// Runs code in a fresh host that has `fn` as the global `name`; the host's
// last error ("" on success) goes to `error`.
int run_with(const char* name, lua_CFunction fn, const char* code, std::string& error) {
    cai::host h;
    h.register_function(name, fn);
    int rc = h.run_string(code);
    error = h.last_error();
    return rc;
}

}  // namespace

TEST_CASE("lua_guarded: a C++ exception becomes a Lua error with its message") {
    std::string error;
    int rc = run_with("throw_cpp", l_throw_cpp, R"(
        local ok, err = pcall(throw_cpp, "the disk is full")
        assert(not ok)
        assert(err == "the disk is full", "got: " .. tostring(err))
    )", error);
    INFO(error);
    CHECK(rc == 0);
}

TEST_CASE("lua_guarded: a Lua error inside a C++-called Lua function keeps its message and traceback") {
    std::string error;
    int rc = run_with("call_lua", l_call_lua, R"(
        local function inner_failing_callback() error("callback broke: 42") end
        local ok, err = pcall(call_lua, inner_failing_callback)
        assert(not ok)
        assert(tostring(err):find("callback broke: 42", 1, true), "message lost: " .. tostring(err))
        assert(not tostring(err):find("unknown C++ exception", 1, true), "message replaced: " .. tostring(err))
        -- a traceback taken where the error happened holds the Lua function C++ called (line 2)
        local ok2, trace = xpcall(function() call_lua(inner_failing_callback) end, debug.traceback)
        assert(not ok2)
        assert(trace:find("callback broke: 42", 1, true), trace)
        assert(trace:find("(command line):2: in function", 1, true), "traceback lacks the callback: " .. trace)
        -- a non-string error value survives too
        local ok3, value = pcall(call_lua, function() error({ code = 7 }) end)
        assert(not ok3 and type(value) == "table" and value.code == 7, "error object lost: " .. tostring(value))
        -- the state still works afterwards
        assert(call_lua(function(a) return a + 1 end, 41) == 42)
    )", error);
    INFO(error);
    CHECK(rc == 0);
}

TEST_CASE("lua_guarded: an error from a metamethod that a binding triggers keeps its message") {
    std::string error;
    int rc = run_with("read_field", l_read_field, R"(
        local t = setmetatable({}, { __index = function() error("no such field, said __index") end })
        local ok, err = pcall(read_field, t)
        assert(not ok)
        assert(tostring(err):find("no such field, said __index", 1, true), "message lost: " .. tostring(err))
    )", error);
    INFO(error);
    CHECK(rc == 0);
}

TEST_CASE("lua_guarded: an uncaught Lua error in a C++-called function reaches the host with its message") {
    std::string error;
    int rc = run_with("call_lua", l_call_lua, R"(
        call_lua(function() error("top-level callback failure") end)
    )", error);
    CHECK(rc != 0);
    CHECK_THAT(error, Catch::Contains("top-level callback failure"));
    CHECK_THAT(error, Catch::Contains("stack traceback"));
    CHECK_THAT(error, !Catch::Contains("unknown C++ exception"));
}

// cai._serve: the HTTP server of `cairun serve` (serve/server.h) and the
// locked appends its judgments log needs. cai.serve builds the pages' data.
#include <string>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"
#include "serve/server.h"

namespace {

using cai::lua_guarded;

// Calls the handler at stack index `fn` with (method, path, params, body);
// it returns status, content_type, body. A Lua error becomes a 500.
cai::serve::response call_handler(lua_State* L, int fn, const cai::serve::request& req) {
    int top = lua_gettop(L);
    lua_pushvalue(L, fn);                                              // [fn]
    lua_pushlstring(L, req.method.data(), req.method.size());          // [fn, method]
    lua_pushlstring(L, req.path.data(), req.path.size());              // [fn, method, path]
    lua_createtable(L, static_cast<int>(req.params.size()), 0);        // [fn, method, path, params]
    int i = 1;
    for (const auto& kv : req.params) {
        lua_createtable(L, 2, 0);
        lua_pushlstring(L, kv.first.data(), kv.first.size());
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, kv.second.data(), kv.second.size());
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, i++);  // params[i] = { key, value }
    }
    lua_pushlstring(L, req.body.data(), req.body.size());  // [fn, method, path, params, body]
    cai::serve::response out;
    if (lua_pcall(L, 4, 3, 0) != 0) {                      // [err]
        size_t n = 0;
        const char* s = lua_tolstring(L, -1, &n);
        std::string message = s ? std::string(s, n) : std::string("(a non-string error)");
        lua_settop(L, top);
        cai::log_error("cairun serve: ", req.method, " ", req.path, ": ", message);
        out.status = 500;
        out.body = "{\"error\":\"internal error; see the server's log\"}";
        return out;
    }
    // [status, content_type, body]
    out.status = lua_isnumber(L, -3) ? static_cast<int>(lua_tointeger(L, -3)) : 500;
    if (const char* t = lua_tostring(L, -2)) out.content_type = t;
    size_t n = 0;
    if (const char* b = lua_tolstring(L, -1, &n)) out.body.assign(b, n);
    lua_settop(L, top);
    return out;
}

// cai._serve.listen(host, port, handler, ready): serves until SIGINT/SIGTERM.
// ready(port) is called once the port is bound.
int l_serve_listen(lua_State* L) {
    return lua_guarded(L, [&] {
        cai::serve::options opts;
        opts.host = cai::arg_string(L, 1, "cai._serve.listen", "host");
        long long port = cai::arg_integer(L, 2, "cai._serve.listen", "port");
        if (port < 0 || port > 65535) cai::fail("cai._serve.listen: port must be 0..65535, got ", port);
        opts.port = static_cast<int>(port);
        luaL_checktype(L, 3, LUA_TFUNCTION);
        luaL_checktype(L, 4, LUA_TFUNCTION);
        std::string ready_error;
        cai::serve::serve_forever(
            opts,
            [&](int bound) {
                lua_pushvalue(L, 4);
                lua_pushinteger(L, bound);
                if (lua_pcall(L, 1, 0, 0) != 0) {
                    ready_error = lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error)";
                    lua_pop(L, 1);
                    cai::serve::stop();
                }
            },
            [&](const cai::serve::request& req) { return call_handler(L, 3, req); });
        if (!ready_error.empty()) cai::fail(ready_error);
        return 0;
    });
}

// cai._serve.append_line(path, line): one whole line, appended under a lock.
int l_serve_append_line(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = cai::arg_string(L, 1, "cai._serve.append_line", "path");
        std::string line = cai::arg_string(L, 2, "cai._serve.append_line", "line");
        cai::append_line_locked(path, line);
        return 0;
    });
}

// cai._serve.read_locked(path): the file's text under a shared lock ("" when absent).
int l_serve_read_locked(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = cai::arg_string(L, 1, "cai._serve.read_locked", "path");
        std::string text = cai::read_file_locked(path);
        lua_pushlstring(L, text.data(), text.size());
        return 1;
    });
}

const luaL_Reg serve_functions[] = {
    {"listen", l_serve_listen},
    {"append_line", l_serve_append_line},
    {"read_locked", l_serve_read_locked},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_serve(lua_State* L) {
    luaL_newlib(L, serve_functions);
    return 1;
}

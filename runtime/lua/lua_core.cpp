// cai._core: script arguments, logging, version, clock, files.
#include <chrono>
#include <memory>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"

namespace {

using cai::lua_guarded;

const char* const argv_key = "cai.argv";          // registry: list of "key=value"

int l_core_set_argv(lua_State* L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushvalue(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, argv_key);
    return 0;
}

int l_core_argv(lua_State* L) {
    lua_getfield(L, LUA_REGISTRYINDEX, argv_key);  // [list or nil]
    lua_newtable(L);                               // [src, copy]
    if (lua_istable(L, -2)) {
        int n = static_cast<int>(lua_objlen(L, -2));
        for (int i = 1; i <= n; ++i) {
            lua_rawgeti(L, -2, i);
            lua_rawseti(L, -2, i);
        }
    }
    return 1;
}

int l_core_log(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string level_name = cai::arg_string(L, 1, "cai.log", "level");
        std::string message = cai::arg_string(L, 2, "cai.log", "message");
        cai::log_level level;
        if (!cai::parse_log_level(level_name, &level))
            cai::fail("cai.log: unknown level '", level_name, "' (valid: debug, info, warn, error)");
        cai::log_at(level, message);
        return 0;
    });
}

int l_core_log_level(lua_State* L) {
    return lua_guarded(L, [&] {
        static const char* names[] = {"debug", "info", "warn", "error"};
        if (!lua_isnoneornil(L, 1)) {
            std::string name = cai::arg_string(L, 1, "cai.log.level", "level");
            cai::log_level level;
            if (!cai::parse_log_level(name, &level))
                cai::fail("cai.log.level: unknown level '", name, "' (valid: debug, info, warn, error)");
            cai::set_log_level(level);
        }
        lua_pushstring(L, names[static_cast<int>(cai::current_log_level())]);
        return 1;
    });
}

int l_core_version(lua_State* L) {
    lua_pushstring(L, CAI_VERSION);
    return 1;
}

int l_core_clock(lua_State* L) {
    using namespace std::chrono;
    lua_pushnumber(L, duration<double>(steady_clock::now().time_since_epoch()).count());
    return 1;
}

int l_core_isatty(lua_State* L) {
    lua_pushboolean(L, ::isatty(2));
    return 1;
}

// cai._core.write_file(path, text): complete under its name or absent
// (temp file, fsync, rename); creates the parent directories.
int l_core_write_file(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = cai::arg_string(L, 1, "cai.write_file", "path");
        if (path.empty()) cai::fail("cai.write_file: path must not be empty");
        std::string text = cai::arg_string(L, 2, "cai.write_file", "text");
        cai::write_file_atomic(path, text);
        return 0;
    });
}

// cai._core.mkdir(path): mkdir -p.
int l_core_mkdir(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = cai::arg_string(L, 1, "cai.mkdir", "path");
        if (path.empty()) cai::fail("cai.mkdir: path must not be empty");
        cai::make_directories(path);
        return 0;
    });
}

// cai._core.exists(path) -> boolean (a file or a directory)
int l_core_exists(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = cai::arg_string(L, 1, "cai.exists", "path");
        lua_pushboolean(L, cai::file_exists(path));
        return 1;
    });
}

const luaL_Reg core_functions[] = {
    {"set_argv", l_core_set_argv},
    {"argv", l_core_argv},
    {"log", l_core_log},
    {"log_level", l_core_log_level},
    {"version", l_core_version},
    {"clock", l_core_clock},
    {"isatty", l_core_isatty},
    {"write_file", l_core_write_file},
    {"mkdir", l_core_mkdir},
    {"exists", l_core_exists},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_core(lua_State* L) {
    luaL_newlib(L, core_functions);
    return 1;
}

#include "lua/host.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/fs.h"
#include "lua/bindings.h"
#include "lua/embedded.h"
#include "train/interrupt.h"

namespace cai {
namespace {

const char* const embedded_sources_key = "cai.embedded_sources";  // registry: chunkname -> true

void mark_library_source(lua_State* L, const std::string& chunkname) {
    lua_getfield(L, LUA_REGISTRYINDEX, embedded_sources_key);  // [set]
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, chunkname.c_str());
    lua_pop(L, 1);
}

bool is_library_source(lua_State* L, const char* source) {
    lua_getfield(L, LUA_REGISTRYINDEX, embedded_sources_key);  // [set]
    lua_getfield(L, -1, source);                               // [set, flag]
    bool yes = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return yes;
}

// package.loaders entry: modules compiled into libcai.
int embedded_searcher(lua_State* L) {
    std::string name = luaL_checkstring(L, 1);
    for (const embedded_module* m = embedded_modules; m->name; ++m) {
        if (name != m->name) continue;
        std::string chunkname = std::string("@") + m->file;
        if (luaL_loadbuffer(L, m->source, m->size, chunkname.c_str()) != 0) return lua_error(L);
        mark_library_source(L, chunkname);
        return 1;
    }
    lua_pushfstring(L, "\n\tno embedded module '%s'", name.c_str());
    return 1;
}

// package.loaders entry used when CAI_LUA_PATH points at a lua/ checkout:
// library modules are read from disk, so edits need no rebuild.
int development_searcher(lua_State* L) {
    std::string name = luaL_checkstring(L, 1);
    const char* root = std::getenv("CAI_LUA_PATH");
    std::string rel = name;
    for (char& c : rel)
        if (c == '.') c = '/';
    for (const std::string& candidate : {path_join(root, rel + ".lua"), path_join(root, rel + "/init.lua")}) {
        if (!file_exists(candidate)) continue;
        if (luaL_loadfile(L, candidate.c_str()) != 0) return lua_error(L);
        mark_library_source(L, "@" + candidate);
        return 1;
    }
    lua_pushfstring(L, "\n\tno file '%s/%s.lua' (CAI_LUA_PATH)", root, rel.c_str());
    return 1;
}

void install_searchers(lua_State* L) {
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, embedded_sources_key);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaders");  // [package, loaders]
    int n = static_cast<int>(lua_objlen(L, -1));
    bool dev = std::getenv("CAI_LUA_PATH") && *std::getenv("CAI_LUA_PATH");
    int inserted = dev ? 2 : 1;
    // Shift loaders 2..n up to make room after the preload searcher.
    for (int i = n; i >= 2; --i) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + inserted);
    }
    int slot = 2;
    if (dev) {
        lua_pushcfunction(L, development_searcher);
        lua_rawseti(L, -2, slot++);
    }
    lua_pushcfunction(L, embedded_searcher);
    lua_rawseti(L, -2, slot);
    lua_pop(L, 2);  // []
}

bool has_position_prefix(const std::string& message) {
    // "something:123: ..." on the first line
    size_t colon = message.find(':');
    while (colon != std::string::npos && colon < message.find('\n')) {
        size_t i = colon + 1;
        size_t digits = 0;
        while (i < message.size() && message[i] >= '0' && message[i] <= '9') ++i, ++digits;
        if (digits > 0 && i < message.size() && message[i] == ':') return colon > 0;
        colon = message.find(':', colon + 1);
    }
    return false;
}

// Message handler: makes sure the message starts with the user's file:line
// (C functions raise errors without one), then appends the traceback.
int traceback_handler(lua_State* L) {
    std::string message;
    if (const char* s = lua_tostring(L, 1)) {
        message = s;
    } else if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1)) {
        message = lua_tostring(L, -1);
    } else {
        message = std::string("(error object is a ") + luaL_typename(L, 1) + " value)";
    }
    if (!has_position_prefix(message)) {
        lua_Debug ar;
        for (int level = 1; lua_getstack(L, level, &ar); ++level) {
            lua_getinfo(L, "Sl", &ar);
            if (ar.currentline > 0 && ar.source[0] == '@' && !is_library_source(L, ar.source)) {
                message = std::string(ar.short_src) + ":" + std::to_string(ar.currentline) + ": " + message;
                break;
            }
        }
    }
    luaL_traceback(L, L, message.c_str(), 1);
    return 1;
}

}  // namespace

host::host() : L_(luaL_newstate()) {
    if (!L_) fail("cannot create a Lua state (out of memory)");
    luaL_openlibs(L_);
    register_bindings(L_);
    install_searchers(L_);
    // The library, then strict globals: from here on, globals are declared.
    lua_getglobal(L_, "require");
    lua_pushstring(L_, "cai");
    lua_pushcfunction(L_, traceback_handler);
    lua_insert(L_, -3);  // [handler, require, "cai"]
    if (lua_pcall(L_, 1, 1, -3) != 0) {
        std::string message = lua_tostring(L_, -1);
        lua_close(L_);
        fail("cannot load the cai Lua library: ", message);
    }
    lua_setglobal(L_, "cai");  // [handler]
    lua_pop(L_, 1);
    lua_newtable(L_);
    lua_setglobal(L_, "arg");
    if (luaL_dostring(L_, "require('cai.strict').enable()") != 0) {
        std::string message = lua_tostring(L_, -1);
        lua_close(L_);
        fail("cannot enable strict globals: ", message);
    }
}

host::~host() {
    if (L_) lua_close(L_);
}

void host::set_args(const std::vector<std::string>& args) {
    lua_getglobal(L_, "require");
    lua_pushstring(L_, "cai._core");
    lua_call(L_, 1, 1);                // [core]
    lua_getfield(L_, -1, "set_argv");  // [core, set_argv]
    lua_newtable(L_);                  // [core, set_argv, list]
    for (size_t i = 0; i < args.size(); ++i) {
        lua_pushlstring(L_, args[i].data(), args[i].size());
        lua_rawseti(L_, -2, static_cast<int>(i + 1));
    }
    lua_call(L_, 1, 0);  // [core]
    lua_pop(L_, 1);
}

void host::register_function(const std::string& name, lua_CFunction fn) {
    // rawset: a registered function is declared, strict globals allow it.
    lua_pushvalue(L_, LUA_GLOBALSINDEX);  // [_G]
    lua_pushstring(L_, name.c_str());
    lua_pushcfunction(L_, fn);
    lua_rawset(L_, -3);
    lua_pop(L_, 1);
}

int host::run_file(const std::string& path) {
    if (!file_exists(path) || is_directory(path)) {
        last_error_ = "cairun: cannot open recipe '" + path + "': " +
                      (is_directory(path) ? std::string("is a directory") : std::string("no such file"));
        std::fprintf(stderr, "%s\n", last_error_.c_str());
        return 1;
    }
    // Recipes may require modules that sit next to them.
    std::string dir = path_dirname(path);
    lua_getglobal(L_, "package");
    lua_getfield(L_, -1, "path");  // [package, path]
    std::string package_path = dir + "/?.lua;" + dir + "/?/init.lua;" + lua_tostring(L_, -1);
    lua_pop(L_, 1);
    lua_pushstring(L_, package_path.c_str());
    lua_setfield(L_, -2, "path");
    lua_pop(L_, 1);  // []
    // arg[0] as in the standalone interpreter.
    lua_getglobal(L_, "arg");
    if (lua_istable(L_, -1)) {
        lua_pushstring(L_, path.c_str());
        lua_rawseti(L_, -2, 0);
    }
    lua_pop(L_, 1);
    return run_loaded(luaL_loadfile(L_, path.c_str()));
}

int host::run_string(const std::string& code, const std::string& chunkname) {
    return run_loaded(luaL_loadbuffer(L_, code.data(), code.size(), chunkname.c_str()));
}

int host::run_loaded(int load_status) {
    last_error_.clear();
    if (load_status == 0) {
        lua_pushcfunction(L_, traceback_handler);
        lua_insert(L_, -2);  // [handler, chunk]
        int status = lua_pcall(L_, 0, 0, -2);
        if (status == 0) {
            lua_pop(L_, 1);
            return 0;
        }
        last_error_ = lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "(error without message)";
        lua_pop(L_, 2);
    } else {
        last_error_ = lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "cannot load chunk";
        lua_pop(L_, 1);
    }
    if (stop_recorded()) {
        // Stopped by Ctrl-C: what was saved and how to continue, no traceback.
        last_error_ = stop_message();
        std::fprintf(stderr, "%s\n", last_error_.c_str());
        return 130;
    }
    std::fprintf(stderr, "%s\n", last_error_.c_str());
    return 1;
}

}  // namespace cai

// cai._run: primitives of run directories for lua/cai/run.lua, stage.lua and
// train.lua: the run lock, temporaries left by a killed process,
// fingerprints, peak memory, the command line, and Ctrl-C.
#include <string>
#include <unistd.h>
#include <vector>

#include "core/error.h"
#include "core/run_dir.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"
#include "train/interrupt.h"

namespace {

using cai::lua_guarded;

void push_strings(lua_State* L, const std::vector<std::string>& list) {
    lua_createtable(L, static_cast<int>(list.size()), 0);  // [list]
    for (size_t i = 0; i < list.size(); ++i) {
        lua_pushlstring(L, list[i].data(), list[i].size());
        lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
}

// lock(dir): takes dir/.lock for this process; an error names another holder's pid.
int l_run_lock(lua_State* L) {
    return lua_guarded(L, [&] {
        cai::lock_run_dir(cai::arg_string(L, 1, "cai.run.lock", "dir"));
        return 0;
    });
}

// clean_temporaries(dir, recursive, only_dead) -> { "removed PATH" | "restored PATH", ... }
int l_run_clean_temporaries(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string dir = cai::arg_string(L, 1, "cai.run.clean_temporaries", "dir");
        push_strings(L, cai::clean_temporaries(dir, lua_toboolean(L, 2) != 0, lua_toboolean(L, 3) != 0));
        return 1;
    });
}

// path_fingerprint(path) -> hex
int l_run_path_fingerprint(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string hex = cai::path_fingerprint(cai::arg_string(L, 1, "cai.run.path_fingerprint", "path"));
        lua_pushstring(L, hex.c_str());
        return 1;
    });
}

// hash(text) -> hex
int l_run_hash(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string hex = cai::hash_hex(cai::arg_string(L, 1, "cai.run.hash", "text"));
        lua_pushstring(L, hex.c_str());
        return 1;
    });
}

int l_run_peak_rss(lua_State* L) {
    lua_pushnumber(L, static_cast<double>(cai::peak_rss_bytes()));
    return 1;
}

int l_run_pid(lua_State* L) {
    lua_pushnumber(L, static_cast<double>(::getpid()));
    return 1;
}

int l_run_command_line(lua_State* L) {
    push_strings(L, cai::command_line());
    return 1;
}

// A generation stage polls Ctrl-C between chunks: interrupt_begin(), interrupted(), interrupt_end().
int l_run_interrupt_begin(lua_State* L) {
    cai::install_interrupt_handler();
    return 0;
}

int l_run_interrupt_end(lua_State* L) {
    cai::uninstall_interrupt_handler();
    return 0;
}

int l_run_interrupted(lua_State* L) {
    lua_pushboolean(L, cai::interrupt_requested());
    return 1;
}

// record_stop(message): the recipe stops after an interrupt; the host exits with status 130.
int l_run_record_stop(lua_State* L) {
    return lua_guarded(L, [&] {
        cai::record_stop(cai::arg_string(L, 1, "cai.run.record_stop", "message"));
        return 0;
    });
}

int l_run_stopped(lua_State* L) {
    lua_pushboolean(L, cai::stop_recorded());
    return 1;
}

const luaL_Reg run_functions[] = {
    {"lock", l_run_lock},
    {"clean_temporaries", l_run_clean_temporaries},
    {"path_fingerprint", l_run_path_fingerprint},
    {"hash", l_run_hash},
    {"peak_rss", l_run_peak_rss},
    {"pid", l_run_pid},
    {"command_line", l_run_command_line},
    {"interrupt_begin", l_run_interrupt_begin},
    {"interrupt_end", l_run_interrupt_end},
    {"interrupted", l_run_interrupted},
    {"record_stop", l_run_record_stop},
    {"stopped", l_run_stopped},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_run(lua_State* L) {
    luaL_newlib(L, run_functions);
    return 1;
}

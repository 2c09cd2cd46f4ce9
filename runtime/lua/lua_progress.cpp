// cai._progress: progress bar objects ("cai.progress") for cai.progress.
#include <memory>
#include <string>

#include "core/error.h"
#include "core/progress.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"

namespace {

using cai::lua_guarded;

const char* const progress_type = "cai.progress";

// cai._progress.new(label, total, unit)
int l_progress_new(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string label = cai::arg_string(L, 1, "cai.progress", "label");
        long long total = cai::arg_integer(L, 2, "cai.progress", "total");
        if (total < 0) cai::fail("cai.progress: total must be >= 0, got ", total);
        std::string unit = lua_isnoneornil(L, 3) ? "it" : cai::arg_string(L, 3, "cai.progress", "unit");
        cai::push_handle(L, std::make_shared<cai::progress>(label, total, unit), progress_type);
        return 1;
    });
}

int l_progress_update(lua_State* L) {
    return lua_guarded(L, [&] {
        auto p = cai::check_handle<cai::progress>(L, 1, progress_type);
        long long done = cai::arg_integer(L, 2, "progress:update", "done");
        std::string extra = lua_isnoneornil(L, 3) ? "" : cai::arg_string(L, 3, "progress:update", "extra");
        p->update(done, extra);
        return 0;
    });
}

int l_progress_advance(lua_State* L) {
    return lua_guarded(L, [&] {
        auto p = cai::check_handle<cai::progress>(L, 1, progress_type);
        long long n = lua_isnoneornil(L, 2) ? 1 : cai::arg_integer(L, 2, "progress:advance", "n");
        std::string extra = lua_isnoneornil(L, 3) ? "" : cai::arg_string(L, 3, "progress:advance", "extra");
        p->advance(n, extra);
        return 0;
    });
}

int l_progress_finish(lua_State* L) {
    return lua_guarded(L, [&] {
        cai::check_handle<cai::progress>(L, 1, progress_type)->finish();
        return 0;
    });
}

const luaL_Reg progress_methods[] = {
    {"update", l_progress_update},
    {"advance", l_progress_advance},
    {"finish", l_progress_finish},
    {nullptr, nullptr},
};

const luaL_Reg progress_functions[] = {
    {"new", l_progress_new},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_progress(lua_State* L) {
    cai::new_class<cai::progress>(L, progress_type, progress_methods);
    luaL_newlib(L, progress_functions);
    return 1;
}

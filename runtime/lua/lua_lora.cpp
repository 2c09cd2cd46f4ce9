// cai._lora: LoRA adapters on model objects; lua/cai/model.lua builds
// m:add_lora, m:save_lora, m:load_lora, m:merge_lora, m:unmerge_lora,
// m:remove_lora and m:lora_info on these primitives.
#include <lua.hpp>

#include "core/error.h"
#include "dist/dist.h"
#include "lua/bindings.h"
#include "lua/lua_model.h"
#include "lua/lua_util.h"
#include "model/model.h"
#include "train/lora.h"

namespace {

using cai::lua_guarded;

// cai._lora.add(m, { r=, alpha=, dropout=, targets=, rslora=, seed= })
int l_lora_add(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "m:add_lora";
        auto m = cai::check_model(L, 1);
        cai::lora_options o;
        o.r = cai::opt_integer(L, 2, "r", o.r, fname);
        o.alpha = cai::opt_number(L, 2, "alpha", o.alpha, fname);
        o.dropout = cai::opt_number(L, 2, "dropout", o.dropout, fname);
        o.rslora = cai::opt_boolean(L, 2, "rslora", o.rslora, fname);
        o.seed = (uint64_t)cai::opt_integer(L, 2, "seed", 0, fname);
        if (!lua_isnoneornil(L, 2)) {
            lua_getfield(L, 2, "targets");  // [targets]
            int top = lua_gettop(L);
            if (lua_type(L, top) == LUA_TSTRING) {
                o.targets = {lua_tostring(L, top)};
            } else if (!lua_isnil(L, top)) {
                o.targets = cai::arg_string_list(L, top, fname, "targets");
            }
            lua_pop(L, 1);  // []
        }
        cai::lora_add(*m, o);
        return 0;
    });
}

int l_lora_remove(lua_State* L) {
    return lua_guarded(L, [&] {
        cai::lora_remove(*cai::check_model(L, 1));
        return 0;
    });
}

// cai._lora.info(m) -> { r=, alpha=, dropout=, scale=, rslora=, merged=, targets={...} } or nil
int l_lora_info(lua_State* L) {
    return lua_guarded(L, [&] {
        auto m = cai::check_model(L, 1);
        if (!cai::lora_present(*m)) {
            lua_pushnil(L);
            return 1;
        }
        cai::lora_state s = cai::lora_describe(*m);
        lua_createtable(L, 0, 7);  // [info]
        lua_pushnumber(L, (double)s.r);
        lua_setfield(L, -2, "r");
        lua_pushnumber(L, s.alpha);
        lua_setfield(L, -2, "alpha");
        lua_pushnumber(L, s.dropout);
        lua_setfield(L, -2, "dropout");
        lua_pushnumber(L, s.scale);
        lua_setfield(L, -2, "scale");
        lua_pushboolean(L, s.rslora);
        lua_setfield(L, -2, "rslora");
        lua_pushboolean(L, s.merged);
        lua_setfield(L, -2, "merged");
        lua_createtable(L, (int)s.targets.size(), 0);  // [info, targets]
        for (size_t i = 0; i < s.targets.size(); ++i) {
            lua_pushstring(L, s.targets[i].c_str());
            lua_rawseti(L, -2, (int)i + 1);
        }
        lua_setfield(L, -2, "targets");  // [info]
        return 1;
    });
}

int l_lora_save(lua_State* L) {
    return lua_guarded(L, [&] {
        auto m = cai::check_model(L, 1);
        std::string dir = cai::arg_string(L, 2, "m:save_lora", "dir");
        cai::dist::main_writes("saving the adapter " + dir, [&] { cai::lora_save(*m, dir); });
        return 0;
    });
}

int l_lora_load(lua_State* L) {
    return lua_guarded(L, [&] {
        auto m = cai::check_model(L, 1);
        cai::lora_load(*m, cai::arg_string(L, 2, "m:load_lora", "dir"));
        return 0;
    });
}

int l_lora_merge(lua_State* L) {
    return lua_guarded(L, [&] {
        cai::lora_merge(*cai::check_model(L, 1));
        return 0;
    });
}

int l_lora_unmerge(lua_State* L) {
    return lua_guarded(L, [&] {
        cai::lora_unmerge(*cai::check_model(L, 1));
        return 0;
    });
}

const luaL_Reg lora_functions[] = {
    {"add", l_lora_add},         {"remove", l_lora_remove},   {"info", l_lora_info},
    {"save", l_lora_save},       {"load", l_lora_load},       {"merge", l_lora_merge},
    {"unmerge", l_lora_unmerge}, {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_lora(lua_State* L) {
    luaL_newlib(L, lora_functions);  // [lib]
    return 1;
}

// The one place that lists every C++ module visible to Lua, in load order.
#include "lua/bindings.h"

namespace cai {

void register_bindings(lua_State* L) {
    static const luaL_Reg modules[] = {
        {"cai._core", luaopen_cai_core},
        {"cai._progress", luaopen_cai_progress},
        {"cai._json", luaopen_cai_json},
        {"cai._rng", luaopen_cai_rng},
        {"cai._yaml", luaopen_cai_yaml},
        {"cai._spm", luaopen_cai_spm},
        {"cai._tokenizer", luaopen_cai_tokenizer},
        {"cai._train", luaopen_cai_train},
        {"cai._model", luaopen_cai_model},
        {"cai._reward", luaopen_cai_reward},
        {"cai._encoder", luaopen_cai_encoder},
        {"cai._lora", luaopen_cai_lora},
        {"cai._dist", luaopen_cai_dist},
        {"cai._kernels", luaopen_cai_kernels},
        {"cai._run", luaopen_cai_run},
        {"cai._serve", luaopen_cai_serve},
        {nullptr, nullptr},
    };
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");  // [package, preload]
    for (const luaL_Reg* m = modules; m->name; ++m) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 2);  // []
}

}  // namespace cai

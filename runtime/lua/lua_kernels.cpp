// cai._kernels: the fused CPU kernels' switch (kernels/cpu.h), for benchmarks
// and for comparing against the plain ATen path from a recipe.
#include "core/error.h"
#include "kernels/cpu.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"

namespace {

using cai::lua_guarded;

// kernels.enabled() -> boolean
int l_kernels_enabled(lua_State* L) {
    return lua_guarded(L, [&] {
        lua_pushboolean(L, cai::kernels::enabled());
        return 1;
    });
}

// kernels.set_enabled(on) -> previous state
int l_kernels_set_enabled(lua_State* L) {
    return lua_guarded(L, [&] {
        if (lua_type(L, 1) != LUA_TBOOLEAN)
            cai::fail("cai.kernels.set_enabled: argument 1 (on) must be a boolean, got ", luaL_typename(L, 1));
        const bool old = cai::kernels::enabled();
        cai::kernels::set_enabled(lua_toboolean(L, 1) != 0);
        lua_pushboolean(L, old);
        return 1;
    });
}

// kernels.isa() -> "avx512" | "avx2" | "generic", and whether AVX512-BF16 is there
int l_kernels_isa(lua_State* L) {
    return lua_guarded(L, [&] {
        lua_pushstring(L, cai::kernels::isa_name(cai::kernels::cpu_isa()));
        lua_pushboolean(L, cai::kernels::cpu_has_avx512_bf16());
        return 2;
    });
}

const luaL_Reg kernels_functions[] = {
    {"enabled", l_kernels_enabled},
    {"set_enabled", l_kernels_set_enabled},
    {"isa", l_kernels_isa},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_kernels(lua_State* L) {
    luaL_newlib(L, kernels_functions);  // [mod]
    return 1;
}

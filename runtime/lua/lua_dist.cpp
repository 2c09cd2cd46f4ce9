// cai._dist: this process's place in a data-parallel job (cai.dist).
#include <string>

#include "core/error.h"
#include "dist/dist.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"

namespace {

using cai::lua_guarded;

// cai.dist.rank() -> 0-based rank (0 in a single process)
int l_dist_rank(lua_State* L) {
    lua_pushinteger(L, cai::dist::rank());
    return 1;
}

// cai.dist.world_size() -> number of ranks (1 in a single process)
int l_dist_world_size(lua_State* L) {
    lua_pushinteger(L, cai::dist::world_size());
    return 1;
}

// cai.dist.local_rank() -> rank on this machine
int l_dist_local_rank(lua_State* L) {
    lua_pushinteger(L, cai::dist::local_rank());
    return 1;
}

// cai.dist.is_main() -> true on rank 0
int l_dist_is_main(lua_State* L) {
    lua_pushboolean(L, cai::dist::is_main());
    return 1;
}

// cai.dist.barrier([what]): every rank waits for all others.
int l_dist_barrier(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string what = lua_isnoneornil(L, 1) ? "cai.dist.barrier" : cai::arg_string(L, 1, "cai.dist.barrier", "what");
        cai::dist::barrier(what);
        return 0;
    });
}

// cai.dist.all_gather(s) -> { rank 0's string, rank 1's, ... }
int l_dist_all_gather(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string mine = cai::arg_string(L, 1, "cai.dist.all_gather", "s");
        std::vector<std::string> all = cai::dist::all_gather_bytes(mine, "cai.dist.all_gather");
        lua_createtable(L, (int)all.size(), 0);  // [out]
        for (size_t i = 0; i < all.size(); ++i) {
            lua_pushlstring(L, all[i].data(), all[i].size());  // [out, s]
            lua_rawseti(L, -2, (int)i + 1);                    // [out]
        }
        return 1;
    });
}

// cai.dist.shard(n) -> first, last: this rank's contiguous 1-based share of n items (last < first: none)
int l_dist_shard(lua_State* L) {
    return lua_guarded(L, [&] {
        long long n = cai::arg_integer(L, 1, "cai.dist.shard", "n");
        if (n < 0) cai::fail("cai.dist.shard: n must be >= 0, got ", n);
        cai::dist::shard s = cai::dist::shard_of((size_t)n);
        lua_pushinteger(L, (lua_Integer)s.begin + 1);
        lua_pushinteger(L, (lua_Integer)s.end);
        return 2;
    });
}

// cai.dist._alone(fn, ...) -> fn(...)'s results, run as a single process
// (rank 0 of 1: no sharding, no collectives); an error in fn is re-raised.
int l_dist_alone(lua_State* L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int status;
    {
        cai::dist::alone scope;
        status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);  // [results...] or [err]
    }
    if (status != 0) return lua_error(L);
    return lua_gettop(L);
}

const luaL_Reg dist_functions[] = {
    {"rank", l_dist_rank},         {"world_size", l_dist_world_size}, {"local_rank", l_dist_local_rank},
    {"is_main", l_dist_is_main},   {"barrier", l_dist_barrier},       {"all_gather", l_dist_all_gather},
    {"shard", l_dist_shard},       {"alone", l_dist_alone},           {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_dist(lua_State* L) {
    luaL_newlib(L, dist_functions);  // [mod]
    return 1;
}

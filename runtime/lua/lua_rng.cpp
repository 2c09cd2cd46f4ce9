// cai._rng: seeded random streams for recipes (cai.rng(seed)).
#include <cmath>
#include <memory>

#include "core/error.h"
#include "core/rng.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"

namespace {

using cai::lua_guarded;

const char* const rng_type = "cai.rng";

uint64_t check_seed(lua_State* L, int index, const char* fname) {
    long long seed = cai::arg_integer(L, index, fname, "seed");
    return static_cast<uint64_t>(seed);
}

std::shared_ptr<cai::rng> self(lua_State* L) { return cai::check_handle<cai::rng>(L, 1, rng_type); }

// cai.rng(seed)
int l_rng_new(lua_State* L) {
    return lua_guarded(L, [&] {
        uint64_t seed = check_seed(L, 1, "cai.rng");
        cai::push_handle(L, std::make_shared<cai::rng>(seed), rng_type);
        return 1;
    });
}

// rng:random() -> [0, 1)
int l_rng_random(lua_State* L) {
    return lua_guarded(L, [&] {
        lua_pushnumber(L, self(L)->uniform());
        return 1;
    });
}

// rng:uniform(lo, hi) -> [lo, hi)
int l_rng_uniform(lua_State* L) {
    return lua_guarded(L, [&] {
        auto r = self(L);
        double lo = cai::arg_number(L, 2, "rng:uniform", "lo");
        double hi = cai::arg_number(L, 3, "rng:uniform", "hi");
        if (!(hi >= lo)) cai::fail("rng:uniform: hi (", hi, ") must be >= lo (", lo, ")");
        lua_pushnumber(L, lo + (hi - lo) * r->uniform());
        return 1;
    });
}

// rng:int(lo, hi) -> integer in [lo, hi]
int l_rng_int(lua_State* L) {
    return lua_guarded(L, [&] {
        auto r = self(L);
        long long lo = cai::arg_integer(L, 2, "rng:int", "lo");
        long long hi = cai::arg_integer(L, 3, "rng:int", "hi");
        if (hi < lo) cai::fail("rng:int: empty range [", lo, ", ", hi, "]");
        lua_pushnumber(L, static_cast<double>(r->integer(lo, hi)));
        return 1;
    });
}

// rng:normal([mean, std])
int l_rng_normal(lua_State* L) {
    return lua_guarded(L, [&] {
        auto r = self(L);
        double mean = lua_isnoneornil(L, 2) ? 0 : cai::arg_number(L, 2, "rng:normal", "mean");
        double std = lua_isnoneornil(L, 3) ? 1 : cai::arg_number(L, 3, "rng:normal", "std");
        lua_pushnumber(L, mean + std * r->normal());
        return 1;
    });
}

// rng:shuffle(list) shuffles in place (Fisher-Yates) and returns list.
int l_rng_shuffle(lua_State* L) {
    return lua_guarded(L, [&] {
        auto r = self(L);
        cai::arg_table(L, 2, "rng:shuffle", "list");
        int n = static_cast<int>(lua_objlen(L, 2));
        for (int i = n; i >= 2; --i) {
            int j = static_cast<int>(r->integer(1, i));
            lua_rawgeti(L, 2, i);
            lua_rawgeti(L, 2, j);  // [list[i], list[j]]
            lua_rawseti(L, 2, i);
            lua_rawseti(L, 2, j);
        }
        lua_pushvalue(L, 2);
        return 1;
    });
}

// rng:choice(list) -> one element
int l_rng_choice(lua_State* L) {
    return lua_guarded(L, [&] {
        auto r = self(L);
        cai::arg_table(L, 2, "rng:choice", "list");
        int n = static_cast<int>(lua_objlen(L, 2));
        if (n == 0) cai::fail("rng:choice: the list is empty");
        lua_rawgeti(L, 2, static_cast<int>(r->integer(1, n)));
        return 1;
    });
}

// rng:weighted(weights) -> 1-based index drawn in proportion to weights
int l_rng_weighted(lua_State* L) {
    return lua_guarded(L, [&] {
        auto r = self(L);
        cai::arg_table(L, 2, "rng:weighted", "weights");
        std::vector<double> weights;
        int n = static_cast<int>(lua_objlen(L, 2));
        for (int i = 1; i <= n; ++i) {
            lua_rawgeti(L, 2, i);
            if (lua_type(L, -1) != LUA_TNUMBER) {
                lua_pop(L, 1);
                cai::fail("rng:weighted: weights[", i, "] must be a number");
            }
            weights.push_back(lua_tonumber(L, -1));
            lua_pop(L, 1);
        }
        if (weights.empty()) cai::fail("rng:weighted: weights is empty");
        lua_pushnumber(L, static_cast<double>(r->weighted_index(weights) + 1));
        return 1;
    });
}

// rng:derive(key) -> an independent stream for `key` (a number or string).
int l_rng_derive(lua_State* L) {
    return lua_guarded(L, [&] {
        auto r = self(L);
        uint64_t key;
        if (lua_type(L, 2) == LUA_TSTRING) {
            size_t len;
            const char* s = lua_tolstring(L, 2, &len);
            key = 1469598103934665603ULL;  // FNV-1a
            for (size_t i = 0; i < len; ++i) key = (key ^ static_cast<unsigned char>(s[i])) * 1099511628211ULL;
        } else {
            key = static_cast<uint64_t>(cai::arg_integer(L, 2, "rng:derive", "key"));
        }
        cai::rng copy = *r;  // derive from the current state without advancing it
        cai::push_handle(L, std::make_shared<cai::rng>(cai::rng::derive(copy.next_u64(), key)), rng_type);
        return 1;
    });
}

const luaL_Reg rng_methods[] = {
    {"random", l_rng_random}, {"uniform", l_rng_uniform}, {"int", l_rng_int},
    {"normal", l_rng_normal}, {"shuffle", l_rng_shuffle}, {"choice", l_rng_choice},
    {"weighted", l_rng_weighted}, {"derive", l_rng_derive}, {nullptr, nullptr},
};

const luaL_Reg rng_functions[] = {
    {"new", l_rng_new},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_rng(lua_State* L) {
    cai::new_class<cai::rng>(L, rng_type, rng_methods);
    luaL_newlib(L, rng_functions);
    return 1;
}

// cai._reward: reward models (*ForSequenceClassification) for
// cai.model.load_reward and cai.scoring.reward_model.
//
//   local rm = require("cai._reward").load(dir, "fp32")
//   rm:score({ "text", ... }, { batch_size = 8 })  --> { 0.31, ... }
//   rm:info()  --> { architecture=, model_type=, dtype=, parameters=, path= }
//   rm:release()
#include "core/error.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"
#include "model/model.h"
#include "model/reward.h"

namespace {

using cai::lua_guarded;

const char* const reward_type = "cai.reward";

std::shared_ptr<cai::reward_model> self(lua_State* L) {
    return cai::check_handle<cai::reward_model>(L, 1, reward_type);
}

// cai._reward.load(dir, dtype|nil); no dtype: the checkpoint's own.
int l_reward_load(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "cai.model.load_reward";
        std::string dir = cai::arg_string(L, 1, fname, "dir");
        at::ScalarType dtype =
            lua_isnoneornil(L, 2) ? at::ScalarType::Undefined : cai::parse_dtype(cai::arg_string(L, 2, fname, "dtype"));
        cai::push_handle(L, cai::reward_model::load(dir, dtype), reward_type);
        return 1;
    });
}

// rm:score(texts, { batch_size = 8 }) -> { score, ... }, one finite number per text
int l_reward_score(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "rm:score";
        auto rm = self(L);
        cai::check_option_keys(L, 3, fname, {"batch_size"});
        std::vector<std::string> texts = cai::arg_string_list(L, 2, fname, "texts");
        int64_t batch_size = cai::opt_integer(L, 3, "batch_size", 8, fname);
        if (batch_size < 1) cai::fail(fname, ": option 'batch_size' must be >= 1, got ", batch_size);
        std::vector<double> scores = rm->score_texts(texts, batch_size);
        lua_createtable(L, (int)scores.size(), 0);  // [scores]
        for (size_t i = 0; i < scores.size(); ++i) {
            lua_pushnumber(L, scores[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        return 1;
    });
}

int l_reward_info(lua_State* L) {
    return lua_guarded(L, [&] {
        auto rm = self(L);
        lua_createtable(L, 0, 5);  // [info]
        lua_pushstring(L, rm->head.architecture.c_str());
        lua_setfield(L, -2, "architecture");
        lua_pushstring(L, rm->backbone->config.model_type.c_str());
        lua_setfield(L, -2, "model_type");
        lua_pushstring(L, cai::dtype_name(rm->backbone->dtype).c_str());
        lua_setfield(L, -2, "dtype");
        lua_pushnumber(L, (double)(rm->backbone->parameter_count() + rm->score_weight.numel()));
        lua_setfield(L, -2, "parameters");
        lua_pushstring(L, rm->path.c_str());
        lua_setfield(L, -2, "path");
        return 1;
    });
}

const luaL_Reg reward_methods[] = {
    {"score", l_reward_score},
    {"info", l_reward_info},
    {nullptr, nullptr},
};

const luaL_Reg reward_functions[] = {
    {"load", l_reward_load},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_reward(lua_State* L) {
    cai::new_class<cai::reward_model>(L, reward_type, reward_methods);
    luaL_newlib(L, reward_functions);   // [lib]
    luaL_getmetatable(L, reward_type);  // [lib, mt]
    lua_setfield(L, -2, "metatable");   // [lib]
    return 1;
}

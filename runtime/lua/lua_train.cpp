// cai._train: training primitives for lua/cai/train.lua (cai.train).
// The friendly argument checks live in Lua; these check again, tersely.
#include <string>
#include <vector>

#include "core/error.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"
#include "train/dpo_loss.h"
#include "train/schedule.h"

namespace {

using cai::lua_guarded;

// A Lua list of numbers at index -> (N) float64 tensor.
at::Tensor number_list(lua_State* L, int index, const char* fname, const char* what) {
    cai::arg_table(L, index, fname, what);
    const int n = static_cast<int>(lua_objlen(L, index));
    std::vector<double> values(n);
    for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, i);  // [value]
        if (lua_type(L, -1) != LUA_TNUMBER) {
            std::string got = luaL_typename(L, -1);
            lua_pop(L, 1);
            cai::fail(fname, ": ", what, "[", i, "] must be a number, got ", got);
        }
        values[i - 1] = lua_tonumber(L, -1);
        lua_pop(L, 1);  // []
    }
    return at::tensor(values, at::kDouble);
}

void push_number_list(lua_State* L, const at::Tensor& t) {
    at::Tensor values = t.to(at::kDouble).contiguous();
    const double* p = values.data_ptr<double>();
    lua_createtable(L, static_cast<int>(values.numel()), 0);  // [list]
    for (int64_t i = 0; i < values.numel(); ++i) {
        lua_pushnumber(L, p[i]);
        lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
}

// dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected,
//          beta, loss, label_smoothing, reference_free, discopop_tau)
//   -> { losses = {...}, chosen_rewards = {...}, rejected_rewards = {...} }
int l_train_dpo_loss(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "cai.train.dpo_loss";
        at::Tensor pc = number_list(L, 1, fname, "policy_chosen");
        at::Tensor pr = number_list(L, 2, fname, "policy_rejected");
        at::Tensor rc = number_list(L, 3, fname, "reference_chosen");
        at::Tensor rr = number_list(L, 4, fname, "reference_rejected");
        double beta = cai::arg_number(L, 5, fname, "beta");
        std::string loss = cai::arg_string(L, 6, fname, "loss");
        double label_smoothing = cai::arg_number(L, 7, fname, "label_smoothing");
        bool reference_free = lua_toboolean(L, 8) != 0;
        double discopop_tau = cai::arg_number(L, 9, fname, "discopop_tau");
        auto r = cai::dpo_loss_forward(pc, pr, rc, rr, beta, loss, label_smoothing, reference_free, discopop_tau);
        lua_createtable(L, 0, 3);  // [result]
        push_number_list(L, r.losses);
        lua_setfield(L, -2, "losses");
        push_number_list(L, r.chosen_rewards);
        lua_setfield(L, -2, "chosen_rewards");
        push_number_list(L, r.rejected_rewards);
        lua_setfield(L, -2, "rejected_rewards");
        return 1;
    });
}

// dpo_loss_types() -> { "sigmoid", ... }
int l_train_dpo_loss_types(lua_State* L) {
    return lua_guarded(L, [&] {
        const auto& names = cai::dpo_loss_types();
        lua_createtable(L, static_cast<int>(names.size()), 0);  // [list]
        for (size_t i = 0; i < names.size(); ++i) {
            lua_pushstring(L, names[i].c_str());
            lua_rawseti(L, -2, static_cast<int>(i + 1));
        }
        return 1;
    });
}

// learning_rate(base_lr, schedule, total_steps, warmup_steps, warmup_ratio, step) -> lr
int l_train_learning_rate(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "cai.train.learning_rate";
        cai::lr_schedule s;
        double base_lr = cai::arg_number(L, 1, fname, "lr");
        s.type = cai::arg_string(L, 2, fname, "schedule");
        s.total_steps = cai::arg_integer(L, 3, fname, "total_steps");
        s.warmup_steps = cai::arg_integer(L, 4, fname, "warmup_steps");
        s.warmup_ratio = cai::arg_number(L, 5, fname, "warmup_ratio");
        int64_t step = cai::arg_integer(L, 6, fname, "step");
        lua_pushnumber(L, base_lr * cai::lr_multiplier(s, step));
        return 1;
    });
}

const luaL_Reg train_functions[] = {
    {"dpo_loss", l_train_dpo_loss},
    {"dpo_loss_types", l_train_dpo_loss_types},
    {"learning_rate", l_train_learning_rate},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_train(lua_State* L) {
    lua_newtable(L);  // [module]
    luaL_register(L, nullptr, train_functions);
    return 1;
}

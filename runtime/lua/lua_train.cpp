// cai._train: training primitives for lua/cai/train.lua (cai.train).
// lua/cai/train.lua checks the options (cai.check: types, ranges, unknown
// keys); these read them typed and leave the invariants to the trainers.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "lua/bindings.h"
#include "lua/lua_model.h"
#include "lua/lua_util.h"
#include "train/dpo.h"
#include "train/dpo_loss.h"
#include "train/lora.h"
#include "model/model.h"
#include "model/reward.h"
#include "model/save.h"
#include "core/fs.h"
#include "dist/dist.h"
#include "train/reward_train.h"
#include "train/schedule.h"
#include "train/sft.h"

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

// A Lua list of strings at index -> vector (errors name what[i]).
std::vector<std::string> string_list(lua_State* L, int index, const char* fname, const char* what) {
    cai::arg_table(L, index, fname, what);
    const int n = static_cast<int>(lua_objlen(L, index));
    std::vector<std::string> out(n);
    for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, i);  // [value]
        if (lua_type(L, -1) != LUA_TSTRING) {
            std::string got = luaL_typename(L, -1);
            lua_pop(L, 1);
            cai::fail(fname, ": ", what, "[", i, "] must be a string, got ", got);
        }
        size_t len = 0;
        const char* p = lua_tolstring(L, -1, &len);
        out[i - 1].assign(p, len);
        lua_pop(L, 1);  // []
    }
    return out;
}

// Lists of strings of one length: with index 0 the arguments first,
// first+1, ...; otherwise the fields of the options table at index (an
// absent first field gives no lists). names: { field, what } per list;
// errors name set[i] ("eval_pairs chosen[3] must be a string") and the lengths.
std::vector<std::vector<std::string>> equal_string_lists(
    lua_State* L, int index, int first, const std::vector<std::pair<const char*, const char*>>& names,
    const char* fname, const std::string& set) {
    std::vector<std::vector<std::string>> lists;
    for (size_t k = 0; k < names.size(); ++k) {
        int at = first + static_cast<int>(k);
        if (index != 0) {
            lua_getfield(L, index, names[k].first);  // [list]
            if (k == 0 && lua_isnil(L, -1)) {
                lua_pop(L, 1);  // []
                return lists;
            }
            at = lua_gettop(L);
        }
        std::string what = set.empty() ? names[k].second : set + " " + names[k].second;
        lists.push_back(string_list(L, at, fname, what.c_str()));
        if (index != 0) lua_pop(L, 1);  // []
    }
    std::string sizes;
    bool equal = true;
    for (const auto& list : lists) {
        sizes += (sizes.empty() ? "" : ", ") + std::to_string(list.size());
        equal = equal && list.size() == lists[0].size();
    }
    if (!equal) cai::fail(fname, ": ", set.empty() ? "" : set + ": ", "lists of different lengths (", sizes, ")");
    return lists;
}

// Trainer options shared by sft and dpo from the options table at index.
cai::trainer_options trainer_options_from(lua_State* L, int index, const char* fname) {
    cai::trainer_options o;
    o.out_dir = cai::opt_string(L, index, "out", "", fname);
    if (o.out_dir.empty()) cai::fail(fname, ": field 'out' (the run directory) is required");
    o.seed = static_cast<uint64_t>(cai::opt_integer(L, index, "seed", 42, fname));
    o.epochs = cai::opt_integer(L, index, "epochs", 1, fname);
    o.max_steps = cai::opt_integer(L, index, "max_steps", 0, fname);
    o.gradient_accumulation_steps = cai::opt_integer(L, index, "gradient_accumulation_steps", 1, fname);
    o.learning_rate = cai::opt_number(L, index, "learning_rate", 5e-6, fname);
    o.adamw.weight_decay = cai::opt_number(L, index, "weight_decay", 0.0, fname);
    o.max_grad_norm = cai::opt_number(L, index, "max_grad_norm", 1.0, fname);
    o.schedule.type = cai::opt_string(L, index, "schedule", "linear", fname);
    o.schedule.warmup_steps = cai::opt_integer(L, index, "warmup_steps", 0, fname);
    o.schedule.warmup_ratio = cai::opt_number(L, index, "warmup_ratio", 0.0, fname);
    o.batches.batch_size = cai::opt_integer(L, index, "batch_size", 0, fname);
    o.batches.max_tokens = cai::opt_integer(L, index, "max_tokens", 0, fname);
    if (o.batches.batch_size > 0 && o.batches.max_tokens > 0)
        cai::fail(fname, ": give batch_size or max_tokens, not both");
    if (o.batches.batch_size == 0 && o.batches.max_tokens == 0) o.batches.batch_size = 8;  // TRL's default
    // report_to: "none" | "tensorboard" | a list of them (TRL's option; metrics.jsonl is always written).
    lua_getfield(L, index, "report_to");  // [report_to]
    std::vector<std::string> report_to;
    if (lua_type(L, -1) == LUA_TSTRING) report_to.push_back(lua_tostring(L, -1));
    else if (lua_type(L, -1) == LUA_TTABLE) report_to = string_list(L, lua_gettop(L), fname, "report_to");
    lua_pop(L, 1);  // []
    o.report_to_tensorboard = std::find(report_to.begin(), report_to.end(), "tensorboard") != report_to.end();
    o.logging_steps = cai::opt_integer(L, index, "logging_steps", 10, fname);
    o.save_steps = cai::opt_integer(L, index, "save_steps", 0, fname);
    o.save_total_limit = cai::opt_integer(L, index, "save_total_limit", 0, fname);
    o.fingerprint = cai::opt_string(L, index, "fingerprint", "", fname);
    o.resume = cai::opt_boolean(L, index, "resume", true, fname);
    o.show_progress = cai::opt_boolean(L, index, "progress", true, fname);
    o.eval.eval_steps = cai::opt_integer(L, index, "eval_steps", 0, fname);
    o.eval.keep_best = cai::opt_string(L, index, "keep_best", "", fname);
    return o;
}

// How sft and dpo encode their text (sft_options and dpo_options both have these fields).
template <class Options>
void encoding_options_from(lua_State* L, int index, const char* fname, Options& o) {
    o.eos = cai::opt_boolean(L, index, "eos", true, fname);
    o.add_special_tokens = cai::opt_boolean(L, index, "add_special_tokens", true, fname);
    o.max_length = cai::opt_integer(L, index, "max_length", 0, fname);
}

// The trainers' result, as both bindings return it:
//   last_metrics (JSON text), steps, interrupted, final_checkpoint, resumed_from,
//   best_checkpoint, best_step, best_value
int push_train_result(lua_State* L, const cai::train_result& r) {
    lua_pushlstring(L, r.last_metrics.data(), r.last_metrics.size());
    lua_pushinteger(L, static_cast<lua_Integer>(r.steps));
    lua_pushboolean(L, r.interrupted);
    lua_pushstring(L, r.final_checkpoint.c_str());
    lua_pushstring(L, r.resumed_from.c_str());
    lua_pushstring(L, r.best_checkpoint.c_str());
    lua_pushinteger(L, static_cast<lua_Integer>(r.best_step));
    lua_pushnumber(L, r.best_value);
    return 8;
}

// Calls the Lua function at a registry reference with one string; a Lua
// error becomes a cai::error (never a longjmp through C++ frames).
struct lua_callback {
    lua_State* L;
    int ref = LUA_NOREF;
    lua_callback(lua_State* L_, int index) : L(L_) {
        if (lua_isfunction(L, index)) {
            lua_pushvalue(L, index);                  // [fn]
            ref = luaL_ref(L, LUA_REGISTRYINDEX);     // []
        }
    }
    ~lua_callback() { luaL_unref(L, LUA_REGISTRYINDEX, ref); }
    bool present() const { return ref != LUA_NOREF; }
    void operator()(const std::string& text) const {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);  // [fn]
        lua_pushlstring(L, text.data(), text.size());  // [fn text]
        if (lua_pcall(L, 1, 0, 0) != 0) {        // [err]
            std::string message = lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)";
            lua_pop(L, 1);                        // []
            cai::fail("on_log: ", message);
        }
    }
};

// A Lua list (one per example) of lists of { text = string, trained = bool }
// at index -> examples made of segments (errors name what[i][j]).
std::vector<cai::sft_example> segment_examples(lua_State* L, int index, const char* fname, const char* what) {
    cai::arg_table(L, index, fname, what);
    const int n = static_cast<int>(lua_objlen(L, index));
    std::vector<cai::sft_example> out(n);
    for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, i);  // [example]
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            cai::fail(fname, ": ", what, "[", i, "] must be a list of { text =, trained = } segments");
        }
        const int k = static_cast<int>(lua_objlen(L, -1));
        for (int j = 1; j <= k; ++j) {
            lua_rawgeti(L, -1, j);        // [example segment]
            lua_getfield(L, -1, "text");  // [example segment text]
            lua_getfield(L, -2, "trained");  // [example segment text trained]
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TBOOLEAN) {
                lua_pop(L, 4);  // []
                cai::fail(fname, ": ", what, "[", i, "][", j, "] must be { text = string, trained = boolean }");
            }
            size_t len = 0;
            const char* p = lua_tolstring(L, -2, &len);
            out[i - 1].segments.push_back({std::string(p, len), lua_toboolean(L, -1) != 0});
            lua_pop(L, 3);  // [example]
        }
        lua_pop(L, 1);  // []
        if (out[i - 1].segments.empty()) cai::fail(fname, ": ", what, "[", i, "] has no segments");
    }
    return out;
}

// sft(model, prompts, responses, options, on_log | nil) -> the train result (push_train_result)
// With options.segments (and options.eval_segments) the examples are
// segment lists and prompts/responses are empty.
int l_train_sft(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "cai.train.sft";
        auto m = cai::check_model(L, 1);
        auto lists = equal_string_lists(L, 0, 2, {{"", "prompt"}, {"", "response"}}, fname, "");
        cai::arg_table(L, 4, fname, "options");
        cai::sft_options o;
        o.trainer = trainer_options_from(L, 4, fname);
        encoding_options_from(L, 4, fname, o);
        o.full = cai::opt_boolean(L, 4, "full", false, fname);
        lua_getfield(L, 4, "eval_segments");
        if (!lua_isnil(L, -1)) o.eval_data = segment_examples(L, lua_gettop(L), fname, "eval_data");
        lua_pop(L, 1);
        auto eval = equal_string_lists(L, 4, 0, {{"eval_prompts", "prompt"}, {"eval_responses", "response"}}, fname, "eval_data");
        for (size_t i = 0; !eval.empty() && i < eval[0].size(); ++i) o.eval_data.push_back({eval[0][i], eval[1][i], {}});
        lua_callback on_log(L, 5);
        if (on_log.present()) o.trainer.on_log = [&on_log](const std::string& line) { on_log(line); };
        std::vector<cai::sft_example> data(lists[0].size());
        for (size_t i = 0; i < data.size(); ++i) data[i] = {lists[0][i], lists[1][i], {}};
        lua_getfield(L, 4, "segments");
        if (!lua_isnil(L, -1)) {
            if (!data.empty()) cai::fail(fname, ": give either prompts/responses or segments, not both");
            data = segment_examples(L, lua_gettop(L), fname, "data");
        }
        lua_pop(L, 1);
        return push_train_result(L, cai::sft_train(*m, data, o));
    });
}

// dpo(model, prompts, chosen, rejected, options, on_log | nil) -> the train result (push_train_result)
int l_train_dpo(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "cai.train.dpo";
        auto m = cai::check_model(L, 1);
        auto lists = equal_string_lists(L, 0, 2, {{"", "prompt"}, {"", "chosen"}, {"", "rejected"}}, fname, "");
        cai::arg_table(L, 5, fname, "options");
        cai::dpo_options o;
        o.trainer = trainer_options_from(L, 5, fname);
        encoding_options_from(L, 5, fname, o);
        o.beta = cai::opt_number(L, 5, "beta", 0.1, fname);
        o.loss = cai::opt_string(L, 5, "loss", "sigmoid", fname);
        o.label_smoothing = cai::opt_number(L, 5, "label_smoothing", 0.0, fname);
        lua_getfield(L, 5, "reference");
        if (lua_isnil(L, -1) || lua_type(L, -1) == LUA_TSTRING)
            o.reference = cai::opt_string(L, 5, "reference", "adapter_off", fname);
        else
            o.reference_model = cai::check_model(L, lua_gettop(L));
        lua_pop(L, 1);
        o.reference_cache = cai::opt_boolean(L, 5, "reference_cache", false, fname);
        o.rpo_alpha = cai::opt_number(L, 5, "rpo_alpha", 0.0, fname);
        auto eval = equal_string_lists(L, 5, 0, {{"eval_prompts", "prompt"}, {"eval_chosen", "chosen"}, {"eval_rejected", "rejected"}},
                                       fname, "eval_pairs");
        for (size_t i = 0; !eval.empty() && i < eval[0].size(); ++i) o.eval_pairs.push_back({eval[0][i], eval[1][i], eval[2][i]});
        lua_callback on_log(L, 6);
        if (on_log.present()) o.trainer.on_log = [&on_log](const std::string& line) { on_log(line); };
        std::vector<cai::dpo_pair> pairs(lists[0].size());
        for (size_t i = 0; i < pairs.size(); ++i) pairs[i] = {lists[0][i], lists[1][i], lists[2][i]};
        return push_train_result(L, cai::dpo_train(*m, pairs, o));
    });
}

// reward(model, chosen, rejected, options, on_log | nil) -> the train result (push_train_result), then
// the reward model's directory (out/model; "" when the run was interrupted)
// A new score head (seeded by options.seed) on the causal LM; with LoRA the
// adapters are merged into the model to write out/model.
int l_train_reward(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "cai.train.reward";
        auto m = cai::check_model(L, 1);
        auto lists = equal_string_lists(L, 0, 2, {{"", "chosen"}, {"", "rejected"}}, fname, "");
        cai::arg_table(L, 4, fname, "options");
        cai::reward_options o;
        o.trainer = trainer_options_from(L, 4, fname);
        o.add_special_tokens = cai::opt_boolean(L, 4, "add_special_tokens", true, fname);
        o.max_length = cai::opt_integer(L, 4, "max_length", 0, fname);
        o.full = cai::opt_boolean(L, 4, "full", false, fname);
        o.center_rewards_coefficient = cai::opt_number(L, 4, "center_rewards_coefficient", 0.0, fname);
        auto eval = equal_string_lists(L, 4, 0, {{"eval_chosen", "chosen"}, {"eval_rejected", "rejected"}}, fname,
                                       "eval_pairs");
        for (size_t i = 0; !eval.empty() && i < eval[0].size(); ++i) o.eval_pairs.push_back({eval[0][i], eval[1][i]});
        lua_callback on_log(L, 5);
        if (on_log.present()) o.trainer.on_log = [&on_log](const std::string& line) { on_log(line); };
        std::vector<cai::reward_text_pair> pairs(lists[0].size());
        for (size_t i = 0; i < pairs.size(); ++i) pairs[i] = {lists[0][i], lists[1][i]};
        auto rm = cai::reward_model::from_causal(m, o.trainer.seed);
        cai::train_result r = cai::reward_train(*rm, pairs, o);
        std::string dir;
        if (!r.interrupted) {
            dir = cai::path_join(o.trainer.out_dir, "model");
            if (cai::lora_present(*m) && !cai::lora_describe(*m).merged) cai::lora_merge(*m);
            if (cai::dist::is_main()) cai::save_reward_model(*rm, dir, m->dtype);
            cai::dist::barrier("the reward model in " + dir);
        }
        int n = push_train_result(L, r);
        lua_pushstring(L, dir.c_str());
        return n + 1;
    });
}

const luaL_Reg train_functions[] = {
    {"reward", l_train_reward},
    {"dpo_loss", l_train_dpo_loss},
    {"dpo_loss_types", l_train_dpo_loss_types},
    {"learning_rate", l_train_learning_rate},
    {"sft", l_train_sft},
    {"dpo", l_train_dpo},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_train(lua_State* L) {
    lua_newtable(L);  // [module]
    luaL_register(L, nullptr, train_functions);
    return 1;
}

// cai._model: loading models and the primitives lua/cai/model.lua builds
// m:generate, m:logprobs, m:logits, m:save, m.config and m.tokenizer on.
#include "lua/lua_model.h"

#include <c10/core/InferenceMode.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "dist/dist.h"
#include "generate/generate.h"
#include "lua/bindings.h"
#include "lua/lua_json.h"
#include "lua/lua_tensor.h"
#include "lua/lua_tokenizer.h"
#include "lua/lua_util.h"
#include "model/model.h"
#include "model/random.h"
#include "model/reward.h"
#include "model/save.h"
#include "tokenizer/tokenizer.h"

namespace {

using cai::lua_guarded;

const char* const model_type = "cai.model";
std::shared_ptr<cai::model> self(lua_State* L) { return cai::check_model(L, 1); }

// Reads a list whose items are strings (encoded with special tokens) or id lists.
std::vector<std::vector<int32_t>> token_lists(lua_State* L, int index, const cai::model& m, const char* fname,
                                              const char* what, bool add_special_tokens) {
    cai::arg_table(L, index, fname, what);
    std::vector<std::vector<int32_t>> out;
    size_t n = lua_objlen(L, index);
    for (size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, (int)i);  // [item]
        std::string item = std::string(what) + "[" + std::to_string(i) + "]";
        if (lua_type(L, -1) == LUA_TSTRING) {
            if (!m.tok) cai::fail(fname, ": ", item, " is a string but the model has no tokenizer");
            size_t len;
            const char* s = lua_tolstring(L, -1, &len);
            out.push_back(m.tok->encode(std::string(s, len), add_special_tokens));
        } else if (lua_type(L, -1) == LUA_TTABLE) {
            std::vector<int32_t> ids;
            for (long long id : cai::arg_integer_list(L, lua_gettop(L), fname, item.c_str())) {
                if (id < 0 || id >= m.config.vocab_size)
                    cai::fail(fname, ": ", item, " holds token id ", id, ", outside the vocabulary [0, ",
                              m.config.vocab_size, ")");
                ids.push_back((int32_t)id);
            }
            out.push_back(std::move(ids));
        } else {
            std::string got = luaL_typename(L, -1);
            lua_pop(L, 1);
            cai::fail(fname, ": ", item, " must be a string or a list of token ids, got ", got);
        }
        lua_pop(L, 1);  // []
    }
    return out;
}

// use_lora = false switches adapters off for one call; true requires them.
struct lora_choice {
    cai::model& m;
    bool restore = false;
    lora_choice(cai::model& model, lua_State* L, int opts, const char* fname) : m(model) {
        if (lua_isnoneornil(L, opts)) return;
        lua_getfield(L, opts, "use_lora");  // [use_lora]
        int type = lua_type(L, -1);
        bool value = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (type == LUA_TNIL) return;
        if (type != LUA_TBOOLEAN) cai::fail(fname, ": option 'use_lora' must be a boolean");
        if (value && !m.has_lora()) cai::fail(fname, ": use_lora = true but the model has no LoRA adapter");
        if (!value && m.has_lora()) {
            m.set_lora_enabled(false);
            restore = true;
        }
    }
    ~lora_choice() {
        if (restore) m.set_lora_enabled(true);
    }
};

// cai._model.load(path, dtype|nil, tokenizer_dir|nil); no dtype: the checkpoint's own.
int l_model_load(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string path = cai::arg_string(L, 1, "cai.model.load", "path");
        at::ScalarType dtype = lua_isnoneornil(L, 2) ? at::ScalarType::Undefined
                                                     : cai::parse_dtype(cai::arg_string(L, 2, "cai.model.load", "dtype"));
        std::string tokenizer_dir = lua_isnoneornil(L, 3) ? "" : cai::arg_string(L, 3, "cai.model.load", "tokenizer");
        cai::push_handle(L, cai::model::load(path, dtype, true, tokenizer_dir), model_type);
        return 1;
    });
}

// cai._model.write_random(dir, config_json, seed, dtype) -> dir
int l_model_write_random(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "cai.model.random";
        std::string dir = cai::arg_string(L, 1, fname, "dir");
        std::string json = cai::arg_string(L, 2, fname, "config");
        long long seed = cai::arg_integer(L, 3, fname, "seed");
        std::string dtype = cai::arg_string(L, 4, fname, "dtype");
        cai::model_config c = cai::parse_model_config(json, fname);
        // architectures = { "...ForSequenceClassification" }: a random reward model (score head, no
        // lm_head), checked by the reward loader's own rules so that it loads.
        auto tensors = cai::names_reward_architecture(json, fname)
                           ? cai::random_reward_tensors(c, (uint64_t)seed, cai::parse_reward_config(json, fname).num_labels)
                           : cai::random_model_tensors(c, (uint64_t)seed);
        cai::write_model_dir(dir, json, tensors, cai::parse_dtype(dtype));
        lua_pushvalue(L, 1);
        return 1;
    });
}

// m:_generate(prompts, opts) -> { {text=, finish=, tokens={...}}, ... }
int l_model_generate(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "m:generate";
        auto m = self(L);
        auto prompts = token_lists(L, 2, *m, fname, "prompts", true);
        cai::generate_options o;
        o.max_new_tokens = cai::opt_integer(L, 3, "max_new_tokens", 256, fname);
        o.sampling.temperature = cai::opt_number(L, 3, "temperature", 0, fname);
        o.sampling.top_k = cai::opt_integer(L, 3, "top_k", 0, fname);
        o.sampling.top_p = cai::opt_number(L, 3, "top_p", 1.0, fname);
        o.sampling.min_p = cai::opt_number(L, 3, "min_p", 0.0, fname);
        o.sampling.repetition_penalty = cai::opt_number(L, 3, "repetition_penalty", 1.0, fname);
        o.seed = (uint64_t)cai::opt_integer(L, 3, "seed", 0, fname);
        o.batch_size = cai::opt_integer(L, 3, "batch_size", 16, fname);
        o.prefix_cache = cai::opt_boolean(L, 3, "prefix_cache", true, fname);
        o.prefill_chunk = cai::opt_integer(L, 3, "prefill_chunk", o.prefill_chunk, fname);
        const double kv_cache_mb = cai::opt_number(L, 3, "kv_cache_mb", 0, fname);
        if (!(kv_cache_mb >= 0) || kv_cache_mb > 1e9) cai::fail(fname, ": option 'kv_cache_mb' must be >= 0, got ", kv_cache_mb);
        o.kv_cache_bytes = (int64_t)(kv_cache_mb * 1048576.0);
        // progress = true | false | "what" (names the bar: "generate: what 40/100").
        bool progress_named = false;
        if (lua_type(L, 3) == LUA_TTABLE) {
            lua_getfield(L, 3, "progress");  // [progress]
            progress_named = lua_type(L, -1) == LUA_TSTRING;
            if (progress_named) o.progress_label = lua_tostring(L, -1);
            lua_pop(L, 1);  // []
        }
        o.show_progress = progress_named || cai::opt_boolean(L, 3, "progress", true, fname);
        const int64_t first_index = cai::opt_integer(L, 3, "first_index", 0, fname);
        o.first_index = (uint64_t)first_index;
        if (lua_type(L, 3) == LUA_TTABLE) {
            lua_getfield(L, 3, "streams");  // [streams]
            if (!lua_isnil(L, -1)) {
                for (long long v : cai::arg_integer_list(L, lua_gettop(L), fname, "opts.streams")) {
                    if (v < 0) cai::fail(fname, ": opts.streams[", o.streams.size() + 1, "] must be >= 0, got ", v);
                    o.streams.push_back((uint64_t)v);
                }
                if (o.streams.size() != prompts.size())
                    cai::fail(fname, ": opts.streams has ", o.streams.size(), " entries for ", prompts.size(),
                              " prompts; give one stream index per prompt");
            }
            lua_pop(L, 1);  // []
        }
        if (!lua_isnoneornil(L, 3)) {
            lua_getfield(L, 3, "stop");  // [stop]
            int top = lua_gettop(L);
            if (lua_type(L, top) == LUA_TSTRING) {
                o.stop.push_back(lua_tostring(L, top));
            } else if (!lua_isnil(L, top)) {
                o.stop = cai::arg_string_list(L, top, fname, "opts.stop");
            }
            lua_pop(L, 1);  // []
        }
        lora_choice lora(*m, L, 3, fname);
        std::vector<cai::generation> results = cai::generate(*m, prompts, o);
        lua_createtable(L, (int)results.size(), 0);  // [out]
        for (size_t i = 0; i < results.size(); ++i) {
            const auto& r = results[i];
            lua_createtable(L, 0, 3);  // [out, item]
            lua_pushlstring(L, r.text.data(), r.text.size());
            lua_setfield(L, -2, "text");
            lua_pushstring(L, r.finish.c_str());
            lua_setfield(L, -2, "finish");
            lua_createtable(L, (int)r.tokens.size(), 0);  // [out, item, tokens]
            for (size_t t = 0; t < r.tokens.size(); ++t) {
                lua_pushnumber(L, r.tokens[t]);
                lua_rawseti(L, -2, (int)t + 1);
            }
            lua_setfield(L, -2, "tokens");      // [out, item]
            lua_rawseti(L, -2, (int)i + 1);     // [out]
        }
        return 1;
    });
}

// m:_logprobs(prompts, completions, opts) -> { {sum=, mean=, n=}, ... }
int l_model_logprobs(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "m:logprobs";
        auto m = self(L);
        auto prompts = token_lists(L, 2, *m, fname, "prompts", true);
        auto completions = token_lists(L, 3, *m, fname, "completions", false);
        if (prompts.size() != completions.size())
            cai::fail(fname, ": ", prompts.size(), " prompts but ", completions.size(), " completions");
        if (cai::opt_boolean(L, 4, "eos", false, fname)) {
            // The completion as a finished response, as cai.train.dpo scores it.
            int32_t eos = m->tok && m->tok->eos_id >= 0 ? m->tok->eos_id
                          : !m->eos_ids.empty()         ? (int32_t)m->eos_ids.front()
                                                        : -1;
            if (eos < 0) cai::fail(fname, ": eos = true but the tokenizer and config name no EOS token");
            for (auto& c : completions) c.push_back(eos);
        }
        int64_t batch_size = cai::opt_integer(L, 4, "batch_size", 8, fname);
        lora_choice lora(*m, L, 4, fname);
        c10::InferenceMode no_grad;
        auto scores = cai::score_completions(*m, prompts, completions, batch_size);
        lua_createtable(L, (int)scores.size(), 0);  // [out]
        for (size_t i = 0; i < scores.size(); ++i) {
            lua_createtable(L, 0, 3);  // [out, item]
            lua_pushnumber(L, scores[i].sum);
            lua_setfield(L, -2, "sum");
            lua_pushnumber(L, scores[i].mean);
            lua_setfield(L, -2, "mean");
            lua_pushnumber(L, (double)scores[i].n);
            lua_setfield(L, -2, "n");
            lua_rawseti(L, -2, (int)i + 1);  // [out]
        }
        return 1;
    });
}

// Reads a list of equal-length integer lists into a (B, T) int64 tensor.
at::Tensor integer_matrix(lua_State* L, int index, const char* fname, const char* what) {
    cai::arg_table(L, index, fname, what);
    size_t n = lua_objlen(L, index);
    if (n == 0) cai::fail(fname, ": ", what, " must not be empty");
    std::vector<std::vector<long long>> rows;
    for (size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, (int)i);  // [row]
        std::string item = std::string(what) + "[" + std::to_string(i) + "]";
        rows.push_back(cai::arg_integer_list(L, lua_gettop(L), fname, item.c_str()));
        lua_pop(L, 1);  // []
        if (rows.back().size() != rows.front().size())
            cai::fail(fname, ": ", item, " has ", rows.back().size(), " entries but ", what, "[1] has ",
                      rows.front().size(), " (left-pad the rows and pass attention_mask)");
    }
    if (rows.front().empty()) cai::fail(fname, ": ", what, " rows must not be empty");
    at::Tensor out = at::empty({(int64_t)n, (int64_t)rows.front().size()}, at::kLong);
    auto acc = out.accessor<int64_t, 2>();
    for (size_t i = 0; i < n; ++i)
        for (size_t t = 0; t < rows[i].size(); ++t) acc[i][t] = rows[i][t];
    return out;
}

// m:_logits(ids, opts) -> tensor (B, T, V) float32
int l_model_logits(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "m:logits";
        auto m = self(L);
        at::Tensor ids = integer_matrix(L, 2, fname, "ids");
        if (ids.size(1) > m->config.max_position_embeddings)
            cai::fail(fname, ": ids rows have ", ids.size(1), " tokens, more than the model's max_position_embeddings (",
                      m->config.max_position_embeddings, ")");
        at::Tensor mask;
        if (!lua_isnoneornil(L, 3)) {
            lua_getfield(L, 3, "attention_mask");  // [mask]
            if (!lua_isnil(L, -1)) {
                mask = integer_matrix(L, lua_gettop(L), fname, "attention_mask");
                if (mask.sizes() != ids.sizes())
                    cai::fail(fname, ": attention_mask has shape ", mask.sizes(), " but ids have ", ids.sizes());
                if (!(mask.eq(0) | mask.eq(1)).all().item<bool>())
                    cai::fail(fname, ": attention_mask entries must be 0 or 1");
            }
            lua_pop(L, 1);  // []
        }
        lora_choice lora(*m, L, 3, fname);
        c10::InferenceMode no_grad;
        cai::push_tensor(L, m->forward(ids, mask).to(at::kFloat), "logits");
        return 1;
    });
}

int l_model_config(lua_State* L) {
    return lua_guarded(L, [&] {
        auto m = self(L);
        cai::push_json(L, nlohmann::json::parse(m->config.json));
        return 1;
    });
}

int l_model_tokenizer(lua_State* L) {
    return lua_guarded(L, [&] {
        auto m = self(L);
        if (!m->tok)
            cai::fail("m.tokenizer: the model loaded from \"", m->path, "\" has no tokenizer (its directory has no "
                      "tokenizer.json or tokenizer.model, as model.save_pretrained() alone writes none); load it with "
                      "cai.model.load(dir, { tokenizer = \"dir/with/tokenizer\" })");
        cai::push_tokenizer(L, m->tok);
        return 1;
    });
}

// m:info() -> { model_type=, dtype=, parameters=, vocab_size=, eos_ids={...}, path=, has_tokenizer=, weights= }
int l_model_info(lua_State* L) {
    return lua_guarded(L, [&] {
        auto m = self(L);
        lua_createtable(L, 0, 7);  // [info]
        lua_pushstring(L, m->config.model_type.c_str());
        lua_setfield(L, -2, "model_type");
        lua_pushstring(L, cai::dtype_name(m->dtype).c_str());
        lua_setfield(L, -2, "dtype");
        lua_pushnumber(L, (double)m->parameter_count());
        lua_setfield(L, -2, "parameters");
        lua_pushnumber(L, (double)m->config.vocab_size);
        lua_setfield(L, -2, "vocab_size");
        lua_pushstring(L, m->path.c_str());
        lua_setfield(L, -2, "path");
        lua_pushboolean(L, m->tok != nullptr);
        lua_setfield(L, -2, "has_tokenizer");
        lua_pushstring(L, m->int8_weights() ? "int8" : cai::dtype_name(m->dtype).c_str());
        lua_setfield(L, -2, "weights");
        lua_createtable(L, (int)m->eos_ids.size(), 0);  // [info, eos]
        for (size_t i = 0; i < m->eos_ids.size(); ++i) {
            lua_pushnumber(L, (double)m->eos_ids[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        lua_setfield(L, -2, "eos_ids");  // [info]
        return 1;
    });
}

// m:_save(dir, dtype or nil): a Hugging Face directory; dtype defaults to the
// model's compute dtype. Rank 0 writes it in a data-parallel job; the others wait.
int l_model_save(lua_State* L) {
    return lua_guarded(L, [&] {
        auto m = self(L);
        std::string dir = cai::arg_string(L, 2, "m:save", "dir");
        at::ScalarType dtype = m->dtype;
        if (!lua_isnoneornil(L, 3)) dtype = cai::parse_dtype(cai::arg_string(L, 3, "m:save", "dtype"));
        cai::dist::main_writes("saving the model " + dir, [&] { cai::save_model(*m, dir, dtype); });
        return 0;
    });
}

// m:_quantize_int8(): the decoder's projection weights become int8 (model::quantize_int8).
int l_model_quantize_int8(lua_State* L) {
    return lua_guarded(L, [&] {
        self(L)->quantize_int8();
        return 0;
    });
}

const luaL_Reg model_methods[] = {
    {"_quantize_int8", l_model_quantize_int8},
    {"_generate", l_model_generate}, {"_logprobs", l_model_logprobs}, {"_logits", l_model_logits},
    {"_config", l_model_config},     {"_tokenizer", l_model_tokenizer}, {"info", l_model_info},
    {"_save", l_model_save},         {nullptr, nullptr},
};

const luaL_Reg model_functions[] = {
    {"load", l_model_load},
    {"write_random", l_model_write_random},
    {nullptr, nullptr},
};

}  // namespace

namespace cai {

std::shared_ptr<model> check_model(lua_State* L, int index) { return check_handle<model>(L, index, model_type); }

}  // namespace cai

extern "C" int luaopen_cai_model(lua_State* L) {
    cai::new_class<cai::model>(L, model_type, model_methods);
    luaL_newlib(L, model_functions);       // [lib]
    luaL_getmetatable(L, model_type);      // [lib, mt]
    lua_setfield(L, -2, "metatable");      // [lib]
    return 1;
}

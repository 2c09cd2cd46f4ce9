// cai._encoder: encoder classifiers (BERT, RoBERTa, DistilBERT, DeBERTa-v2/v3
// *ForSequenceClassification) for cai.model.load_classifier, the encoder
// reward models and cai.scoring.classifier. lua/cai/classifier.lua builds
// the friendly API (clf:logits, clf:classify, clf.config) on these.
//
//   local e = require("cai._encoder").load(dir, "fp32", tokenizer_dir_or_nil)
//   e:logits_texts({ "a", ... }, { "pair a", ... } | nil, batch_size, progress_label)  --> { { l1, l2 }, ... }
//   e:logits_ids({ { 2, 15, 3 }, ... }, { { 0, 0, 0 }, ... } | nil, batch_size, progress_label)
//   e:config()  --> { model_type=, architecture=, num_labels=, id2label = { "a", ... }, problem_type=, ... }
//   e:release()
#include "core/error.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"
#include "model/encoder.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace {

using cai::lua_guarded;

const char* const encoder_type = "cai.encoder";

std::shared_ptr<cai::encoder_classifier> self(lua_State* L) {
    return cai::check_handle<cai::encoder_classifier>(L, 1, encoder_type);
}

// A list of integer lists at index.
std::vector<std::vector<int32_t>> int_rows(lua_State* L, int index, const char* fname, const char* what) {
    cai::arg_table(L, index, fname, what);
    std::vector<std::vector<int32_t>> rows;
    const size_t n = lua_objlen(L, index);
    for (size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, (int)i);  // [row]
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            cai::fail(fname, ": ", what, "[", i, "] must be a list of integers");
        }
        std::vector<int32_t> row;
        const size_t m = lua_objlen(L, -1);
        for (size_t k = 1; k <= m; ++k) {
            lua_rawgeti(L, -1, (int)k);  // [row, v]
            double v = lua_tonumber(L, -1);
            bool ok = lua_type(L, -1) == LUA_TNUMBER && v == (double)(int64_t)v && v >= -2147483648.0 &&
                      v <= 2147483647.0;
            lua_pop(L, 1);  // [row]
            if (!ok) {
                lua_pop(L, 1);
                cai::fail(fname, ": ", what, "[", i, "][", k, "] must be an integer");
            }
            row.push_back((int32_t)v);
        }
        lua_pop(L, 1);  // []
        rows.push_back(std::move(row));
    }
    return rows;
}

void push_logits(lua_State* L, const std::vector<std::vector<double>>& logits) {
    lua_createtable(L, (int)logits.size(), 0);  // [rows]
    for (size_t i = 0; i < logits.size(); ++i) {
        lua_createtable(L, (int)logits[i].size(), 0);  // [rows, row]
        for (size_t l = 0; l < logits[i].size(); ++l) {
            lua_pushnumber(L, logits[i][l]);
            lua_rawseti(L, -2, (int)l + 1);
        }
        lua_rawseti(L, -2, (int)i + 1);  // [rows]
    }
}

int64_t batch_size_arg(lua_State* L, int index, const char* fname) {
    long long b = lua_isnoneornil(L, index) ? 16 : cai::arg_integer(L, index, fname, "batch_size");
    if (b < 1) cai::fail(fname, ": batch_size must be >= 1, got ", b);
    return b;
}

// cai._encoder.load(dir, dtype, tokenizer_dir)
int l_encoder_load(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "cai.model.load_classifier";
        std::string dir = cai::arg_string(L, 1, fname, "dir");
        std::string dtype = lua_isnoneornil(L, 2) ? "fp32" : cai::arg_string(L, 2, fname, "dtype");
        std::string tokenizer_dir = lua_isnoneornil(L, 3) ? "" : cai::arg_string(L, 3, fname, "tokenizer");
        cai::push_handle(L, cai::encoder_classifier::load(dir, cai::parse_dtype(dtype), tokenizer_dir), encoder_type);
        return 1;
    });
}

// e:logits_texts(texts, pairs|nil, batch_size, progress_label|nil)
int l_encoder_logits_texts(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "clf:logits";
        auto e = self(L);
        std::vector<std::string> texts = cai::arg_string_list(L, 2, fname, "texts");
        std::vector<std::string> pairs;
        if (!lua_isnoneornil(L, 3)) pairs = cai::arg_string_list(L, 3, fname, "text_pairs");
        int64_t batch_size = batch_size_arg(L, 4, fname);
        std::string label = lua_isnoneornil(L, 5) ? "" : cai::arg_string(L, 5, fname, "progress");
        push_logits(L, e->logits_rows(e->tokenize(texts, pairs), batch_size, label));
        return 1;
    });
}

// e:logits_ids(rows, type_rows|nil, batch_size, progress_label|nil): rows without padding
int l_encoder_logits_ids(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "clf:logits";
        auto e = self(L);
        auto ids = int_rows(L, 2, fname, "input_ids");
        std::vector<std::vector<int32_t>> types;
        if (!lua_isnoneornil(L, 3)) types = int_rows(L, 3, fname, "token_type_ids");
        if (!types.empty() && types.size() != ids.size())
            cai::fail(fname, ": ", ids.size(), " rows of input_ids but ", types.size(), " of token_type_ids");
        int64_t batch_size = batch_size_arg(L, 4, fname);
        std::string label = lua_isnoneornil(L, 5) ? "" : cai::arg_string(L, 5, fname, "progress");
        std::vector<cai::encoder_row> rows(ids.size());
        for (size_t i = 0; i < ids.size(); ++i) {
            rows[i].ids = std::move(ids[i]);
            if (!types.empty()) {
                if (types[i].size() != rows[i].ids.size())
                    cai::fail(fname, ": row ", i + 1, " has ", rows[i].ids.size(), " input_ids but ", types[i].size(),
                              " token_type_ids");
                rows[i].type_ids = std::move(types[i]);
            }
        }
        push_logits(L, e->logits_rows(rows, batch_size, label));
        return 1;
    });
}

// e:encode(texts, pairs|nil) --> { input_ids = {...}, token_type_ids = {...} } as the model would get them
int l_encoder_encode(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "clf:encode";
        auto e = self(L);
        std::vector<std::string> texts = cai::arg_string_list(L, 2, fname, "texts");
        std::vector<std::string> pairs;
        if (!lua_isnoneornil(L, 3)) pairs = cai::arg_string_list(L, 3, fname, "text_pairs");
        auto rows = e->tokenize(texts, pairs);
        lua_createtable(L, 0, 2);  // [out]
        for (int which = 0; which < 2; ++which) {
            lua_createtable(L, (int)rows.size(), 0);  // [out, list]
            for (size_t i = 0; i < rows.size(); ++i) {
                const auto& v = which == 0 ? rows[i].ids : rows[i].type_ids;
                lua_createtable(L, (int)v.size(), 0);  // [out, list, row]
                for (size_t k = 0; k < v.size(); ++k) {
                    lua_pushinteger(L, v[k]);
                    lua_rawseti(L, -2, (int)k + 1);
                }
                lua_rawseti(L, -2, (int)i + 1);  // [out, list]
            }
            lua_setfield(L, -2, which == 0 ? "input_ids" : "token_type_ids");  // [out]
        }
        return 1;
    });
}

int l_encoder_config(lua_State* L) {
    return lua_guarded(L, [&] {
        auto e = self(L);
        const cai::encoder_config& c = e->config;
        lua_createtable(L, 0, 16);  // [cfg]
        auto set_string = [&](const char* k, const std::string& v) {
            lua_pushlstring(L, v.data(), v.size());
            lua_setfield(L, -2, k);
        };
        auto set_number = [&](const char* k, double v) {
            lua_pushnumber(L, v);
            lua_setfield(L, -2, k);
        };
        set_string("model_type", c.model_type);
        set_string("architecture", c.architecture);
        set_number("num_labels", (double)c.num_labels);
        set_number("hidden_size", (double)c.hidden_size);
        set_number("num_hidden_layers", (double)c.num_layers);
        set_number("num_attention_heads", (double)c.num_heads);
        set_number("vocab_size", (double)c.vocab_size);
        set_number("max_position_embeddings", (double)c.max_position_embeddings);
        set_number("pad_token_id", (double)c.pad_token_id);
        set_number("parameters", (double)e->parameter_count());
        if (!c.problem_type.empty()) set_string("problem_type", c.problem_type);
        set_string("dtype", cai::dtype_name(e->dtype));
        set_string("path", e->path);
        lua_pushboolean(L, e->tok != nullptr);
        lua_setfield(L, -2, "has_tokenizer");
        lua_createtable(L, (int)c.id2label.size(), 0);  // [cfg, labels]
        for (size_t i = 0; i < c.id2label.size(); ++i) {
            lua_pushlstring(L, c.id2label[i].data(), c.id2label[i].size());
            lua_rawseti(L, -2, (int)i + 1);
        }
        lua_setfield(L, -2, "labels");  // [cfg]
        return 1;
    });
}

const luaL_Reg encoder_methods[] = {
    {"logits_texts", l_encoder_logits_texts},
    {"logits_ids", l_encoder_logits_ids},
    {"encode", l_encoder_encode},
    {"config", l_encoder_config},
    {nullptr, nullptr},
};

// cai._encoder.is_encoder(model_type) --> boolean
int l_encoder_is_encoder(lua_State* L) {
    return lua_guarded(L, [&] {
        lua_pushboolean(L, cai::is_encoder_model_type(cai::arg_string(L, 1, "cai._encoder.is_encoder", "model_type")));
        return 1;
    });
}

// cai._encoder.write_random(dir, config_json, seed): a random checkpoint for tests and benchmarks
int l_encoder_write_random(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fname = "cai.model.random";
        std::string dir = cai::arg_string(L, 1, fname, "dir");
        std::string config = cai::arg_string(L, 2, fname, "config");
        long long seed = lua_isnoneornil(L, 3) ? 0 : cai::arg_integer(L, 3, fname, "seed");
        cai::encoder_classifier::write_random(dir, config, (uint64_t)seed);
        return 0;
    });
}

const luaL_Reg encoder_functions[] = {
    {"load", l_encoder_load},
    {"write_random", l_encoder_write_random},
    {"is_encoder", l_encoder_is_encoder},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_encoder(lua_State* L) {
    cai::new_class<cai::encoder_classifier>(L, encoder_type, encoder_methods);
    luaL_newlib(L, encoder_functions);  // [lib]
    return 1;
}

// cai._tokenizer: tokenizer objects (cai.tokenizer.load, m.tokenizer).
//
// A tokenizer is a userdata "cai.tokenizer". Its methods live in the
// metatable; the fields bos_id, eos_id, pad_id (nil when absent), add_bos,
// add_eos, kind and dir (the directory it was loaded from) are read through __index. lua/cai/tokenizer.lua adds the
// friendly functions (load, train) on top.
#include <cstdint>
#include "lua/lua_tokenizer.h"

#include <string>
#include <vector>

#include "core/error.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"
#include "tokenizer/spm_tokenizer.h"

namespace {

using cai::lua_guarded;

const char* const tokenizer_type = "cai.tokenizer";

std::shared_ptr<cai::tokenizer> self(lua_State* L) {
    return cai::check_handle<cai::tokenizer>(L, 1, tokenizer_type);
}

void push_ids(lua_State* L, const std::vector<int32_t>& ids) {
    lua_createtable(L, static_cast<int>(ids.size()), 0);  // [ids]
    for (size_t i = 0; i < ids.size(); ++i) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
}

std::vector<int32_t> check_ids(lua_State* L, int index, const char* fname) {
    std::vector<long long> raw = cai::arg_integer_list(L, index, fname, "ids");
    // Checked before narrowing: 2^32 + 5 must not wrap around to the id 5.
    for (size_t i = 0; i < raw.size(); ++i)
        if (raw[i] < 0 || raw[i] > INT32_MAX)
            cai::fail(fname, ": ids[", i + 1, "] = ", raw[i], " is out of range (token ids are 0 .. vocab_size - 1)");
    return std::vector<int32_t>(raw.begin(), raw.end());
}

// Reads { add_special_tokens = bool, threads = n } at index.
bool encode_options(lua_State* L, int index, const char* fname, int* threads) {
    cai::check_option_keys(L, index, fname, {"add_special_tokens", "threads"});
    if (threads) *threads = static_cast<int>(cai::opt_integer(L, index, "threads", 0, fname));
    return cai::opt_boolean(L, index, "add_special_tokens", true, fname);
}

bool decode_options(lua_State* L, int index, const char* fname, int* threads) {
    cai::check_option_keys(L, index, fname, {"skip_special_tokens", "threads"});
    if (threads) *threads = static_cast<int>(cai::opt_integer(L, index, "threads", 0, fname));
    return cai::opt_boolean(L, index, "skip_special_tokens", false, fname);
}

// cai._tokenizer.load(dir) -> tokenizer
int l_tokenizer_load(lua_State* L) {
    return lua_guarded(L, [&] {
        std::string dir = cai::arg_string(L, 1, "cai.tokenizer.load", "dir");
        cai::push_tokenizer(L, cai::tokenizer::load(dir));
        return 1;
    });
}

// cai._tokenizer.train{ input = "a.txt" | {files}, dir =, vocab_size =, ... } -> dir
int l_tokenizer_train(lua_State* L) {
    return lua_guarded(L, [&] {
        const char* fn = "cai.tokenizer.train";
        cai::arg_table(L, 1, fn, "options");
        cai::spm_train_options o;
        lua_getfield(L, 1, "input");  // [opts, input]
        if (lua_type(L, -1) == LUA_TSTRING)
            o.input.push_back(lua_tostring(L, -1));
        else if (lua_istable(L, -1))
            o.input = cai::arg_string_list(L, lua_gettop(L), fn, "input");
        else
            cai::fail(fn, ": option \"input\" must be a file name or a list of file names");
        lua_pop(L, 1);  // [opts]
        o.dir = cai::opt_string(L, 1, "dir", "", fn);
        if (o.dir.empty()) cai::fail(fn, ": option \"dir\" (the tokenizer directory to write) is required");
        o.vocab_size = int(cai::opt_integer(L, 1, "vocab_size", o.vocab_size, fn));
        o.model_type = cai::opt_string(L, 1, "model_type", o.model_type, fn);
        o.style = cai::opt_string(L, 1, "style", o.style, fn);
        o.character_coverage = cai::opt_number(L, 1, "character_coverage", o.character_coverage, fn);
        o.byte_fallback = cai::opt_boolean(L, 1, "byte_fallback", o.byte_fallback, fn);
        o.split_digits = cai::opt_boolean(L, 1, "split_digits", o.split_digits, fn);
        o.threads = int(cai::opt_integer(L, 1, "threads", o.threads, fn));
        o.input_sentence_size = cai::opt_integer(L, 1, "input_sentence_size", 0, fn);
        o.max_sentence_length = int(cai::opt_integer(L, 1, "max_sentence_length", o.max_sentence_length, fn));
        for (const char* key : {"user_defined_symbols", "control_symbols"}) {
            lua_getfield(L, 1, key);  // [opts, list?]
            if (!lua_isnil(L, -1)) {
                auto list = cai::arg_string_list(L, lua_gettop(L), fn, key);
                (std::string(key) == "control_symbols" ? o.control_symbols : o.user_defined_symbols) = list;
            }
            lua_pop(L, 1);  // [opts]
        }
        cai::train_spm_tokenizer(o);
        lua_pushlstring(L, o.dir.data(), o.dir.size());
        return 1;
    });
}

// tok:encode(text, { add_special_tokens = true }) -> { ids }
int l_tokenizer_encode(lua_State* L) {
    return lua_guarded(L, [&] {
        auto tok = self(L);
        std::string text = cai::arg_string(L, 2, "tok:encode", "text");
        bool add_special = encode_options(L, 3, "tok:encode", nullptr);
        push_ids(L, tok->encode(text, add_special));
        return 1;
    });
}

// tok:encode_batch({ texts }, { add_special_tokens = true, threads = 0 }) -> { { ids }, ... }
int l_tokenizer_encode_batch(lua_State* L) {
    return lua_guarded(L, [&] {
        auto tok = self(L);
        std::vector<std::string> texts = cai::arg_string_list(L, 2, "tok:encode_batch", "texts");
        int threads = 0;
        bool add_special = encode_options(L, 3, "tok:encode_batch", &threads);
        auto batch = tok->encode_batch(texts, add_special, threads);
        lua_createtable(L, static_cast<int>(batch.size()), 0);  // [out]
        for (size_t i = 0; i < batch.size(); ++i) {
            push_ids(L, batch[i]);  // [out, ids]
            lua_rawseti(L, -2, static_cast<int>(i + 1));
        }
        return 1;
    });
}

// tok:decode({ ids }, { skip_special_tokens = false }) -> text
int l_tokenizer_decode(lua_State* L) {
    return lua_guarded(L, [&] {
        auto tok = self(L);
        std::vector<int32_t> ids = check_ids(L, 2, "tok:decode");
        bool skip = decode_options(L, 3, "tok:decode", nullptr);
        std::string text = tok->decode(ids, skip);
        lua_pushlstring(L, text.data(), text.size());
        return 1;
    });
}

// tok:decode_batch({ { ids }, ... }, { skip_special_tokens = false, threads = 0 }) -> { text, ... }
int l_tokenizer_decode_batch(lua_State* L) {
    return lua_guarded(L, [&] {
        auto tok = self(L);
        cai::arg_table(L, 2, "tok:decode_batch", "ids");
        std::vector<std::vector<int32_t>> batch;
        int n = static_cast<int>(lua_objlen(L, 2));
        for (int i = 1; i <= n; ++i) {
            lua_rawgeti(L, 2, i);  // [.., ids_i]
            batch.push_back(check_ids(L, lua_gettop(L), "tok:decode_batch"));
            lua_pop(L, 1);
        }
        int threads = 0;
        bool skip = decode_options(L, 3, "tok:decode_batch", &threads);
        auto texts = tok->decode_batch(batch, skip, threads);
        lua_createtable(L, static_cast<int>(texts.size()), 0);  // [out]
        for (size_t i = 0; i < texts.size(); ++i) {
            lua_pushlstring(L, texts[i].data(), texts[i].size());
            lua_rawseti(L, -2, static_cast<int>(i + 1));
        }
        return 1;
    });
}

int l_tokenizer_vocab_size(lua_State* L) {
    return lua_guarded(L, [&] {
        lua_pushinteger(L, self(L)->vocab_size());
        return 1;
    });
}

// tok:id_to_piece(id) -> piece
int l_tokenizer_id_to_piece(lua_State* L) {
    return lua_guarded(L, [&] {
        auto tok = self(L);
        long long id = cai::arg_integer(L, 2, "tok:id_to_piece", "id");
        if (id < 0 || id >= tok->vocab_size())
            cai::fail("tok:id_to_piece: id ", id, " is out of range [0, ", tok->vocab_size(), ")");
        std::string piece = tok->id_to_piece(static_cast<int32_t>(id));
        lua_pushlstring(L, piece.data(), piece.size());
        return 1;
    });
}

// tok:piece_to_id(piece) -> id or nil
int l_tokenizer_piece_to_id(lua_State* L) {
    return lua_guarded(L, [&] {
        auto tok = self(L);
        int32_t id = tok->piece_to_id(cai::arg_string(L, 2, "tok:piece_to_id", "piece"));
        if (id < 0)
            lua_pushnil(L);
        else
            lua_pushinteger(L, id);
        return 1;
    });
}

const luaL_Reg tokenizer_methods[] = {
    {"encode", l_tokenizer_encode},
    {"encode_batch", l_tokenizer_encode_batch},
    {"decode", l_tokenizer_decode},
    {"decode_batch", l_tokenizer_decode_batch},
    {"vocab_size", l_tokenizer_vocab_size},
    {"id_to_piece", l_tokenizer_id_to_piece},
    {"piece_to_id", l_tokenizer_piece_to_id},
    {nullptr, nullptr},
};

void push_optional_id(lua_State* L, int32_t id) {
    if (id < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, id);
}

// __index(tok, key): a method, else one of the fields.
// upvalue 1: the methods table.
int l_tokenizer_index(lua_State* L) {
    return lua_guarded(L, [&] {
        lua_pushvalue(L, 2);
        lua_rawget(L, lua_upvalueindex(1));  // [tok, key, method?]
        if (!lua_isnil(L, -1)) return 1;
        lua_pop(L, 1);
        if (lua_type(L, 2) != LUA_TSTRING) return 0;
        std::string key = lua_tostring(L, 2);
        auto tok = self(L);
        if (key == "bos_id") push_optional_id(L, tok->bos_id);
        else if (key == "eos_id") push_optional_id(L, tok->eos_id);
        else if (key == "pad_id") push_optional_id(L, tok->pad_id);
        else if (key == "add_bos") lua_pushboolean(L, tok->add_bos);
        else if (key == "add_eos") lua_pushboolean(L, tok->add_eos);
        else if (key == "kind") lua_pushstring(L, tok->kind.c_str());
        else if (key == "dir") lua_pushlstring(L, tok->dir.data(), tok->dir.size());
        else lua_pushnil(L);
        return 1;
    });
}

// The class, once: methods plus the fields l_tokenizer_index reads.
void ensure_class(lua_State* L) {
    cai::new_class<cai::tokenizer>(L, tokenizer_type, tokenizer_methods, l_tokenizer_index);
}

const luaL_Reg tokenizer_functions[] = {
    {"load", l_tokenizer_load},
    {"train", l_tokenizer_train},
    {nullptr, nullptr},
};

}  // namespace

namespace cai {

void push_tokenizer(lua_State* L, std::shared_ptr<cai::tokenizer> tok) {
    ensure_class(L);
    push_handle(L, std::move(tok), tokenizer_type);
}

}  // namespace cai

extern "C" int luaopen_cai_tokenizer(lua_State* L) {
    ensure_class(L);
    lua_newtable(L);  // [mod]
    luaL_register(L, nullptr, tokenizer_functions);
    luaL_getmetatable(L, tokenizer_type);  // [mod, mt]
    lua_getfield(L, -1, "methods");  // [mod, mt, methods]
    lua_setfield(L, -3, "methods");  // [mod, mt]
    lua_pop(L, 1);  // [mod]
    return 1;
}

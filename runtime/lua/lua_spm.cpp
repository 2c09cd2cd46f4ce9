// cai._spm: raw sentencepiece primitives (training, ids in and out). The
// friendly tokenizer API (cai.tokenizer) is built over runtime/tokenizer/.
#include "core/error.h"
#include "lua/bindings.h"
#include "lua/lua_util.h"
#include "tokenizer/spm.h"

namespace {

using cai::lua_guarded;

const char* const spm_type = "cai.spm";

// cai._spm.train("--input=... --model_prefix=... --vocab_size=...")
int l_spm_train(lua_State* L) {
    return lua_guarded(L, [&] {
        cai::spm_model::train(cai::arg_string(L, 1, "cai._spm.train", "args"));
        return 0;
    });
}

int l_spm_load(lua_State* L) {
    return lua_guarded(L, [&] {
        cai::push_handle(L, cai::spm_model::load(cai::arg_string(L, 1, "cai._spm.load", "path")), spm_type);
        return 1;
    });
}

int l_spm_encode(lua_State* L) {
    return lua_guarded(L, [&] {
        auto spm = cai::check_handle<cai::spm_model>(L, 1, spm_type);
        std::vector<int32_t> ids = spm->encode(cai::arg_string(L, 2, "spm:encode", "text"));
        lua_createtable(L, static_cast<int>(ids.size()), 0);
        for (size_t i = 0; i < ids.size(); ++i) {
            lua_pushnumber(L, ids[i]);
            lua_rawseti(L, -2, static_cast<int>(i + 1));
        }
        return 1;
    });
}

int l_spm_decode(lua_State* L) {
    return lua_guarded(L, [&] {
        auto spm = cai::check_handle<cai::spm_model>(L, 1, spm_type);
        std::vector<long long> raw = cai::arg_integer_list(L, 2, "spm:decode", "ids");
        std::string text = spm->decode(std::vector<int32_t>(raw.begin(), raw.end()));
        lua_pushlstring(L, text.data(), text.size());
        return 1;
    });
}

int l_spm_piece_size(lua_State* L) {
    return lua_guarded(L, [&] {
        lua_pushnumber(L, cai::check_handle<cai::spm_model>(L, 1, spm_type)->piece_size());
        return 1;
    });
}

const luaL_Reg spm_methods[] = {
    {"encode", l_spm_encode}, {"decode", l_spm_decode}, {"piece_size", l_spm_piece_size},
    {nullptr, nullptr},
};

const luaL_Reg spm_functions[] = {
    {"train", l_spm_train},
    {"load", l_spm_load},
    {nullptr, nullptr},
};

}  // namespace

extern "C" int luaopen_cai_spm(lua_State* L) {
    cai::new_class<cai::spm_model>(L, spm_type, spm_methods);
    luaL_newlib(L, spm_functions);
    return 1;
}

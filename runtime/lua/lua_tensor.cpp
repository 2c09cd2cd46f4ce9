// cai.tensor objects: the tensors m:logits returns (lua_tensor.h).
#include "lua/lua_tensor.h"

#include <memory>

#include "core/error.h"
#include "lua/lua_util.h"
#include "model/safetensors.h"

namespace {

using cai::lua_guarded;

const char* const tensor_type = "cai.tensor";

struct named_tensor {
    at::Tensor value;
    std::string name;
};

std::shared_ptr<named_tensor> self_tensor(lua_State* L) {
    return cai::check_handle<named_tensor>(L, 1, tensor_type);
}

int l_tensor_shape(lua_State* L) {
    return lua_guarded(L, [&] {
        auto t = self_tensor(L);
        lua_createtable(L, (int)t->value.dim(), 0);  // [shape]
        for (int64_t i = 0; i < t->value.dim(); ++i) {
            lua_pushnumber(L, (double)t->value.size(i));
            lua_rawseti(L, -2, (int)i + 1);
        }
        return 1;
    });
}

// t:at(i, j, ...) with 1-based indices, one per dimension.
int l_tensor_at(lua_State* L) {
    return lua_guarded(L, [&] {
        auto t = self_tensor(L);
        int64_t dims = t->value.dim();
        if (lua_gettop(L) - 1 != dims) cai::fail("tensor:at: expected ", dims, " indices, got ", lua_gettop(L) - 1);
        at::Tensor x = t->value;
        for (int64_t d = 0; d < dims; ++d) {
            long long i = cai::arg_integer(L, (int)d + 2, "tensor:at", "index");
            if (i < 1 || i > x.size(0))
                cai::fail("tensor:at: index ", i, " is outside [1, ", x.size(0), "] in dimension ", d + 1);
            x = x.select(0, i - 1);
        }
        lua_pushnumber(L, x.item<double>());
        return 1;
    });
}

// t:save(path) writes a safetensors file with this tensor as float32.
int l_tensor_save(lua_State* L) {
    return lua_guarded(L, [&] {
        auto t = self_tensor(L);
        std::string path = cai::arg_string(L, 2, "tensor:save", "path");
        cai::save_safetensors(path, {{t->name, t->value.to(at::kFloat).contiguous()}});
        lua_pushvalue(L, 1);
        return 1;
    });
}

const luaL_Reg tensor_methods[] = {
    {"shape", l_tensor_shape}, {"at", l_tensor_at}, {"save", l_tensor_save}, {nullptr, nullptr},
};

}  // namespace

namespace cai {

void push_tensor(lua_State* L, at::Tensor tensor, const std::string& name) {
    new_class<named_tensor>(L, tensor_type, tensor_methods);  // once
    auto t = std::make_shared<named_tensor>();
    t->value = std::move(tensor);
    t->name = name;
    push_handle(L, t, tensor_type);
}

}  // namespace cai

// cai._model: model objects ("cai.model") and the tensor objects m:logits
// returns ("cai.tensor"). Other bindings (training) reach the C++ model of
// a Lua value through check_model and hand tensors to Lua with push_tensor.
#pragma once

#include <ATen/ATen.h>
#include <lua.hpp>

#include <memory>
#include <string>

namespace cai {

class model;

std::shared_ptr<model> check_model(lua_State* L, int index);
// A tensor object with :shape(), :at(i, j, ...) (1-based) and :save(path),
// which writes a safetensors file holding it as float32 under `name`.
void push_tensor(lua_State* L, at::Tensor tensor, const std::string& name);

}  // namespace cai

// Tensor objects ("cai.tensor"), as m:logits returns them: :shape(),
// :at(i, j, ...) with 1-based indices, :save(path) and :release().
#pragma once

#include <ATen/ATen.h>
#include <lua.hpp>

#include <string>

namespace cai {

// Pushes a tensor object; :save(path) writes a safetensors file holding it
// as float32 under `name`.
void push_tensor(lua_State* L, at::Tensor tensor, const std::string& name);

}  // namespace cai

// cai._model: model objects ("cai.model"). Other bindings (training, LoRA)
// reach the C++ model of a Lua value through check_model; m:logits hands
// its tensors to Lua through lua_tensor.h.
#pragma once

#include <lua.hpp>

#include <memory>

namespace cai {

class model;

std::shared_ptr<model> check_model(lua_State* L, int index);

}  // namespace cai

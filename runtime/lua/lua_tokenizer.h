// Pushes a tokenizer as the Lua object cai.tokenizer.load returns (used by
// other bindings, e.g. m.tokenizer).
#pragma once

#include <lua.hpp>

#include <memory>

#include "tokenizer/tokenizer.h"

namespace cai {

void push_tokenizer(lua_State* L, std::shared_ptr<cai::tokenizer> tok);

}  // namespace cai

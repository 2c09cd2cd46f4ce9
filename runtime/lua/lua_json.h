// Lua <-> JSON conversion shared by bindings that hand JSON to Lua
// (m.config, metrics, records). Empty Lua tables encode as [] unless marked
// with cai.json.object(); JSON null decodes to the cai.json.null sentinel.
#pragma once

#include <lua.hpp>
#include <nlohmann/json_fwd.hpp>

#include <string>

namespace cai {

// Converts the Lua value at index; errors name the offending path ("$.a[2]").
nlohmann::json lua_to_json(lua_State* L, int index);
void push_json(lua_State* L, const nlohmann::json& value);
bool utf8_valid(const std::string& s);

}  // namespace cai

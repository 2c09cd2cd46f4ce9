-- cai.args(defaults): the recipe's settings, with key=value command-line
-- arguments converted to the type of each default.
--
--   local args = cai.args{ model = "tiny", steps = 100, lora = true }
--   -- cairun recipe.lua steps=20 lora=false
local core = require "cai._core"
local check = require "cai.check"

local booleans = { ["true"] = true, yes = true, on = true, ["1"] = true,
                   ["false"] = false, no = false, off = false, ["0"] = false }

local function key_list(defaults)
  local keys = {}
  for k in pairs(defaults) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  return keys
end

local function valid_keys(defaults)
  return table.concat(key_list(defaults), ", ")
end

local function convert(key, value, default)
  local kind = type(default)
  if kind == "string" then return value end
  if kind == "number" then
    local n = tonumber(value)
    if n == nil then
      return nil, string.format("argument '%s' expects a number, got '%s'", key, value)
    end
    return n
  end
  if kind == "boolean" then
    local b = booleans[value:lower()]
    if b == nil then
      return nil, string.format("argument '%s' expects a boolean (true/false), got '%s'", key, value)
    end
    return b
  end
  return nil, string.format("argument '%s' has a default of type %s; only string, number and boolean defaults can be set from the command line", key, kind)
end

local resolved_args = nil

---@param defaults table<string, string|number|boolean>
---@return table
local function args(defaults)
  if type(defaults) ~= "table" then
    error("cai.args: expected a table of defaults, got " .. type(defaults), 2)
  end
  for k, v in pairs(defaults) do
    if type(k) ~= "string" then error("cai.args: default keys must be strings, got " .. type(k), 2) end
    local t = type(v)
    if t ~= "string" and t ~= "number" and t ~= "boolean" then
      error(string.format("cai.args: default '%s' must be a string, number or boolean, got %s", k, t), 2)
    end
  end
  local result = {}
  for k, v in pairs(defaults) do result[k] = v end
  local seen = {}
  for _, item in ipairs(core.argv()) do
    local key, value = item:match("^([^=]+)=(.*)$")
    if not key then
      error(string.format("argument '%s' is not of the form key=value (valid keys: %s)", item, valid_keys(defaults)), 2)
    end
    if defaults[key] == nil then
      error(string.format("unknown argument '%s' %s", key, check.unknown_hint(key, key_list(defaults), "keys")), 2)
    end
    if seen[key] then error(string.format("argument '%s' is given twice", key), 2) end
    seen[key] = true
    local converted, err = convert(key, value, defaults[key])
    if err then error(err, 2) end
    result[key] = converted
  end
  resolved_args = result
  return result
end

return {
  call = args,
  ---The table the last cai.args call returned (for config.json).
  resolved = function() return resolved_args end,
}

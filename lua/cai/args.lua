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

-- ---- `cairun RECIPE.lua --help`: the recipe's cai.args{...}, read from its source ----

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- The entries of the table constructor starting at src[open] == "{": a list of
-- { key=, default= (source text), comment= }. A comment after an entry on its
-- line belongs to it; comment lines of their own belong to the next entry.
local function table_entries(src, open)
  local entries, buf, pending = {}, {}, nil
  local line, last_line, last = 1, -1, nil
  local depth, i, n = 1, open + 1, #src
  local function finish()
    local text = trim(table.concat(buf))
    buf = {}
    if text == "" then return end
    local key, value = text:match("^([%a_][%w_]*)%s*=%s*(.-)$")
    if not key then key, value = text:match("^%[%s*[\"'](.-)[\"']%s*%]%s*=%s*(.-)$") end
    if not key then return end
    last = { key = key, default = value, comment = pending }
    pending = nil
    entries[#entries + 1] = last
    last_line = line
  end
  while i <= n and depth > 0 do
    local c = src:sub(i, i)
    if c == "-" and src:sub(i + 1, i + 1) == "-" then
      local eq = src:match("^%-%-%[(=*)%[", i)
      local text
      if eq then
        local close = "]" .. eq .. "]"
        local j = src:find(close, i, true) or n
        text = src:sub(i + 4 + #eq, j - 1)
        for _ in text:gmatch("\n") do line = line + 1 end
        i = j + #close
      else
        local j = src:find("\n", i, true) or (n + 1)
        text = src:sub(i + 2, j - 1)
        i = j
      end
      if depth == 1 then
        text = trim(text)
        if trim(table.concat(buf)) ~= "" then
          -- "key = value -- comment" and then no comma before the closing brace
          pending = pending and (pending .. " " .. text) or text
        elseif last and last_line == line then
          last.comment = last.comment and (last.comment .. " " .. text) or text
        elseif text ~= "" then
          pending = pending and (pending .. " " .. text) or text
        end
      end
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then j = j + 1 elseif d == c or d == "\n" then break end
        j = j + 1
      end
      buf[#buf + 1] = src:sub(i, j)
      i = j + 1
    elseif c == "[" and src:match("^%[=*%[", i) then
      local eq = src:match("^%[(=*)%[", i)
      local close = "]" .. eq .. "]"
      local j = src:find(close, i, true) or n
      buf[#buf + 1] = src:sub(i, j + #close - 1)
      i = j + #close
    else
      if c == "{" or c == "(" then depth = depth + 1
      elseif c == "}" or c == ")" then depth = depth - 1 end
      if depth == 0 then
        finish()
      elseif depth == 1 and (c == "," or c == ";") then
        finish()
      else
        buf[#buf + 1] = c
      end
      if c == "\n" then line = line + 1 end
      i = i + 1
    end
  end
  return entries
end

---The text `cairun RECIPE.lua --help` prints: the arguments a recipe declares
---in cai.args{...}, with their defaults and the comment beside each, read from
---the recipe's source without running it.
---@param path string the recipe file
---@return string
local function help(path)
  if type(path) ~= "string" or path == "" then error("cai.args.help: path must be a recipe file name", 2) end
  local f, err = io.open(path, "rb")
  if not f then error("cairun: cannot read " .. path .. ": " .. tostring(err), 0) end
  local src = f:read("*a")
  f:close()
  local at = src:find("cai%.args%s*%(?%s*{")
  if not at then
    return string.format("usage: cairun %s\n\n%s declares no arguments (it has no cai.args{...}).\n", path, path)
  end
  local entries = table_entries(src, src:find("{", at, true))
  local heading = src:match("^%-%-%s*([^\n]*)") or ""
  local lines = { string.format("usage: cairun %s [key=value ...]", path) }
  if heading ~= "" then lines[#lines + 1] = "  " .. heading end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "arguments (key = default):"
  local width = 0
  for _, e in ipairs(entries) do width = math.max(width, #e.key + 3 + #e.default) end
  width = math.min(width, 44)
  for _, e in ipairs(entries) do
    local left = e.key .. " = " .. e.default
    if e.comment and e.comment ~= "" then
      lines[#lines + 1] = "  " .. left .. string.rep(" ", math.max(1, width - #left + 2)) .. e.comment
    else
      lines[#lines + 1] = "  " .. left
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

return {
  call = args,
  help = help,
  ---The table the last cai.args call returned (for config.json).
  resolved = function() return resolved_args end,
}

-- cai.check: one argument checker for every public Lua function.
--
--   local check = require "cai.check"
--   opts = check("cai.train.sft", opts, {
--     model = { required = true },                      -- any type
--     out   = { type = "string", required = true, nonempty = true },
--     seed  = "integer",                                 -- a bare type name
--     beta  = { type = "number", gt = 0 },               -- gt/min/lt/max bound numbers
--     learning_rate = { type = "number", finite = true }, -- no NaN or +-inf
--     loss  = { enum = { "sigmoid", "ipo" } },           -- one of these values
--     stop  = { type = "list", items = "string" },       -- a sequence, each item checked
--     reference = { type = "string|table|userdata", expect = '"adapter_off" or a model' },
--   })
--
-- Unknown keys are errors that suggest the closest valid one by edit distance
-- ("did you mean learning_rate?"). `opts` may be nil (read as {}) unless a
-- field is required. Every message starts with the function's name and
-- names the option and what was expected:
--   cai.train.sft: option 'seed' must be an integer, got string
-- The checker returns opts (or a fresh {} for nil); it never changes it.
--
-- A spec may hold check.OTHERS = rule: then keys it does not name are allowed
-- (a template's own variables, say) when they are strings and their values
-- pass that rule.
--
-- check.value(fname, what, value, rule) checks one positional argument with
-- the same rules: "cai.jsonl.read: argument 'path' must be a string, got nil".
-- check.suggest(word, candidates) is the closest candidate or nil.
local check = {}

---Spec key: the rule for keys the spec does not name (they must be strings).
check.OTHERS = setmetatable({}, { __tostring = function() return "(other keys)" end })

local TYPE_WORDS = {
  string = "a string", number = "a number", integer = "an integer", boolean = "a boolean",
  table = "a table", ["function"] = "a function", userdata = "a userdata", list = "a list",
}

-- Optimal-string-alignment distance (Levenshtein with adjacent transpositions).
local function distance(a, b)
  local la, lb = #a, #b
  local d = {}
  for i = 0, la do d[i] = { [0] = i } end
  for j = 0, lb do d[0][j] = j end
  for i = 1, la do
    local ca = a:byte(i)
    for j = 1, lb do
      local cost = (ca == b:byte(j)) and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[la][lb]
end
check.distance = distance

---The candidate closest to word by edit distance, when close enough to be a
---likely typo (at most a third of the word's length, and at least 1, edits;
---case is ignored); nil otherwise. Ties go to the first in sorted order.
---@param word string
---@param candidates string[]
---@return string|nil
function check.suggest(word, candidates)
  if type(word) ~= "string" then return nil end
  local sorted = {}
  for _, c in ipairs(candidates) do sorted[#sorted + 1] = tostring(c) end
  table.sort(sorted)
  local lower = word:lower()
  local limit = math.max(1, math.floor(#word / 3))
  local best, best_d = nil, math.huge
  for _, c in ipairs(sorted) do
    local dist = distance(lower, c:lower())
    if dist < best_d then best, best_d = c, dist end
  end
  if best_d <= limit and best_d < math.max(#word, 1) then return best end
  return nil
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function sorted_keys(spec)
  local keys = {}
  for k in pairs(spec) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  return keys
end

---The text after "unknown X 'name'": a suggestion when one is close, the valid names otherwise.
---@param word string
---@param valid string[]
---@param what string|nil the plural noun for the list ("options", "keys")
function check.unknown_hint(word, valid, what)
  local near = check.suggest(word, valid)
  if near then return "(did you mean " .. near .. "?)" end
  local sorted = {}
  for _, c in ipairs(valid) do sorted[#sorted + 1] = tostring(c) end
  table.sort(sorted)
  return "(valid " .. (what or "options") .. ": " .. table.concat(sorted, ", ") .. ")"
end

local function normalize(rule)
  if type(rule) == "string" then return { type = rule } end
  return rule
end

local function type_ok(kind, v)
  local t = type(v)
  if kind == "any" then return true end
  -- exact as a double: |v| <= 2^53 (the C++ side reads integers as int64)
  if kind == "integer" then return t == "number" and v == math.floor(v) and math.abs(v) <= 2 ^ 53 end
  if kind == "list" then
    if t ~= "table" then return false end
    local n = #v
    for k in pairs(v) do
      if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then return false end
    end
    return true
  end
  return t == kind
end

local function expected_words(kind)
  local words = {}
  for part in kind:gmatch("[^|]+") do words[#words + 1] = TYPE_WORDS[part] or ("a " .. part) end
  if #words == 1 then return words[1] end
  return table.concat(words, ", ", 1, #words - 1) .. " or " .. words[#words]
end

local function got_words(kind, v)
  if type(v) == "number" and kind:find("integer", 1, true) then return tostring(v) end
  if type(v) == "table" and kind:find("list", 1, true) and not kind:find("table", 1, true) then
    return "a table with non-sequence keys"
  end
  return type(v)
end

-- Checks value against rule; returns an error text ("must be ...") or nil.
local function violation(rule, v)
  rule = normalize(rule)
  local kind = rule.type or (rule.enum and "any") or "any"
  local matched = false
  for part in kind:gmatch("[^|]+") do
    if type_ok(part, v) then matched = true break end
  end
  if not matched then
    return "must be " .. (rule.expect or expected_words(kind)) .. ", got " .. got_words(kind, v)
  end
  if rule.enum then
    for _, e in ipairs(rule.enum) do
      if e == v then goto in_enum end
    end
    do
      local names = {}
      for i, e in ipairs(rule.enum) do names[i] = tostring(e) end
      local text = "must be one of " .. table.concat(names, ", ") .. "; got " .. show(v)
      local near = check.suggest(v, names)
      if near then text = text .. " (did you mean " .. near .. "?)" end
      return text
    end
    ::in_enum::
  end
  if type(v) == "number" and rule.finite and (v ~= v or math.abs(v) == math.huge) then
    return "must be a finite number, got " .. tostring(v)
  end
  if type(v) == "number" then
    local lo = rule.min ~= nil and (">= " .. tostring(rule.min)) or (rule.gt ~= nil and ("> " .. tostring(rule.gt)))
    local hi = rule.max ~= nil and ("<= " .. tostring(rule.max)) or (rule.lt ~= nil and ("< " .. tostring(rule.lt)))
    local bad = v ~= v
      or (rule.min ~= nil and v < rule.min) or (rule.gt ~= nil and not (v > rule.gt))
      or (rule.max ~= nil and v > rule.max) or (rule.lt ~= nil and not (v < rule.lt))
    if bad then
      local range
      if lo and hi then
        range = "in " .. (rule.min ~= nil and "[" .. tostring(rule.min) or "(" .. tostring(rule.gt)) .. ", "
          .. (rule.max ~= nil and tostring(rule.max) .. "]" or tostring(rule.lt) .. ")")
      else
        range = lo or hi
      end
      return "must be " .. range .. ", got " .. tostring(v)
    end
  end
  if rule.nonempty then
    if (type(v) == "string" and v == "") or (type(v) == "table" and next(v) == nil) then
      if rule.expect then return "must be " .. rule.expect .. ", got an empty " .. type(v) end
      return "must not be empty"
    end
  end
  if rule.items and type(v) == "table" then
    for i = 1, #v do
      local why = violation(rule.items, v[i])
      if why then return why, i end
    end
  end
  if rule.check then
    local why = rule.check(v)
    if why then return why end
  end
  return nil
end

local function raise(level, fname, text)
  error(fname .. ": " .. text, level + 1)
end

---Checks an options table against spec (see the top of this file) and returns
---it (a fresh {} for nil). Errors are raised at `level` (default 3: the caller
---of the function that called check).
---@param fname string the public function's name, e.g. "cai.train.sft"
---@param opts table|nil
---@param spec table<string, string|table>
---@param level integer|nil
---@return table
function check.options(fname, opts, spec, level)
  if type(fname) ~= "string" or type(spec) ~= "table" then
    error("cai.check: expected (fname: string, opts, spec: table), got (" .. type(fname) .. ", " .. type(opts) .. ", "
      .. type(spec) .. ")", 2)
  end
  level = level or 3
  if opts == nil then
    for _, key in ipairs(sorted_keys(spec)) do
      if normalize(spec[key]).required then
        raise(level, fname, "expected an options table with option '" .. key .. "', got nil")
      end
    end
    return {}
  end
  if type(opts) ~= "table" then raise(level, fname, "options must be a table, got " .. type(opts)) end
  local names = sorted_keys(spec)
  local others = spec[check.OTHERS]
  for k, v in pairs(opts) do
    if spec[k] == nil then
      if others == nil then
        raise(level, fname, "unknown option " .. (type(k) == "string" and ("'" .. k .. "'") or show(k))
          .. " " .. check.unknown_hint(k, names))
      end
      if type(k) ~= "string" then raise(level, fname, "option names must be strings, got " .. type(k)) end
      local why, index = violation(others, v)
      if why then
        raise(level, fname, "option '" .. k .. "'" .. (index and ("[" .. index .. "]") or "") .. " " .. why)
      end
    end
  end
  for _, key in ipairs(names) do
    local rule = normalize(spec[key])
    local v = opts[key]
    if v == nil then
      if rule.required then raise(level, fname, "option '" .. key .. "' is required") end
    else
      local why, index = violation(rule, v)
      if why then
        raise(level, fname, "option '" .. key .. "'" .. (index and ("[" .. index .. "]") or "") .. " " .. why)
      end
    end
  end
  return opts
end

---Checks one positional argument: "fname: argument 'what' must be ...".
---@param fname string
---@param what string
---@param value any
---@param rule string|table
---@param level integer|nil
function check.value(fname, what, value, rule, level)
  if type(fname) ~= "string" or type(what) ~= "string" or (type(rule) ~= "string" and type(rule) ~= "table") then
    error("cai.check.value: expected (fname: string, what: string, value, rule: string or table), got (" .. type(fname)
      .. ", " .. type(what) .. ", " .. type(value) .. ", " .. type(rule) .. ")", 2)
  end
  level = level or 3
  rule = normalize(rule)
  if value == nil then
    if rule.optional then return value end
    raise(level, fname, "argument '" .. what .. "' must be " .. (rule.expect or expected_words(rule.type or "any"))
      .. ", got nil")
  end
  local why, index = violation(rule, value)
  if why then raise(level, fname, "argument '" .. what .. "'" .. (index and ("[" .. index .. "]") or "") .. " " .. why) end
  return value
end

return setmetatable(check, {
  __call = function(_, fname, opts, spec, level)
    local checked = check.options(fname, opts, spec, (level or 3) + 1)
    return checked
  end,
})

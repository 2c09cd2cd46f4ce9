-- cai.jinja: the subset of Jinja that Hugging Face chat templates use,
-- rendered as transformers' render_jinja_template renders them (an
-- ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the
-- loopcontrols extension, Python values and Python string methods).
--
--   local t = cai.jinja.compile(source, "chat_template")   -- errors name the line
--   local text = t:render({ messages = ..., add_generation_prompt = true })
--
-- Values are Python's, held in Lua: strings, numbers, booleans,
-- cai.json.null (None), lists (1..n tables) and dicts (string-keyed tables).
-- Dict key order is Python's insertion order where it is known: tables from
-- cai.json.decode / cai.jsonl.read / cai.jinja.json_decode (and dict literals
-- in a template) remember their key order; other tables iterate (and tojson)
-- their keys sorted.
-- Anything the interpreter does not support is an error naming it and the
-- template line, never a silent difference.
local json = require "cai.json"

local M = {}

local NONE = json.null
local ARRAY_MT = getmetatable(json.array({}))
local OBJECT_MT = getmetatable(json.object({}))

-- Undefined values (a missing variable, key or attribute): render as "",
-- falsy, iterate as empty; any deeper access is an error naming the name.
local UNDEF_MT = {}
local function undefined(hint) return setmetatable({ hint = hint }, UNDEF_MT) end
local function is_undef(v) return type(v) == "table" and getmetatable(v) == UNDEF_MT end

-- Key order of dicts, where known (weak keys: nothing is kept alive).
local ORDER = setmetatable({}, { __mode = "k" })

local NAMESPACE_MT = {}
local CALLABLE_MT = {}
local LOOP_MT = {}
local TUPLE_MT = {}   -- a tuple (for k, v in items; literal (a, b))

-- Python floats with an integral value (1.0) are boxed so that they print as
-- Python prints them ("1.0"); every other number is a plain Lua number
-- (integral: a Python int, else a float).
local FLOAT_MT = {}
local function is_boxed(v) return type(v) == "table" and getmetatable(v) == FLOAT_MT end
local function float(x)
  if x == math.floor(x) and x == x and math.abs(x) ~= math.huge then return setmetatable({ f = x }, FLOAT_MT) end
  return x
end
-- The Lua number of a number value (nil for anything else), and whether it is a float.
local function num(v)
  if type(v) == "number" then return v, v ~= math.floor(v) end
  if is_boxed(v) then return v.f, true end
  return nil
end

---Raised for template errors; the message names the template and line.
local function tfail(line, fmt, ...)
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or fmt
  error({ jinja = true, line = line, msg = msg }, 0)
end

-- ---------------------------------------------------------------- values

local function new_dict(keys_in_order)
  local t = setmetatable({}, OBJECT_MT)
  ORDER[t] = keys_in_order or {}
  return t
end

local function new_list(t)
  return setmetatable(t or {}, ARRAY_MT)
end

---Makes t a dict whose keys iterate in the given order (Python insertion order).
---@param t table
---@param keys string[]
function M.ordered(t, keys)
  ORDER[t] = keys
  if getmetatable(t) == nil then setmetatable(t, OBJECT_MT) end
  return t
end

local function is_callable(v)
  return type(v) == "function" or (type(v) == "table" and getmetatable(v) == CALLABLE_MT)
end

local function kind(v)
  local t = type(v)
  if t == "string" then return "str" end
  if t == "number" then return "number" end
  if t == "boolean" then return "bool" end
  if v == nil or v == NONE then return "none" end
  if t == "function" then return "callable" end
  if t == "table" then
    local mt = getmetatable(v)
    if mt == UNDEF_MT then return "undefined" end
    if mt == FLOAT_MT then return "number" end
    if mt == ARRAY_MT or mt == TUPLE_MT then return "list" end
    if mt == OBJECT_MT then return "dict" end
    if mt == NAMESPACE_MT then return "namespace" end
    if mt == CALLABLE_MT then return "callable" end
    if mt == LOOP_MT then return "loop" end
    if v[1] ~= nil or next(v) == nil then return "list" end
    return "dict"
  end
  return t
end

local function py_type_name(v)
  local k = kind(v)
  return ({ str = "str", number = (select(2, num(v)) and "float" or "int"), bool = "bool",
            none = "NoneType", list = "list", dict = "dict", namespace = "Namespace",
            callable = "function", loop = "LoopContext", undefined = "Undefined" })[k] or k
end

-- Keys of a dict in Python order: the recorded order (keys still present),
-- then any others sorted.
local json_key_order = json.key_order or function() return nil end

local function dict_keys(t)
  local out, seen = {}, {}
  local order = ORDER[t] or json_key_order(t)
  if order then
    for _, k in ipairs(order) do
      if rawget(t, k) ~= nil and not seen[k] then out[#out + 1] = k; seen[k] = true end
    end
  end
  local rest = {}
  for k in pairs(t) do
    if not seen[k] then rest[#rest + 1] = k end
  end
  if #rest > 0 then
    table.sort(rest, function(a, b)
      if type(a) == type(b) then return a < b end
      return type(a) == "number"
    end)
    for _, k in ipairs(rest) do out[#out + 1] = k end
  end
  return out
end

local function dict_set(t, k, v)
  if rawget(t, k) == nil then
    local order = ORDER[t]
    if order then order[#order + 1] = k end
  end
  rawset(t, k, v)
end

-- UTF-8 helpers: Python strings count code points.
local function utf8_chars(s)
  local out = {}
  for ch in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do out[#out + 1] = ch end
  return out
end
local function is_ascii(s) return not s:find("[\128-\255]") end
local function str_len(s)
  if is_ascii(s) then return #s end
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

-- Python's str.upper/lower for ASCII, Latin-1, Latin Extended-A, Greek and
-- Cyrillic letters (other code points are kept as they are).
local function cp_encode(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
    0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local function cp_decode(ch)
  local b = ch:byte(1)
  if b < 0x80 then return b end
  local cp, n
  if b >= 0xF0 then cp, n = b - 0xF0, 3 elseif b >= 0xE0 then cp, n = b - 0xE0, 2 else cp, n = b - 0xC0, 1 end
  for i = 2, n + 1 do cp = cp * 64 + ((ch:byte(i) or 0x80) - 0x80) end
  return cp
end

local function case_map(cp, to_upper)
  if to_upper then
    if (cp >= 0x61 and cp <= 0x7A) or (cp >= 0xE0 and cp <= 0xFE and cp ~= 0xF7) or (cp >= 0x3B1 and cp <= 0x3C9 and cp ~= 0x3C2)
        or (cp >= 0x430 and cp <= 0x44F) then
      return cp - 32
    end
    if cp == 0x3C2 then return 0x3A3 end
    if cp >= 0x450 and cp <= 0x45F then return cp - 80 end
    if cp >= 0x100 and cp <= 0x17F and cp ~= 0x130 and cp ~= 0x131 and cp ~= 0x138 and cp ~= 0x149 and cp ~= 0x17F then
      if (cp >= 0x139 and cp <= 0x148) or (cp >= 0x179 and cp <= 0x17E) then
        if cp % 2 == 0 then return cp - 1 end
      elseif cp % 2 == 1 then
        return cp - 1
      end
    end
    if cp == 0xFF then return 0x178 end
  else
    if (cp >= 0x41 and cp <= 0x5A) or (cp >= 0xC0 and cp <= 0xDE and cp ~= 0xD7) or (cp >= 0x391 and cp <= 0x3A9 and cp ~= 0x3A2)
        or (cp >= 0x410 and cp <= 0x42F) then
      return cp + 32
    end
    if cp >= 0x400 and cp <= 0x40F then return cp + 80 end
    if cp == 0x178 then return 0xFF end
    if cp >= 0x100 and cp <= 0x17F and cp ~= 0x130 and cp ~= 0x131 and cp ~= 0x138 and cp ~= 0x149 and cp ~= 0x17F then
      if (cp >= 0x139 and cp <= 0x148) or (cp >= 0x179 and cp <= 0x17E) then
        if cp % 2 == 1 then return cp + 1 end
      elseif cp % 2 == 0 then
        return cp + 1
      end
    end
  end
  return cp
end

local function py_case(s, to_upper)
  if not s:find("[\128-\255]") then return to_upper and s:upper() or s:lower() end
  return (s:gsub("[%z\1-\127\194-\244][\128-\191]*", function(ch)
    local cp = cp_decode(ch)
    local mapped = case_map(cp, to_upper)
    if mapped == cp then return ch end
    return cp_encode(mapped)
  end))
end
local function py_upper(s) return py_case(s, true) end
local function py_lower(s) return py_case(s, false) end

local function truthy(v)
  if v == nil or v == false or v == NONE then return false end
  local t = type(v)
  if t == "number" then return v ~= 0 end
  if t == "string" then return #v > 0 end
  if t == "table" then
    local mt = getmetatable(v)
    if mt == UNDEF_MT then return false end
    if mt == FLOAT_MT then return v.f ~= 0 end
    if mt == NAMESPACE_MT or mt == CALLABLE_MT or mt == LOOP_MT then return true end
    return next(v) ~= nil
  end
  return true
end

local function format_number(n, is_float)
  if n ~= n then return "nan" end
  if n == math.huge then return "inf" end
  if n == -math.huge then return "-inf" end
  if n == math.floor(n) and not is_float and math.abs(n) < 2 ^ 63 then return string.format("%d", n) end
  if n == math.floor(n) and math.abs(n) < 1e16 then return string.format("%d.0", n) end
  for p = 1, 17 do
    local s = string.format("%." .. p .. "g", n)
    if tonumber(s) == n then
      -- Python's repr: exponent as e-05 / e+16, and always a '.' or 'e'
      s = s:gsub("e([%+%-])0*(%d%d)", "e%1%2")
      if not s:find("[%.e]") then s = s .. ".0" end
      return s
    end
  end
  return string.format("%.17g", n)
end

local py_repr

local function py_str(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return format_number(v) end
  if is_boxed(v) then return format_number(v.f, true) end
  if t == "boolean" then return v and "True" or "False" end
  if v == nil or v == NONE then return "None" end
  if is_undef(v) then return "" end
  return py_repr(v)
end

local function repr_string(s)
  local q = "'"
  if s:find("'", 1, true) and not s:find('"', 1, true) then q = '"' end
  local out = s:gsub("[%c\\'\"]", function(c)
    if c == "\\" then return "\\\\" end
    if c == q then return "\\" .. c end
    if c == "'" or c == '"' then return c end
    if c == "\n" then return "\\n" end
    if c == "\r" then return "\\r" end
    if c == "\t" then return "\\t" end
    return string.format("\\x%02x", c:byte())
  end)
  return q .. out .. q
end

py_repr = function(v)
  local k = kind(v)
  if k == "str" then return repr_string(v) end
  if k == "list" then
    local parts = {}
    for i = 1, #v do parts[i] = py_repr(v[i]) end
    if getmetatable(v) == TUPLE_MT then
      return "(" .. table.concat(parts, ", ") .. (#parts == 1 and ",)" or ")")
    end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  if k == "dict" then
    local parts = {}
    for _, key in ipairs(dict_keys(v)) do parts[#parts + 1] = py_repr(key) .. ": " .. py_repr(v[key]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  if k == "namespace" then return "<Namespace>" end
  if k == "callable" then return "<function>" end
  if k == "undefined" then return "" end
  return py_str(v)
end

-- Python's json.dumps (transformers' tojson: ensure_ascii=False).
local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    if c == "\n" then return "\\n" end
    if c == "\r" then return "\\r" end
    if c == "\t" then return "\\t" end
    if c == "\b" then return "\\b" end
    if c == "\f" then return "\\f" end
    if c:byte() == 127 then return c end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function json_number(v)
  local n, is_float = num(v)
  if n ~= n then return "NaN" end
  if n == math.huge then return "Infinity" end
  if n == -math.huge then return "-Infinity" end
  return format_number(n, is_float)
end

local function to_json(v, indent, item_sep, key_sep, sort_keys, level, line)
  local k = kind(v)
  if k == "str" then return json_string(v) end
  if k == "number" then return json_number(v) end
  if k == "bool" then return v and "true" or "false" end
  if k == "none" then return "null" end
  if k == "list" or k == "dict" then
    local items = {}
    if k == "list" then
      for i = 1, #v do items[i] = to_json(v[i], indent, item_sep, key_sep, sort_keys, level + 1, line) end
    else
      local keys = dict_keys(v)
      if sort_keys then table.sort(keys) end
      for _, key in ipairs(keys) do
        if type(key) ~= "string" then key = py_str(key) end
        items[#items + 1] = json_string(key) .. key_sep ..
          to_json(v[key], indent, item_sep, key_sep, sort_keys, level + 1, line)
      end
    end
    local open, close = (k == "list") and "[" or "{", (k == "list") and "]" or "}"
    if #items == 0 then return open .. close end
    if indent then
      local inner = "\n" .. indent:rep(level + 1)
      return open .. inner .. table.concat(items, item_sep .. inner) .. "\n" .. indent:rep(level) .. close
    end
    return open .. table.concat(items, item_sep) .. close
  end
  if k == "namespace" then
    tfail(line, "tojson: Object of type Namespace is not JSON serializable")
  end
  tfail(line, "tojson: Object of type %s is not JSON serializable", py_type_name(v))
end

local function deep_eq(a, b)
  if a == b then return true end
  if is_boxed(a) then a = a.f end
  if is_boxed(b) then b = b.f end
  if a == b then return true end
  local ka, kb = kind(a), kind(b)
  if ka == "bool" and kb == "number" then return (a and 1 or 0) == b end
  if kb == "bool" and ka == "number" then return (b and 1 or 0) == a end
  if ka ~= kb then return false end
  if ka == "list" then
    if #a ~= #b then return false end
    for i = 1, #a do if not deep_eq(a[i], b[i]) then return false end end
    return true
  end
  if ka == "dict" then
    for key, val in pairs(a) do if not deep_eq(val, b[key]) then return false end end
    for key in pairs(b) do if a[key] == nil then return false end end
    return true
  end
  return false
end

-- ---------------------------------------------------------------- lexer

local function lex_error(line, msg) tfail(line, msg) end

-- Splits the source into a list of tokens:
--   { t = "text", v = string, line = n }
--   { t = "var"/"block", toks = { expression tokens }, line = n }
local OPERATORS = {
  "//", "**", "==", "!=", "<=", ">=",
  "+", "-", "*", "/", "%", "~", "<", ">", "=", ".", ",", ":", "|", "(", ")", "[", "]", "{", "}",
}

local function unescape_string(body, line)
  -- Python string escapes (Jinja decodes string literals with unicode-escape).
  return (body:gsub("\\(u%x%x%x%x)", function(h)
    local cp = tonumber(h:sub(2), 16)
    if cp < 0x80 then return string.char(cp) end
    if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
    return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end):gsub("\\(x%x%x)", function(h)
    local cp = tonumber(h:sub(2), 16)
    if cp < 0x80 then return string.char(cp) end
    return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
  end):gsub("\\(.)", function(c)
    local map = { n = "\n", t = "\t", r = "\r", ["\\"] = "\\", ["'"] = "'", ['"'] = '"', b = "\b", f = "\f",
                  v = "\v", a = "\a", ["0"] = "\0", ["\n"] = "" }
    if map[c] then return map[c] end
    return "\\" .. c
  end))
end

-- Tokenizes the inside of a tag from position i; returns tokens and the
-- position just after the closing delimiter.
local function lex_tag(src, i, close, line)
  local toks = {}
  local n = #src
  while true do
    local ws = src:match("^%s+", i)
    if ws then
      for _ in ws:gmatch("\n") do line = line + 1 end
      i = i + #ws
    end
    if i > n then lex_error(line, "unexpected end of template: a tag is not closed with '" .. close .. "'") end
    -- the closing delimiter, with optional whitespace control
    local ctrl = src:sub(i, i)
    if (ctrl == "-" or ctrl == "+") and src:sub(i + 1, i + #close) == close then
      return toks, i + 1 + #close, ctrl, line
    end
    if src:sub(i, i + #close - 1) == close then return toks, i + #close, "", line end
    local c = src:sub(i, i)
    local tok
    local name = src:match("^[%a_][%w_]*", i)
    if name then
      tok = { t = "name", v = name }
      i = i + #name
    elseif c:match("%d") then
      local num = src:match("^%d[%d_]*%.%d[%d_]*[eE][%+%-]?%d+", i) or src:match("^%d[%d_]*%.%d[%d_]*", i)
        or src:match("^%d[%d_]*[eE][%+%-]?%d+", i) or src:match("^%d[%d_]*", i)
      local value = tonumber((num:gsub("_", "")))
      if num:find("[%.eE]") then value = float(value) end
      tok = { t = "number", v = value }
      i = i + #num
    elseif c == "'" or c == '"' then
      local j = i + 1
      while true do
        local ch = src:sub(j, j)
        if ch == "" then lex_error(line, "unterminated string literal") end
        if ch == "\\" then j = j + 2
        elseif ch == c then break
        else j = j + 1 end
      end
      local body = src:sub(i + 1, j - 1)
      tok = { t = "string", v = unescape_string(body, line) }
      for _ in body:gmatch("\n") do line = line + 1 end
      i = j + 1
    else
      for _, op in ipairs(OPERATORS) do
        if src:sub(i, i + #op - 1) == op then tok = { t = "op", v = op }; break end
      end
      if not tok then lex_error(line, "unexpected character '" .. c .. "' in a tag") end
      i = i + #tok.v
    end
    tok.line = line
    toks[#toks + 1] = tok
  end
end

local function lex(src)
  src = src:gsub("\r\n", "\n"):gsub("\r", "\n")
  -- keep_trailing_newline=False: one trailing newline of the source is dropped
  if src:sub(-1) == "\n" then src = src:sub(1, -2) end
  local out = {}
  local i, n, line = 1, #src, 1
  local line_starting = true     -- the previous tag ended a line (or the template starts)
  local strip_next = false       -- a "-" closed the previous tag
  while i <= n do
    local s = src:find("{[{%%#]", i)
    local text = src:sub(i, (s or n + 1) - 1)
    if strip_next then text = text:gsub("^%s+", "") end
    strip_next = false
    if not s then
      if #text > 0 then out[#out + 1] = { t = "text", v = text, line = line } end
      break
    end
    local kind_ch = src:sub(s + 1, s + 1)
    local ctrl = src:sub(s + 2, s + 2)
    if ctrl ~= "-" and ctrl ~= "+" then ctrl = "" end
    if ctrl == "-" then
      text = text:gsub("%s+$", "")
    elseif ctrl ~= "+" and kind_ch ~= "{" then
      -- lstrip_blocks: spaces and tabs from the line start to a block or comment tag
      local last_nl = text:match(".*()\n")
      local l_pos = last_nl and last_nl + 1 or 1
      if (last_nl or line_starting) and text:sub(l_pos):match("^%s+$") then
        text = text:sub(1, l_pos - 1)
      end
    end
    local text_lines = select(2, src:sub(i, s - 1):gsub("\n", ""))
    if #text > 0 then out[#out + 1] = { t = "text", v = text, line = line } end
    line = line + text_lines
    local start = s + 2 + (ctrl ~= "" and 1 or 0)
    local tag_line = line
    if kind_ch == "#" then
      local e = src:find("#}", start, true)
      if not e then lex_error(line, "unterminated comment") end
      local close_ctrl = src:sub(e - 1, e - 1)
      for _ in src:sub(start, e - 1):gmatch("\n") do line = line + 1 end
      i = e + 2
      if close_ctrl == "-" then strip_next = true
      elseif close_ctrl ~= "+" and src:sub(i, i) == "\n" then i = i + 1; line = line + 1 end
      line_starting = src:sub(i - 1, i - 1) == "\n"
    else
      local close = kind_ch == "{" and "}}" or "%}"
      local toks, after, close_ctrl, end_line = lex_tag(src, start, close, line)
      line = end_line
      i = after
      if close_ctrl == "-" then strip_next = true
      elseif kind_ch == "%" and close_ctrl ~= "+" and src:sub(i, i) == "\n" then
        -- trim_blocks: the first newline after a block tag
        i = i + 1
        line = line + 1
      end
      line_starting = src:sub(i - 1, i - 1) == "\n"
      -- {% raw %}: the text up to {% endraw %} verbatim
      if kind_ch == "%" and #toks == 1 and toks[1].v == "raw" then
        local rs, re_, rctrl = src:find("{%%([%-+]?)%s*endraw%s*[%-+]?%%}", i)
        if not rs then lex_error(tag_line, "'raw' without 'endraw'") end
        local body = src:sub(i, rs - 1)
        if rctrl == "-" then body = body:gsub("%s+$", "") end
        out[#out + 1] = { t = "text", v = body, line = line }
        for _ in src:sub(i, re_):gmatch("\n") do line = line + 1 end
        i = re_ + 1
        if src:sub(re_ - 2, re_ - 2) == "-" then strip_next = true
        elseif src:sub(i, i) == "\n" then i = i + 1; line = line + 1 end
        line_starting = src:sub(i - 1, i - 1) == "\n"
      else
        out[#out + 1] = { t = kind_ch == "{" and "var" or "block", toks = toks, line = tag_line }
      end
    end
  end
  return out
end

-- ---------------------------------------------------------------- parser

local Parser = {}
Parser.__index = Parser

local function token_stream(toks, line)
  return setmetatable({ toks = toks, pos = 1, line = line }, Parser)
end

function Parser:peek(k) return self.toks[self.pos + (k or 0)] end
function Parser:next()
  local t = self.toks[self.pos]
  self.pos = self.pos + 1
  return t
end
function Parser:cur_line()
  local t = self.toks[self.pos] or self.toks[#self.toks]
  return t and t.line or self.line
end
function Parser:is(t, v)
  local tok = self.toks[self.pos]
  return tok ~= nil and tok.t == t and (v == nil or tok.v == v)
end
function Parser:is_op(v) return self:is("op", v) end
function Parser:is_name(v) return self:is("name", v) end
function Parser:accept(t, v)
  if self:is(t, v) then return self:next() end
end
function Parser:expect(t, v)
  local tok = self:next()
  if not tok or tok.t ~= t or (v ~= nil and tok.v ~= v) then
    tfail(tok and tok.line or self.line, "expected %s, got %s", v and ("'" .. v .. "'") or t,
      tok and ("'" .. tostring(tok.v) .. "'") or "the end of the tag")
  end
  return tok
end
function Parser:at_end() return self.pos > #self.toks end

function Parser:expression(no_condexpr)
  if no_condexpr then return self:or_expr() end
  local expr = self:or_expr()
  while self:is_name("if") do
    local line = self:next().line
    local cond = self:or_expr()
    local other
    if self:accept("name", "else") then other = self:expression() end
    expr = { k = "cond", cond = cond, yes = expr, no = other, line = line }
  end
  return expr
end

function Parser:or_expr()
  local left = self:and_expr()
  while self:is_name("or") do
    local line = self:next().line
    left = { k = "or", a = left, b = self:and_expr(), line = line }
  end
  return left
end

function Parser:and_expr()
  local left = self:not_expr()
  while self:is_name("and") do
    local line = self:next().line
    left = { k = "and", a = left, b = self:not_expr(), line = line }
  end
  return left
end

function Parser:not_expr()
  if self:is_name("not") then
    local line = self:next().line
    return { k = "not", a = self:not_expr(), line = line }
  end
  return self:compare()
end

local COMPARE_OPS = { ["=="] = true, ["!="] = true, ["<"] = true, [">"] = true, ["<="] = true, [">="] = true }

function Parser:compare()
  local expr = self:math1()
  local ops = {}
  while true do
    local tok = self:peek()
    if tok and tok.t == "op" and COMPARE_OPS[tok.v] then
      self:next()
      ops[#ops + 1] = { op = tok.v, b = self:math1() }
    elseif self:is_name("in") then
      self:next()
      ops[#ops + 1] = { op = "in", b = self:math1() }
    elseif self:is_name("not") and self:peek(1) and self:peek(1).t == "name" and self:peek(1).v == "in" then
      self:next(); self:next()
      ops[#ops + 1] = { op = "notin", b = self:math1() }
    else
      break
    end
  end
  if #ops == 0 then return expr end
  return { k = "compare", a = expr, ops = ops, line = expr.line }
end

function Parser:math1()
  local left = self:concat()
  while self:is_op("+") or self:is_op("-") do
    local tok = self:next()
    left = { k = "bin", op = tok.v, a = left, b = self:concat(), line = tok.line }
  end
  return left
end

function Parser:concat()
  local left = self:math2()
  while self:is_op("~") do
    local tok = self:next()
    left = { k = "bin", op = "~", a = left, b = self:math2(), line = tok.line }
  end
  return left
end

function Parser:math2()
  local left = self:pow()
  while self:is_op("*") or self:is_op("/") or self:is_op("//") or self:is_op("%") do
    local tok = self:next()
    left = { k = "bin", op = tok.v, a = left, b = self:pow(), line = tok.line }
  end
  return left
end

function Parser:pow()
  local left = self:unary()
  while self:is_op("**") do
    local tok = self:next()
    left = { k = "bin", op = "**", a = left, b = self:unary(), line = tok.line }
  end
  return left
end

function Parser:unary(no_filter)
  local node
  if self:is_op("-") or self:is_op("+") then
    local tok = self:next()
    node = { k = "neg", op = tok.v, a = self:unary(true), line = tok.line }
  else
    node = self:primary()
  end
  node = self:postfix(node)
  if not no_filter then node = self:filter_expr(node) end
  return node
end

function Parser:primary()
  local tok = self:next()
  if not tok then tfail(self.line, "expected an expression, got the end of the tag") end
  local line = tok.line
  if tok.t == "name" then
    local v = tok.v
    if v == "true" or v == "True" then return { k = "const", v = true, line = line } end
    if v == "false" or v == "False" then return { k = "const", v = false, line = line } end
    if v == "none" or v == "None" then return { k = "const", v = NONE, line = line } end
    return { k = "name", name = v, line = line }
  elseif tok.t == "string" then
    local s = tok.v
    while self:is("string") do s = s .. self:next().v end
    return { k = "const", v = s, line = line }
  elseif tok.t == "number" then
    return { k = "const", v = tok.v, line = line }
  elseif tok.t == "op" and tok.v == "(" then
    if self:accept("op", ")") then return { k = "tuple", items = {}, line = line } end
    local first = self:expression()
    if self:is_op(",") then
      local items = { first }
      while self:accept("op", ",") do
        if self:is_op(")") then break end
        items[#items + 1] = self:expression()
      end
      self:expect("op", ")")
      return { k = "tuple", items = items, line = line }
    end
    self:expect("op", ")")
    return first
  elseif tok.t == "op" and tok.v == "[" then
    local items = {}
    while not self:is_op("]") do
      if #items > 0 then self:expect("op", ",") end
      if self:is_op("]") then break end
      items[#items + 1] = self:expression()
    end
    self:expect("op", "]")
    return { k = "list", items = items, line = line }
  elseif tok.t == "op" and tok.v == "{" then
    local keys, vals = {}, {}
    while not self:is_op("}") do
      if #keys > 0 then self:expect("op", ",") end
      if self:is_op("}") then break end
      keys[#keys + 1] = self:expression()
      self:expect("op", ":")
      vals[#vals + 1] = self:expression()
    end
    self:expect("op", "}")
    return { k = "dict", keys = keys, vals = vals, line = line }
  end
  tfail(line, "unexpected '%s' in an expression", tostring(tok.v))
end

function Parser:call_args()
  -- after "(": positional and keyword arguments up to ")"
  local args, kwargs, kworder = {}, {}, {}
  while not self:is_op(")") do
    if #args + #kworder > 0 then self:expect("op", ",") end
    if self:is_op(")") then break end
    if self:is_op("*") or self:is_op("**") then
      tfail(self:cur_line(), "unsupported Jinja feature: *args/**kwargs in a call")
    end
    if self:is("name") and self:peek(1) and self:peek(1).t == "op" and self:peek(1).v == "=" then
      local name = self:next().v
      self:next()
      kwargs[name] = self:expression()
      kworder[#kworder + 1] = name
    else
      if #kworder > 0 then tfail(self:cur_line(), "a positional argument follows a keyword argument") end
      args[#args + 1] = self:expression()
    end
  end
  self:expect("op", ")")
  return args, kwargs, kworder
end

function Parser:postfix(node)
  while true do
    if self:is_op(".") then
      local line = self:next().line
      local tok = self:next()
      if tok and tok.t == "name" then
        node = { k = "getattr", obj = node, attr = tok.v, line = line }
      elseif tok and tok.t == "number" then
        node = { k = "getitem", obj = node, key = { k = "const", v = tok.v, line = line }, line = line }
      else
        tfail(line, "expected an attribute name after '.'")
      end
    elseif self:is_op("[") then
      local line = self:next().line
      local parts, colons = { nil, nil, nil }, 0
      local idx = 1
      while not self:is_op("]") do
        if self:accept("op", ":") then
          colons = colons + 1
          idx = idx + 1
        else
          if parts[idx] ~= nil then tfail(line, "expected ']' in a subscript") end
          parts[idx] = self:expression()
        end
      end
      self:expect("op", "]")
      if colons == 0 then
        node = { k = "getitem", obj = node, key = parts[1], line = line }
      else
        node = { k = "slice", obj = node, start = parts[1], stop = parts[2], step = parts[3], line = line }
      end
    elseif self:is_op("(") then
      local line = self:next().line
      local args, kwargs, kworder = self:call_args()
      node = { k = "call", fn = node, args = args, kwargs = kwargs, kworder = kworder, line = line }
    else
      return node
    end
  end
end

function Parser:dotted_name()
  local name = self:expect("name").v
  while self:is_op(".") do
    self:next()
    name = name .. "." .. self:expect("name").v
  end
  return name
end

local TEST_ARG_STARTS = { name = true, string = true, number = true }

function Parser:filter_expr(node)
  while true do
    if self:is_op("|") then
      local line = self:next().line
      local name = self:dotted_name()
      local args, kwargs = {}, {}
      if self:accept("op", "(") then args, kwargs = self:call_args() end
      node = { k = "filter", name = name, a = node, args = args, kwargs = kwargs, line = line }
    elseif self:is_name("is") then
      local line = self:next().line
      local negate = self:accept("name", "not") ~= nil
      local name = self:dotted_name()
      local args, kwargs = {}, {}
      local tok = self:peek()
      if self:accept("op", "(") then
        args, kwargs = self:call_args()
      elseif tok and (TEST_ARG_STARTS[tok.t] or (tok.t == "op" and (tok.v == "[" or tok.v == "{")))
          and not (tok.t == "name" and (tok.v == "else" or tok.v == "or" or tok.v == "and")) then
        args = { self:postfix(self:primary()) }
      end
      node = { k = "test", name = name, a = node, args = args, kwargs = kwargs, negate = negate, line = line }
    else
      return node
    end
  end
end

-- Assignment targets: a name, "a, b", "(a, b)", or "ns.attr" (set only).
function Parser:target(allow_attr)
  local line = self:cur_line()
  local names = {}
  local paren = self:accept("op", "(")
  repeat
    local name = self:expect("name").v
    if allow_attr and self:is_op(".") then
      self:next()
      local attr = self:expect("name").v
      return { k = "attr_target", name = name, attr = attr, line = line }
    end
    names[#names + 1] = name
  until not self:accept("op", ",") or (paren and self:is_op(")"))
  if paren then self:expect("op", ")") end
  if #names == 1 and not paren then return { k = "name_target", name = names[1], line = line } end
  return { k = "tuple_target", names = names, line = line }
end

-- Statement tokens -> a tree. body lists end at one of `ends`.
local function parse_template(tokens)
  local pos = 1

  local function parse_body(ends)
    local body = {}
    while pos <= #tokens do
      local tok = tokens[pos]
      if tok.t == "text" then
        body[#body + 1] = { k = "text", v = tok.v, line = tok.line }
        pos = pos + 1
      elseif tok.t == "var" then
        local p = token_stream(tok.toks, tok.line)
        if p:at_end() then tfail(tok.line, "expected an expression in '{{ }}'") end
        local expr = p:expression()
        if not p:at_end() then tfail(p:cur_line(), "unexpected '%s' in '{{ }}'", tostring(p:peek().v)) end
        body[#body + 1] = { k = "output", expr = expr, line = tok.line }
        pos = pos + 1
      else
        local p = token_stream(tok.toks, tok.line)
        local head = p:peek()
        if not head or head.t ~= "name" then tfail(tok.line, "expected a statement name in '{%% %%}'") end
        local word = head.v
        if ends[word] then return body, word, p end
        pos = pos + 1
        p:next()
        local line = tok.line
        local node
        if word == "if" then
          node = { k = "if", line = line, branches = {} }
          local cond = p:expression()
          if not p:at_end() then tfail(line, "unexpected '%s' after the 'if' condition", tostring(p:peek().v)) end
          while true do
            local blk, ended, ep = parse_body({ elif = true, ["else"] = true, endif = true })
            node.branches[#node.branches + 1] = { cond = cond, body = blk }
            if not ended then tfail(line, "'if' without 'endif'") end
            pos = pos + 1
            ep:next()
            if ended == "elif" then
              cond = ep:expression()
            elseif ended == "else" then
              local blk2, ended2 = parse_body({ endif = true })
              if not ended2 then tfail(line, "'if' without 'endif'") end
              pos = pos + 1
              node.else_body = blk2
              break
            else
              break
            end
          end
        elseif word == "for" then
          local target = p:target(false)
          p:expect("name", "in")
          local iter = p:expression(true)
          local filter
          if p:accept("name", "if") then filter = p:expression(true) end
          if p:is_name("recursive") then tfail(line, "unsupported Jinja feature: recursive for loops") end
          if not p:at_end() then tfail(line, "unexpected '%s' in the 'for' statement", tostring(p:peek().v)) end
          local blk, ended = parse_body({ ["else"] = true, endfor = true })
          if not ended then tfail(line, "'for' without 'endfor'") end
          pos = pos + 1
          local else_body
          if ended == "else" then
            else_body, ended = parse_body({ endfor = true })
            if not ended then tfail(line, "'for' without 'endfor'") end
            pos = pos + 1
          end
          node = { k = "for", target = target, iter = iter, filter = filter, body = blk, else_body = else_body,
                   line = line }
        elseif word == "set" then
          local target = p:target(true)
          if p:accept("op", "=") then
            local expr = p:expression()
            if not p:at_end() then tfail(line, "unexpected '%s' in the 'set' statement", tostring(p:peek().v)) end
            node = { k = "set", target = target, expr = expr, line = line }
          else
            local filters = {}
            while p:accept("op", "|") do
              local fname = p:dotted_name()
              local args, kwargs = {}, {}
              if p:accept("op", "(") then args, kwargs = p:call_args() end
              filters[#filters + 1] = { name = fname, args = args, kwargs = kwargs }
            end
            if not p:at_end() then tfail(line, "expected '=' in the 'set' statement") end
            local blk, ended = parse_body({ endset = true })
            if not ended then tfail(line, "'set' block without 'endset'") end
            pos = pos + 1
            node = { k = "setblock", target = target, body = blk, filters = filters, line = line }
          end
        elseif word == "macro" then
          local name = p:expect("name").v
          p:expect("op", "(")
          local params = {}
          while not p:is_op(")") do
            if #params > 0 then p:expect("op", ",") end
            local pname = p:expect("name").v
            local default
            if p:accept("op", "=") then default = p:expression() end
            params[#params + 1] = { name = pname, default = default }
          end
          p:expect("op", ")")
          local blk, ended = parse_body({ endmacro = true })
          if not ended then tfail(line, "'macro' without 'endmacro'") end
          pos = pos + 1
          node = { k = "macro", name = name, params = params, body = blk, line = line }
        elseif word == "call" then
          local cparams = {}
          if p:accept("op", "(") then
            while not p:is_op(")") do
              if #cparams > 0 then p:expect("op", ",") end
              local pname = p:expect("name").v
              local default
              if p:accept("op", "=") then default = p:expression() end
              cparams[#cparams + 1] = { name = pname, default = default }
            end
            p:expect("op", ")")
          end
          local call = p:expression()
          if call.k ~= "call" then tfail(line, "'call' expects a macro call") end
          local blk, ended = parse_body({ endcall = true })
          if not ended then tfail(line, "'call' without 'endcall'") end
          pos = pos + 1
          node = { k = "callblock", call = call, params = cparams, body = blk, line = line }
        elseif word == "generation" then
          -- transformers' AssistantTracker tag: marks assistant text, renders its body
          local blk, ended = parse_body({ endgeneration = true })
          if not ended then tfail(line, "'generation' without 'endgeneration'") end
          pos = pos + 1
          node = { k = "block", body = blk, line = line }
        elseif word == "filter" then
          local filters = {}
          repeat
            local fname = p:dotted_name()
            local args, kwargs = {}, {}
            if p:accept("op", "(") then args, kwargs = p:call_args() end
            filters[#filters + 1] = { name = fname, args = args, kwargs = kwargs }
          until not p:accept("op", "|")
          local blk, ended = parse_body({ endfilter = true })
          if not ended then tfail(line, "'filter' without 'endfilter'") end
          pos = pos + 1
          node = { k = "filterblock", filters = filters, body = blk, line = line }
        elseif word == "break" or word == "continue" then
          node = { k = word, line = line }
        elseif word == "endif" or word == "endfor" or word == "else" or word == "elif" or word == "endmacro"
            or word == "endset" or word == "endcall" or word == "endgeneration" or word == "endfilter" then
          tfail(line, "unexpected '%s'", word)
        else
          tfail(line, "unsupported Jinja feature: the '%s' statement", word)
        end
        if word ~= "if" and word ~= "for" and word ~= "set" and word ~= "macro" and word ~= "call"
            and word ~= "filter" and not p:at_end() then
          tfail(line, "unexpected '%s' in the '%s' statement", tostring(p:peek().v), word)
        end
        body[#body + 1] = node
      end
    end
    return body, nil
  end

  local body, ended = parse_body({})
  if ended then tfail(tokens[pos].line, "unexpected '%s'", ended) end
  return body
end

-- ---------------------------------------------------------------- runtime

local BREAK, CONTINUE = {}, {}

local Scope = {}
Scope.__index = Scope
local function new_scope(parent) return setmetatable({ vars = {}, parent = parent }, Scope) end
function Scope:get(name)
  local s = self
  while s do
    local v = s.vars[name]
    if v ~= nil then return v end
    s = s.parent
  end
  return nil
end
function Scope:set(name, v) self.vars[name] = v end

local function callable(name, fn) return setmetatable({ name = name, fn = fn }, CALLABLE_MT) end

local eval, render_body
local FILTERS, TESTS = {}, {}

local function to_list(v, line, what)
  local k = kind(v)
  if k == "list" then return v end
  if k == "undefined" then return {} end
  if k == "dict" then
    local keys = dict_keys(v)
    return keys
  end
  if k == "str" then return utf8_chars(v) end
  if k == "namespace" then tfail(line, "%s: a namespace is not iterable", what or "iteration") end
  tfail(line, "%s: '%s' object is not iterable", what or "iteration", py_type_name(v))
end

local function get_item(obj, key, line)
  local k = kind(obj)
  if is_boxed(key) then
    if k == "list" or k == "str" then tfail(line, "%s indices must be integers, got float", py_type_name(obj)) end
    key = key.f
  end
  if k == "list" or k == "str" then
    if type(key) ~= "number" then
      if type(key) == "string" then return nil end
      tfail(line, "%s indices must be integers, got %s", py_type_name(obj), py_type_name(key))
    end
    local len = k == "str" and str_len(obj) or #obj
    if key < 0 then key = key + len end
    if key < 0 or key >= len then return nil end
    if k == "str" then
      if is_ascii(obj) then return obj:sub(key + 1, key + 1) end
      return utf8_chars(obj)[key + 1]
    end
    return obj[key + 1]
  end
  if k == "dict" then
    local v = rawget(obj, key)
    if v == nil and type(key) == "number" then v = rawget(obj, tostring(key)) end
    return v
  end
  if k == "namespace" then return obj.attrs[key] end
  if k == "loop" then return obj[key] end
  return nil
end

local STR_METHODS, DICT_METHODS, LIST_METHODS = {}, {}, {}

local function bound(name, fn, self_value)
  return callable(name, function(args, kwargs, line) return fn(self_value, args, kwargs, line) end)
end

local function get_attr(obj, name, line, hint)
  local k = kind(obj)
  if k == "undefined" then tfail(line, "'%s' is undefined", obj.hint or "value") end
  if k == "str" and STR_METHODS[name] then return bound(name, STR_METHODS[name], obj) end
  if k == "dict" then
    if DICT_METHODS[name] then return bound(name, DICT_METHODS[name], obj) end
    return rawget(obj, name)
  end
  if k == "list" and LIST_METHODS[name] then return bound(name, LIST_METHODS[name], obj) end
  if k == "namespace" then return obj.attrs[name] end
  if k == "loop" then
    local v = obj[name]
    if v == nil then return nil end
    return v
  end
  return nil
end

local function slice(obj, start, stop, step, line)
  local k = kind(obj)
  local items
  if k == "str" then items = utf8_chars(obj)
  elseif k == "list" then items = obj
  elseif k == "undefined" then return obj
  else tfail(line, "'%s' object is not subscriptable", py_type_name(obj)) end
  local len = #items
  step = step or 1
  if step == 0 then tfail(line, "slice step cannot be zero") end
  local function norm(i, default)
    if i == nil then return default end
    if i < 0 then i = i + len end
    if step > 0 then return math.max(0, math.min(i, len)) end
    return math.max(-1, math.min(i, len - 1))
  end
  local out = {}
  if step > 0 then
    local a, b = norm(start, 0), norm(stop, len)
    local i = a
    while i < b do out[#out + 1] = items[i + 1]; i = i + step end
  else
    local a, b = norm(start, len - 1), norm(stop, -1)
    local i = a
    while i > b do out[#out + 1] = items[i + 1]; i = i + step end
  end
  if k == "str" then return table.concat(out) end
  return new_list(out)
end

local function contains(container, item, line)
  local k = kind(container)
  if k == "str" then
    if type(item) ~= "string" then
      tfail(line, "'in <string>' requires string as left operand, not %s", py_type_name(item))
    end
    return container:find(item, 1, true) ~= nil
  end
  if k == "list" then
    for i = 1, #container do if deep_eq(container[i], item) then return true end end
    return false
  end
  if k == "dict" then return item ~= nil and rawget(container, item) ~= nil end
  if k == "undefined" then return false end
  if k == "namespace" then return container.attrs[item] ~= nil end
  tfail(line, "argument of type '%s' is not iterable", py_type_name(container))
end

local function compare(op, a, b, line)
  if op == "==" then return deep_eq(a, b) end
  if op == "!=" then return not deep_eq(a, b) end
  if op == "in" then return contains(b, a, line) end
  if op == "notin" then return not contains(b, a, line) end
  if is_boxed(a) then a = a.f end
  if is_boxed(b) then b = b.f end
  local ta, tb = type(a), type(b)
  if ta == "boolean" then a = a and 1 or 0; ta = "number" end
  if tb == "boolean" then b = b and 1 or 0; tb = "number" end
  if not ((ta == "number" and tb == "number") or (ta == "string" and tb == "string")) then
    tfail(line, "'%s' not supported between instances of '%s' and '%s'", op, py_type_name(a), py_type_name(b))
  end
  if op == "<" then return a < b end
  if op == ">" then return a > b end
  if op == "<=" then return a <= b end
  return a >= b
end

local function arith(op, a, b, line)
  if op == "~" then return py_str(a) .. py_str(b) end
  local ka, kb = kind(a), kind(b)
  if ka == "undefined" or kb == "undefined" then
    tfail(line, "'%s' is undefined", (ka == "undefined" and a or b).hint or "value")
  end
  if ka == "bool" then a = a and 1 or 0; ka = "number" end
  if kb == "bool" then b = b and 1 or 0; kb = "number" end
  if ka == "number" and kb == "number" then
    local x, fx = num(a)
    local y, fy = num(b)
    local r
    if op == "+" then r = x + y
    elseif op == "-" then r = x - y
    elseif op == "*" then r = x * y
    elseif op == "/" then
      if y == 0 then tfail(line, "division by zero") end
      return float(x / y)
    elseif op == "//" then
      if y == 0 then tfail(line, "integer division or modulo by zero") end
      r = math.floor(x / y)
    elseif op == "%" then
      if y == 0 then tfail(line, "integer division or modulo by zero") end
      r = x - math.floor(x / y) * y
    elseif op == "**" then
      r = x ^ y
      if y < 0 then fx = true end
    end
    if fx or fy then return float(r) end
    return r
  end
  if is_boxed(a) then a = a.f end
  if is_boxed(b) then b = b.f end
  if op == "+" then
    if ka == "number" and kb == "number" then return a + b end
    if ka == "str" and kb == "str" then return a .. b end
    if ka == "list" and kb == "list" then
      local out = {}
      for i = 1, #a do out[#out + 1] = a[i] end
      for i = 1, #b do out[#out + 1] = b[i] end
      return new_list(out)
    end
    if ka == "str" or kb == "str" then
      tfail(line, "can only concatenate str (not \"%s\") to str", py_type_name(ka == "str" and b or a))
    end
  elseif op == "*" then
    if ka == "number" and kb == "number" then return a * b end
    if ka == "str" and kb == "number" then return b > 0 and a:rep(b) or "" end
    if ka == "number" and kb == "str" then return a > 0 and b:rep(a) or "" end
    if ka == "list" and kb == "number" then
      local out = {}
      for _ = 1, b do for i = 1, #a do out[#out + 1] = a[i] end end
      return new_list(out)
    end
  elseif ka == "number" and kb == "number" then
    if op == "-" then return a - b end
    if op == "/" then
      if b == 0 then tfail(line, "division by zero") end
      return a / b
    end
    if op == "//" then
      if b == 0 then tfail(line, "integer division or modulo by zero") end
      return math.floor(a / b)
    end
    if op == "%" then
      if b == 0 then tfail(line, "integer division or modulo by zero") end
      return a - math.floor(a / b) * b
    end
    if op == "**" then return a ^ b end
  elseif op == "%" and ka == "str" then
    return FILTERS.format(a, kb == "list" and b or { b }, {}, line)
  end
  tfail(line, "unsupported operand type(s) for %s: '%s' and '%s'", op, py_type_name(a), py_type_name(b))
end

local function call_value(fn, args, kwargs, line, ctx)
  if type(fn) == "function" then
    return fn(table.unpack and table.unpack(args) or unpack(args))
  end
  if type(fn) == "table" and getmetatable(fn) == CALLABLE_MT then
    return fn.fn(args, kwargs, line, ctx)
  end
  if is_undef(fn) then tfail(line, "'%s' is undefined", fn.hint or "value") end
  tfail(line, "'%s' object is not callable", py_type_name(fn))
end

local function eval_args(node, scope, ctx)
  local args = {}
  for i, a in ipairs(node.args) do args[i] = eval(a, scope, ctx) end
  local kwargs = {}
  for name, a in pairs(node.kwargs) do kwargs[name] = eval(a, scope, ctx) end
  return args, kwargs
end

local function apply_filter(name, value, args, kwargs, line, ctx)
  local f = FILTERS[name]
  if not f then tfail(line, "unsupported Jinja feature: the '%s' filter", name) end
  return f(value, args, kwargs, line, ctx)
end

local function assign(target, value, scope, line)
  if target.k == "name_target" then
    scope:set(target.name, value)
  elseif target.k == "tuple_target" then
    local items = to_list(value, line, "unpacking")
    if #items ~= #target.names then
      tfail(line, "cannot unpack %d values into %d names", #items, #target.names)
    end
    for i, name in ipairs(target.names) do scope:set(name, items[i]) end
  else
    local ns = scope:get(target.name)
    if kind(ns) ~= "namespace" then
      tfail(line, "cannot assign attribute '%s' on '%s': only namespace() objects take attributes",
        target.attr, target.name)
    end
    ns.attrs[target.attr] = value
  end
end

local function lookup(scope, ctx, name)
  local v = scope:get(name)
  if v ~= nil then return v end
  v = ctx.globals[name]
  if v ~= nil then return v end
  return undefined(name)
end

eval = function(node, scope, ctx)
  local k = node.k
  if k == "const" then return node.v end
  if k == "name" then return lookup(scope, ctx, node.name) end
  if k == "getattr" then
    local obj = eval(node.obj, scope, ctx)
    local v = get_attr(obj, node.attr, node.line)
    if v == nil then return undefined(node.attr) end
    return v
  end
  if k == "getitem" then
    local obj = eval(node.obj, scope, ctx)
    if is_undef(obj) then tfail(node.line, "'%s' is undefined", obj.hint or "value") end
    local key = eval(node.key, scope, ctx)
    local v = get_item(obj, key, node.line)
    if v == nil and type(key) == "string" then v = get_attr(obj, key, node.line) end
    if v == nil then return undefined(type(key) == "string" and key or py_str(key)) end
    return v
  end
  if k == "slice" then
    local obj = eval(node.obj, scope, ctx)
    local function num(n)
      if n == nil then return nil end
      local v = eval(n, scope, ctx)
      if v == NONE then return nil end
      if type(v) ~= "number" or v ~= math.floor(v) then
        tfail(node.line, "slice indices must be integers or None")
      end
      return v
    end
    return slice(obj, num(node.start), num(node.stop), num(node.step), node.line)
  end
  if k == "call" then
    local fn = eval(node.fn, scope, ctx)
    local args, kwargs = eval_args(node, scope, ctx)
    local v = call_value(fn, args, kwargs, node.line, ctx)
    if v == nil then return NONE end
    return v
  end
  if k == "filter" then
    local value
    if node.a.k == "name" then
      local v = scope:get(node.a.name)
      if v == nil then v = ctx.globals[node.a.name] end
      value = v == nil and undefined(node.a.name) or v
    else
      value = eval(node.a, scope, ctx)
    end
    local args, kwargs = eval_args(node, scope, ctx)
    return apply_filter(node.name, value, args, kwargs, node.line, ctx)
  end
  if k == "test" then
    local f = TESTS[node.name]
    if not f then tfail(node.line, "unsupported Jinja feature: the '%s' test", node.name) end
    local value = eval(node.a, scope, ctx)
    local args, kwargs = eval_args(node, scope, ctx)
    local r = f(value, args, kwargs, node.line, ctx) and true or false
    if node.negate then return not r end
    return r
  end
  if k == "and" then
    local a = eval(node.a, scope, ctx)
    if not truthy(a) then return a end
    return eval(node.b, scope, ctx)
  end
  if k == "or" then
    local a = eval(node.a, scope, ctx)
    if truthy(a) then return a end
    return eval(node.b, scope, ctx)
  end
  if k == "not" then return not truthy(eval(node.a, scope, ctx)) end
  if k == "cond" then
    if truthy(eval(node.cond, scope, ctx)) then return eval(node.yes, scope, ctx) end
    if node.no then return eval(node.no, scope, ctx) end
    return undefined("inline if")
  end
  if k == "compare" then
    local a = eval(node.a, scope, ctx)
    for _, o in ipairs(node.ops) do
      local b = eval(o.b, scope, ctx)
      if not compare(o.op, a, b, node.line) then return false end
      a = b
    end
    return true
  end
  if k == "bin" then
    return arith(node.op, eval(node.a, scope, ctx), eval(node.b, scope, ctx), node.line)
  end
  if k == "neg" then
    local v = eval(node.a, scope, ctx)
    if type(v) == "boolean" then v = v and 1 or 0 end
    local x, is_float = num(v)
    if not x then tfail(node.line, "bad operand type for unary %s: '%s'", node.op, py_type_name(v)) end
    if node.op == "-" then x = -x end
    return is_float and float(x) or x
  end
  if k == "list" or k == "tuple" then
    local out = {}
    for i, item in ipairs(node.items) do out[i] = eval(item, scope, ctx) end
    if k == "tuple" then return setmetatable(out, TUPLE_MT) end
    return new_list(out)
  end
  if k == "dict" then
    local d = new_dict()
    for i, key in ipairs(node.keys) do dict_set(d, eval(key, scope, ctx), eval(node.vals[i], scope, ctx)) end
    return d
  end
  tfail(node.line, "internal error: unknown expression node '%s'", tostring(k))
end

local function make_macro(node, def_scope, ctx)
  return callable(node.name, function(args, kwargs, line, call_ctx, caller)
    local scope = new_scope(def_scope)
    if #args > #node.params then
      tfail(line, "macro '%s' takes not more than %d argument(s)", node.name, #node.params)
    end
    for i, param in ipairs(node.params) do
      local v = args[i]
      if v == nil then v = kwargs[param.name] end
      if v == nil and param.default then v = eval(param.default, scope, ctx) end
      if v == nil then v = undefined(param.name) end
      scope:set(param.name, v)
    end
    for name in pairs(kwargs) do
      local known = false
      for _, param in ipairs(node.params) do if param.name == name then known = true end end
      if not known then tfail(line, "macro '%s' has no argument '%s'", node.name, name) end
    end
    if caller then scope:set("caller", caller) end
    local out = {}
    local signal = render_body(node.body, scope, ctx, out)
    if signal then tfail(line, "'break'/'continue' outside a loop in macro '%s'", node.name) end
    return table.concat(out)
  end)
end

render_body = function(body, scope, ctx, out)
  for _, node in ipairs(body) do
    local k = node.k
    if k == "text" then
      out[#out + 1] = node.v
    elseif k == "output" then
      out[#out + 1] = py_str(eval(node.expr, scope, ctx))
    elseif k == "if" then
      local done = false
      for _, br in ipairs(node.branches) do
        if truthy(eval(br.cond, scope, ctx)) then
          local sig = render_body(br.body, scope, ctx, out)
          if sig then return sig end
          done = true
          break
        end
      end
      if not done and node.else_body then
        local sig = render_body(node.else_body, scope, ctx, out)
        if sig then return sig end
      end
    elseif k == "for" then
      local iterable = eval(node.iter, scope, ctx)
      if iterable == NONE then tfail(node.line, "'NoneType' object is not iterable") end
      local src = to_list(iterable, node.line, "for")
      local items = {}
      if node.filter then
        for i = 1, #src do
          local s = new_scope(scope)
          assign(node.target, src[i], s, node.line)
          if truthy(eval(node.filter, s, ctx)) then items[#items + 1] = src[i] end
        end
      else
        for i = 1, #src do items[i] = src[i] end
      end
      local n = #items
      for i = 1, n do
        local s = new_scope(scope)
        assign(node.target, items[i], s, node.line)
        local loop = setmetatable({
          index = i, index0 = i - 1, revindex = n - i + 1, revindex0 = n - i,
          first = i == 1, last = i == n, length = n, depth = 1, depth0 = 0,
          previtem = i > 1 and items[i - 1] or undefined("previtem"),
          nextitem = i < n and items[i + 1] or undefined("nextitem"),
        }, LOOP_MT)
        loop.cycle = callable("cycle", function(args, _, line)
          if #args == 0 then tfail(line, "loop.cycle: no items to cycle") end
          return args[(i - 1) % #args + 1]
        end)
        s:set("loop", loop)
        local sig = render_body(node.body, s, ctx, out)
        if sig == BREAK then break end
      end
      if n == 0 and node.else_body then
        local sig = render_body(node.else_body, scope, ctx, out)
        if sig then return sig end
      end
    elseif k == "set" then
      assign(node.target, eval(node.expr, scope, ctx), scope, node.line)
    elseif k == "setblock" then
      local buf = {}
      render_body(node.body, new_scope(scope), ctx, buf)
      local v = table.concat(buf)
      for _, f in ipairs(node.filters) do
        local args, kwargs = eval_args(f, scope, ctx)
        v = apply_filter(f.name, v, args, kwargs, node.line, ctx)
      end
      assign(node.target, v, scope, node.line)
    elseif k == "macro" then
      scope:set(node.name, make_macro(node, scope, ctx))
    elseif k == "callblock" then
      local fn = eval(node.call.fn, scope, ctx)
      local args, kwargs = eval_args(node.call, scope, ctx)
      local caller = callable("caller", function(cargs, ckwargs)
        local s = new_scope(scope)
        for i, param in ipairs(node.params) do
          local v = cargs[i]
          if v == nil then v = ckwargs[param.name] end
          if v == nil and param.default then v = eval(param.default, s, ctx) end
          s:set(param.name, v == nil and undefined(param.name) or v)
        end
        local buf = {}
        render_body(node.body, s, ctx, buf)
        return table.concat(buf)
      end)
      if kind(fn) ~= "callable" or type(fn) ~= "table" then
        tfail(node.line, "'call' expects a macro")
      end
      out[#out + 1] = py_str(fn.fn(args, kwargs, node.line, ctx, caller))
    elseif k == "filterblock" then
      local buf = {}
      local sig = render_body(node.body, scope, ctx, buf)
      local v = table.concat(buf)
      for _, f in ipairs(node.filters) do
        local args, kwargs = eval_args(f, scope, ctx)
        v = apply_filter(f.name, v, args, kwargs, node.line, ctx)
      end
      out[#out + 1] = py_str(v)
      if sig then return sig end
    elseif k == "block" then
      local sig = render_body(node.body, scope, ctx, out)
      if sig then return sig end
    elseif k == "break" then
      return BREAK
    elseif k == "continue" then
      return CONTINUE
    end
  end
  return nil
end

-- ---------------------------------------------------------------- filters

local function arg(args, kwargs, i, name, default)
  local v = args[i]
  if v == nil then v = kwargs[name] end
  if v == nil then return default end
  return v
end

local function need_str(v, line, what)
  if type(v) ~= "string" then tfail(line, "%s: expected a string, got %s", what, py_type_name(v)) end
  return v
end

local WS = "[ \t\n\r\v\f\28\29\30\31]"

local function py_strip(s, chars, left, right)
  if chars == nil or chars == NONE then
    if left then s = s:gsub("^" .. WS .. "+", "") end
    if right then s = s:gsub(WS .. "+$", "") end
    return s
  end
  local set = {}
  for _, ch in ipairs(utf8_chars(chars)) do set[ch] = true end
  local cs = utf8_chars(s)
  local a, b = 1, #cs
  if left then while a <= b and set[cs[a]] do a = a + 1 end end
  if right then while b >= a and set[cs[b]] do b = b - 1 end end
  return table.concat(cs, "", a, b)
end

local function attr_path(v, path, line)
  for part in tostring(path):gmatch("[^.]+") do
    local key = tonumber(part) or part
    local nv = get_item(v, key, line)
    if nv == nil and type(key) == "string" and not is_undef(v) then nv = get_attr(v, key, line) end
    if nv == nil then return undefined(part) end
    v = nv
  end
  return v
end

local function py_split(s, sep, maxsplit, line)
  local out = {}
  maxsplit = (maxsplit == nil or maxsplit == NONE) and -1 or maxsplit
  if sep == nil or sep == NONE then
    -- whitespace split, dropping empty strings
    local rest = s:gsub("^" .. WS .. "+", "")
    while #rest > 0 do
      if maxsplit >= 0 and #out >= maxsplit then
        out[#out + 1] = rest
        return new_list(out)
      end
      local a, b = rest:find(WS .. "+")
      if not a then out[#out + 1] = rest; break end
      out[#out + 1] = rest:sub(1, a - 1)
      rest = rest:sub(b + 1)
    end
    return new_list(out)
  end
  need_str(sep, line, "split")
  if sep == "" then tfail(line, "split: empty separator") end
  local start = 1
  while true do
    if maxsplit >= 0 and #out >= maxsplit then break end
    local a, b = s:find(sep, start, true)
    if not a then break end
    out[#out + 1] = s:sub(start, a - 1)
    start = b + 1
  end
  out[#out + 1] = s:sub(start)
  return new_list(out)
end

local function py_replace(s, old, new, count)
  count = (count == nil or count == NONE) and -1 or count
  if old == "" then
    local chars = utf8_chars(s)
    local out = {}
    local done = 0
    for i = 1, #chars + 1 do
      if count < 0 or done < count then out[#out + 1] = new; done = done + 1 end
      out[#out + 1] = chars[i]
    end
    return table.concat(out)
  end
  local out, start, done = {}, 1, 0
  while count < 0 or done < count do
    local a, b = s:find(old, start, true)
    if not a then break end
    out[#out + 1] = s:sub(start, a - 1)
    out[#out + 1] = new
    start = b + 1
    done = done + 1
  end
  out[#out + 1] = s:sub(start)
  return table.concat(out)
end

local function title_case(s)
  -- Jinja's title filter: capitalize each word (words split at whitespace, - ( { [ <)
  return (s:gsub("([^%s%-%(%{%[<]+)", function(word) return word:sub(1, 1):upper() .. word:sub(2):lower() end))
end

local function py_title(s)
  -- Python's str.title: a letter after a non-letter is upper-cased, others lower-cased
  return (s:gsub("(%a)(%a*)", function(a, b) return a:upper() .. b:lower() end))
end

FILTERS.trim = function(v, args, kwargs, line)
  return py_strip(need_str(py_str(v), line, "trim"), arg(args, kwargs, 1, "chars"), true, true)
end
FILTERS.length = function(v, _, _, line)
  local k = kind(v)
  if k == "str" then return str_len(v) end
  if k == "list" then return #v end
  if k == "dict" then return #dict_keys(v) end
  if k == "undefined" then return 0 end
  tfail(line, "length: object of type '%s' has no len()", py_type_name(v))
end
FILTERS.count = FILTERS.length
FILTERS.tojson = function(v, args, kwargs, line)
  local ensure_ascii = arg(args, kwargs, 1, "ensure_ascii", false)
  if truthy(ensure_ascii) then tfail(line, "unsupported Jinja feature: tojson(ensure_ascii=True)") end
  local indent = arg(args, kwargs, 2, "indent", NONE)
  local separators = arg(args, kwargs, 3, "separators", NONE)
  local sort_keys = truthy(arg(args, kwargs, 4, "sort_keys", false))
  if is_undef(v) then tfail(line, "tojson: '%s' is undefined", v.hint or "value") end
  local ind
  if type(indent) == "number" then ind = (" "):rep(indent)
  elseif type(indent) == "string" then ind = indent
  elseif indent ~= NONE then tfail(line, "tojson: indent must be a number or a string") end
  local item_sep, key_sep = ind and "," or ", ", ": "
  if separators ~= NONE then
    if kind(separators) ~= "list" or #separators ~= 2 then
      tfail(line, "tojson: separators must be a pair (item_separator, key_separator)")
    end
    item_sep, key_sep = separators[1], separators[2]
  end
  return to_json(v, ind, item_sep, key_sep, sort_keys, 0, line)
end
FILTERS.items = function(v, _, _, line)
  local k = kind(v)
  if k == "undefined" then return new_list() end
  if k ~= "dict" then tfail(line, "items: expected a mapping, got %s", py_type_name(v)) end
  local out = {}
  for _, key in ipairs(dict_keys(v)) do out[#out + 1] = setmetatable({ key, v[key] }, TUPLE_MT) end
  return new_list(out)
end
FILTERS.list = function(v, _, _, line) 
  local items = to_list(v, line, "list")
  local out = {}
  for i = 1, #items do out[i] = items[i] end
  return new_list(out)
end
FILTERS.string = function(v) return py_str(v) end
FILTERS.safe = function(v) return v end
FILTERS.upper = function(v) return py_upper(py_str(v)) end
FILTERS.lower = function(v) return py_lower(py_str(v)) end
FILTERS.capitalize = function(v)
  local s = py_str(v)
  return s:sub(1, 1):upper() .. s:sub(2):lower()
end
FILTERS.title = function(v) return title_case(py_str(v)) end
FILTERS.first = function(v, _, _, line)
  local items = to_list(v, line, "first")
  return items[1] == nil and undefined("first") or items[1]
end
FILTERS.last = function(v, _, _, line)
  local items = to_list(v, line, "last")
  return items[#items] == nil and undefined("last") or items[#items]
end
FILTERS.default = function(v, args, kwargs)
  local default = arg(args, kwargs, 1, "default_value", "")
  local boolean = truthy(arg(args, kwargs, 2, "boolean", false))
  if is_undef(v) or (boolean and not truthy(v)) then return default end
  return v
end
FILTERS.d = FILTERS.default
FILTERS.join = function(v, args, kwargs, line)
  local sep = arg(args, kwargs, 1, "d", "")
  local attribute = arg(args, kwargs, 2, "attribute")
  local items = to_list(v, line, "join")
  local parts = {}
  for i = 1, #items do
    local item = items[i]
    if attribute ~= nil then item = attr_path(item, attribute, line) end
    parts[i] = py_str(item)
  end
  return table.concat(parts, py_str(sep))
end
FILTERS.replace = function(v, args, kwargs, line)
  local old = need_str(arg(args, kwargs, 1, "old"), line, "replace")
  local new = need_str(arg(args, kwargs, 2, "new"), line, "replace")
  return py_replace(py_str(v), old, new, arg(args, kwargs, 3, "count"))
end
FILTERS.int = function(v, args, kwargs)
  local default = arg(args, kwargs, 1, "default", 0)
  if is_boxed(v) then v = v.f end
  if type(v) == "number" then return v >= 0 and math.floor(v) or math.ceil(v) end
  if type(v) == "boolean" then return v and 1 or 0 end
  if type(v) == "string" then
    local s = py_strip(v, nil, true, true):gsub("_", "")
    local n = s:match("^[%+%-]?%d+$") and tonumber(s) or tonumber(s:match("^[%+%-]?%d*%.?%d+[eE]?[%+%-]?%d*$") or "")
    if n then return n >= 0 and math.floor(n) or math.ceil(n) end
  end
  return default
end
FILTERS.float = function(v, args, kwargs)
  local default = arg(args, kwargs, 1, "default", 0)
  if is_boxed(v) then return v end
  if type(v) == "number" then return float(v) end
  if type(v) == "string" then
    local n = tonumber(py_strip(v, nil, true, true))
    if n then return float(n) end
  end
  return default
end
FILTERS.abs = function(v, _, _, line)
  local x, is_float = num(v)
  if not x then tfail(line, "abs: expected a number") end
  return is_float and float(math.abs(x)) or math.abs(x)
end
FILTERS.round = function(v, args, kwargs, line)
  local x, is_float = num(v)
  if not x then tfail(line, "round: expected a number") end
  local precision = num(arg(args, kwargs, 1, "precision", 0)) or 0
  local method = arg(args, kwargs, 2, "method", "common")
  local m = 10 ^ precision
  local r
  if method == "floor" then r = math.floor(x * m) / m
  elseif method == "ceil" then r = math.ceil(x * m) / m
  else
    -- Python's round: halves to even
    local scaled = x * m
    local lo = math.floor(scaled)
    local frac = scaled - lo
    if frac > 0.5 or (frac == 0.5 and lo % 2 == 1) then lo = lo + 1 end
    r = lo / m
  end
  if not is_float and method == "common" then return r end
  return float(r)
end
FILTERS.reverse = function(v, _, _, line)
  if type(v) == "string" then return slice(v, nil, nil, -1, line) end
  return slice(to_list(v, line, "reverse"), nil, nil, -1, line)
end
FILTERS.unique = function(v, _, _, line)
  local out = {}
  for _, item in ipairs(to_list(v, line, "unique")) do
    local seen = false
    for _, o in ipairs(out) do if deep_eq(o, item) then seen = true; break end end
    if not seen then out[#out + 1] = item end
  end
  return new_list(out)
end
FILTERS.sum = function(v, args, kwargs, line)
  local attribute = arg(args, kwargs, 1, "attribute")
  local total = arg(args, kwargs, 2, "start", 0)
  for _, item in ipairs(to_list(v, line, "sum")) do
    if attribute ~= nil then item = attr_path(item, attribute, line) end
    total = arith("+", total, item, line)
  end
  return total
end
local function minmax(which)
  return function(v, args, kwargs, line)
    local attribute = arg(args, kwargs, 2, "attribute")
    local best, best_key
    for _, item in ipairs(to_list(v, line, which)) do
      local key = attribute ~= nil and attr_path(item, attribute, line) or item
      if type(key) == "string" and not truthy(arg(args, kwargs, 1, "case_sensitive", false)) then key = key:lower() end
      if best == nil or (which == "min" and compare("<", key, best_key, line)) or
          (which == "max" and compare(">", key, best_key, line)) then
        best, best_key = item, key
      end
    end
    return best == nil and undefined(which) or best
  end
end
FILTERS.min = minmax("min")
FILTERS.max = minmax("max")
FILTERS.sort = function(v, args, kwargs, line)
  local reverse = truthy(arg(args, kwargs, 1, "reverse", false))
  local case_sensitive = truthy(arg(args, kwargs, 2, "case_sensitive", false))
  local attribute = arg(args, kwargs, 3, "attribute")
  local items = {}
  for i, item in ipairs(to_list(v, line, "sort")) do items[i] = { item = item, i = i } end
  local function key(item)
    local k = attribute ~= nil and attr_path(item, attribute, line) or item
    if type(k) == "string" and not case_sensitive then k = k:lower() end
    return k
  end
  table.sort(items, function(a, b)
    local ka, kb = key(a.item), key(b.item)
    if deep_eq(ka, kb) then return a.i < b.i end
    if reverse then return compare(">", ka, kb, line) end
    return compare("<", ka, kb, line)
  end)
  local out = {}
  for i, e in ipairs(items) do out[i] = e.item end
  return new_list(out)
end
FILTERS.dictsort = function(v, args, kwargs, line)
  local case_sensitive = truthy(arg(args, kwargs, 1, "case_sensitive", false))
  local by = arg(args, kwargs, 2, "by", "key")
  local reverse = truthy(arg(args, kwargs, 3, "reverse", false))
  local pairs_ = FILTERS.items(v, {}, {}, line)
  local sorted = FILTERS.sort(pairs_, { reverse, case_sensitive, by == "value" and "1" or "0" }, {}, line)
  return sorted
end
FILTERS.attr = function(v, args, kwargs, line)
  local r = get_attr(v, arg(args, kwargs, 1, "name"), line)
  return r == nil and undefined(tostring(args[1])) or r
end
FILTERS.indent = function(v, args, kwargs)
  local width = arg(args, kwargs, 1, "width", 4)
  local first = truthy(arg(args, kwargs, 2, "first", false))
  local blank = truthy(arg(args, kwargs, 3, "blank", false))
  local pad = type(width) == "string" and width or (" "):rep(width)
  local s = py_str(v)
  local lines = {}
  for l in (s .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  for i = 2, #lines do
    if blank or lines[i]:find("%S") then lines[i] = pad .. lines[i] end
  end
  if first and (blank or (lines[1] or ""):find("%S")) then lines[1] = pad .. lines[1] end
  return table.concat(lines, "\n")
end
FILTERS.wordcount = function(v)
  local n = 0
  for _ in py_str(v):gmatch("%w+") do n = n + 1 end
  return n
end
FILTERS.escape = function(v)
  return (py_str(v):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&#34;",
                                      ["'"] = "&#39;" }))
end
FILTERS.e = FILTERS.escape
FILTERS.format = function(v, args, _, line)
  local s = need_str(v, line, "format")
  local i = 0
  return (s:gsub("%%([%-%+ #0]*%d*%.?%d*)([sdifrx%%])", function(flags, conv)
    if conv == "%" then return "%" end
    i = i + 1
    local a = args[i]
    if a == nil then tfail(line, "format: not enough arguments for format string") end
    if conv == "s" then return string.format("%" .. flags .. "s", py_str(a)) end
    if conv == "r" then return py_repr(a) end
    if is_boxed(a) then a = a.f end
    if type(a) ~= "number" then tfail(line, "format: %%%s needs a number", conv) end
    if conv == "i" then conv = "d" end
    if conv == "d" or conv == "x" then a = a >= 0 and math.floor(a) or math.ceil(a) end
    return string.format("%" .. flags .. conv, a)
  end))
end

local function select_filter(want_attr, keep)
  return function(v, args, kwargs, line, ctx)
    local items = to_list(v, line, want_attr and "selectattr" or "select")
    local attribute, test_name, test_args
    if want_attr then
      attribute = args[1]
      if attribute == nil then tfail(line, "selectattr/rejectattr: missing the attribute name") end
      test_name = args[2]
      test_args = { unpack(args, 3) }
    else
      test_name = args[1]
      test_args = { unpack(args, 2) }
    end
    local out = {}
    for i = 1, #items do
      local value = want_attr and attr_path(items[i], attribute, line) or items[i]
      local ok
      if test_name == nil then
        ok = truthy(value)
      else
        local f = TESTS[test_name]
        if not f then tfail(line, "unsupported Jinja feature: the '%s' test", tostring(test_name)) end
        ok = f(value, test_args, {}, line, ctx) and true or false
      end
      if ok == keep then out[#out + 1] = items[i] end
    end
    return new_list(out)
  end
end
FILTERS.selectattr = select_filter(true, true)
FILTERS.rejectattr = select_filter(true, false)
FILTERS.select = select_filter(false, true)
FILTERS.reject = select_filter(false, false)
FILTERS.map = function(v, args, kwargs, line, ctx)
  local items = to_list(v, line, "map")
  local out = {}
  if kwargs.attribute ~= nil then
    for i = 1, #items do
      local r = attr_path(items[i], kwargs.attribute, line)
      if is_undef(r) and kwargs.default ~= nil then r = kwargs.default end
      out[i] = r
    end
  else
    local name = args[1]
    if type(name) ~= "string" then tfail(line, "map: expected a filter name or attribute=") end
    local rest = { unpack(args, 2) }
    for i = 1, #items do out[i] = apply_filter(name, items[i], rest, {}, line, ctx) end
  end
  return new_list(out)
end
FILTERS.batch = function(v, args, kwargs, line)
  local size = arg(args, kwargs, 1, "linecount")
  local fill = arg(args, kwargs, 2, "fill_with")
  local items = to_list(v, line, "batch")
  local out, cur = {}, {}
  for i = 1, #items do
    cur[#cur + 1] = items[i]
    if #cur == size then out[#out + 1] = new_list(cur); cur = {} end
  end
  if #cur > 0 then
    if fill ~= nil then while #cur < size do cur[#cur + 1] = fill end end
    out[#out + 1] = new_list(cur)
  end
  return new_list(out)
end

-- ---------------------------------------------------------------- tests

TESTS.defined = function(v) return not is_undef(v) end
TESTS.undefined = function(v) return is_undef(v) end
TESTS.none = function(v) return v == NONE end
TESTS.boolean = function(v) return type(v) == "boolean" end
TESTS["true"] = function(v) return v == true end
TESTS["false"] = function(v) return v == false end
TESTS.number = function(v) return num(v) ~= nil end
TESTS.integer = function(v) return type(v) == "number" and v == math.floor(v) end
TESTS.float = function(v) return select(2, num(v)) == true end
TESTS.string = function(v) return type(v) == "string" end
TESTS.mapping = function(v) return kind(v) == "dict" end
TESTS.sequence = function(v) local k = kind(v); return k == "list" or k == "str" or k == "dict" end
TESTS.iterable = function(v) local k = kind(v); return k == "list" or k == "str" or k == "dict" or k == "undefined" end
TESTS.callable = function(v) return is_callable(v) end
TESTS.sameas = function(v, args)
  local o = args[1]
  if type(v) == "table" or type(o) == "table" then return rawequal(v, o) end
  return v == o
end
TESTS.escaped = function() return false end
TESTS["in"] = function(v, args, _, line) return contains(args[1], v, line) end
TESTS.eq = function(v, args) return deep_eq(v, args[1]) end
TESTS.equalto = TESTS.eq
TESTS["=="] = TESTS.eq
TESTS.ne = function(v, args) return not deep_eq(v, args[1]) end
TESTS["!="] = TESTS.ne
TESTS.lt = function(v, args, _, line) return compare("<", v, args[1], line) end
TESTS.lessthan = TESTS.lt
TESTS["<"] = TESTS.lt
TESTS.le = function(v, args, _, line) return compare("<=", v, args[1], line) end
TESTS["<="] = TESTS.le
TESTS.gt = function(v, args, _, line) return compare(">", v, args[1], line) end
TESTS.greaterthan = TESTS.gt
TESTS[">"] = TESTS.gt
TESTS.ge = function(v, args, _, line) return compare(">=", v, args[1], line) end
TESTS[">="] = TESTS.ge
TESTS.divisibleby = function(v, args, _, line)
  local x, y = num(v), num(args[1])
  if not x or not y then tfail(line, "divisibleby: expected numbers") end
  return x % y == 0
end
TESTS.even = function(v) local x = num(v); return x ~= nil and x % 2 == 0 end
TESTS.odd = function(v) local x = num(v); return x ~= nil and x % 2 == 1 end
TESTS.lower = function(v) return type(v) == "string" and py_lower(v) == v end
TESTS.upper = function(v) return type(v) == "string" and py_upper(v) == v end
TESTS.filter = function(v) return FILTERS[v] ~= nil end
TESTS.test = function(v) return TESTS[v] ~= nil end

-- ---------------------------------------------------------------- methods

local function prefix_test(which)
  return function(s, args, _, line)
    local p = args[1]
    local list = kind(p) == "list" and p or { p }
    local str = s
    local start, stop = args[2], args[3]
    if start ~= nil or stop ~= nil then str = slice(s, start ~= NONE and start or nil, stop ~= NONE and stop or nil, 1, line) end
    for _, x in ipairs(list) do
      need_str(x, line, which)
      if which == "startswith" and str:sub(1, #x) == x then return true end
      if which == "endswith" and (#x == 0 or str:sub(-#x) == x) then return true end
    end
    return false
  end
end

STR_METHODS.strip = function(s, args) return py_strip(s, args[1], true, true) end
STR_METHODS.lstrip = function(s, args) return py_strip(s, args[1], true, false) end
STR_METHODS.rstrip = function(s, args) return py_strip(s, args[1], false, true) end
STR_METHODS.startswith = prefix_test("startswith")
STR_METHODS.endswith = prefix_test("endswith")
STR_METHODS.split = function(s, args, kwargs, line)
  return py_split(s, arg(args, kwargs, 1, "sep"), arg(args, kwargs, 2, "maxsplit"), line)
end
STR_METHODS.rsplit = function(s, args, kwargs, line)
  local sep, maxsplit = arg(args, kwargs, 1, "sep"), arg(args, kwargs, 2, "maxsplit", -1)
  if maxsplit == NONE or maxsplit < 0 then return py_split(s, sep, -1, line) end
  local parts = py_split(s, sep, -1, line)
  if sep == nil or sep == NONE or #parts <= maxsplit + 1 then
    if sep == nil or sep == NONE then
      if #parts > maxsplit + 1 then tfail(line, "unsupported: rsplit(None, maxsplit)") end
    end
    return parts
  end
  local head = {}
  for i = 1, #parts - maxsplit do head[#head + 1] = parts[i] end
  local out = { table.concat(head, sep) }
  for i = #parts - maxsplit + 1, #parts do out[#out + 1] = parts[i] end
  return new_list(out)
end
STR_METHODS.replace = function(s, args, _, line)
  return py_replace(s, need_str(args[1], line, "replace"), need_str(args[2], line, "replace"), args[3])
end
STR_METHODS.upper = function(s) return py_upper(s) end
STR_METHODS.lower = function(s) return py_lower(s) end
STR_METHODS.title = function(s) return py_title(s) end
STR_METHODS.capitalize = function(s) return s:sub(1, 1):upper() .. s:sub(2):lower() end
STR_METHODS.find = function(s, args, _, line)
  local a = s:find(need_str(args[1], line, "find"), 1, true)
  if not a then return -1 end
  return str_len(s:sub(1, a - 1))
end
STR_METHODS.rfind = function(s, args, _, line)
  local sub = need_str(args[1], line, "rfind")
  local last
  local start = 1
  while true do
    local a = s:find(sub, start, true)
    if not a then break end
    last = a
    start = a + 1
  end
  if not last then return -1 end
  return str_len(s:sub(1, last - 1))
end
STR_METHODS.count = function(s, args, _, line)
  local sub = need_str(args[1], line, "count")
  if sub == "" then return str_len(s) + 1 end
  local n, start = 0, 1
  while true do
    local a, b = s:find(sub, start, true)
    if not a then return n end
    n = n + 1
    start = b + 1
  end
end
STR_METHODS.join = function(s, args, _, line)
  local parts = {}
  for i, item in ipairs(to_list(args[1], line, "join")) do parts[i] = need_str(item, line, "join") end
  return table.concat(parts, s)
end
STR_METHODS.splitlines = function(s)
  local out = {}
  for l in (s:gsub("\r\n", "\n"):gsub("\r", "\n")):gmatch("([^\n]*)\n") do out[#out + 1] = l end
  local tail = s:match("[^\n\r]*$")
  if tail ~= "" then out[#out + 1] = tail end
  return new_list(out)
end
STR_METHODS.isdigit = function(s) return #s > 0 and s:match("^%d+$") ~= nil end
STR_METHODS.isalpha = function(s) return #s > 0 and s:match("^%a+$") ~= nil end
STR_METHODS.isalnum = function(s) return #s > 0 and s:match("^%w+$") ~= nil end
STR_METHODS.isspace = function(s) return #s > 0 and s:match("^%s+$") ~= nil end
STR_METHODS.islower = function(s) return s:match("%l") ~= nil and s:match("%u") == nil end
STR_METHODS.isupper = function(s) return s:match("%u") ~= nil and s:match("%l") == nil end
STR_METHODS.format = function(s, args, kwargs, line)
  local auto = 0
  return (s:gsub("{{", "\1"):gsub("}}", "\2"):gsub("{([^{}]*)}", function(field)
    if field:find("[:!]") then tfail(line, "unsupported Jinja feature: format specs in str.format") end
    local v
    if field == "" then
      auto = auto + 1
      v = args[auto]
    elseif field:match("^%d+$") then
      v = args[tonumber(field) + 1]
    else
      v = kwargs[field]
    end
    if v == nil then tfail(line, "str.format: no value for field '{%s}'", field) end
    return py_str(v)
  end):gsub("\1", "{"):gsub("\2", "}"))
end

DICT_METHODS.items = function(d, _, _, line) return FILTERS.items(d, {}, {}, line) end
DICT_METHODS.keys = function(d) return new_list(dict_keys(d)) end
DICT_METHODS.values = function(d)
  local out = {}
  for i, k in ipairs(dict_keys(d)) do out[i] = d[k] end
  return new_list(out)
end
DICT_METHODS.get = function(d, args)
  local v = rawget(d, args[1])
  if v == nil then
    if args[2] == nil then return NONE end
    return args[2]
  end
  return v
end

LIST_METHODS.index = function(l, args, _, line)
  for i = 1, #l do if deep_eq(l[i], args[1]) then return i - 1 end end
  tfail(line, "list.index: %s is not in list", py_repr(args[1]))
end
LIST_METHODS.count = function(l, args)
  local n = 0
  for i = 1, #l do if deep_eq(l[i], args[1]) then n = n + 1 end end
  return n
end
for _, name in ipairs({ "append", "extend", "pop", "insert", "remove", "clear", "sort", "reverse" }) do
  LIST_METHODS[name] = function(_, _, _, line)
    tfail(line, "access to attribute '%s' of 'list' object is unsafe (templates render in an immutable sandbox)",
      name)
  end
end
for _, name in ipairs({ "update", "pop", "setdefault", "clear", "popitem" }) do
  DICT_METHODS[name] = function(_, _, _, line)
    tfail(line, "access to attribute '%s' of 'dict' object is unsafe (templates render in an immutable sandbox)",
      name)
  end
end

-- ---------------------------------------------------------------- globals

local function namespace_fn(args, kwargs)
  local ns = setmetatable({ attrs = {} }, NAMESPACE_MT)
  if args[1] ~= nil and kind(args[1]) == "dict" then
    for k, v in pairs(args[1]) do ns.attrs[k] = v end
  end
  for k, v in pairs(kwargs) do ns.attrs[k] = v end
  return ns
end

local function range_fn(args, _, line)
  local a, b, step = args[1], args[2], args[3] or 1
  if b == nil then a, b = 0, a end
  if type(a) ~= "number" or type(b) ~= "number" then tfail(line, "range: expected integers") end
  if step == 0 then tfail(line, "range: step must not be zero") end
  local out = {}
  if step > 0 then for i = a, b - 1, step do out[#out + 1] = i end
  else for i = a, b + 1, step do out[#out + 1] = i end end
  return new_list(out)
end

local function dict_fn(args, kwargs, _, _)
  local d = new_dict()
  if args[1] ~= nil then
    for _, k in ipairs(dict_keys(args[1])) do dict_set(d, k, args[1][k]) end
  end
  local names = {}
  for k in pairs(kwargs) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do dict_set(d, k, kwargs[k]) end
  return d
end

local function base_globals()
  return {
    namespace = callable("namespace", namespace_fn),
    range = callable("range", range_fn),
    dict = callable("dict", dict_fn),
    raise_exception = callable("raise_exception", function(args, _, line)
      error({ jinja = true, raised = true, line = line, msg = py_str(args[1] == nil and "" or args[1]) }, 0)
    end),
    strftime_now = callable("strftime_now", function(args, _, line)
      return os.date(need_str(args[1], line, "strftime_now"))
    end),
  }
end

-- ---------------------------------------------------------------- API

local Template = {}
Template.__index = Template

local function error_text(name, e)
  if type(e) == "table" and e.jinja then
    if e.raised then return e.msg end
    return string.format("%s:%d: %s", name, e.line or 0, e.msg)
  end
  return nil
end

---Parses a template. Syntax errors and unsupported features raise an error
---naming the template and line.
---@param source string
---@param name string|nil shown in error messages (default "template")
function M.compile(source, name)
  if type(source) ~= "string" then error("cai.jinja.compile: source must be a string, got " .. type(source), 2) end
  name = name or "template"
  local ok, body = pcall(function() return parse_template(lex(source)) end)
  if not ok then
    local msg = error_text(name, body)
    if msg then error(msg, 2) end
    error(body, 0)
  end
  return setmetatable({ body = body, name = name }, Template)
end

---Renders with the given variables. raise_exception(msg) in the template
---raises a Lua error whose message is msg; other errors name the line.
---@param vars table|nil
function Template:render(vars)
  local globals = base_globals()
  for k, v in pairs(vars or {}) do
    if v ~= nil then globals[k] = v end
  end
  local ctx = { globals = globals }
  local out = {}
  local ok, err = pcall(render_body, self.body, new_scope(nil), ctx, out)
  if not ok then
    local msg = error_text(self.name, err)
    if msg then
      if type(err) == "table" and err.raised then error(msg, 0) end
      error(msg, 2)
    end
    error(err, 0)
  end
  return table.concat(out)
end

---Renders source with vars (compile + render).
function M.render(source, vars, name)
  return M.compile(source, name):render(vars)
end

-- JSON text -> Lua values that keep dict key order (Python's dict order) and
-- tell lists from dicts; null is cai.json.null. Errors name the position.
function M.json_decode(text, what)
  if type(text) ~= "string" then error("cai.jinja.json_decode: text must be a string", 2) end
  what = what or "json"
  local pos = 1
  local function fail(msg)
    local line = select(2, text:sub(1, pos):gsub("\n", "")) + 1
    error(string.format("%s: %s at line %d", what, msg, line), 0)
  end
  local function ws() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local value
  local function str()
    pos = pos + 1
    local parts = {}
    while true do
      local a = text:find('["\\]', pos)
      if not a then fail("unterminated string") end
      parts[#parts + 1] = text:sub(pos, a - 1)
      if text:sub(a, a) == '"' then pos = a + 1; break end
      local c = text:sub(a + 1, a + 1)
      local map = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
      if map[c] then
        parts[#parts + 1] = map[c]
        pos = a + 2
      elseif c == "u" then
        local cp = tonumber(text:sub(a + 2, a + 5), 16)
        if not cp then fail("bad \\u escape") end
        pos = a + 6
        if cp >= 0xD800 and cp < 0xDC00 and text:sub(pos, pos + 1) == "\\u" then
          local lo = tonumber(text:sub(pos + 2, pos + 5), 16)
          if lo and lo >= 0xDC00 and lo < 0xE000 then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            pos = pos + 6
          end
        end
        local s
        if cp < 0x80 then s = string.char(cp)
        elseif cp < 0x800 then s = string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
        elseif cp < 0x10000 then
          s = string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
        else
          s = string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
            0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
        end
        parts[#parts + 1] = s
      else
        fail("bad escape \\" .. c)
      end
    end
    return table.concat(parts)
  end
  value = function()
    ws()
    local c = text:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local d = new_dict()
      ws()
      if text:sub(pos, pos) == "}" then pos = pos + 1; return d end
      while true do
        ws()
        if text:sub(pos, pos) ~= '"' then fail("expected a string key") end
        local key = str()
        ws()
        if text:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        dict_set(d, key, value())
        ws()
        local sep = text:sub(pos, pos)
        pos = pos + 1
        if sep == "}" then return d end
        if sep ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      pos = pos + 1
      local l = new_list()
      ws()
      if text:sub(pos, pos) == "]" then pos = pos + 1; return l end
      while true do
        l[#l + 1] = value()
        ws()
        local sep = text:sub(pos, pos)
        pos = pos + 1
        if sep == "]" then return l end
        if sep ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    elseif text:sub(pos, pos + 3) == "true" then pos = pos + 4; return true
    elseif text:sub(pos, pos + 4) == "false" then pos = pos + 5; return false
    elseif text:sub(pos, pos + 3) == "null" then pos = pos + 4; return NONE
    else
      local num = text:match("^-?%d+%.?%d*[eE]?[%+%-]?%d*", pos)
      if not num or num == "" or num == "-" then fail("unexpected character '" .. c .. "'") end
      pos = pos + #num
      local n = tonumber(num) or fail("bad number")
      if num:find("[%.eE]") then return float(n) end
      return n
    end
  end
  local v = value()
  ws()
  if pos <= #text then fail("trailing characters") end
  return v
end

M.none = NONE
M.is_undefined = is_undef
M.to_json = function(v, indent) return to_json(v, indent and (" "):rep(indent), indent and "," or ", ", ": ", false, 0, 0) end
M.str = py_str
M.dict_keys = dict_keys

return M

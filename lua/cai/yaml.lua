-- cai.yaml: YAML files as Lua tables, with the line of every field.
--
--   local value, marks = cai.yaml.load("constitutions/default.yaml")
--   cai.yaml.line(marks, value.principles, 3)   --> line of the 3rd principle
--
-- Mappings are tables with string keys, sequences are lists, YAML null is
-- the sentinel cai.yaml.null (so an empty field is present, not missing).
-- Files over 4 MiB, binary files and alias bombs are refused (see
-- runtime/data/yaml.h); syntax errors read "FILE:LINE:COL: message".
local _yaml = require "cai._yaml"
local check = require "cai.check"

local LIMITS_SPEC = { max_bytes = "integer", max_nodes = "integer", max_depth = "integer" }

local yaml = {}

yaml.null = _yaml.null

---Reads and parses a YAML file; returns value and marks (see header).
---@param path string
---@param opts table|nil { max_bytes=, max_nodes=, max_depth= }
function yaml.load(path, opts)
  check.value("cai.yaml.load", "path", path, "string")
  return _yaml.load(path, check("cai.yaml.load", opts, LIMITS_SPEC))
end

---Parses YAML text; `name` is used in messages.
---@param text string
---@param name string|nil
---@param opts table|nil
function yaml.decode(text, name, opts)
  check.value("cai.yaml.decode", "text", text, "string")
  check.value("cai.yaml.decode", "name", name, { type = "string", optional = true })
  return _yaml.parse(text, name or "<string>", check("cai.yaml.decode", opts, LIMITS_SPEC))
end

---The line of `key` (a mapping key or list index) inside table `tbl`,
---or of `tbl` itself when key is nil; 0 when unknown.
---@param marks table
---@param tbl table
---@param key any
function yaml.line(marks, tbl, key)
  local m = marks and type(tbl) == "table" and marks[tbl]
  if not m then return 0 end
  if key ~= nil and m.lines[key] then return m.lines[key] end
  return m.line
end

---A mapping's keys in file order (nil when tbl is not a mapping from this file).
function yaml.keys(marks, tbl)
  local m = marks and type(tbl) == "table" and marks[tbl]
  return m and m.keys
end

---Whether tbl was a YAML sequence (as opposed to a mapping).
function yaml.is_sequence(marks, tbl)
  local m = marks and type(tbl) == "table" and marks[tbl]
  if m then return m.keys == nil end
  return type(tbl) == "table" and (next(tbl) == nil or tbl[1] ~= nil)
end

---Deep copy with yaml.null replaced by nil (for plain use of the data).
function yaml.plain(value)
  if value == yaml.null then return nil end
  if type(value) ~= "table" then return value end
  local out = {}
  for k, v in pairs(value) do out[k] = yaml.plain(v) end
  return out
end

return yaml

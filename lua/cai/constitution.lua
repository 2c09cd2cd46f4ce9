-- cai.constitution: YAML principle sets, validated with file, line and field.
--
--   local c = cai.constitution.load("constitutions/default.yaml")
--   c.name, c.principles[i].id, c:get("privacy"), c:sample(2, { rng = rng })
--
-- Schema (docs/constitutions.md): name (required string), description,
-- extends (a file, relative to this one), principles (non-empty list of
-- { id, title, critique, revision, tags, weight, keywords, examples }),
-- negatives (type -> { weight, templates, prompt }), criteria (name ->
-- { weight, description, group } or a bare weight), templates (name -> string).
-- Unknown keys are errors. Every error reads
--   constitutions/x.yaml:12: principles[3].weight: expected a number >= 0, got "high"
-- (list positions are 1-based). Files are read at run time: an edited
-- constitution takes effect on the next run.
local check = require "cai.check"
local yaml = require "cai.yaml"
local principles_mod = require "cai.principles"

local null = yaml.null
local constitution = {}

local Constitution = {}
Constitution.__index = Constitution

local MAX_ERRORS = 20

-- ---------------------------------------------------------------- validation

local function describe(ctx, v)
  if v == null then return "null" end
  local t = type(v)
  if t == "string" then
    local s = v:gsub("\n", "\\n")
    if #s > 40 then s = s:sub(1, 37) .. "..." end
    return string.format("%q", s)
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    return yaml.is_sequence(ctx.marks, v) and "a list" or "a mapping"
  end
  return t
end

local function add_error(ctx, line, path, msg)
  if #ctx.errors >= MAX_ERRORS then return end
  local where = ctx.file .. ":" .. (line and line > 0 and (line .. ":") or "")
  ctx.errors[#ctx.errors + 1] = where .. " " .. (path ~= "" and (path .. ": ") or "") .. msg
end

local function join_path(path, key)
  if type(key) == "number" then return path .. "[" .. key .. "]" end
  if path == "" then return key end
  return path .. "." .. key
end

local function is_mapping(ctx, v)
  return type(v) == "table" and not yaml.is_sequence(ctx.marks, v)
end

local function is_list(ctx, v)
  return type(v) == "table" and yaml.is_sequence(ctx.marks, v)
end

-- Checks that mapping `tbl` only has keys in `allowed` (file order).
local function check_keys(ctx, tbl, path, allowed)
  local keys = yaml.keys(ctx.marks, tbl) or {}
  for _, k in ipairs(keys) do
    if not allowed[k] then
      local names = {}
      for name in pairs(allowed) do names[#names + 1] = name end
      table.sort(names)
      add_error(ctx, yaml.line(ctx.marks, tbl, k), join_path(path, k),
        "unknown key; expected one of " .. table.concat(names, ", "))
    end
  end
end

-- Each field checker returns the checked value (or nil) and records errors.
local function field_string(ctx, tbl, key, path, required, nonempty)
  local v = tbl[key]
  local p = join_path(path, key)
  if v == nil or (v == null and not required) then
    if required then add_error(ctx, yaml.line(ctx.marks, tbl), p, "missing required field; expected a string") end
    return nil
  end
  if type(v) ~= "string" or (nonempty and not v:find("%S")) then
    add_error(ctx, yaml.line(ctx.marks, tbl, key), p,
      "expected a " .. (nonempty and "non-empty " or "") .. "string, got " .. describe(ctx, v))
    return nil
  end
  return v
end

local function field_weight(ctx, tbl, key, path, default)
  local v = tbl[key]
  if v == nil or v == null then return default end
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
    add_error(ctx, yaml.line(ctx.marks, tbl, key), join_path(path, key),
      "expected a number >= 0, got " .. describe(ctx, v))
    return default
  end
  return v
end

local function field_string_list(ctx, tbl, key, path)
  local v = tbl[key]
  local p = join_path(path, key)
  if v == nil or v == null then return {} end
  if not is_list(ctx, v) then
    add_error(ctx, yaml.line(ctx.marks, tbl, key), p, "expected a list of strings, got " .. describe(ctx, v))
    return {}
  end
  local out = {}
  for i, s in ipairs(v) do
    if type(s) ~= "string" then
      add_error(ctx, yaml.line(ctx.marks, v, i), join_path(p, i), "expected a string, got " .. describe(ctx, s))
    else
      out[#out + 1] = s
    end
  end
  return out
end

local PRINCIPLE_KEYS = { id = true, title = true, critique = true, revision = true, tags = true, weight = true,
  keywords = true, examples = true }
local EXAMPLE_KEYS = { prompt = true, response = true, critique = true, revision = true }
local ROOT_KEYS = { name = true, description = true, principles = true, negatives = true, criteria = true,
  templates = true, extends = true }
local NEGATIVE_KEYS = { weight = true, templates = true, prompt = true }
local CRITERION_KEYS = { weight = true, description = true, group = true }

local function check_examples(ctx, tbl, path)
  local v = tbl.examples
  local p = join_path(path, "examples")
  if v == nil or v == null then return {} end
  if not is_list(ctx, v) then
    add_error(ctx, yaml.line(ctx.marks, tbl, "examples"), p, "expected a list of examples, got " .. describe(ctx, v))
    return {}
  end
  local out = {}
  for i, ex in ipairs(v) do
    local ep = join_path(p, i)
    if not is_mapping(ctx, ex) then
      add_error(ctx, yaml.line(ctx.marks, v, i), ep,
        "expected a mapping with prompt, response, critique, revision; got " .. describe(ctx, ex))
    else
      check_keys(ctx, ex, ep, EXAMPLE_KEYS)
      out[#out + 1] = {
        prompt = field_string(ctx, ex, "prompt", ep, true, true),
        response = field_string(ctx, ex, "response", ep, true, false),
        critique = field_string(ctx, ex, "critique", ep, true, true),
        revision = field_string(ctx, ex, "revision", ep, true, true),
      }
    end
  end
  return out
end

local function check_principle(ctx, p, path, list, i)
  if not is_mapping(ctx, p) then
    add_error(ctx, yaml.line(ctx.marks, list, i), path,
      "expected a mapping with id, critique and revision; got " .. describe(ctx, p))
    return nil
  end
  check_keys(ctx, p, path, PRINCIPLE_KEYS)
  local id = field_string(ctx, p, "id", path, true, true)
  if id and not id:match("^[a-z0-9_%-]+$") then
    add_error(ctx, yaml.line(ctx.marks, p, "id"), join_path(path, "id"),
      "expected lowercase letters, digits, '_' or '-', got " .. describe(ctx, id))
    id = nil
  end
  local out = {
    id = id,
    title = field_string(ctx, p, "title", path, false, true),
    critique = field_string(ctx, p, "critique", path, true, true),
    revision = field_string(ctx, p, "revision", path, true, true),
    tags = field_string_list(ctx, p, "tags", path),
    weight = field_weight(ctx, p, "weight", path, 1),
    keywords = field_string_list(ctx, p, "keywords", path),
    examples = check_examples(ctx, p, path),
    source = ctx.file .. ":" .. yaml.line(ctx.marks, list, i),
  }
  out.title = out.title or id
  return out
end

local function check_named_map(ctx, root, key, check_entry)
  local v = root[key]
  if v == nil or v == null then return {}, {} end
  if not is_mapping(ctx, v) then
    add_error(ctx, yaml.line(ctx.marks, root, key), key, "expected a mapping, got " .. describe(ctx, v))
    return {}, {}
  end
  local out, order = {}, {}
  for _, name in ipairs(yaml.keys(ctx.marks, v) or {}) do
    local entry = check_entry(name, v[name], join_path(key, name), v)
    if entry ~= nil then
      out[name] = entry
      order[#order + 1] = name
    end
  end
  return out, order
end

-- Validates one parsed file; returns a plain table (no yaml.null) or nil.
local function check_root(ctx, root)
  if root == null then
    add_error(ctx, nil, "", "the file is empty; expected a mapping with name and principles")
    return nil
  end
  if not is_mapping(ctx, root) then
    add_error(ctx, 1, "", "expected a mapping with name and principles at the top level, got " .. describe(ctx, root))
    return nil
  end
  check_keys(ctx, root, "", ROOT_KEYS)
  local out = {
    name = field_string(ctx, root, "name", "", true, true),
    description = field_string(ctx, root, "description", "", false, false),
    extends = field_string(ctx, root, "extends", "", false, true),
    extends_line = yaml.line(ctx.marks, root, "extends"),
  }

  local list = root.principles
  out.principles = {}
  if list == nil or list == null then
    if not out.extends then
      add_error(ctx, yaml.line(ctx.marks, root), "principles", "missing required field; expected a non-empty list of principles")
    end
  elseif not is_list(ctx, list) or #list == 0 then
    add_error(ctx, yaml.line(ctx.marks, root, "principles"), "principles",
      "expected a non-empty list of principles, got " .. (is_list(ctx, list) and "an empty list" or describe(ctx, list)))
  else
    local seen = {}
    for i, p in ipairs(list) do
      local path = join_path("principles", i)
      local principle = check_principle(ctx, p, path, list, i)
      if principle and principle.id then
        if seen[principle.id] then
          add_error(ctx, yaml.line(ctx.marks, p, "id"), join_path(path, "id"),
            string.format("duplicate id \"%s\" (first used by principles[%d])", principle.id, seen[principle.id]))
        else
          seen[principle.id] = i
          out.principles[#out.principles + 1] = principle
        end
      end
    end
  end

  out.negatives, out.negative_order = check_named_map(ctx, root, "negatives", function(name, v, path, parent)
    if not name:match("^[a-z0-9_]+$") then
      add_error(ctx, yaml.line(ctx.marks, parent, name), path, "negative type names use lowercase letters, digits and '_'")
      return nil
    end
    if type(v) == "number" then
      return { type = name, weight = field_weight(ctx, parent, name, "negatives", 0), templates = {} }
    end
    if not is_mapping(ctx, v) then
      add_error(ctx, yaml.line(ctx.marks, parent, name), path,
        "expected a mapping with weight, templates, prompt (or a bare weight), got " .. describe(ctx, v))
      return nil
    end
    check_keys(ctx, v, path, NEGATIVE_KEYS)
    if v.weight == nil then
      add_error(ctx, yaml.line(ctx.marks, v), join_path(path, "weight"), "missing required field; expected a number >= 0")
    end
    return {
      type = name,
      weight = field_weight(ctx, v, "weight", path, 0),
      templates = field_string_list(ctx, v, "templates", path),
      prompt = field_string(ctx, v, "prompt", path, false, true),
    }
  end)

  out.criteria, out.criteria_order = check_named_map(ctx, root, "criteria", function(name, v, path, parent)
    if type(v) == "number" then
      local w = field_weight(ctx, parent, name, "criteria", 1)
      return { name = name, weight = w }
    end
    if not is_mapping(ctx, v) then
      add_error(ctx, yaml.line(ctx.marks, parent, name), path,
        "expected a mapping with weight, description, group (or a bare weight), got " .. describe(ctx, v))
      return nil
    end
    check_keys(ctx, v, path, CRITERION_KEYS)
    return {
      name = name,
      weight = field_weight(ctx, v, "weight", path, 1),
      description = field_string(ctx, v, "description", path, false, false),
      group = field_string(ctx, v, "group", path, false, true),
    }
  end)

  out.templates = check_named_map(ctx, root, "templates", function(name, v, path, parent)
    if type(v) ~= "string" then
      add_error(ctx, yaml.line(ctx.marks, parent, name), path, "expected a template string, got " .. describe(ctx, v))
      return nil
    end
    return v
  end)
  return out
end

-- ------------------------------------------------------------------ loading

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Collapses "a/./b" and "a/x/../b" so that cycles are recognised.
local function normalize(path)
  local absolute = path:sub(1, 1) == "/"
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." and #parts > 0 and parts[#parts] ~= ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  local s = table.concat(parts, "/")
  if absolute then return "/" .. s end
  return s == "" and "." or s
end

local function load_file(path, stack, opts)
  local key = normalize(path)
  for i, p in ipairs(stack) do
    if p == key then
      local chain = {}
      for j = i, #stack do chain[#chain + 1] = stack[j] end
      chain[#chain + 1] = key
      error(stack[#stack] .. ": extends: cycle " .. table.concat(chain, " -> ") .. "; a constitution cannot extend itself", 0)
    end
  end
  if #stack > 16 then error(path .. ": extends: chain deeper than 16 files", 0) end

  local ok, root, marks = pcall(yaml.load, path, opts.yaml)
  if not ok then error(tostring(root), 0) end
  local ctx = { file = path, marks = marks, errors = {} }
  local data = check_root(ctx, root)
  if #ctx.errors > 0 then
    local msg = table.concat(ctx.errors, "\n")
    if #ctx.errors >= MAX_ERRORS then msg = msg .. "\n(more errors not shown)" end
    error(msg, 0)
  end

  if data.extends then
    local parent_path = data.extends
    if parent_path:sub(1, 1) ~= "/" then parent_path = dirname(path) .. "/" .. parent_path end
    local f = io.open(parent_path, "rb")
    if not f then
      error(string.format("%s:%d: extends: cannot open \"%s\" (resolved to %s); expected a constitution file "
        .. "path relative to this file", path, data.extends_line, data.extends, parent_path), 0)
    end
    f:close()
    stack[#stack + 1] = key
    local parent = load_file(normalize(parent_path), stack, opts)
    stack[#stack] = nil
    -- Child principles override the parent's by id, in place; new ones are appended.
    local merged, index = {}, {}
    for _, p in ipairs(parent.principles) do
      merged[#merged + 1] = p
      index[p.id] = #merged
    end
    for _, p in ipairs(data.principles) do
      if index[p.id] then merged[index[p.id]] = p
      else
        merged[#merged + 1] = p
        index[p.id] = #merged
      end
    end
    data.principles = merged
    data.description = data.description or parent.description
    for _, section in ipairs { { "negatives", "negative_order" }, { "criteria", "criteria_order" } } do
      local map, order = section[1], section[2]
      local out, out_order = {}, {}
      for _, name in ipairs(parent[order]) do out[name] = parent[map][name]; out_order[#out_order + 1] = name end
      for _, name in ipairs(data[order]) do
        if not out[name] then out_order[#out_order + 1] = name end
        out[name] = data[map][name]
      end
      data[map], data[order] = out, out_order
    end
    local templates = {}
    for k, v in pairs(parent.templates) do templates[k] = v end
    for k, v in pairs(data.templates) do templates[k] = v end
    data.templates = templates
    data.parent = parent.path
  end
  if #data.principles == 0 then
    error(path .. ": principles: expected a non-empty list of principles (after extends)", 0)
  end
  data.path = path
  return data
end

---Loads and validates a constitution file.
---@param path string
---@param opts table|nil { yaml = { max_bytes=, max_nodes=, max_depth= } }
function constitution.load(path, opts)
  check.value("cai.constitution.load", "path", path, "string")
  if opts ~= nil and type(opts) ~= "table" then error("cai.constitution.load: opts must be a table", 2) end
  local data = load_file(path, {}, opts or {})
  local self = setmetatable(data, Constitution)
  self.by_id = {}
  for _, p in ipairs(self.principles) do self.by_id[p.id] = p end
  self.usage = {}          -- principle id -> times sampled
  self.sample_state = {}   -- round-robin cursor
  return self
end

---The principle with this id; an unknown id is an error naming the known ones.
---@param id string
function Constitution:get(id)
  check.value("constitution:get", "id", id, "string")
  local p = self.by_id[id]
  if not p then
    error(string.format("%s: no principle with id \"%s\" (known: %s)", self.path, id, table.concat(self:ids(), ", ")), 2)
  end
  return p
end

---Whether a principle with this id exists.
function Constitution:has(id) return self.by_id[id] ~= nil end

---All principle ids in order.
function Constitution:ids()
  local ids = {}
  for i, p in ipairs(self.principles) do ids[i] = p.id end
  return ids
end

---Picks up to n principles (see cai.principles.sample for strategies);
---counts usage in self.usage.
---@param n integer
---@param opts table|nil { rng=, seed=, tags=, strategy=, prompt= }
function Constitution:sample(n, opts)
  check.value("constitution:sample", "n", n, { type = "integer", min = 1 })
  check.value("constitution:sample", "opts", opts, { type = "table", optional = true })
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.state = o.state or self.sample_state
  o.usage = o.usage or self.usage
  return principles_mod.sample(self.principles, n, o)
end

---Negative-type weights as an ordered list { { type=, weight= }, ... }.
function Constitution:negative_mix()
  local out = {}
  for _, name in ipairs(self.negative_order) do
    out[#out + 1] = { type = name, weight = self.negatives[name].weight }
  end
  return out
end

return constitution

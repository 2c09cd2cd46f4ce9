-- cai.run: the run directory of a recipe.
--
--   local args = cai.args{ out = "runs/x", steps = 100, gen_batch = 32 }
--   cai.run.open(args.out, { may_change = { "gen_batch" } })
--
-- Creates the directory and writes config.json (the resolved arguments).
-- Recipes continue a stopped run from the files it left (generation stages,
-- training checkpoints), so a directory that already holds a config.json
-- must come from the same settings: a different value of any argument
-- outside opts.may_change (settings that never change a result, such as a
-- generation batch size) is an error naming each one, instead of a run that
-- silently mixes old outputs with new settings.
local core = require "cai._core"
local json = require "cai._json"

local run = {}

local function show(v)
  if v == nil then return "absent" end
  return json.encode(v)
end

---@param out string the run directory
---@param opts table|nil { args = cai.resolved_args(), may_change = { key, ... } }
---@return string out
function run.open(out, opts)
  local check = require "cai.check"
  check.value("cai.run.open", "out", out, { type = "string", nonempty = true })
  opts = check("cai.run.open", opts, { args = "table", may_change = { type = "list", items = "string" } })
  local args = opts.args or require("cai.args").resolved()
  if type(args) ~= "table" then error("cai.run.open: no arguments: call cai.args{...} first or pass opts.args", 2) end
  local free = {}
  for _, k in ipairs(opts.may_change or {}) do free[k] = true end
  local path = out .. "/config.json"
  local f = io.open(path, "rb")
  if f then
    local text = f:read("*a")
    f:close()
    local ok, old = pcall(json.decode, text)
    if not ok or type(old) ~= "table" then
      error(path .. ": not a JSON object (" .. tostring(old) .. "); delete it or use another out directory", 2)
    end
    local keys, seen = {}, {}
    for k in pairs(args) do keys[#keys + 1] = k; seen[k] = true end
    for k in pairs(old) do if not seen[k] then keys[#keys + 1] = k end end
    table.sort(keys)
    local differ = {}
    for _, k in ipairs(keys) do
      if not free[k] and show(args[k]) ~= show(old[k]) then
        differ[#differ + 1] = string.format("%s (was %s, now %s)", k, show(old[k]), show(args[k]))
      end
    end
    if #differ > 0 then
      error(string.format("%s: this directory holds a run with other settings: %s. Run with the same settings to "
        .. "continue it, or use another out directory", path, table.concat(differ, ", ")), 2)
    end
  end
  core.mkdir(out)
  if require("cai.dist").is_main() then
    core.write_file(path, json.encode(args, { indent = 2 }) .. "\n")
  end
  return out
end

return run

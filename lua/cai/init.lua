-- The cai library: `local cai = require "cai"`.
--
-- Small pieces live here; each bigger area is its own module in lua/cai/
-- and is loaded on first use: cai.model is require "cai.model", and so on.
local core = require "cai._core"
local rng = require "cai._rng"

local cai = {}

cai.version = core.version()
local args = require "cai.args"
cai.args = args.call
cai.resolved_args = args.resolved
cai.check = require "cai.check"
cai.json = require "cai.json"
cai.jsonl = require "cai.jsonl"
cai.log = require "cai.log"

---Seeded random stream (xoshiro256**): :random() in [0,1), :uniform(lo, hi),
---:int(lo, hi) inclusive, :normal([mean, std]), :shuffle(list) in place,
---:choice(list), :weighted(weights) -> index, :derive(key) -> new stream.
---@param seed integer
function cai.rng(seed)
  cai.check.value("cai.rng", "seed", seed, "integer")
  return rng.new(seed)
end

---A progress bar on stderr with rate and ETA; silent when not a terminal.
---@param opts table { total = n, label = "generate", unit = "it" }
function cai.progress(opts)
  cai.check("cai.progress", opts, { total = { type = "integer", min = 0, required = true }, label = "string",
    unit = "string" })
  return require("cai._progress").new(opts.label or "", opts.total, opts.unit or "it")
end

---Declares a global variable in a recipe (strict globals refuse undeclared ones).
---@param name string
function cai.global(name, value)
  require("cai.strict").declare(name, value)
end

---Writes text to path all-or-nothing (a temporary file renamed into place),
---creating the parent directories.
---@param path string
---@param text string
cai.write_file = core.write_file

---Creates a directory and its parents (mkdir -p).
---@param path string
cai.mkdir = core.mkdir

---Whether a file or directory exists at path.
---@param path string
cai.exists = core.exists

---Seconds from a monotonic clock (for timing inside recipes).
cai.clock = core.clock

-- tok:apply_chat_template(messages, opts) on every tokenizer (lua/cai/chat.lua).
require("cai._tokenizer").methods.apply_chat_template = function(tok, messages, opts)
  return require("cai.chat").apply_chat_template(tok, messages, opts)
end

-- cai.<name> loads lua/cai/<name>.lua on first use.
setmetatable(cai, {
  __index = function(t, name)
    if type(name) ~= "string" or name:sub(1, 1) == "_" then return nil end
    local ok, module = pcall(require, "cai." .. name)
    if not ok then
      if tostring(module):find("module 'cai." .. name .. "' not found", 1, true) then
        error("cai." .. name .. " does not exist", 2)
      end
      error(module, 2)
    end
    rawset(t, name, module)
    return module
  end,
})

return cai

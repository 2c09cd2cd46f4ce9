-- cai.stage: a long generation stage that can be stopped and run again.
--
--   local st = cai.stage.open(out .. "/answers.jsonl", { name = "answers" })
--   local records = st:run(instructions, function(batch, first_index)
--     -- batch: the items of this chunk; first_index: 0-based position of
--     -- batch[1] in the whole list (pass it to m:generate as first_index so
--     -- item i samples from the same stream whatever the chunking).
--     return list_of_records   -- one per item, in order
--   end, { batch_size = 32, key = function(item) return item.instruction end })
--
-- Each record is appended to the JSONL file as soon as its chunk is done,
-- with two fields added: `index` (1-based position of its item) and `key`
-- (opts.key(item), default the item itself when it is a string, else its
-- `instruction`). A rerun reads the file, skips chunks whose items are all
-- there, and returns the records of every item in item order, so a stage
-- stopped halfway and run again gives the same file as one uninterrupted run.
--
-- In a data-parallel job every rank runs fn (m:generate shares the prompts
-- and gives every rank all results) and rank 0 appends.
--
-- Ctrl-C while a stage runs finishes the chunk in progress, appends it and
-- stops the recipe (cai.run.stop: exit status 130, the message says how many
-- items are saved); the same command continues from there.
--
-- A record whose key differs from its item's (the inputs changed since the
-- file was written) is an error naming the file and line: delete the file or
-- use another output directory. A last line cut short by a crash (no final
-- newline) is dropped, with a warning, and its chunk is done again.
local c = require "cai._json"
local check = require "cai.check"
local core = require "cai._core"
local log = require "cai.log"
local dist = require "cai.dist"
local prim = require "cai._run"

local stage = {}
local Stage = {}
Stage.__index = Stage

local function default_key(item)
  if type(item) == "string" then return item end
  if type(item) == "table" then
    if type(item.key) == "string" then return item.key end
    if type(item.instruction) == "string" then return item.instruction end
    if type(item.prompt) == "string" then return item.prompt end
  end
  return nil
end

-- Reads the complete lines of path; rank 0 cuts a torn last line off the
-- file while the other ranks of a data-parallel job wait.
local function read_complete(path, name)
  local f = io.open(path, "rb")
  local text = f and f:read("*a") or ""
  if f then f:close() end
  if text ~= "" and text:sub(-1) ~= "\n" then
    log.warn(string.format("%s: %s: the last line is incomplete (a stopped run); dropping it and redoing its items",
      name, path))
    text = text:match("^(.*\n)") or ""
    if dist.is_main() then core.write_file(path, text) end
  end
  dist.barrier("opening " .. path)
  if text == "" then return {} end
  return c.jsonl_read(path)
end

---Opens (or starts) the stage file.
---@param path string JSONL file the records go to
---@param opts table|nil { name = "stage" (for messages) }
function stage.open(path, opts)
  check.value("cai.stage.open", "path", path, { type = "string", nonempty = true })
  opts = check("cai.stage.open", opts, { name = "string" })
  local name = opts.name or "stage"
  local self = setmetatable({ path = path, name = name, done = {} }, Stage)
  for line, r in ipairs(read_complete(path, name)) do
    if type(r) ~= "table" or type(r.index) ~= "number" then
      error(string.format("%s:%d: a %s record must have a numeric field \"index\"", path, line, name), 2)
    end
    if self.done[r.index] then
      error(string.format("%s:%d: item %d appears twice", path, line, r.index), 2)
    end
    r._line = line
    self.done[r.index] = r
  end
  return self
end

---How many items the file already holds.
function Stage:count()
  local n = 0
  for _ in pairs(self.done) do n = n + 1 end
  return n
end

---Runs fn over the items not done yet, in chunks; returns all records in item order.
---@param items table list
---@param fn function(batch, first_index) -> list of records (tables), one per item
---@param opts table|nil { batch_size = 32, key = function(item) -> string }
function Stage:run(items, fn, opts)
  check.value("stage:run", "items", items, "table")
  check.value("stage:run", "fn", fn, { type = "function", expect = "a function(batch, first_index)" })
  opts = check("stage:run", opts, { batch_size = { type = "integer", min = 1 }, key = "function" })
  local batch_size = opts.batch_size or 32
  local key_of = opts.key or default_key
  local keys = {}
  for i, item in ipairs(items) do
    local k = key_of(item)
    if type(k) ~= "string" then
      error(string.format("stage:run: items[%d] has no key (give opts.key = function(item) -> string)", i), 2)
    end
    keys[i] = k
    local r = self.done[i]
    if r and r.key ~= k then
      error(string.format("%s:%d: the record for item %d was made from other input (key %q, now %q); the "
        .. "inputs changed since the file was written: delete it or use another output directory",
        self.path, r._line, i, tostring(r.key), k), 2)
    end
  end
  for index in pairs(self.done) do
    if index > #items then
      error(string.format("%s:%d: record for item %d, but there are only %d items; delete the file or use "
        .. "another output directory", self.path, self.done[index]._line, index, #items), 2)
    end
  end
  local previous = self:count()
  if previous > 0 then
    log.info(string.format("%s: %d of %d items done by a previous run (%s)", self.name, previous, #items, self.path))
  end
  local run = require "cai.run"
  run.check_not_stopped("stage:run (" .. self.name .. ")")
  -- Ctrl-C while a chunk is generated: the chunk is finished and appended, then the recipe stops.
  prim.interrupt_begin()
  for first = 1, #items, batch_size do
    local last = math.min(first + batch_size - 1, #items)
    local missing = false
    for i = first, last do if not self.done[i] then missing = true end end
    if missing then
      local batch = {}
      for i = first, last do batch[#batch + 1] = items[i] end
      local records = fn(batch, first - 1)
      if type(records) ~= "table" or #records ~= #batch then
        error(string.format("stage:run: fn must return %d records for items %d..%d, got %s", #batch, first, last,
          type(records) == "table" and tostring(#records) or type(records)), 2)
      end
      for k, r in ipairs(records) do
        local i = first + k - 1
        if not self.done[i] then
          if type(r) ~= "table" then error(string.format("stage:run: record %d must be a table", i), 2) end
          r.index, r.key = i, keys[i]
          if dist.is_main() then c.jsonl_append(self.path, r) end  -- every rank has the records; rank 0 writes
          self.done[i] = r
        end
      end
      log.info(string.format("%s: %d/%d", self.name, last, #items))
      local stop = prim.interrupted()
      if dist.world_size() > 1 then  -- Ctrl-C on any rank stops every rank after the same chunk
        for _, flag in ipairs(dist.all_gather(stop and "1" or "0")) do stop = stop or flag == "1" end
      end
      if stop then
        prim.interrupt_end()
        local n = self:count()
        run.stop(string.format("%s: %d of %d items saved in %s", self.name, n, #items, self.path))
      end
    end
  end
  prim.interrupt_end()
  local out = {}
  for i = 1, #items do
    local r = self.done[i]
    r._line = nil
    out[i] = r
  end
  return out
end

return stage

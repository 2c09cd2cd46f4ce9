-- cai.run: the run directory of a recipe, and the stages that fill it.
--
--   local args = cai.args{ out = "runs/x", steps = 100, gen_batch = 32 }
--   local run = cai.run.open(args.out, { may_change = { "gen_batch" } })
--   local sft = run:stage("sft", { inputs = { data = records, settings = {...} }, outputs = { out .. "/sft" } })
--   if not sft.finished then ... train, save ...; sft:finish{ steps = n, tokens = k } end
--   ...
--   run:write_summary(summary)   -- summary.json, only once every stage finished
--   run:finish()
--
-- open() takes the directory's lock (a second run into the same directory
-- is refused, naming the first one's pid; the lock of a dead process is taken
-- over), removes the temporaries a killed run left, and writes config.json
-- (the resolved arguments) and run.json (status, command line, cairun
-- version, one record per stage).
--
-- Recipes continue a stopped run from the files it left (generation stages,
-- training checkpoints), so a directory that already holds a run must come
-- from the same settings: a different value of any argument outside
-- opts.may_change (settings that never change a result, such as a
-- generation batch size) is an error naming each one. A directory where no
-- stage has started yet (the first step failed, say on a typo in model=)
-- takes the new settings.
--
-- A stage has a fingerprint: the hash of its inputs (data, the model and
-- adapter it starts from, other stages it reads, the settings that change
-- its result). A rerun reuses a finished stage only when the fingerprint
-- matches, continues an unfinished one (its trainer resumes from the last
-- checkpoint, its generation file from the last record), and redoes a stage
-- whose inputs changed: its outputs are removed first. A stage that reads
-- another lists it among its inputs, so redoing one redoes everything
-- downstream.
--
-- Ctrl-C: a trainer or generation stage saves and the recipe stops
-- (run.stop): run.json records the stage as interrupted, the message says
-- what was saved and how to continue, and cairun exits with status 130.
local core = require "cai._core"
local json = require "cai._json"
local prim = require "cai._run"
local log = require "cai.log"

local run = {}
local Run = {}
Run.__index = Run
local Stage = {}
Stage.__index = Stage

local current = nil  -- the run this process opened last

local function show(v)
  if v == nil then return "absent" end
  return json.encode(v)
end

local function read_json(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local ok, value = pcall(json.decode, text)
  if not ok or type(value) ~= "table" then
    error(path .. ": not a JSON object (" .. tostring(value) .. "); delete it or use another out directory", 3)
  end
  return value
end

local function is_main()
  return require("cai.dist").is_main()
end

local function shell_word(s)
  if s:match("^[%w%._/=,:+-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

---The command line this process was started with, as one shell-quoted string ("" when not known).
function run.command_line()
  local words = {}
  for i, w in ipairs(prim.command_line()) do
    words[i] = shell_word(i == 1 and (w:match("([^/]+)$") or w) or w)
  end
  return table.concat(words, " ")
end

---A fingerprint (hex) of any value: strings, numbers, booleans, tables (by content, keys sorted),
---stages (their fingerprint), models (cai.model.fingerprint).
---@param value any
---@return string
function run.fingerprint(value)
  local function canonical(v, depth)
    if depth > 64 then error("cai.run.fingerprint: value nested too deeply", 4) end
    local t = type(v)
    if t == "table" and getmetatable(v) == Stage then return { stage = v.name, fingerprint = v.fingerprint } end
    if v == json.null then return v end
    if t == "userdata" then
      local fp = require("cai.model").fingerprint(v)
      if not fp then error("cai.run.fingerprint: a userdata value that is not a model", 4) end
      return { model = fp }
    end
    if t == "table" then
      local out = {}
      for k, x in pairs(v) do out[k] = canonical(x, depth + 1) end
      return setmetatable(out, getmetatable(v))
    end
    if t == "function" or t == "thread" then error("cai.run.fingerprint: cannot fingerprint a " .. t, 4) end
    return v
  end
  return prim.hash(json.encode(canonical(value, 0)))
end

---A fingerprint of a file or a directory's files (content; big weight files sampled).
---@param path string
function run.path_fingerprint(path)
  if type(path) ~= "string" or path == "" then error("cai.run.path_fingerprint: path must be a non-empty string", 2) end
  return prim.path_fingerprint(path)
end

---Removes the temporaries a killed process left under dir (name.tmp.PID, name.old.PID), of dead processes only.
---@param dir string
---@param opts table|nil { recursive = true }
function run.clean_temporaries(dir, opts)
  if type(dir) ~= "string" or dir == "" then error("cai.run.clean_temporaries: dir must be a non-empty string", 2) end
  opts = opts or {}
  for _, what in ipairs(prim.clean_temporaries(dir, opts.recursive ~= false, true)) do
    log.info("cleaning up after a stopped run: " .. what)
  end
end

-- run.json, as this process sees it (rank 0 writes it).
function Run:_save()
  if not is_main() then return end
  local stages = {}
  for i, name in ipairs(self.order) do stages[i] = self.stages[name] end
  local record = {
    status = self.status,
    command = self.command,
    cairun_version = core.version(),
    stages = json.array(stages),
    error = self.error,
  }
  core.write_file(self.dir .. "/run.json", json.encode(record, { indent = 2 }) .. "\n")
end

---@param out string the run directory
---@param opts table|nil { args = cai.resolved_args(), may_change = { key, ... } }
---@return table run
function run.open(out, opts)
  local check = require "cai.check"
  check.value("cai.run.open", "out", out, { type = "string", nonempty = true })
  opts = check("cai.run.open", opts, { args = "table", may_change = { type = "list", items = "string" } })
  local args = opts.args or require("cai.args").resolved()
  if type(args) ~= "table" then error("cai.run.open: no arguments: call cai.args{...} first or pass opts.args", 2) end
  local free = {}
  for _, k in ipairs(opts.may_change or {}) do free[k] = true end
  if is_main() then
    local ok, err = pcall(prim.lock, out)
    if not ok then error(err, 2) end
    for _, what in ipairs(prim.clean_temporaries(out, true, false)) do
      log.info("cleaning up after a stopped run: " .. what)
    end
  end
  local path = out .. "/config.json"
  local record = read_json(out .. "/run.json")
  local old = read_json(path)
  local started = false
  for _, s in ipairs(record and record.stages or {}) do
    if type(s) == "table" and s.status ~= nil then started = true end
  end
  if old and not record then
    -- A directory from before run.json: anything besides config.json counts as output.
    local listing = io.popen("ls -A " .. shell_word(out) .. " 2>/dev/null")
    for name in listing:lines() do
      if name ~= "config.json" and name ~= ".lock" then started = true end
    end
    listing:close()
  end
  if old and started then
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
  if is_main() then
    core.write_file(path, json.encode(args, { indent = 2 }) .. "\n")
    if record and record.status ~= "finished" then
      -- Left by an earlier attempt that did not finish: they must not describe this run.
      os.remove(out .. "/summary.json")
      os.remove(out .. "/report.html")
    end
  end
  local self = setmetatable({ dir = out, status = "running", command = run.command_line(), stages = {}, order = {},
    started = core.clock() }, Run)
  for _, s in ipairs(record and record.stages or {}) do
    if type(s) == "table" and type(s.name) == "string" and not self.stages[s.name] then
      self.stages[s.name] = s
      self.order[#self.order + 1] = s.name
    end
  end
  self:_save()
  current = self
  return self
end

---The run this process opened last (nil if none).
function run.current()
  return current
end

local function remove_path(path)
  if core.exists(path) then
    os.execute("rm -rf " .. shell_word(path))
  end
end

---Declares a stage of the run. opts.inputs: what the stage's result depends on (any values, other stages,
---models); opts.outputs: the files and directories it writes (removed when its inputs changed).
---Returns a stage with .finished (reuse its outputs), .resumed (continue them) and :finish(stats).
---@param name string
---@param opts table { inputs = { ... }, outputs = { path, ... } }
function Run:stage(name, opts)
  if type(name) ~= "string" or name == "" then error("run:stage: name must be a non-empty string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("run:stage: opts must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "inputs" and k ~= "outputs" then
      error("run:stage: unknown option '" .. tostring(k) .. "' (valid: inputs, outputs)", 2)
    end
  end
  local inputs = opts.inputs or {}
  if type(inputs) ~= "table" then error("run:stage: inputs must be a table of name = value", 2) end
  local outputs = opts.outputs or {}
  if type(outputs) ~= "table" then error("run:stage: outputs must be a list of paths", 2) end
  for i, p in ipairs(outputs) do
    if type(p) ~= "string" or p == "" then error(string.format("run:stage: outputs[%d] must be a path", i), 2) end
  end
  local ok, hashes = pcall(function()
    local h = {}
    for k, v in pairs(inputs) do
      if type(k) ~= "string" then error("run:stage: inputs must be keyed by name, got key " .. tostring(k), 0) end
      h[k] = run.fingerprint(v)
    end
    return h
  end)
  if not ok then error(hashes, 2) end
  local fingerprint = run.fingerprint(hashes)
  local old = self.stages[name]
  local st = setmetatable({ run = self, name = name, fingerprint = fingerprint, outputs = outputs,
    started = core.clock(), finished = false, resumed = false }, Stage)
  local previous_wall = 0
  if old and old.fingerprint == fingerprint then
    if old.status == "finished" then
      st.finished = true
      return st
    end
    st.resumed = true
    previous_wall = tonumber(old.wall_seconds) or 0
    log.info(string.format("stage %s: continuing (%s before)", name, tostring(old.status)))
  else
    local had = {}
    for _, p in ipairs(outputs) do if core.exists(p) then had[#had + 1] = p end end
    if old or #had > 0 then
      local changed = {}
      if old and type(old.inputs) == "table" then
        local keys = {}
        for k in pairs(hashes) do keys[#keys + 1] = k end
        for k in pairs(old.inputs) do if hashes[k] == nil then keys[#keys + 1] = k end end
        table.sort(keys)
        for _, k in ipairs(keys) do
          if old.inputs[k] ~= hashes[k] then changed[#changed + 1] = k end
        end
      end
      local why = old and (#changed > 0 and "its inputs changed (" .. table.concat(changed, ", ") .. ")"
        or "its inputs changed") or "its outputs have no record of what made them"
      if #had > 0 then
        log.warn(string.format("stage %s: %s; redoing it (removing %s)", name, why, table.concat(had, ", ")))
      end
      if is_main() then
        for _, p in ipairs(had) do remove_path(p) end
      end
      require("cai.dist").barrier("redoing stage " .. name)
    end
  end
  if not self.stages[name] then self.order[#self.order + 1] = name end
  self.stages[name] = { name = name, status = "running", fingerprint = fingerprint, inputs = hashes,
    wall_seconds = previous_wall }
  -- Until every stage has finished again, nothing describes the run as finished.
  if is_main() then
    os.remove(self.dir .. "/summary.json")
    os.remove(self.dir .. "/report.html")
  end
  self.status = "running"
  self:_save()
  self.active = st
  return st
end

---Marks the stage finished; stats (all optional): steps=, items=, tokens= (throughput is per wall second).
---@param stats table|nil
function Stage:finish(stats)
  if self.finished then return self end
  stats = stats or {}
  local r = self.run.stages[self.name]
  local wall = (tonumber(r.wall_seconds) or 0) + (core.clock() - self.started)
  r.status = "finished"
  r.wall_seconds = wall
  r.peak_memory_bytes = prim.peak_rss()
  for _, key in ipairs({ "steps", "items", "tokens" }) do
    if stats[key] ~= nil then
      if type(stats[key]) ~= "number" then error("stage:finish: " .. key .. " must be a number", 2) end
      r[key] = stats[key]
      if wall > 0 then r[key .. "_per_second"] = stats[key] / wall end
    end
  end
  self.finished = true
  if self.run.active == self then self.run.active = nil end
  self.run:_save()
  return self
end

---Writes summary.json (value, with status = "finished" and each stage's status) once every stage
---has finished; an error otherwise.
---@param summary table
function Run:write_summary(summary)
  if type(summary) ~= "table" then error("run:write_summary: summary must be a table", 2) end
  local stages = {}
  for _, name in ipairs(self.order) do
    local s = self.stages[name]
    if s.status ~= "finished" then
      error(string.format("run:write_summary: stage %s is %s, not finished", name, tostring(s.status)), 2)
    end
    stages[name] = "finished"
  end
  summary.status = "finished"
  summary.stages = stages
  if is_main() then require("cai.json").write(self.dir .. "/summary.json", summary) end
  return self.dir .. "/summary.json"
end

---Marks the run finished in run.json.
function Run:finish()
  for _, name in ipairs(self.order) do
    local s = self.stages[name]
    if s.status ~= "finished" then
      error(string.format("run:finish: stage %s is %s, not finished", name, tostring(s.status)), 2)
    end
  end
  self.status = "finished"
  self.finished_at = core.clock()
  self:_save()
  return self
end

-- cairun calls this when the recipe returned without an error: the run is finished when its
-- stages are (a recipe without stages is finished by reaching its end).
function Run:_ended()
  if self.status == "finished" then return end
  for _, name in ipairs(self.order) do
    if self.stages[name].status ~= "finished" then
      self.status = "incomplete"
      self:_save()
      return
    end
  end
  self:finish()
end

-- cairun calls this when the recipe stopped on an error: run.json says "failed", with the error's
-- first line, and the stage that was running is "failed" too (a rerun continues it).
function Run:_failed(message)
  if self.status == "finished" then return end
  for _, name in ipairs(self.order) do
    local s = self.stages[name]
    if s.status == "running" then s.status = "failed" end
  end
  self.status = "failed"
  self.error = tostring(message or ""):match("^[^\n]*")
  pcall(self._save, self)
end

---Stops the recipe after Ctrl-C: run.json records the running stage as interrupted, cairun prints
---message and exits with status 130. Never returns.
---@param message string what was saved
function run.stop(message)
  require("cai.check").value("cai.run.stop", "message", message, { type = "string", nonempty = true })
  local command = run.command_line()
  local text = "interrupted: " .. message .. ". Run the same command again to continue"
    .. (command ~= "" and (": " .. command) or ".")
  if current then
    for _, name in ipairs(current.order) do
      local s = current.stages[name]
      if s.status == "running" then
        s.status = "interrupted"
        if current.active and current.active.name == name then
          s.wall_seconds = (tonumber(s.wall_seconds) or 0) + (core.clock() - current.active.started)
        end
      end
    end
    current.status = "interrupted"
    pcall(current._save, current)
  end
  prim.record_stop(text)
  error(text, 0)
end

---Raises the stop again if the recipe already stopped (no later stage runs on a partial result).
function run.check_not_stopped(what)
  if prim.stopped() then
    error((what or "cairun") .. ": the run was interrupted; no further stage runs in this process", 3)
  end
end

return run

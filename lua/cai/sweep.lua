-- cai.sweep: `cairun sweep RECIPE.lua seed=1,2,3 key=a,b ... [out=DIR] [nproc=N]`
--
-- Runs RECIPE once per cell of the grid (the product of every key's
-- comma-separated values), each cell in its own run directory
-- DIR/cells/<key=value,...>/ (DIR defaults to runs/sweep_<recipe name>),
-- as a separate `cairun [--nproc N] RECIPE.lua key=value ... out=CELL`.
-- A cell whose summary.json exists is done: rerunning the sweep runs only the
-- missing cells (a cell stopped half-way resumes as its recipe resumes). A
-- failed cell stops the sweep with its command and exit status.
--
-- Then every cell's summary.json is read and DIR/comparison.json and
-- DIR/comparison.md are written (temporary name, then rename):
--   * configs: the cells grouped by every key but `seed`;
--   * per config and metric (every { rate = x } table in the summary, named
--     by its path, e.g. models.rl_cai.harmlessness): mean, sd, min, max and n
--     across seeds;
--   * effects of each config against the first (the baseline), paired by
--     seed: mean difference with a 95% t interval, Cohen's d of the paired
--     differences, an exact sign-flip permutation test across seeds, and
--     Holm's correction over every test;
--   * a power note: the smallest p the exact test can give with n seeds, the
--     seeds Holm's correction over this many tests needs, and the smallest mean
--     difference the seeds could detect (two-sided 0.05, power 0.8, from the
--     observed spread of the differences).
local check = require "cai.check"

local sweep = {}

-- Two-sided 97.5% and 80% quantiles of Student's t by degrees of freedom (1..30).
local T975 = { 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
  2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042 }
local T80 = { 1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879, 0.876, 0.873, 0.870, 0.868,
  0.866, 0.865, 0.863, 0.862, 0.861, 0.860, 0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854 }
local function t975(df) return T975[df] or 1.96 end
local function t80(df) return T80[df] or 0.842 end

---Parses the sweep's arguments: { recipe=, out=, nproc=, keys = { { key=, values = {...} } } }.
function sweep.parse(argv)
  if type(argv) ~= "table" or #argv == 0 or not tostring(argv[1]):match("%.lua$") then
    error("usage: cairun sweep RECIPE.lua key=v1,v2 ... [out=DIR] [nproc=N]", 0)
  end
  local spec = { recipe = argv[1], keys = {}, nproc = 0 }
  local seen = {}
  for i = 2, #argv do
    local key, value = argv[i]:match("^([%w_]+)=(.*)$")
    if not key then error("cairun sweep: argument '" .. argv[i] .. "' is not of the form key=v1,v2,...", 0) end
    if seen[key] then error("cairun sweep: argument '" .. key .. "' is given twice", 0) end
    seen[key] = true
    if key == "out" then
      spec.out = value
    elseif key == "nproc" then
      spec.nproc = tonumber(value) or error("cairun sweep: nproc must be a number, got '" .. value .. "'", 0)
    else
      local values = {}
      for v in (value .. ","):gmatch("([^,]*),") do
        if v == "" then error("cairun sweep: " .. key .. "= has an empty value in '" .. value .. "'", 0) end
        values[#values + 1] = v
      end
      spec.keys[#spec.keys + 1] = { key = key, values = values }
    end
  end
  spec.out = spec.out or ("runs/sweep_" .. spec.recipe:match("([^/]+)%.lua$"))
  return spec
end

---The grid's cells in order (the first key varies slowest): list of
---{ name = "k1=a,k2=b", args = { { key, value }, ... } }.
function sweep.cells(keys)
  local cells = { { name = "", args = {} } }
  for _, k in ipairs(keys) do
    local next_cells = {}
    for _, c in ipairs(cells) do
      for _, v in ipairs(k.values) do
        local args = {}
        for i, a in ipairs(c.args) do args[i] = a end
        args[#args + 1] = { k.key, v }
        next_cells[#next_cells + 1] = { name = c.name == "" and (k.key .. "=" .. v) or (c.name .. "," .. k.key .. "=" .. v),
          args = args }
      end
    end
    cells = next_cells
  end
  return cells
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- The running executable: /proc/<this process's id>/exe (a shell's
-- /proc/self/exe would name the shell's own command).
local function self_exe()
  local f = io.open("/proc/self/stat", "r")
  local id = f and f:read("*n")
  if f then f:close() end
  if not id then return nil end
  local p = io.popen("readlink -f /proc/" .. math.floor(id) .. "/exe 2>/dev/null")
  local exe = p and p:read("*l")
  if p then p:close() end
  return exe ~= "" and exe or nil
end

local function cairun_path()
  local exe = self_exe()
  if not exe then error("cairun sweep: cannot find the cairun executable (/proc/<pid>/exe)", 0) end
  return exe
end

-- Every { rate = number } table of a summary, by dotted path.
local function rates_of(summary)
  local out = {}
  local function walk(t, path, depth)
    if depth > 6 or type(t) ~= "table" then return end
    if type(t.rate) == "number" then out[path] = t.rate return end
    local keys = {}
    for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do walk(t[k], path == "" and k or (path .. "." .. k), depth + 1) end
  end
  walk(summary, "", 0)
  return out
end

-- Exact two-sided sign-flip permutation p-value of the mean of d (n <= 16).
local function sign_flip_p(d)
  local n = #d
  local obs = 0
  for _, x in ipairs(d) do obs = obs + x end
  obs = math.abs(obs)
  local count, total = 0, 2 ^ n
  for mask = 0, total - 1 do
    local s = 0
    for i = 1, n do
      if math.floor(mask / 2 ^ (i - 1)) % 2 == 1 then s = s - d[i] else s = s + d[i] end
    end
    if math.abs(s) >= obs - 1e-12 then count = count + 1 end
  end
  return count / total
end

---The comparison of cell summaries (see header).
---@param cells table list of { name=, args = { {key, value} }, summary = decoded summary.json }
function sweep.compare(cells)
  check.value("cai.sweep.compare", "cells", cells, "list")
  local stats = require "cai.stats"
  local configs, order = {}, {}
  for _, c in ipairs(cells) do
    local parts, seed = {}, nil
    for _, a in ipairs(c.args) do
      if a[1] == "seed" then seed = a[2] else parts[#parts + 1] = a[1] .. "=" .. a[2] end
    end
    local name = #parts > 0 and table.concat(parts, ",") or "all"
    if not configs[name] then configs[name] = { name = name, by_seed = {}, seeds = {} }; order[#order + 1] = name end
    local cfg = configs[name]
    seed = seed or "-"
    cfg.by_seed[seed] = rates_of(c.summary)
    cfg.seeds[#cfg.seeds + 1] = seed
  end
  local out = { configs = {}, effects = {}, baseline = order[1] }
  local metrics_set, metrics = {}, {}
  for _, name in ipairs(order) do
    local cfg = configs[name]
    local per = {}
    for _, seed in ipairs(cfg.seeds) do
      for m, v in pairs(cfg.by_seed[seed]) do
        per[m] = per[m] or {}
        per[m][#per[m] + 1] = v
        if not metrics_set[m] then metrics_set[m] = true; metrics[#metrics + 1] = m end
      end
    end
    local entry = { name = name, seeds = cfg.seeds, metrics = {} }
    for m, vs in pairs(per) do
      local sorted = {}
      for i, v in ipairs(vs) do sorted[i] = v end
      table.sort(sorted)
      entry.metrics[m] = { mean = stats.mean(vs), sd = stats.sd(vs), min = sorted[1], max = sorted[#sorted], n = #vs }
    end
    out.configs[#out.configs + 1] = entry
  end
  table.sort(metrics)
  out.metrics = metrics
  -- Effects against the baseline, paired by seed.
  local base = configs[order[1]]
  for k = 2, #order do
    local cfg = configs[order[k]]
    for _, m in ipairs(metrics) do
      local d = {}
      for _, seed in ipairs(cfg.seeds) do
        local a, b = base.by_seed[seed] and base.by_seed[seed][m], cfg.by_seed[seed][m]
        if a and b then d[#d + 1] = b - a end
      end
      if #d >= 2 then
        local mean, sd = stats.mean(d), stats.sd(d)
        local half = t975(#d - 1) * sd / math.sqrt(#d)
        local e = { config = cfg.name, metric = m, n = #d, mean_diff = mean, lo = mean - half, hi = mean + half,
          cohen_d = sd > 0 and mean / sd or nil, p = #d <= 16 and sign_flip_p(d) or nil,
          min_p = 2 / 2 ^ #d, detectable_diff = (t975(#d - 1) + t80(#d - 1)) * sd / math.sqrt(#d) }
        out.effects[#out.effects + 1] = e
      end
    end
  end
  out.power = sweep.power(#base.seeds, sweep.holm(out.effects))
  return out
end

---Holm's correction over the effects that have a p (one family): sets each one's
---p_holm and significant (at 0.05). Returns the number of tests.
---@param effects table list of effects of cai.sweep.compare
function sweep.holm(effects)
  check.value("cai.sweep.holm", "effects", effects, "list")
  local ps, tested = {}, {}
  for _, e in ipairs(effects) do
    if type(e) == "table" and type(e.p) == "number" then ps[#ps + 1] = e.p; tested[#tested + 1] = e end
  end
  if #ps > 0 then
    local adjusted, rejected = require("cai.stats").holm(ps, 0.05)
    for i, e in ipairs(tested) do e.p_holm, e.significant = adjusted[i], rejected[i] end
  end
  return #ps
end

---What n seeds can show when `tests` paired sign-flip tests are Holm-corrected together:
---{ seeds, tests, min_p, seeds_needed, note }. The exact test's smallest two-sided p is 2/2^n,
---and Holm's first rejection needs p <= 0.05 / tests, so with many tests more seeds are needed
---than for one.
---@param seeds integer
---@param tests integer
function sweep.power(seeds, tests)
  check.value("cai.sweep.power", "seeds", seeds, { type = "integer", min = 0 })
  check.value("cai.sweep.power", "tests", tests, { type = "integer", min = 0 })
  local family = math.max(tests, 1)
  local needed = 2
  while 2 / 2 ^ needed * family > 0.05 do needed = needed + 1 end
  local min_p = 2 / 2 ^ seeds
  local note
  if seeds < 2 then
    note = "one seed per config: no spread, no test; add seeds"
  elseif seeds > 16 then
    note = string.format("with %d seeds no exact test is made (the sign-flip test enumerates 2^seeds sign "
      .. "patterns and runs up to 16 seeds); the intervals still hold", seeds)
  elseif min_p * family > 0.05 then
    note = string.format("with %d seeds the exact sign-flip test cannot give p < %.3f, and Holm's correction over "
      .. "%d test%s needs p <= %.4f for the first rejection, so no effect can be significant at 0.05; at least "
      .. "%d seeds are needed", seeds, min_p, family, family == 1 and "" or "s", 0.05 / family, needed)
  else
    note = string.format("with %d seeds an effect can be significant after Holm's correction over %d test%s; one "
      .. "test alone would detect (two-sided 0.05, power 0.8) a mean difference above about detectable_diff (per "
      .. "effect, from the spread of its differences)", seeds, family, family == 1 and "" or "s")
  end
  return { seeds = seeds, tests = family, min_p = min_p, seeds_needed = needed, note = note }
end

local function fmt(x) return x == nil and "-" or string.format("%.3f", x) end

---The comparison as Markdown.
function sweep.markdown(cmp)
  local lines = { "# Sweep comparison", "", "Baseline: `" .. tostring(cmp.baseline) .. "`. " .. cmp.power.note .. ".",
    "", "## Mean (sd) across seeds", "" }
  local head = { "| metric |" }
  local rule = { "|---|" }
  for _, c in ipairs(cmp.configs) do head[#head + 1] = " " .. c.name .. " |"; rule[#rule + 1] = "---|" end
  lines[#lines + 1] = table.concat(head)
  lines[#lines + 1] = table.concat(rule)
  for _, m in ipairs(cmp.metrics) do
    local row = { "| " .. m .. " |" }
    for _, c in ipairs(cmp.configs) do
      local e = c.metrics[m]
      row[#row + 1] = e and string.format(" %.3f (%s) |", e.mean, fmt(e.sd)) or " - |"
    end
    lines[#lines + 1] = table.concat(row)
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = "## Effects against the baseline (paired by seed)"
  lines[#lines + 1] = ""
  lines[#lines + 1] = "| config | metric | n | diff | 95% CI | d | p | p (Holm) | detectable diff |"
  lines[#lines + 1] = "|---|---|---|---|---|---|---|---|---|"
  for _, e in ipairs(cmp.effects) do
    lines[#lines + 1] = string.format("| %s | %s | %d | %+.3f | [%+.3f, %+.3f] | %s | %s | %s | %s |", e.config,
      e.metric, e.n, e.mean_diff, e.lo, e.hi, fmt(e.cohen_d), fmt(e.p), fmt(e.p_holm), fmt(e.detectable_diff))
  end
  return table.concat(lines, "\n") .. "\n"
end

local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

---The `cairun sweep` command (argv: RECIPE.lua key=v1,v2 ...).
function sweep.main(argv)
  local cai = require "cai"
  local spec = sweep.parse(argv)
  if not exists(spec.recipe) then error("cairun sweep: recipe " .. spec.recipe .. " does not exist", 0) end
  local cells = sweep.cells(spec.keys)
  local exe = cairun_path()
  os.execute("mkdir -p " .. shell_quote(spec.out .. "/cells"))
  for i, c in ipairs(cells) do
    c.dir = spec.out .. "/cells/" .. (c.name == "" and "default" or c.name)
    if exists(c.dir .. "/summary.json") then
      cai.log.info(string.format("sweep: cell %d/%d %s done by a previous run", i, #cells, c.name))
    else
      cai.log.info(string.format("sweep: cell %d/%d %s", i, #cells, c.name))
      local cmd = { shell_quote(exe) }
      if spec.nproc > 1 then cmd[#cmd + 1] = "--nproc " .. math.floor(spec.nproc) end
      cmd[#cmd + 1] = shell_quote(spec.recipe)
      for _, a in ipairs(c.args) do cmd[#cmd + 1] = shell_quote(a[1] .. "=" .. a[2]) end
      cmd[#cmd + 1] = shell_quote("out=" .. c.dir)
      local line = table.concat(cmd, " ")
      local status = os.execute(line)   -- LuaJIT: the exit status as a number
      if status ~= 0 and status ~= true then
        error(string.format("cairun sweep: cell %s failed (exit status %s): %s", c.name, tostring(status), line), 0)
      end
      if not exists(c.dir .. "/summary.json") then
        error("cairun sweep: cell " .. c.name .. " finished without " .. c.dir .. "/summary.json", 0)
      end
    end
    local f = assert(io.open(c.dir .. "/summary.json", "rb"))
    c.summary = cai.json.decode(f:read("*a"))
    f:close()
  end
  local cmp = sweep.compare(cells)
  cmp.recipe = spec.recipe
  cmp.cells = {}
  for i, c in ipairs(cells) do cmp.cells[i] = { name = c.name, dir = c.dir } end
  write_atomic(spec.out .. "/comparison.json", cai.json.encode(cmp))
  write_atomic(spec.out .. "/comparison.md", sweep.markdown(cmp))
  print("sweep: " .. #cells .. " cells, comparison in " .. spec.out .. "/comparison.md")
end

return sweep

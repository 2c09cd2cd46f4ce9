-- cai.analysis: the pair report of the Stage 3 post-mortem, as a table and JSON.
--
--   local report = cai.analysis.pairs(records)
--   print(cai.analysis.format(report))
--   cai.analysis.write(report, "runs/x/pair_report.json")
--
-- Accepts the pair shapes of cai.filters.view. The report holds: total,
-- identical (count, share, examples), score deltas (mean, revised better,
-- base better beyond +-threshold), chosen distribution, meta-commentary
-- (count, share), principle usage, and the worst examples (revision made
-- it worse by more than worst_threshold).
local filters = require "cai.filters"
local check = require "cai.check"
local critique = require "cai.critique"
local principles = require "cai.principles"

local analysis = {}

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function clip(s, n)
  s = tostring(s or ""):gsub("%s+", " ")
  if #s > n then return s:sub(1, n - 3) .. "..." end
  return s
end

---Builds the report.
---@param records table list of pairs
---@param opts table|nil { threshold = 0.1, worst_threshold = 0.5, examples = 3 }
function analysis.pairs(records, opts)
  check.value("cai.analysis.pairs", "records", records, "table")
  opts = opts or {}
  local threshold = opts.threshold or 0.1
  local worst_threshold = opts.worst_threshold or 0.5
  local n_examples = opts.examples or 3

  local r = { total = #records, identical = 0, meta = 0, chosen = {}, principle_usage = {},
    deltas = { n = 0, mean = nil, revised_better = 0, base_better = 0, threshold = threshold },
    identical_examples = {}, worst = {} }
  local usage = {}
  local delta_sum = 0
  local scored = {}
  for i, p in ipairs(records) do
    local ok, v = pcall(filters.view, p)
    if not ok then error("cai.analysis.pairs: records[" .. i .. "]: " .. tostring(v), 2) end
    local base = v.base or v.rejected
    local revised = v.revised or v.chosen
    if trim(base) == trim(revised) then
      r.identical = r.identical + 1
      if #r.identical_examples < n_examples then
        r.identical_examples[#r.identical_examples + 1] = { prompt = v.prompt, response = base, score = v.base_score }
      end
    end
    if critique.meta_commentary(revised) then r.meta = r.meta + 1 end
    local side = v.side or "chosen"
    r.chosen[side] = (r.chosen[side] or 0) + 1
    for _, id in ipairs(v.principle_ids or {}) do usage[id] = (usage[id] or 0) + 1 end
    local bs = v.base_score or v.rejected_score
    local rs = v.revised_score or v.chosen_score
    if type(bs) == "number" and type(rs) == "number" then
      local d = rs - bs
      r.deltas.n = r.deltas.n + 1
      delta_sum = delta_sum + d
      if d > threshold then r.deltas.revised_better = r.deltas.revised_better + 1 end
      if d < -threshold then r.deltas.base_better = r.deltas.base_better + 1 end
      scored[#scored + 1] = { i = i, d = d, v = v, base = base, revised = revised }
    end
  end
  if r.deltas.n > 0 then r.deltas.mean = delta_sum / r.deltas.n end
  table.sort(scored, function(a, b)
    if a.d ~= b.d then return a.d < b.d end
    return a.i < b.i
  end)
  for _, s in ipairs(scored) do
    if #r.worst >= n_examples or s.d >= -worst_threshold then break end
    r.worst[#r.worst + 1] = { prompt = s.v.prompt, base = s.base, revised = s.revised, delta = s.d }
  end
  r.identical_share = r.total > 0 and r.identical / r.total or 0
  r.meta_share = r.total > 0 and r.meta / r.total or 0
  r.principle_usage = principles.usage_report(usage)
  return r
end

local function pct(n, total) return total > 0 and string.format("%.1f%%", 100 * n / total) or "-" end

---The report as readable text.
function analysis.format(r)
  if type(r) ~= "table" or r.total == nil then error("cai.analysis.format: expected a report from cai.analysis.pairs", 2) end
  local out = {}
  local function line(...) out[#out + 1] = string.format(...) end
  line("=== Pair quality ===")
  line("%-28s %d", "pairs", r.total)
  line("%-28s %d (%s)", "identical base/revised", r.identical, pct(r.identical, r.total))
  line("%-28s %d (%s)", "meta-commentary", r.meta, pct(r.meta, r.total))
  if r.deltas.n > 0 then
    line("%-28s %+.4f over %d scored", "mean score delta", r.deltas.mean, r.deltas.n)
    line("%-28s %d (%s)", "revised better (> +" .. r.deltas.threshold .. ")", r.deltas.revised_better,
      pct(r.deltas.revised_better, r.deltas.n))
    line("%-28s %d (%s)", "base better (< -" .. r.deltas.threshold .. ")", r.deltas.base_better,
      pct(r.deltas.base_better, r.deltas.n))
  else
    line("%-28s %s", "score deltas", "no scores")
  end
  local sides = {}
  for side in pairs(r.chosen) do sides[#sides + 1] = side end
  table.sort(sides)
  for _, side in ipairs(sides) do line("%-28s %d (%s)", "chosen = " .. side, r.chosen[side], pct(r.chosen[side], r.total)) end
  if #r.principle_usage > 0 then
    line("--- principle usage ---")
    for _, row in ipairs(r.principle_usage) do line("  %-26s %d (%.1f%%)", row.id, row.count, 100 * row.share) end
  end
  if #r.identical_examples > 0 then
    line("--- identical examples ---")
    for i, e in ipairs(r.identical_examples) do
      line("%d. prompt: %s", i, clip(e.prompt, 80))
      line("   response: %s", clip(e.response, 80))
    end
  end
  if #r.worst > 0 then
    line("--- worst revisions ---")
    for i, e in ipairs(r.worst) do
      line("%d. prompt: %s", i, clip(e.prompt, 80))
      line("   base: %s", clip(e.base, 80))
      line("   revised: %s", clip(e.revised, 80))
      line("   delta: %+.3f", e.delta)
    end
  end
  return table.concat(out, "\n")
end

---The report as a JSON string.
function analysis.to_json(r)
  if type(r) ~= "table" or r.total == nil then error("cai.analysis.to_json: expected a report from cai.analysis.pairs", 2) end
  local json = require("cai").json
  if next(r.chosen) == nil then json.object(r.chosen) end
  return json.encode(r)
end

---Writes the report as JSON, all-or-nothing.
function analysis.write(r, path)
  check.value("cai.analysis.write", "path", path, "string")
  local ok, err = pcall(require("cai._core").write_file, path, analysis.to_json(r) .. "\n")
  if not ok then error("cai.analysis.write: " .. tostring(err), 2) end
end

return analysis

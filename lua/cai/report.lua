-- cai.report: report.html for a run directory, one self-contained offline file.
--
--   local path = cai.report.build("runs/quickstart")    --> "runs/quickstart/report.html"
--   local html = cai.report.render(data)                 -- pure: data -> HTML string
--
-- Inputs read from the run directory, each optional (a missing one makes its
-- section say so):
--   run.json       status, command line, cairun version, stages (cai.run) -> "Run": each stage's
--                  status, wall time, throughput and peak memory
--   config.json    resolved arguments                         -> "Configuration"
--   metrics.jsonl  one object per log step: stage, step, loss, lr, grad_norm, eval_loss,
--                  rewards/{chosen,rejected,margins,accuracies}, logps/{chosen,rejected}
--                                                            -> "Training curves" (SVG, per stage)
--   summary.json   { models = { base = { criterion = { rate, lo, hi, n } }, sft =, dpo = },
--                    comparisons = ..., preference_tests = { name = { b, c, p } } }
--                                                            -> "Evaluation" (table + interval plot);
--                  preference_accuracy.by_type = { type = rate } -> a table per negative type
--   pairs.jsonl    { prompt, chosen, rejected, type|negative_type, principle|principle_id|principle_ids }
--                                                            -> "Preference pairs", "Usage"
--   samples.jsonl  { instruction, base, sft, dpo }            -> "Samples"
--
-- The page has inline CSS and inline SVG drawn here; no script, no external
-- resource, and a Content-Security-Policy that forbids loading any. All
-- text from the inputs is HTML-escaped. The output depends only on the
-- inputs (no clock), so the same run gives the same bytes.
local plot = require "cai.plot"
local check = require "cai.check"

local report = {}

report.MODEL_ORDER = { "base", "sft", "dpo" }
report.CRITERIA_ORDER = { "ends_with_end", "proper_structure", "no_rambling", "addresses_instruction",
  "appropriate_length", "no_unwarranted_refusal", "factually_correct", "coherent", "on_topic",
  "preference_accuracy" }
report.CHARTS = {
  { title = "Loss", keys = { "loss", "eval_loss" } },
  { title = "Learning rate", keys = { "lr", "learning_rate" } },
  { title = "Reward margin", keys = { "rewards/margins" } },
  { title = "Reward accuracy", keys = { "rewards/accuracies" }, y_range = { 0, 1 } },
  { title = "Rewards", keys = { "rewards/chosen", "rewards/rejected" } },
  { title = "Log-probabilities", keys = { "logps/chosen", "logps/rejected" } },
  { title = "Gradient norm", keys = { "grad_norm" } },
}
report.MAX_POINTS = 1500   -- per curve; longer series are thinned evenly

local PALETTE, MODEL_COLOURS = plot.PALETTE, plot.MODEL_COLOURS

-- ---------------------------------------------------------------------------
-- Text helpers

---HTML-escapes any value (text and attribute safe); control characters other
---than tab and newline become U+FFFD.
report.escape = plot.escape
local esc = plot.escape
local is_number, pct = plot.is_number, plot.percent
---An SVG line chart (cai.plot.line_chart).
report.line_chart = plot.line_chart
local interval_plot, length_histogram = plot.interval_plot, plot.length_histogram

-- A number for display: integers plainly, others with 4 significant digits.
local function num(x)
  if type(x) ~= "number" then return "-" end
  if x ~= x then return "NaN" end
  if x == math.huge then return "inf" elseif x == -math.huge then return "-inf" end
  if x == math.floor(x) and math.abs(x) < 1e15 then return string.format("%d", x) end
  return (string.format("%.4g", x))
end

local function words(s)
  local n = 0
  for _ in tostring(s):gmatch("%S+") do n = n + 1 end
  return n
end

local function trim(s) return (tostring(s):gsub("^%s+", ""):gsub("%s+$", "")) end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Known names first in their order, then the rest sorted.
local function ordered(names, preferred)
  local present, out, seen = {}, {}, {}
  for _, n in ipairs(names) do present[n] = true end
  for _, n in ipairs(preferred) do
    if present[n] then out[#out + 1] = n; seen[n] = true end
  end
  local rest = {}
  for _, n in ipairs(names) do if not seen[n] then rest[#rest + 1] = n; seen[n] = true end end
  table.sort(rest, function(a, b) return tostring(a) < tostring(b) end)
  for _, n in ipairs(rest) do out[#out + 1] = n end
  return out
end

local function text_of(v)
  if type(v) == "string" then return v end
  if type(v) == "table" and type(v.text) == "string" then return v.text end
  return nil
end

local function json_text(v)
  local ok, s = pcall(require("cai").json.encode, v)
  return ok and s or tostring(v)
end

-- ---------------------------------------------------------------------------
-- Sections

local function section(id, title, body)
  return string.format('<section id="%s">\n<h2>%s</h2>\n%s\n</section>\n', id, esc(title), body)
end

local function missing(what)
  return string.format('<p class="missing">No %s in this run directory.</p>', esc(what))
end

local function kv_table(t)
  local rows = {}
  for _, k in ipairs(sorted_keys(t)) do
    local v = t[k]
    local shown = type(v) == "string" and v or type(v) == "number" and num(v) or json_text(v)
    rows[#rows + 1] = string.format("<tr><th>%s</th><td><code>%s</code></td></tr>", esc(k), esc(shown))
  end
  return '<table class="kv">' .. table.concat(rows, "\n") .. "</table>"
end

local function duration(seconds)
  if not is_number(seconds) then return "-" end
  if seconds < 60 then return string.format("%.1f s", seconds) end
  if seconds < 3600 then return string.format("%d min %02d s", math.floor(seconds / 60), math.floor(seconds % 60)) end
  return string.format("%d h %02d min", math.floor(seconds / 3600), math.floor(seconds % 3600 / 60))
end

local function bytes(n)
  if not is_number(n) or n <= 0 then return "-" end
  if n >= 2 ^ 30 then return string.format("%.2f GiB", n / 2 ^ 30) end
  return string.format("%.0f MiB", n / 2 ^ 20)
end

-- run.json: the run's status, command line, cairun version and each stage's record.
local function run_section(record, summary)
  if type(record) ~= "table" then
    local finished = type(summary) == "table" and summary.status == "finished"
    return section("run", "Run", missing("run.json") .. (finished and "" or
      '<p class="missing">Nothing records that this run finished.</p>'))
  end
  local status = type(record.status) == "string" and record.status or "unknown"
  local stages = type(record.stages) == "table" and record.stages or {}
  local unfinished = {}
  for _, st in ipairs(stages) do
    if type(st) == "table" and st.status ~= "finished" then unfinished[#unfinished + 1] = tostring(st.name) end
  end
  if status == "finished" and #unfinished > 0 then status = "incomplete" end
  local parts = {}
  parts[#parts + 1] = string.format('<p class="status status-%s">Status: <strong>%s</strong>%s</p>', esc(status),
    esc(status), #unfinished > 0 and (" &middot; not finished: " .. esc(table.concat(unfinished, ", "))) or "")
  parts[#parts + 1] = '<table class="kv">'
    .. string.format("<tr><th>command</th><td><code>%s</code></td></tr>", esc(record.command or "-"))
    .. string.format("<tr><th>cairun version</th><td><code>%s</code></td></tr>", esc(record.cairun_version or "-"))
    .. "</table>"
  if #stages > 0 then
    local rows = { "<table><tr><th>stage</th><th>status</th><th>wall time</th><th>throughput</th>"
      .. "<th>peak memory</th><th>fingerprint</th></tr>" }
    for _, st in ipairs(stages) do
      if type(st) == "table" then
        local rate = {}
        if is_number(st.steps_per_second) then rate[#rate + 1] = string.format("%.3g steps/s", st.steps_per_second) end
        if is_number(st.items_per_second) then rate[#rate + 1] = string.format("%.3g items/s", st.items_per_second) end
        if is_number(st.tokens_per_second) then rate[#rate + 1] = string.format("%.3g tokens/s", st.tokens_per_second) end
        rows[#rows + 1] = string.format("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td><code>%s</code></td></tr>",
          esc(st.name or "?"), esc(st.status or "?"), duration(st.wall_seconds),
          #rate > 0 and esc(table.concat(rate, ", ")) or "-", bytes(st.peak_memory_bytes),
          esc(tostring(st.fingerprint or "-"):sub(1, 12)))
      end
    end
    rows[#rows + 1] = "</table>"
    parts[#parts + 1] = table.concat(rows, "\n")
    parts[#parts + 1] = '<p class="meta">Peak memory: the process\'s peak resident size when the stage finished.</p>'
  end
  return section("run", "Run", table.concat(parts, "\n"))
end

local function config_section(config)
  if type(config) ~= "table" then return section("config", "Configuration", missing("config.json")) end
  if next(config) == nil then return section("config", "Configuration", "<p>config.json is empty.</p>") end
  return section("config", "Configuration", kv_table(config))
end

-- Groups metric records by stage: { order = { stages }, by = { stage -> list } }.
local function stages_of(metrics)
  local by, seen_order = {}, {}
  for i, m in ipairs(metrics) do
    if type(m) == "table" then
      local stage = type(m.stage) == "string" and m.stage or "train"
      if not by[stage] then by[stage] = {}; seen_order[#seen_order + 1] = stage end
      local list = by[stage]
      list[#list + 1] = { step = is_number(m.step) and m.step or #list + 1, m = m, i = i }
    end
  end
  local order = {}
  for _, s in ipairs { "sft", "dpo" } do if by[s] then order[#order + 1] = s end end
  for _, s in ipairs(seen_order) do if s ~= "sft" and s ~= "dpo" then order[#order + 1] = s end end
  return order, by
end

local function curves_section(metrics)
  if type(metrics) ~= "table" then return section("curves", "Training curves", missing("metrics.jsonl")) end
  if #metrics == 0 then return section("curves", "Training curves", "<p>metrics.jsonl has no records.</p>") end
  local order, by = stages_of(metrics)
  local parts = {}
  for _, stage in ipairs(order) do
    local list = by[stage]
    local charts = {}
    local last = list[#list]
    for _, spec in ipairs(report.CHARTS) do
      local series = {}
      for _, key in ipairs(spec.keys) do
        local points = {}
        for _, r in ipairs(list) do
          local v = r.m[key]
          if is_number(v) then points[#points + 1] = { r.step, v } end
        end
        if #points > report.MAX_POINTS then
          -- long runs: every k-th point (and the last), so the file stays small
          local k, thin = math.ceil(#points / report.MAX_POINTS), {}
          for i = 1, #points, k do thin[#thin + 1] = points[i] end
          if thin[#thin] ~= points[#points] then thin[#thin + 1] = points[#points] end
          points = thin
        end
        if #points > 0 then
          local colour = key:find("rejected") and PALETTE[2] or key == "eval_loss" and PALETTE[3] or nil
          series[#series + 1] = { name = key, points = points, colour = colour }
        end
      end
      if #series > 0 then
        -- "lr" and "learning_rate" are one quantity: keep the first present
        if spec.keys[1] == "lr" and #series > 1 then series = { series[1] } end
        charts[#charts + 1] = report.line_chart { title = spec.title, series = series, x_label = "step",
          y_label = #series == 1 and series[1].name or nil, y_range = spec.y_range }
      end
    end
    local final = {}
    for _, key in ipairs { "loss", "eval_loss", "rewards/margins", "rewards/accuracies" } do
      for k = #list, 1, -1 do
        if is_number(list[k].m[key]) then
          final[#final + 1] = string.format("%s <b>%s</b>", esc(key), esc(num(list[k].m[key])))
          break
        end
      end
    end
    parts[#parts + 1] = string.format('<h3>Stage <code>%s</code></h3>\n<p class="meta">%d records, last step %s%s</p>',
      esc(stage), #list, esc(num(last.step)), #final > 0 and (" &middot; final " .. table.concat(final, ", ")) or "")
    if #charts == 0 then
      parts[#parts + 1] = '<p class="missing">No numeric metrics to plot for this stage.</p>'
    else
      parts[#parts + 1] = '<div class="charts">' .. table.concat(charts, "\n") .. "</div>"
    end
  end
  return section("curves", "Training curves", table.concat(parts, "\n"))
end

-- A criterion value as { rate, lo, hi, n } (accepts cai.eval rates and plain numbers).
local function as_rate(v)
  if is_number(v) then return { rate = v } end
  if type(v) ~= "table" then return nil end
  local rate = v.rate
  if not is_number(rate) and is_number(v.pass) and is_number(v.n) and v.n > 0 then rate = v.pass / v.n end
  if not is_number(rate) and not (is_number(v.n) and v.n == 0) then return nil end
  return { rate = is_number(rate) and rate or nil, lo = is_number(v.lo) and v.lo or nil,
    hi = is_number(v.hi) and v.hi or nil, n = is_number(v.n) and v.n or nil }
end

local function criteria_of(model)
  if type(model) ~= "table" then return {} end
  if type(model.rates) == "table" then return model.rates end
  return model
end


local COMPARISON_COLUMNS = { "n", "rate_a", "rate_b", "diff", "lo", "hi", "b", "c", "p", "p_holm", "significant",
  "cohen_h" }
local RATE_COLUMNS = { rate_a = true, rate_b = true, diff = true, lo = true, hi = true }

-- One comparison: cai.eval.compare output ({ a, b, rows }), or criterion -> p | { p=, ... }.
local function comparison_table(name, cmp)
  local rows = {}
  if type(cmp) == "table" and type(cmp.rows) == "table" then
    for _, r in ipairs(cmp.rows) do if type(r) == "table" then rows[#rows + 1] = r end end
    if cmp.a and cmp.b then name = tostring(cmp.a) .. " \226\134\146 " .. tostring(cmp.b) end
  elseif type(cmp) == "table" then
    for _, c in ipairs(ordered(sorted_keys(cmp), report.CRITERIA_ORDER)) do
      local v = cmp[c]
      if is_number(v) then rows[#rows + 1] = { criterion = c, p = v }
      elseif type(v) == "table" then
        local r = { criterion = c }
        for k, x in pairs(v) do r[k] = x end
        rows[#rows + 1] = r
      end
    end
  end
  if #rows == 0 then
    return string.format("<h3>%s</h3><pre>%s</pre>", esc(name), esc(json_text(cmp)))
  end
  local cols = {}
  for _, col in ipairs(COMPARISON_COLUMNS) do
    for _, r in ipairs(rows) do if r[col] ~= nil then cols[#cols + 1] = col; break end end
  end
  local head = { "<tr><th>criterion</th>" }
  for _, col in ipairs(cols) do head[#head + 1] = "<th>" .. esc(col) .. "</th>" end
  head[#head + 1] = "</tr>"
  local body = {}
  for _, r in ipairs(rows) do
    local cells = { "<tr><th>" .. esc(r.criterion or "?") .. "</th>" }
    for _, col in ipairs(cols) do
      local v = r[col]
      local shown
      if type(v) == "boolean" then shown = v and "yes" or "no"
      elseif is_number(v) and RATE_COLUMNS[col] then shown = pct(v)
      elseif is_number(v) and (col == "p" or col == "p_holm") then shown = v < 1e-4 and "&lt;0.0001" or string.format("%.4f", v)
      elseif type(v) == "number" then shown = esc(num(v))
      else shown = v == nil and "-" or esc(tostring(v)) end
      local cls = (r.significant == true and (col == "p_holm" or col == "significant")) and ' class="sig"' or ""
      cells[#cells + 1] = string.format("<td%s>%s</td>", cls, shown)
    end
    cells[#cells + 1] = "</tr>"
    body[#body + 1] = table.concat(cells)
  end
  return string.format('<h3>%s</h3>\n<table class="num">%s\n%s</table>', esc(name), table.concat(head),
    table.concat(body, "\n"))
end

local function eval_section(summary)
  if type(summary) ~= "table" then return section("evaluation", "Evaluation", missing("summary.json")) end
  local models_in = type(summary.models) == "table" and summary.models or nil
  if not models_in or next(models_in) == nil then
    return section("evaluation", "Evaluation", '<p class="missing">summary.json has no "models".</p>')
  end
  local models = ordered(sorted_keys(models_in), report.MODEL_ORDER)
  local table_of, names_set, names = {}, {}, {}
  for _, m in ipairs(models) do
    table_of[m] = {}
    for c, v in pairs(criteria_of(models_in[m])) do
      local r = c ~= "score" and as_rate(v) or nil
      if r then
        table_of[m][c] = r
        if not names_set[c] then names_set[c] = true; names[#names + 1] = c end
      end
    end
  end
  local criteria = ordered(names, report.CRITERIA_ORDER)
  local parts = {}
  local head = { "<tr><th>criterion</th>" }
  for _, m in ipairs(models) do head[#head + 1] = "<th>" .. esc(m) .. "</th>" end
  head[#head + 1] = "</tr>"
  local rows = {}
  for _, c in ipairs(criteria) do
    local best = -math.huge
    for _, m in ipairs(models) do
      local r = table_of[m][c]
      if r and is_number(r.rate) and r.rate > best then best = r.rate end
    end
    local cells = { "<tr><th>" .. esc(c) .. "</th>" }
    for _, m in ipairs(models) do
      local r = table_of[m][c]
      if not r then
        cells[#cells + 1] = '<td class="na">-</td>'
      elseif not is_number(r.rate) then
        cells[#cells + 1] = '<td class="na">not evaluated</td>'
      else
        local ci = (r.lo and r.hi) and string.format(" <small>[%s, %s]</small>", pct(r.lo), pct(r.hi)) or ""
        local n = r.n and string.format(" <small>n=%s</small>", esc(num(r.n))) or ""
        cells[#cells + 1] = string.format("<td%s>%s%s%s</td>", r.rate == best and ' class="best"' or "",
          pct(r.rate), ci, n)
      end
    end
    cells[#cells + 1] = "</tr>"
    rows[#rows + 1] = table.concat(cells)
  end
  local score_row = { "<tr class=\"score\"><th>weighted score</th>" }
  local any_score = false
  for _, m in ipairs(models) do
    local s = type(models_in[m]) == "table" and models_in[m].score
    if is_number(s) then any_score = true end
    score_row[#score_row + 1] = "<td>" .. (is_number(s) and pct(s) or "-") .. "</td>"
  end
  score_row[#score_row + 1] = "</tr>"
  if any_score then rows[#rows + 1] = table.concat(score_row) end
  parts[#parts + 1] = '<p class="meta">Rates with 95% intervals (as given in summary.json); the best rate per '
    .. "criterion is marked.</p>"
  parts[#parts + 1] = '<table class="num eval">' .. table.concat(head) .. "\n" .. table.concat(rows, "\n") .. "</table>"
  if #criteria > 0 then parts[#parts + 1] = interval_plot(models, criteria, table_of) end
  local cmp = summary.comparisons
  if type(cmp) == "table" and next(cmp) ~= nil then
    parts[#parts + 1] = "<h3>Comparisons</h3>"
    if #cmp > 0 then
      for i, c in ipairs(cmp) do parts[#parts + 1] = comparison_table("comparison " .. i, c) end
    else
      for _, k in ipairs(sorted_keys(cmp)) do parts[#parts + 1] = comparison_table(tostring(k), cmp[k]) end
    end
  else
    parts[#parts + 1] = '<p class="missing">No comparisons in summary.json.</p>'
  end
  if type(summary.preference_tests) == "table" and next(summary.preference_tests) ~= nil then
    parts[#parts + 1] = comparison_table("preference accuracy, paired (McNemar: b = first model only, c = second only)",
      summary.preference_tests)
  end
  -- Preference accuracy per negative type (preference_accuracy.by_type).
  local kinds, kind_set = {}, {}
  for _, m in ipairs(models) do
    local pa = type(models_in[m]) == "table" and models_in[m].preference_accuracy
    if type(pa) == "table" and type(pa.by_type) == "table" then
      for k in pairs(pa.by_type) do
        if not kind_set[k] then kind_set[k] = true; kinds[#kinds + 1] = k end
      end
    end
  end
  if #kinds > 0 then
    table.sort(kinds)
    local t = { '<h3>Preference accuracy by negative type</h3>\n<table class="num">', table.concat(head) }
    for _, k in ipairs(kinds) do
      local cells = { "<tr><th>" .. esc(k) .. "</th>" }
      for _, m in ipairs(models) do
        local pa = type(models_in[m]) == "table" and models_in[m].preference_accuracy
        local r = type(pa) == "table" and type(pa.by_type) == "table" and as_rate(pa.by_type[k]) or nil
        cells[#cells + 1] = r and is_number(r.rate)
          and string.format("<td>%s%s</td>", pct(r.rate), r.n and string.format(" <small>n=%s</small>", esc(num(r.n))) or "")
          or '<td class="na">-</td>'
      end
      t[#t + 1] = table.concat(cells) .. "</tr>"
    end
    t[#t + 1] = "</table>"
    parts[#parts + 1] = table.concat(t, "\n")
  end
  return section("evaluation", "Evaluation", table.concat(parts, "\n"))
end

local function describe(list)
  local n = #list
  if n == 0 then return nil end
  local s = {}
  local sum = 0
  for i, v in ipairs(list) do s[i] = v; sum = sum + v end
  table.sort(s)
  local median = n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
  return { n = n, mean = sum / n, median = median, min = s[1], max = s[n] }
end

local function bar_rows(counts, total, label)
  local names = {}
  for k in pairs(counts) do names[#names + 1] = k end
  table.sort(names, function(a, b)
    if counts[a] ~= counts[b] then return counts[a] > counts[b] end
    return a < b
  end)
  local max = 0
  for _, k in ipairs(names) do max = math.max(max, counts[k]) end
  local rows = { string.format("<tr><th>%s</th><th>count</th><th>share</th><th></th></tr>", esc(label)) }
  for _, k in ipairs(names) do
    rows[#rows + 1] = string.format('<tr><th>%s</th><td>%d</td><td>%s</td><td class="barcell"><span class="bar" '
      .. 'style="width:%.1f%%"></span></td></tr>', esc(k), counts[k], pct(counts[k] / total),
      max > 0 and 100 * counts[k] / max or 0)
  end
  return '<table class="num bars">' .. table.concat(rows, "\n") .. "</table>"
end

local function type_of(p)
  local t = p.type or p.negative_type
  return type(t) == "string" and t or nil
end

local function principles_of(p)
  local out = {}
  local function add(v)
    if type(v) == "string" then out[#out + 1] = v
    elseif type(v) == "table" and type(v.id) == "string" then out[#out + 1] = v.id end
  end
  if type(p.principle_ids) == "table" then for _, v in ipairs(p.principle_ids) do add(v) end end
  add(p.principle_id)
  if type(p.principle) == "table" and p.principle.id == nil then
    for _, v in ipairs(p.principle) do add(v) end
  else
    add(p.principle)
  end
  return out
end


local function pairs_section(pairs_list, opts)
  if type(pairs_list) ~= "table" then
    return section("pairs", "Preference pairs", missing("pairs.jsonl")),
      section("usage", "Principle and type usage", missing("pairs.jsonl"))
  end
  local n = #pairs_list
  if n == 0 then
    return section("pairs", "Preference pairs", "<p>pairs.jsonl has no records.</p>"),
      section("usage", "Principle and type usage", "<p>pairs.jsonl has no records.</p>")
  end
  local meta_check
  do
    local ok, critique = pcall(require, "cai.critique")
    if ok and type(critique.meta_commentary) == "function" then meta_check = critique.meta_commentary end
  end
  local identical, empty, meta, chosen_longer, malformed = 0, 0, 0, 0, 0
  local lc, lr, deltas = {}, {}, {}
  local types, principles, unlabelled_type, unlabelled_principle = {}, {}, 0, 0
  local good = {}
  for _, p in ipairs(pairs_list) do
    local chosen = type(p) == "table" and text_of(p.chosen)
    local rejected = type(p) == "table" and text_of(p.rejected)
    if not chosen or not rejected then
      malformed = malformed + 1
    else
      good[#good + 1] = p
      if trim(chosen) == trim(rejected) then identical = identical + 1 end
      if trim(chosen) == "" or trim(rejected) == "" then empty = empty + 1 end
      if meta_check and meta_check(chosen) then meta = meta + 1 end
      local wc, wr = words(chosen), words(rejected)
      lc[#lc + 1], lr[#lr + 1] = wc, wr
      if wc > wr then chosen_longer = chosen_longer + 1 end
      if is_number(p.chosen_score) and is_number(p.rejected_score) then
        deltas[#deltas + 1] = p.chosen_score - p.rejected_score
      end
      local t = type_of(p)
      if t then types[t] = (types[t] or 0) + 1 else unlabelled_type = unlabelled_type + 1 end
      local ps = principles_of(p)
      if #ps == 0 then unlabelled_principle = unlabelled_principle + 1 end
      for _, id in ipairs(ps) do principles[id] = (principles[id] or 0) + 1 end
    end
  end
  local m = #good
  local rows = {
    { "pairs", tostring(n) },
    { "identical chosen = rejected", string.format("%d (%s)", identical, pct(m > 0 and identical / m or 0)) },
    { "empty chosen or rejected", string.format("%d (%s)", empty, pct(m > 0 and empty / m or 0)) },
    { "chosen longer than rejected", string.format("%d (%s)", chosen_longer, pct(m > 0 and chosen_longer / m or 0)) },
  }
  if meta_check then
    rows[#rows + 1] = { "meta-commentary in chosen", string.format("%d (%s)", meta, pct(m > 0 and meta / m or 0)) }
  end
  if malformed > 0 then rows[#rows + 1] = { "records without chosen/rejected text", tostring(malformed) } end
  local dc = describe(deltas)
  if dc then
    rows[#rows + 1] = { "score delta (chosen - rejected)", string.format("mean %s, median %s, min %s, max %s (n=%d)",
      num(dc.mean), num(dc.median), num(dc.min), num(dc.max), dc.n) }
  end
  local body = { '<table class="kv">' }
  for _, r in ipairs(rows) do body[#body + 1] = string.format("<tr><th>%s</th><td>%s</td></tr>", esc(r[1]), esc(r[2])) end
  body[#body + 1] = "</table>"
  local sc, sr = describe(lc), describe(lr)
  if sc and sr then
    body[#body + 1] = '<table class="num"><tr><th>words</th><th>mean</th><th>median</th><th>min</th><th>max</th></tr>'
    for _, r in ipairs { { "chosen", sc }, { "rejected", sr } } do
      body[#body + 1] = string.format("<tr><th>%s</th><td>%.1f</td><td>%s</td><td>%d</td><td>%d</td></tr>", r[1],
        r[2].mean, num(r[2].median), r[2].min, r[2].max)
    end
    body[#body + 1] = "</table>"
    body[#body + 1] = length_histogram(lc, lr)
  end
  body[#body + 1] = "<h3>Negative-type mix</h3>"
  if next(types) then
    body[#body + 1] = bar_rows(types, m, "type")
    if unlabelled_type > 0 then
      body[#body + 1] = string.format('<p class="meta">%d pairs carry no type.</p>', unlabelled_type)
    end
  else
    body[#body + 1] = '<p class="missing">No pair carries a "type" or "negative_type".</p>'
  end
  local k = math.min(opts.max_pairs or 5, m)
  if k > 0 then
    body[#body + 1] = string.format("<h3>Example pairs (first %d of %d)</h3>", k, m)
    for i = 1, k do
      local p = good[i]
      local tags = {}
      if type_of(p) then tags[#tags + 1] = "type: " .. type_of(p) end
      local ps = principles_of(p)
      if #ps > 0 then tags[#tags + 1] = "principle: " .. table.concat(ps, ", ") end
      body[#body + 1] = string.format('<div class="card"><div class="prompt"><b>prompt</b> %s <pre>%s</pre></div>'
        .. '<div class="cols2"><div><h4>chosen</h4><pre>%s</pre></div><div><h4>rejected</h4><pre>%s</pre></div></div></div>',
        #tags > 0 and ('<span class="tag">' .. esc(table.concat(tags, " · ")) .. "</span>") or "",
        esc(text_of(p.prompt) or text_of(p.instruction) or ""), esc(text_of(p.chosen)), esc(text_of(p.rejected)))
    end
  end
  local usage = {}
  if next(principles) then
    local total = 0
    for _, c in pairs(principles) do total = total + c end
    usage[#usage + 1] = "<h3>Principles</h3>"
    usage[#usage + 1] = bar_rows(principles, total, "principle")
    if unlabelled_principle > 0 then
      usage[#usage + 1] = string.format('<p class="meta">%d pairs name no principle.</p>', unlabelled_principle)
    end
  else
    usage[#usage + 1] = '<p class="missing">No pair names a principle (principle, principle_id or principle_ids).</p>'
  end
  if next(types) then
    usage[#usage + 1] = "<h3>Types</h3>"
    usage[#usage + 1] = bar_rows(types, m, "type")
  end
  return section("pairs", "Preference pairs", table.concat(body, "\n")),
    section("usage", "Principle and type usage", table.concat(usage, "\n"))
end

local function samples_section(samples, opts)
  if type(samples) ~= "table" then return section("samples", "Samples", missing("samples.jsonl")) end
  if #samples == 0 then return section("samples", "Samples", "<p>samples.jsonl has no records.</p>") end
  local names_set, names = {}, {}
  for _, s in ipairs(samples) do
    if type(s) == "table" then
      for k, v in pairs(s) do
        if k ~= "instruction" and k ~= "prompt" and k ~= "reference" and k ~= "kind" and text_of(v)
          and not names_set[k] then
          names_set[k] = true; names[#names + 1] = k
        end
      end
    end
  end
  local models = ordered(names, report.MODEL_ORDER)
  local k = math.min(opts.max_samples or 20, #samples)
  local out = { string.format('<p class="meta">%d samples%s; models side by side: %s.</p>', #samples,
    k < #samples and string.format(", the first %d shown", k) or "", esc(table.concat(models, ", "))) }
  for i = 1, k do
    local s = samples[i]
    if type(s) == "table" then
      local cols = {}
      for _, m in ipairs(models) do
        local t = text_of(s[m])
        cols[#cols + 1] = string.format('<div><h4 style="color:%s">%s</h4><pre>%s</pre></div>',
          MODEL_COLOURS[m] or "#333", esc(m), t and esc(t) or '<span class="na">(none)</span>')
      end
      local ref = text_of(s.reference)
      out[#out + 1] = string.format('<div class="card"><div class="prompt"><b>%d.</b> %s<pre>%s</pre>%s</div>'
        .. '<div class="cols" style="grid-template-columns:repeat(%d,1fr)">%s</div></div>', i,
        type(s.kind) == "string" and ('<span class="tag">' .. esc(s.kind) .. "</span>") or "",
        esc(text_of(s.instruction) or text_of(s.prompt) or ""),
        ref and ('<div class="ref"><b>reference</b> ' .. esc(ref) .. "</div>") or "", math.max(1, #models),
        table.concat(cols))
    end
  end
  return section("samples", "Samples", table.concat(out, "\n"))
end

local CSS = [[
:root{--fg:#1b1f24;--muted:#5b6470;--line:#d8dde3;--bg:#fff;--soft:#f5f7f9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:19px;margin:34px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:20px 0 8px}h4{margin:0 0 4px;font-size:13px}
nav{font-size:13px;margin:6px 0 10px}nav a{margin-right:14px;color:#1f5fa8;text-decoration:none}
.meta{color:var(--muted);font-size:13px;margin:4px 0 10px}.missing{color:#8a5a00;background:#fff7e6;border:1px solid #f3d9a4;padding:8px 12px;border-radius:4px}
table{border-collapse:collapse;margin:8px 0 12px}th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
table.num td{text-align:right;font-variant-numeric:tabular-nums}table.kv th{color:var(--muted);font-weight:500}
table.kv code{font-size:12.5px;word-break:break-all}
td.best{font-weight:700;background:#eef6ee}td.na{color:#999}td.sig{font-weight:700;color:#0a6d2a}tr.score th,tr.score td{border-top:2px solid var(--line)}
small{color:var(--muted);font-weight:400}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:8px 14px}
svg.chart{background:var(--soft);border:1px solid var(--line);border-radius:4px;max-width:100%;height:auto}
.charts svg.chart{width:100%}
svg text{font-family:inherit;fill:var(--fg)}.ctitle{font-size:13px;font-weight:600}.tick{font-size:10.5px;fill:var(--muted)}
.alabel{font-size:11px;fill:var(--muted)}.legend{font-size:11px}.note{font-size:12px;fill:var(--muted)}
.grid{stroke:#e3e7eb;stroke-width:1}.axis{stroke:#7a838c;stroke-width:1}.tickmark{stroke:#7a838c}.sep{stroke:#eceff2}
.line{fill:none;stroke-width:1.8;stroke-linejoin:round}
.bars td.barcell{width:320px;text-align:left}.bar{display:inline-block;height:10px;background:#1f77b4;border-radius:2px;min-width:1px}
.card{border:1px solid var(--line);border-radius:6px;padding:10px 12px;margin:10px 0;background:#fff}
.prompt{margin-bottom:8px}.prompt pre{background:var(--soft)}.ref{font-size:12.5px;color:var(--muted);margin-top:4px}
.tag{display:inline-block;font-size:11.5px;background:#eef2f7;color:#33506e;border-radius:10px;padding:1px 8px;margin-left:4px}
.cols{display:grid;gap:10px}.cols2{display:grid;grid-template-columns:1fr 1fr;gap:10px}
pre{white-space:pre-wrap;word-wrap:break-word;margin:2px 0;padding:6px 8px;background:#fafbfc;border:1px solid #eceff2;border-radius:4px;font:12.5px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;max-height:320px;overflow:auto}
footer{margin-top:40px;color:var(--muted);font-size:12px}
@media print{pre{max-height:none}}
]]

local RENDER_SPEC = { max_samples = { type = "integer", min = 0 }, max_pairs = { type = "integer", min = 0 } }

---Renders the report from loaded data (pure; no file access).
---@param data table { run_dir=, run=, config=, metrics=, summary=, pairs=, samples=, title= }
---@param opts table|nil { max_samples = 20, max_pairs = 5 }
---@return string html
function report.render(data, opts)
  check.value("cai.report.render", "data", data, { type = "table", expect = "a table { config=, metrics=, ... }" })
  opts = check("cai.report.render", opts, RENDER_SPEC)
  for _, k in ipairs { "config", "metrics", "summary", "pairs", "samples", "run" } do
    if data[k] ~= nil and type(data[k]) ~= "table" then
      error("cai.report.render: data." .. k .. " must be a table or nil, got " .. type(data[k]), 2)
    end
  end
  local name = data.title or (type(data.run_dir) == "string" and data.run_dir:gsub("/+$", ""):match("([^/]+)$"))
    or "run"
  local present = {}
  for _, f in ipairs { { "config", "config.json" }, { "metrics", "metrics.jsonl" }, { "summary", "summary.json" },
    { "pairs", "pairs.jsonl" }, { "samples", "samples.jsonl" } } do
    present[#present + 1] = string.format('<span class="%s">%s %s</span>', data[f[1]] and "have" or "lack",
      data[f[1]] and "&#10003;" or "&#10007;", esc(f[2]))
  end
  local pairs_html, usage_html = pairs_section(data.pairs, opts)
  local html = {
    "<!DOCTYPE html>",
    '<html lang="en"><head><meta charset="utf-8">',
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
      .. "img-src data:\">",
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>" .. esc(name) .. " &#8212; cairun report</title>",
    "<style>" .. CSS .. "</style></head><body><main>",
    "<h1>Run report: " .. esc(name) .. "</h1>",
    '<p class="meta">' .. (type(data.run_dir) == "string" and ("<code>" .. esc(data.run_dir) .. "</code> &middot; ") or "")
      .. table.concat(present, " &nbsp;") .. "</p>",
    '<nav><a href="#run">Run</a><a href="#curves">Training curves</a><a href="#evaluation">Evaluation</a><a href="#pairs">Preference pairs</a>'
      .. '<a href="#usage">Usage</a><a href="#samples">Samples</a><a href="#config">Configuration</a></nav>',
    run_section(data.run, data.summary),
    curves_section(data.metrics),
    eval_section(data.summary),
    pairs_html,
    usage_html,
    samples_section(data.samples, opts),
    config_section(data.config),
    "<footer>Written by cairun " .. esc(data.version or "") .. ". One offline file: no scripts, no network.</footer>",
    "</main></body></html>",
    "",
  }
  return table.concat(html, "\n")
end

local exists = require("cai._core").exists

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then error("cai.report: cannot read " .. path .. ": " .. tostring(err), 0) end
  local s = f:read("*a")
  f:close()
  return s
end

---Reads the inputs of a run directory. Missing files are nil; a file that
---exists but does not parse is an error naming it.
---@param run_dir string
---@return table data for report.render
function report.load(run_dir)
  check.value("cai.report.load", "run_dir", run_dir, { type = "string", nonempty = true })
  local cai = require "cai"
  local dir = run_dir:gsub("/+$", "")
  if dir == "" then dir = "/" end
  local core = require "cai._core"
  if not core.exists(dir) then error("cai.report: run directory " .. dir .. " does not exist", 0) end
  if not core.exists(dir .. "/.") then error("cai.report: " .. dir .. " is a file, expected a run directory", 0) end
  local data = { run_dir = dir, version = cai.version }
  local function json_file(name)
    local path = dir .. "/" .. name
    if not exists(path) then return nil end
    local ok, v = pcall(cai.json.decode, read_all(path))
    if not ok then error("cai.report: " .. path .. ": " .. tostring(v), 0) end
    if type(v) ~= "table" then error("cai.report: " .. path .. ": expected a JSON object", 0) end
    return v
  end
  local function jsonl_file(name)
    local path = dir .. "/" .. name
    if not exists(path) then return nil end
    local ok, v = pcall(cai.jsonl.read, path)
    if not ok then error("cai.report: " .. tostring(v), 0) end
    return v
  end
  data.run = json_file("run.json")
  data.config = json_file("config.json")
  data.summary = json_file("summary.json")
  data.metrics = jsonl_file("metrics.jsonl")
  data.pairs = jsonl_file("pairs.jsonl")
  data.samples = jsonl_file("samples.jsonl")
  if not (data.config or data.summary or data.metrics or data.pairs or data.samples) then
    error("cai.report: " .. dir .. " is not a run directory (it has none of config.json, summary.json, "
      .. "metrics.jsonl, pairs.jsonl, samples.jsonl)", 0)
  end
  return data
end

---Writes run_dir/metrics.jsonl from the trainers' logs in run_dir/<stage>/
---metrics.jsonl, each line tagged with its stage (stages without a log are
---skipped), for the training curves of a run with several stages.
---@param run_dir string
---@param stages table list of stage names, in order (e.g. { "sft", "dpo" })
---@return integer lines written
function report.collect_metrics(run_dir, stages)
  check.value("cai.report.collect_metrics", "run_dir", run_dir, { type = "string", nonempty = true })
  check.value("cai.report.collect_metrics", "stages", stages, { type = "list", items = "string" })
  local cai = require "cai"
  local dir = run_dir:gsub("/+$", "")
  local lines = {}
  for _, stage in ipairs(stages) do
    local path = dir .. "/" .. stage .. "/metrics.jsonl"
    if exists(path) then
      for _, line in ipairs(cai.jsonl.read(path)) do
        line.stage = stage
        lines[#lines + 1] = line
      end
    end
  end
  cai.jsonl.write(dir .. "/metrics.jsonl", lines)
  return #lines
end

---Builds run_dir/report.html (written to a temporary name, then renamed).
---@param run_dir string
---@param opts table|nil { max_samples = 20, max_pairs = 5, output = path }
---@return string path of the written report
function report.build(run_dir, opts)
  check.value("cai.report.build", "run_dir", run_dir, { type = "string", nonempty = true })
  opts = check("cai.report.build", opts, { max_samples = RENDER_SPEC.max_samples, max_pairs = RENDER_SPEC.max_pairs,
    output = { type = "string", nonempty = true } })
  local html = report.render(report.load(run_dir), { max_samples = opts.max_samples, max_pairs = opts.max_pairs })
  local path = opts.output or (run_dir:gsub("/+$", "") .. "/report.html")
  local ok, err = pcall(require("cai._core").write_file, path, html)
  if not ok then error("cai.report.build: " .. tostring(err), 2) end
  return path
end

return report

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
  { title = "NLL loss (chosen)", keys = { "nll_loss" } },
  { title = "Gradient norm", keys = { "grad_norm" }, train_only = true },
}
-- Every chart also draws the evaluation curve of each of its keys ("eval_" .. key,
-- as the trainers log it at eval_steps), unless it is marked train_only.
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

---The keys of t, sorted by their string form (cai.serve uses it too).
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end
report._sorted_keys = sorted_keys  -- shared with cai.serve, not public API

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

---The text of a sample field: a string, or a { text = string, ... } record; nil otherwise.
local function text_of(v)
  if type(v) == "string" then return v end
  if type(v) == "table" and type(v.text) == "string" then return v.text end
  return nil
end
report._text_of = text_of  -- shared with cai.serve, not public API

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

-- A run's status from run.json ("finished" only when every stage finished;
-- "incomplete" when run.json says finished but a stage did not), and the
-- names of the unfinished stages.
local function run_status(record)
  if type(record) ~= "table" then return "unknown", {} end
  local status = type(record.status) == "string" and record.status or "unknown"
  local unfinished = {}
  for _, st in ipairs(type(record.stages) == "table" and record.stages or {}) do
    if type(st) == "table" and st.status ~= "finished" then unfinished[#unfinished + 1] = tostring(st.name) end
  end
  if status == "finished" and #unfinished > 0 then status = "incomplete" end
  return status, unfinished
end

-- run.json: the run's status, command line, cairun version and each stage's record.
local function run_section(record, summary)
  if type(record) ~= "table" then
    local finished = type(summary) == "table" and summary.status == "finished"
    return section("run", "Run", missing("run.json") .. (finished and "" or
      '<p class="missing">Nothing records that this run finished.</p>'))
  end
  local status, unfinished = run_status(record)
  local stages = type(record.stages) == "table" and record.stages or {}
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

-- The series of one chart (a report.CHARTS entry) for one stage's log records:
-- each key with its eval_ curve, thinned to report.MAX_POINTS.
local function chart_series(list, spec)
  local series = {}
  local keys, seen = {}, {}
  local function add_key(key)
    if not seen[key] then seen[key] = true; keys[#keys + 1] = key end
  end
  for _, key in ipairs(spec.keys) do
    add_key(key)
    if not spec.train_only and not key:find("^eval_") then add_key("eval_" .. key) end
  end
  for _, key in ipairs(keys) do
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
    if #points > 0 then series[#series + 1] = { name = key, points = points } end
  end
  -- "lr" and "learning_rate" are one quantity: keep the first present
  if spec.keys[1] == "lr" and #series > 1 then series = { series[1] } end
  return series
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
      local series = chart_series(list, spec)
      if #series > 0 then
        for _, sr in ipairs(series) do
          local eval = sr.name:find("^eval_")
          sr.colour = eval and (sr.name:find("rejected") and PALETTE[4] or PALETTE[3])
            or sr.name:find("rejected") and PALETTE[2] or nil
        end
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
-- Column headings ("%a" and "%b" are the two models' names) and the legend line below each table.
local COLUMN_LABELS = { n = "n", rate_a = "rate %a", rate_b = "rate %b", diff = "diff", lo = "95% CI low",
  hi = "95% CI high", b = "only %a", c = "only %b", p = "p", p_holm = "p (Holm)", significant = "significant",
  cohen_h = "Cohen's h" }
local COLUMN_LEGEND = {
  n = "n: items both models were judged on",
  rate_a = "rate: the share of items that pass",
  diff = "diff: second rate minus first",
  lo = "95% CI: bootstrap interval of diff",
  b = "only A / only B: items only that model passes (the discordant pairs)",
  p = "p: exact McNemar test on the discordant pairs",
  p_holm = "p (Holm): p corrected over this table's criteria (Holm-Bonferroni)",
  significant = "significant: p (Holm) < 0.05",
  cohen_h = "Cohen's h: effect size of the difference (0.2 small, 0.5 medium, 0.8 large)",
}

-- The models a comparison is between (cai.eval.compare's a and b), or nil.
local function compared_models(cmp)
  if type(cmp) == "table" and type(cmp.rows) == "table" and cmp.a ~= nil and cmp.b ~= nil then
    return tostring(cmp.a), tostring(cmp.b)
  end
end

-- criterion -> winner -> loser -> true, from the corrected paired tests in
-- summary.comparisons (rows of cai.eval.compare with significant = true).
local function significant_wins(comparisons)
  local wins = {}
  if type(comparisons) ~= "table" then return wins end
  for _, cmp in pairs(comparisons) do
    local a, b = compared_models(cmp)
    if a then
      for _, r in ipairs(cmp.rows) do
        if type(r) == "table" and r.significant == true and type(r.criterion) == "string"
            and is_number(r.rate_a) and is_number(r.rate_b) and r.rate_a ~= r.rate_b then
          local winner, loser = a, b
          if r.rate_b > r.rate_a then winner, loser = b, a end
          wins[r.criterion] = wins[r.criterion] or {}
          wins[r.criterion][winner] = wins[r.criterion][winner] or {}
          wins[r.criterion][winner][loser] = true
        end
      end
    end
  end
  return wins
end

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
  local a, b = compared_models(cmp)
  local head = { "<tr><th>criterion</th>" }
  local legend = {}
  for _, col in ipairs(cols) do
    local label = COLUMN_LABELS[col]:gsub("%%a", a or "A"):gsub("%%b", b or "B")
    head[#head + 1] = string.format('<th title="%s">%s</th>', esc(col), esc(label))
    if COLUMN_LEGEND[col] then legend[#legend + 1] = COLUMN_LEGEND[col] end
  end
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
  return string.format('<h3>%s</h3>\n<table class="num">%s\n%s</table>\n<p class="meta legend-line">%s.</p>',
    esc(name), table.concat(head), table.concat(body, "\n"), esc(table.concat(legend, "; ")))
end

local TEXT_METRICS = { { "bleu", "BLEU" }, { "chrf", "chrF" }, { "rouge_l", "ROUGE-L F1" } }

-- BLEU, chrF and ROUGE-L against the references (summary.models[m].text_metrics), or "".
local function text_metrics_table(models, models_in)
  local rows, any = {}, false
  for _, metric in ipairs(TEXT_METRICS) do
    local cells = { "<tr><th>" .. esc(metric[2]) .. "</th>" }
    for _, m in ipairs(models) do
      local tm = type(models_in[m]) == "table" and models_in[m].text_metrics
      local v = type(tm) == "table" and tm[metric[1]] or nil
      if type(v) == "table" and is_number(v.score) then
        any = true
        local ci = (is_number(v.lo) and is_number(v.hi))
          and string.format(" <small>[%s, %s]</small>", esc(num(v.lo)), esc(num(v.hi))) or ""
        cells[#cells + 1] = string.format("<td>%s%s%s</td>", esc(num(v.score)), ci,
          is_number(v.n) and string.format(" <small>n=%s</small>", esc(num(v.n))) or "")
      else
        cells[#cells + 1] = '<td class="na">-</td>'
      end
    end
    rows[#rows + 1] = table.concat(cells) .. "</tr>"
  end
  if not any then return "" end
  local head = { "<tr><th>metric</th>" }
  for _, m in ipairs(models) do head[#head + 1] = "<th>" .. esc(m) .. "</th>" end
  return '<h3>Text overlap with the references</h3>\n<table class="num">' .. table.concat(head) .. "</tr>\n"
    .. table.concat(rows, "\n") .. "</table>\n"
    .. '<p class="meta legend-line">BLEU and chrF (0-100, as sacrebleu computes them) and ROUGE-L F1 (0-1, as '
    .. "rouge_score), each over the held-out answers against the references, with a 95% bootstrap interval.</p>"
end

-- Each model's criterion rates (one table per entry of `models`, in order) and the criteria
-- any of them has, in report order. The "score" entry is not a rate.
local function rate_tables(models)
  local tables, seen, names = {}, {}, {}
  for i, model in ipairs(models) do
    tables[i] = {}
    for c, v in pairs(criteria_of(model)) do
      local r = c ~= "score" and as_rate(v) or nil
      if r then
        tables[i][c] = r
        if not seen[c] then seen[c] = true; names[#names + 1] = c end
      end
    end
  end
  return tables, ordered(names, report.CRITERIA_ORDER)
end

local function eval_section(summary)
  if type(summary) ~= "table" then return section("evaluation", "Evaluation", missing("summary.json")) end
  local models_in = type(summary.models) == "table" and summary.models or nil
  if not models_in or next(models_in) == nil then
    return section("evaluation", "Evaluation", '<p class="missing">summary.json has no "models".</p>')
  end
  local models = ordered(sorted_keys(models_in), report.MODEL_ORDER)
  local listed = {}
  for i, m in ipairs(models) do listed[i] = models_in[m] end
  local tables, criteria = rate_tables(listed)
  local table_of = {}
  for i, m in ipairs(models) do table_of[m] = tables[i] end
  local parts = {}
  local head = { "<tr><th>criterion</th>" }
  for _, m in ipairs(models) do head[#head + 1] = "<th>" .. esc(m) .. "</th>" end
  head[#head + 1] = "</tr>"
  local rows = {}
  local wins = significant_wins(summary.comparisons)
  local any_best = false
  for _, c in ipairs(criteria) do
    -- The best rate is marked only when corrected paired tests put it above every other model's.
    local best_model, best = nil, -math.huge
    for _, m in ipairs(models) do
      local r = table_of[m][c]
      if r and is_number(r.rate) and r.rate > best then best_model, best = m, r.rate end
    end
    for _, m in ipairs(models) do
      local r = table_of[m][c]
      if best_model and m ~= best_model and r and is_number(r.rate)
          and not (wins[c] and wins[c][best_model] and wins[c][best_model][m]) then
        best_model = nil
      end
    end
    if best_model then any_best = true end
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
        cells[#cells + 1] = string.format("<td%s>%s%s%s</td>", m == best_model and ' class="best"' or "",
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
  parts[#parts + 1] = '<p class="meta">Rates with 95% intervals (as given in summary.json). A rate is marked '
    .. "best only when a Holm-corrected paired test (the comparisons below) puts it significantly above every "
    .. "other model's" .. (any_best and "" or "; no difference here is significant, so none is marked") .. ".</p>"
  parts[#parts + 1] = '<table class="num eval">' .. table.concat(head) .. "\n" .. table.concat(rows, "\n") .. "</table>"
  if #criteria > 0 then parts[#parts + 1] = interval_plot(models, criteria, table_of) end
  parts[#parts + 1] = text_metrics_table(models, models_in)
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

-- The page's head (one offline file: a Content-Security-Policy that loads
-- nothing) up to its <h1>, shared by the run report and the comparison page.
local function page_head(title, heading)
  return table.concat({ "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
      .. "img-src data:\">",
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>" .. esc(title) .. " &#8212; cairun report</title>",
    "<style>" .. CSS .. "</style></head><body><main>",
    "<h1>" .. esc(heading) .. "</h1>" }, "\n")
end

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
    page_head(name, "Run report: " .. name),
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

-- ---------------------------------------------------------------------------
-- Several runs on one page

-- Short, distinct names for runs: the directory's last component, or more of
-- its path where two runs share it.
local function run_names(runs)
  local names, depth = {}, 1
  local function name_at(dir, d)
    local parts = {}
    for part in tostring(dir):gmatch("[^/]+") do parts[#parts + 1] = part end
    return table.concat(parts, "/", math.max(1, #parts - d + 1))
  end
  while depth <= 8 do
    local seen, clash = {}, false
    for i, r in ipairs(runs) do
      names[i] = name_at(r.run_dir or ("run " .. i), depth)
      if seen[names[i]] then clash = true end
      seen[names[i]] = true
    end
    if not clash then return names end
    depth = depth + 1
  end
  for i in ipairs(runs) do names[i] = names[i] .. " (" .. i .. ")" end
  return names
end

local function shown_value(v)
  if v == nil then return "-" end
  return type(v) == "string" and v or type(v) == "number" and num(v) or json_text(v)
end

local function comparison_runs_section(runs, names)
  local rows = { "<table><tr><th>run</th><th>status</th><th>wall time</th><th>command</th><th>cairun version</th></tr>" }
  for i, r in ipairs(runs) do
    local status, unfinished = run_status(r.run)
    if type(r.run) ~= "table" then status = "no run.json" end
    local wall, any = 0, false
    for _, st in ipairs(type(r.run) == "table" and type(r.run.stages) == "table" and r.run.stages or {}) do
      if type(st) == "table" and is_number(st.wall_seconds) then wall, any = wall + st.wall_seconds, true end
    end
    rows[#rows + 1] = string.format('<tr><td><b>%s</b><br><small><code>%s</code></small></td><td class="status-%s">%s%s</td>'
      .. "<td>%s</td><td><code>%s</code></td><td><code>%s</code></td></tr>", esc(names[i]), esc(r.run_dir or ""),
      esc(status), esc(status), #unfinished > 0 and ("<br><small>not finished: " .. esc(table.concat(unfinished, ", "))
      .. "</small>") or "", any and duration(wall) or "-", esc(type(r.run) == "table" and r.run.command or "-"),
      esc(type(r.run) == "table" and r.run.cairun_version or "-"))
  end
  rows[#rows + 1] = "</table>"
  return section("run", "Runs", table.concat(rows, "\n"))
end

-- The settings that differ between the runs, then (folded) those they share.
local function comparison_settings_section(runs, names)
  local keys, seen = {}, {}
  for _, r in ipairs(runs) do
    for k in pairs(type(r.config) == "table" and r.config or {}) do
      if not seen[k] then seen[k] = true; keys[#keys + 1] = k end
    end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local differ, same = {}, {}
  for _, k in ipairs(keys) do
    local first, all_same = nil, true
    for i, r in ipairs(runs) do
      local v = shown_value(type(r.config) == "table" and r.config[k] or nil)
      if i == 1 then first = v elseif v ~= first then all_same = false end
    end
    if all_same then same[#same + 1] = k else differ[#differ + 1] = k end
  end
  local head = { "<tr><th>setting</th>" }
  for _, n in ipairs(names) do head[#head + 1] = "<th>" .. esc(n) .. "</th>" end
  local function rows_of(list)
    local rows = {}
    for _, k in ipairs(list) do
      local cells = { "<tr><th>" .. esc(k) .. "</th>" }
      for _, r in ipairs(runs) do
        cells[#cells + 1] = "<td><code>" .. esc(shown_value(type(r.config) == "table" and r.config[k] or nil)) .. "</code></td>"
      end
      rows[#rows + 1] = table.concat(cells) .. "</tr>"
    end
    return '<table class="kv">' .. table.concat(head) .. "</tr>\n" .. table.concat(rows, "\n") .. "</table>"
  end
  local parts = {}
  if #keys == 0 then
    parts[1] = '<p class="missing">No run has a config.json.</p>'
  else
    parts[#parts + 1] = #differ > 0 and ("<h3>Different (" .. #differ .. ")</h3>\n" .. rows_of(differ))
      or "<p>Every setting is the same in all runs.</p>"
    if #same > 0 then
      parts[#parts + 1] = "<details><summary>The same in every run (" .. #same .. ")</summary>\n" .. rows_of(same)
        .. "</details>"
    end
  end
  return section("config", "Settings", table.concat(parts, "\n"))
end

-- One table per model name: criteria x runs, with intervals. Runs are separate
-- samples: no paired test is made across them, so nothing is marked best.
local function comparison_eval_section(runs, names)
  local model_names, model_seen = {}, {}
  for _, r in ipairs(runs) do
    local models = type(r.summary) == "table" and type(r.summary.models) == "table" and r.summary.models or {}
    for m in pairs(models) do
      if not model_seen[m] then model_seen[m] = true; model_names[#model_names + 1] = m end
    end
  end
  if #model_names == 0 then
    return section("evaluation", "Evaluation", '<p class="missing">No run has a summary.json with "models".</p>')
  end
  local parts = { '<p class="meta">Rates with 95% intervals per run. The runs are separate samples and no test '
    .. "across runs is made here, so no run is marked best; within a run, see its own report's paired "
    .. "comparisons.</p>" }
  for _, m in ipairs(ordered(model_names, report.MODEL_ORDER)) do
    local listed = {}
    for i, r in ipairs(runs) do
      listed[i] = type(r.summary) == "table" and type(r.summary.models) == "table" and r.summary.models[m] or false
    end
    local per_run, crits = rate_tables(listed)
    local head = { "<tr><th>criterion</th>" }
    for _, n in ipairs(names) do head[#head + 1] = "<th>" .. esc(n) .. "</th>" end
    local rows = {}
    for _, c in ipairs(crits) do
      local cells = { "<tr><th>" .. esc(c) .. "</th>" }
      for i in ipairs(runs) do
        local r = per_run[i][c]
        if r and is_number(r.rate) then
          local ci = (r.lo and r.hi) and string.format(" <small>[%s, %s]</small>", pct(r.lo), pct(r.hi)) or ""
          cells[#cells + 1] = string.format("<td>%s%s%s</td>", pct(r.rate), ci,
            r.n and string.format(" <small>n=%s</small>", esc(num(r.n))) or "")
        else
          cells[#cells + 1] = '<td class="na">-</td>'
        end
      end
      rows[#rows + 1] = table.concat(cells) .. "</tr>"
    end
    parts[#parts + 1] = string.format('<h3>Model <code>%s</code></h3>\n<table class="num">%s</tr>\n%s</table>',
      esc(m), table.concat(head), table.concat(rows, "\n"))
  end
  return section("evaluation", "Evaluation", table.concat(parts, "\n"))
end

-- Per stage and chart, every run's curves overlaid (one colour per run and key).
local function comparison_curves_section(runs, names)
  local stage_order, stage_seen, by_run = {}, {}, {}
  for i, r in ipairs(runs) do
    if type(r.metrics) == "table" and #r.metrics > 0 then
      local order, by = stages_of(r.metrics)
      by_run[i] = by
      for _, st in ipairs(order) do
        if not stage_seen[st] then stage_seen[st] = true; stage_order[#stage_order + 1] = st end
      end
    end
  end
  if #stage_order == 0 then
    return section("curves", "Training curves", '<p class="missing">No run has a metrics.jsonl.</p>')
  end
  local parts = {}
  for _, stage in ipairs(stage_order) do
    local charts = {}
    for _, spec in ipairs(report.CHARTS) do
      local series = {}
      for i in ipairs(runs) do
        local list = by_run[i] and by_run[i][stage]
        local run_series = list and chart_series(list, spec) or {}
        for _, sr in ipairs(run_series) do
          -- the run's name, and the key where the chart has several
          sr.name = names[i] .. (#run_series > 1 and (" " .. sr.name) or "")
          series[#series + 1] = sr
        end
      end
      for k, sr in ipairs(series) do sr.colour = PALETTE[(k - 1) % #PALETTE + 1] end
      if #series > 0 then
        charts[#charts + 1] = report.line_chart { title = spec.title .. " (" .. spec.keys[1] .. ")", series = series,
          x_label = "step", y_range = spec.y_range }
      end
    end
    parts[#parts + 1] = "<h3>Stage <code>" .. esc(stage) .. "</code></h3>"
    parts[#parts + 1] = #charts > 0 and ('<div class="charts">' .. table.concat(charts, "\n") .. "</div>")
      or '<p class="missing">No numeric metrics to plot for this stage.</p>'
  end
  return section("curves", "Training curves", table.concat(parts, "\n"))
end

local function two_or_more(list)
  if #list < 2 then return "must have two or more entries, got " .. #list end
end

---Renders one page comparing several runs (pure; no file access): each run's
---status, command and version; the settings that differ; each model's
---criteria per run; the training curves overlaid.
---@param runs table list of report.load results (at least two)
---@param opts table|nil { title = }
---@return string html
function report.render_comparison(runs, opts)
  check.value("cai.report.render_comparison", "runs", runs, { type = "list", items = "table",
    expect = "a list of two or more report.load results", check = two_or_more })
  opts = check("cai.report.render_comparison", opts, { title = { type = "string" } })
  local names = run_names(runs)
  local title = opts.title or ("Comparison: " .. table.concat(names, ", "))
  local html = {
    page_head(title, title),
    '<nav><a href="#run">Runs</a><a href="#config">Settings</a><a href="#evaluation">Evaluation</a>'
      .. '<a href="#curves">Training curves</a></nav>',
    comparison_runs_section(runs, names),
    comparison_settings_section(runs, names),
    comparison_eval_section(runs, names),
    comparison_curves_section(runs, names),
    "<footer>Written by cairun " .. esc(runs[1].version or "") .. ". One offline file: no scripts, no network.</footer>",
    "</main></body></html>",
    "",
  }
  return table.concat(html, "\n")
end

---Builds one comparison page of several run directories (written to a
---temporary name, then renamed).
---@param run_dirs table list of two or more run directories
---@param opts table|nil { output = path (default "comparison.html"), title = }
---@return string path of the written page
function report.build_comparison(run_dirs, opts)
  check.value("cai.report.build_comparison", "run_dirs", run_dirs, { type = "list", items = "string",
    expect = "a list of two or more run directories", check = two_or_more })
  opts = check("cai.report.build_comparison", opts, { output = { type = "string", nonempty = true },
    title = { type = "string" } })
  local runs = {}
  for i, dir in ipairs(run_dirs) do runs[i] = report.load(dir) end
  local html = report.render_comparison(runs, { title = opts.title })
  local path = opts.output or "comparison.html"
  local ok, err = pcall(require("cai._core").write_file, path, html)
  if not ok then error("cai.report.build_comparison: " .. tostring(err), 2) end
  return path
end

---`cairun report RUN_DIR` (rebuilds RUN_DIR/report.html) and `cairun report
---RUN_DIR RUN_DIR... [--out FILE]` (one comparison page of several runs).
---@param argv table the command's arguments
---@return string path of the written page
function report.main(argv)
  check.value("cai.report.main", "argv", argv, { type = "list", items = "string", expect = "a list of command-line arguments (strings)" })
  local usage = "usage: cairun report RUN_DIR, or cairun report RUN_DIR RUN_DIR... [--out FILE]"
  local dirs, out = {}, nil
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--out" or a == "-o" then
      out = argv[i + 1]
      if out == nil or out == "" then error("cairun report: --out needs a file name; " .. usage, 0) end
      i = i + 1
    elseif a:match("^%-%-out=") then
      out = a:sub(7)
      if out == "" then error("cairun report: --out needs a file name; " .. usage, 0) end
    elseif a == "--help" or a == "-h" then
      error(usage, 0)
    elseif a:sub(1, 1) == "-" then
      error("cairun report: unknown option " .. a .. "; " .. usage, 0)
    else
      dirs[#dirs + 1] = a
    end
    i = i + 1
  end
  if #dirs == 0 then error("cairun report: no run directory; " .. usage, 0) end
  if #dirs == 1 then return report.build(dirs[1], out and { output = out } or nil) end
  return report.build_comparison(dirs, out and { output = out } or nil)
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

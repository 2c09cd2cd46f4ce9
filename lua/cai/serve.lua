-- cai.serve: the data behind `cairun serve RUN_DIR...`, a local page that
-- compares runs side by side and collects blind A/B judgments.
--
--   local app = cai.serve.app({ "runs/a", "runs/b" }, { judgments = "runs/a/judgments.jsonl" })
--   local status, content_type, body = app:handle("GET", "/api/items", { { "criterion", "coherent" } }, "")
--   cai.serve.main(argv)   -- parses `RUN_DIR... [--port N] [--host ADDR] ...` and serves until Ctrl-C
--
-- The HTTP server is C++ (runtime/serve, cpp-httplib); it answers the page's
-- static files itself and hands every /api/ request to app:handle on the
-- thread that runs this Lua state, one at a time. The API (all JSON):
--   GET  /api/overview                   runs, models, criteria, principles, counts
--   GET  /api/items?criterion=&principle=&disagree=1&model=&result=pass|fail&offset=&limit=
--                                        prompts with every model's answer and each criterion's verdict
--   GET  /api/judge/next?annotator=ID    the annotator's next blind pair (A/B in a per-annotator random order)
--   POST /api/judge                      { annotator, pair, choice = "A"|"B"|"tie"|"both_bad", note }
--   GET  /api/judge/results              win rates with Wilson intervals, Bradley-Terry, Cohen's kappa
--   GET  /api/curves                     every run's logged metrics, per stage
--   GET  /api/settings                   every run's config.json, keys that differ first
-- Bad requests get 4xx with { error = message }.
local check = require "cai.check"
local eval = require "cai.eval"
local json = require "cai.json"
local report = require "cai.report"
local stats = require "cai.stats"

local serve = {}

serve.DEFAULT_PORT = 8800
serve.CHOICES = { A = true, B = true, tie = true, both_bad = true }

-- Sample fields that are not a model's answer.
local NOT_MODELS = { instruction = true, prompt = true, reference = true, kind = true, checks = true,
  principle = true, principle_id = true, principle_ids = true, id = true, type = true, negative_type = true }

local text_of, sorted_keys = report.text_of, report.sorted_keys

local function basename(dir)
  return (dir:gsub("/+$", ""):match("([^/]+)$") or dir)
end

-- A request error: app:handle answers it with this status and message.
local function reject(status, message)
  error({ status = status, message = message }, 0)
end

-- FNV-1a over a string, as a non-negative 32-bit number.
local function hash(s)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(bit.lshift(h, 24) + h * 403)  -- h * 16777619 (= 2^24 + 403) mod 2^32
  end
  return h % 4294967296
end

-- ---------------------------------------------------------------------------
-- Loading the runs

local function principle_of(s)
  local p = s.principle or s.principle_id
  if p == nil and type(s.principle_ids) == "table" then p = s.principle_ids[1] end
  if type(p) == "string" or type(p) == "number" then return tostring(p) end
  return nil
end

-- Items across runs: one per distinct (instruction, reference), each with
-- the answers of every model that has one. A model is "name" with one run,
-- "run/name" with several.
local function build_items(runs)
  local items, by_key, models, seen_model = {}, {}, {}, {}
  for _, run in ipairs(runs) do
    for k, s in ipairs(run.samples or {}) do
      if type(s) ~= "table" then
        error(string.format("cai.serve: %s/samples.jsonl: record %d is not an object", run.dir, k), 0)
      end
      local instruction = text_of(s.instruction) or text_of(s.prompt)
      if not instruction then
        error(string.format("cai.serve: %s/samples.jsonl: record %d has no instruction (or prompt) text", run.dir, k), 0)
      end
      local reference = text_of(s.reference)
      local key = instruction .. "\0" .. (reference or "")
      local item = by_key[key]
      if not item then
        item = { id = #items + 1, instruction = instruction, reference = reference, principle = principle_of(s),
          kind = type(s.kind) == "string" and s.kind or nil, answers = {} }
        items[#items + 1] = item
        by_key[key] = item
      end
      for _, name in ipairs(sorted_keys(s)) do
        local text = text_of(s[name])
        if not NOT_MODELS[name] and text then
          local model = #runs > 1 and (run.name .. "/" .. name) or name
          if not seen_model[model] then seen_model[model] = true; models[#models + 1] = model end
          local recorded = type(s.checks) == "table" and type(s.checks[name]) == "table" and s.checks[name] or nil
          local checks
          if recorded then
            checks = {}
            for _, c in ipairs(eval.CRITERIA) do
              if type(recorded[c]) == "boolean" then checks[c] = recorded[c] end
            end
          else
            checks = eval.check({ instruction = instruction, reference = reference }, s[name])
          end
          item.answers[model] = { text = text, checks = checks, recorded = recorded ~= nil }
        end
      end
    end
  end
  -- Known model names first (base, sft, dpo), in run order, then the rest.
  local rank = {}
  for i, m in ipairs(report.MODEL_ORDER) do rank[m] = i end
  local position = {}
  for i, m in ipairs(models) do position[m] = i end
  table.sort(models, function(a, b)
    local ra, rb = rank[a:match("([^/]+)$")] or 99, rank[b:match("([^/]+)$")] or 99
    local runa, runb = a:match("^(.*)/") or "", b:match("^(.*)/") or ""
    if runa ~= runb then return position[a] < position[b] end
    if ra ~= rb then return ra < rb end
    return a < b
  end)
  return items, models
end

---Loads the run directories and prepares the page's data.
---@param run_dirs table list of run directories (each with samples.jsonl, metrics.jsonl, config.json, ...)
---@param opts table|nil { judgments = path (default: the first run's judgments.jsonl), seed = 0 }
---@return table app with :handle(method, path, params, body)
function serve.app(run_dirs, opts)
  check.value("cai.serve.app", "run_dirs", run_dirs, { type = "list", items = "string", nonempty = true })
  opts = check("cai.serve.app", opts, { judgments = { type = "string", nonempty = true }, seed = "integer" })
  local runs, names = {}, {}
  for _, dir in ipairs(run_dirs) do
    local data = report.load(dir)
    local name = basename(data.run_dir)
    local base, n = name, 1
    while names[name] do n = n + 1; name = base .. "#" .. n end
    names[name] = true
    runs[#runs + 1] = { dir = data.run_dir, name = name, samples = data.samples, metrics = data.metrics,
      config = data.config, summary = data.summary }
  end
  local items, models = build_items(runs)
  local app = setmetatable({
    runs = runs, items = items, models = models, seed = opts.seed or 0,
    judgments = opts.judgments or (runs[1].dir .. "/judgments.jsonl"),
  }, { __index = serve.App })
  app:make_pairs()
  return app
end

serve.App = {}
local App = serve.App

-- ---------------------------------------------------------------------------
-- Compare

local function params_of(params, valid, where)
  local out = {}
  for _, kv in ipairs(params or {}) do
    local k, v = kv[1], kv[2]
    if not valid[k] then
      local names = sorted_keys(valid)
      reject(400, string.format("%s: unknown parameter '%s' %s", where, k,
        #names > 0 and check.unknown_hint(k, names, "parameters") or "(it takes none)"))
    end
    if out[k] ~= nil then reject(400, string.format("%s: parameter '%s' is given twice", where, k)) end
    out[k] = v
  end
  return out
end

local function nonneg_int(where, name, v, default)
  if v == nil then return default end
  local n = tonumber(v)
  if not v:match("^%d+$") or not n then
    reject(400, string.format("%s: parameter '%s' must be a non-negative integer, got '%s'", where, name, v))
  end
  return n
end

function App:criteria()
  return eval.CRITERIA
end

function App:principles()
  local set = {}
  for _, item in ipairs(self.items) do if item.principle then set[item.principle] = true end end
  return sorted_keys(set)
end

-- Criteria on which the answers of an item disagree (some pass, some fail).
local function disagreements(item, models)
  local out = {}
  for _, c in ipairs(eval.CRITERIA) do
    local pass, fail = false, false
    for _, m in ipairs(models) do
      local a = item.answers[m]
      if a then
        if a.checks[c] == true then pass = true elseif a.checks[c] == false then fail = true end
      end
    end
    if pass and fail then out[#out + 1] = c end
  end
  return out
end

function App:overview()
  local runs = {}
  for _, r in ipairs(self.runs) do
    runs[#runs + 1] = { name = r.name, dir = r.dir, samples = r.samples and #r.samples or 0,
      metrics = r.metrics and #r.metrics or 0, config = r.config ~= nil, summary = r.summary ~= nil }
  end
  local recorded, computed = 0, 0
  for _, item in ipairs(self.items) do
    for _, a in pairs(item.answers) do if a.recorded then recorded = recorded + 1 else computed = computed + 1 end end
  end
  return { runs = runs, models = self.models, criteria = self:criteria(), principles = self:principles(),
    items = #self.items, pairs = #self.pairs, judgments = self.judgments,
    checks = { recorded = recorded, computed = computed } }
end

local ITEM_PARAMS = { criterion = true, principle = true, disagree = true, model = true, result = true,
  offset = true, limit = true }

function App:items_page(params)
  local where = "GET /api/items"
  local p = params_of(params, ITEM_PARAMS, where)
  local criteria = {}
  for _, c in ipairs(eval.CRITERIA) do criteria[c] = true end
  if p.criterion and p.criterion ~= "" and not criteria[p.criterion] then
    reject(400, string.format("%s: unknown criterion '%s' %s", where, p.criterion,
      check.unknown_hint(p.criterion, eval.CRITERIA, "criteria")))
  end
  local models = {}
  for _, m in ipairs(self.models) do models[m] = true end
  if p.model and p.model ~= "" and not models[p.model] then
    reject(400, string.format("%s: unknown model '%s' (valid: %s)", where, p.model, table.concat(self.models, ", ")))
  end
  if p.result and p.result ~= "" and p.result ~= "pass" and p.result ~= "fail" then
    reject(400, string.format("%s: parameter 'result' must be pass or fail, got '%s'", where, p.result))
  end
  if (p.result or "") ~= "" and ((p.criterion or "") == "" or (p.model or "") == "") then
    reject(400, where .. ": parameter 'result' needs a criterion and a model")
  end
  if p.disagree and p.disagree ~= "" and p.disagree ~= "0" and p.disagree ~= "1" then
    reject(400, string.format("%s: parameter 'disagree' must be 0 or 1, got '%s'", where, p.disagree))
  end
  if p.principle and p.principle ~= "" then
    local ok = false
    for _, x in ipairs(self:principles()) do if x == p.principle then ok = true end end
    if not ok then
      local list = self:principles()
      reject(400, string.format("%s: unknown principle '%s' (%s)", where, p.principle,
        #list > 0 and ("valid: " .. table.concat(list, ", ")) or "these samples name no principle"))
    end
  end
  local offset = nonneg_int(where, "offset", p.offset, 0)
  local limit = nonneg_int(where, "limit", p.limit, 50)
  if limit < 1 or limit > 1000 then reject(400, where .. ": parameter 'limit' must be 1..1000, got " .. limit) end
  local criterion = (p.criterion or "") ~= "" and p.criterion or nil

  -- Rates per model and criterion over the items the principle filter keeps (the metric table).
  local rates = {}
  for _, m in ipairs(self.models) do
    rates[m] = {}
    for _, c in ipairs(eval.CRITERIA) do rates[m][c] = { pass = 0, n = 0 } end
  end
  local selected = {}
  for _, item in ipairs(self.items) do
    if not p.principle or p.principle == "" or item.principle == p.principle then
      for m, a in pairs(item.answers) do
        for _, c in ipairs(eval.CRITERIA) do
          local v = a.checks[c]
          if v ~= nil then
            local r = rates[m][c]
            r.n = r.n + 1
            if v then r.pass = r.pass + 1 end
          end
        end
      end
      local dis = disagreements(item, self.models)
      local keep = true
      if p.disagree == "1" then
        if criterion then
          keep = false
          for _, c in ipairs(dis) do if c == criterion then keep = true end end
        else
          keep = #dis > 0
        end
      end
      if keep and (p.result or "") ~= "" then
        local a = item.answers[p.model]
        keep = a ~= nil and a.checks[criterion] == (p.result == "pass")
      elseif keep and criterion and p.disagree ~= "1" then
        -- a criterion alone keeps the items where some answer fails it
        keep = false
        for _, a in pairs(item.answers) do if a.checks[criterion] == false then keep = true end end
      end
      if keep then selected[#selected + 1] = { item = item, disagree = dis } end
    end
  end
  for _, m in ipairs(self.models) do
    for _, c in ipairs(eval.CRITERIA) do
      local r = rates[m][c]
      if r.n > 0 then
        r.rate = r.pass / r.n
        r.lo, r.hi = stats.wilson(r.pass, r.n)
      end
    end
  end
  local out = {}
  for k = offset + 1, math.min(#selected, offset + limit) do
    local s = selected[k]
    local answers = {}
    for _, m in ipairs(self.models) do
      local a = s.item.answers[m]
      if a then answers[#answers + 1] = { model = m, text = a.text, checks = json.object(a.checks), recorded = a.recorded } end
    end
    out[#out + 1] = { id = s.item.id, instruction = s.item.instruction, reference = s.item.reference,
      principle = s.item.principle, kind = s.item.kind, answers = answers, disagree = s.disagree }
  end
  return { total = #selected, offset = offset, limit = limit, items = out, rates = rates, models = self.models,
    criteria = eval.CRITERIA }
end

-- ---------------------------------------------------------------------------
-- Judge (blind A/B)

-- Every pair of different answers to one prompt, in one order that all
-- annotators share (so their judgments overlap for Cohen's kappa), shuffled
-- by the seed. A pair is known to the page only by its number.
function App:make_pairs()
  local pairs_list = {}
  for _, item in ipairs(self.items) do
    for i = 1, #self.models do
      for j = i + 1, #self.models do
        local a, b = item.answers[self.models[i]], item.answers[self.models[j]]
        if a and b and a.text ~= b.text then
          -- the key names the pair in judgments.jsonl, so a restarted server resumes it
          local key = item.instruction .. "\t" .. (item.reference or "") .. "\t" .. self.models[i] .. "\t" .. self.models[j]
          pairs_list[#pairs_list + 1] = { item = item, models = { self.models[i], self.models[j] }, key = key,
            order = hash(self.seed .. "\0" .. key) }
        end
      end
    end
  end
  table.sort(pairs_list, function(x, y)
    if x.order ~= y.order then return x.order < y.order end
    return x.key < y.key
  end)
  self.pairs, self.pair_by_key = pairs_list, {}
  for k, pr in ipairs(pairs_list) do pr.id = k; self.pair_by_key[pr.key] = pr end
end

-- Which model the annotator sees as A for a pair (fixed, so a reload shows the same order).
function App:shown_order(pair, annotator)
  if hash(self.seed .. "\0" .. annotator .. "\0" .. pair.key) % 2 == 0 then
    return { pair.models[1], pair.models[2] }
  end
  return { pair.models[2], pair.models[1] }
end

local function check_annotator(where, v)
  if v == nil or v == "" then reject(400, where .. ": an annotator id is required (annotator=NAME)") end
  if type(v) ~= "string" or #v > 64 or not v:match("^[%w_%.%-@]+$") then
    reject(400, string.format("%s: annotator id must be 1-64 letters, digits or _ . - @, got '%s'", where,
      tostring(v):sub(1, 80)))
  end
  return v
end

-- The judgments log, read fresh (other processes may append), the last
-- judgment of an annotator on a pair winning. Lines that do not parse are
-- counted, not fatal (a human may have edited the file).
function App:read_judgments()
  local text = require("cai._serve").read_locked(self.judgments)
  local latest, order, bad = {}, {}, 0
  local n = 0
  for line in text:gmatch("[^\n]+") do
    n = n + 1
    local ok, j = pcall(json.decode, line)
    if ok and type(j) == "table" and type(j.annotator) == "string" and type(j.key) == "string"
      and type(j.winner) == "string" and type(j.models) == "table" then
      local id = j.annotator .. "\0" .. j.key
      if not latest[id] then order[#order + 1] = id end
      latest[id] = j
    else
      bad = bad + 1
    end
  end
  local list = {}
  for _, id in ipairs(order) do list[#list + 1] = latest[id] end
  return list, { lines = n, unreadable = bad }
end

local function progress(self, annotator, judged)
  local done = 0
  for _, pr in ipairs(self.pairs) do if judged[pr.key] then done = done + 1 end end
  return { judged = done, total = #self.pairs }
end

function App:judge_next(params)
  local where = "GET /api/judge/next"
  local p = params_of(params, { annotator = true }, where)
  local annotator = check_annotator(where, p.annotator)
  local judgments = self:read_judgments()
  local judged = {}
  for _, j in ipairs(judgments) do if j.annotator == annotator then judged[j.key] = true end end
  local prog = progress(self, annotator, judged)
  for _, pr in ipairs(self.pairs) do
    if not judged[pr.key] then
      local shown = self:shown_order(pr, annotator)
      return { done = false, pair = pr.id, instruction = pr.item.instruction, reference = pr.item.reference,
        a = pr.item.answers[shown[1]].text, b = pr.item.answers[shown[2]].text, progress = prog }
    end
  end
  return { done = true, progress = prog }
end

local JUDGE_FIELDS = { annotator = true, pair = true, choice = true, note = true }

function App:judge_post(body)
  local where = "POST /api/judge"
  local ok, j = pcall(json.decode, body)
  if not ok or type(j) ~= "table" then
    reject(400, where .. ": the body must be a JSON object { annotator, pair, choice, note }")
  end
  for k in pairs(j) do
    if not JUDGE_FIELDS[k] then
      reject(400, string.format("%s: unknown field '%s' (valid: annotator, choice, note, pair)", where, tostring(k)))
    end
  end
  local annotator = check_annotator(where, j.annotator)
  if type(j.pair) ~= "number" or j.pair ~= math.floor(j.pair) then
    reject(400, string.format("%s: field 'pair' must be a pair number from /api/judge/next, got %s", where,
      type(j.pair) == "string" and ("'" .. j.pair .. "'") or tostring(j.pair)))
  end
  local pr = self.pairs[j.pair]
  if not pr then reject(404, string.format("%s: no pair %d (this comparison has %d)", where, j.pair, #self.pairs)) end
  if type(j.choice) ~= "string" or not serve.CHOICES[j.choice] then
    reject(400, string.format("%s: field 'choice' must be A, B, tie or both_bad, got %s", where, tostring(j.choice)))
  end
  if j.note ~= nil and type(j.note) ~= "string" then reject(400, where .. ": field 'note' must be a string") end
  if j.note and #j.note > 4000 then reject(400, where .. ": field 'note' must be at most 4000 bytes") end
  local shown = self:shown_order(pr, annotator)
  local winner = j.choice == "A" and shown[1] or j.choice == "B" and shown[2] or j.choice
  local record = {
    annotator = annotator, time = os.date("!%Y-%m-%dT%H:%M:%SZ"), item = pr.item.id, pair = pr.id,
    instruction = pr.item.instruction, models = pr.models, shown = shown, choice = j.choice, winner = winner,
    note = (j.note and j.note ~= "") and j.note or nil, key = pr.key, seed = self.seed,
  }
  local line = json.encode(record)
  require("cai._serve").append_line(self.judgments, line)
  return { ok = true, winner_hidden = true, next = self:judge_next({ { "annotator", annotator } }) }
end

-- Live results from the judgments log.
function App:judge_results()
  local judgments, file = self:read_judgments()
  local model_set = {}
  for _, m in ipairs(self.models) do model_set[m] = true end
  local pair_stats, by_pair = {}, {}
  local games = {}
  local annotators, by_annotator = {}, {}
  local counted = 0
  for _, j in ipairs(judgments) do
    local a, b = j.models[1], j.models[2]
    if model_set[a] and model_set[b] then
      counted = counted + 1
      local id = a .. "\0" .. b
      local s = by_pair[id]
      if not s then
        s = { a = a, b = b, wins_a = 0, wins_b = 0, ties = 0, both_bad = 0, n = 0 }
        by_pair[id] = s
        pair_stats[#pair_stats + 1] = s
      end
      s.n = s.n + 1
      if j.winner == a then s.wins_a = s.wins_a + 1; games[#games + 1] = { a = a, b = b, winner = a }
      elseif j.winner == b then s.wins_b = s.wins_b + 1; games[#games + 1] = { a = a, b = b, winner = b }
      elseif j.winner == "tie" then s.ties = s.ties + 1; games[#games + 1] = { a = a, b = b, winner = "tie" }
      else s.both_bad = s.both_bad + 1 end
      if not by_annotator[j.annotator] then
        by_annotator[j.annotator] = {}
        annotators[#annotators + 1] = j.annotator
      end
      -- the verdict in the models' own terms, comparable across annotators
      by_annotator[j.annotator][j.key] = j.winner == a and "first" or j.winner == b and "second" or j.winner
    end
  end
  for _, s in ipairs(pair_stats) do
    local decisive = s.wins_a + s.wins_b
    s.decisive = decisive
    if decisive > 0 then
      s.win_rate = s.wins_a / decisive
      s.lo, s.hi = stats.wilson(s.wins_a, decisive)
    end
  end
  local result = { judgments = counted, lines = file.lines, unreadable = file.unreadable, pairs = pair_stats,
    annotators = {}, agreement = {}, models = self.models, file = self.judgments }
  table.sort(annotators)
  for _, name in ipairs(annotators) do
    local n = 0
    for _ in pairs(by_annotator[name]) do n = n + 1 end
    result.annotators[#result.annotators + 1] = { annotator = name, judged = n, total = #self.pairs }
  end
  for i = 1, #annotators do
    for k = i + 1, #annotators do
      local x, y = by_annotator[annotators[i]], by_annotator[annotators[k]]
      local la, lb = {}, {}
      for _, key in ipairs(sorted_keys(x)) do
        if y[key] then la[#la + 1], lb[#lb + 1] = x[key], y[key] end
      end
      if #la > 0 then
        local kappa = stats.cohen_kappa(la, lb)
        result.agreement[#result.agreement + 1] = { a = annotators[i], b = annotators[k], n = kappa.n,
          kappa = kappa.kappa, observed = kappa.observed }
      end
    end
  end
  local judged_models = {}
  for _, s in ipairs(pair_stats) do judged_models[s.a] = true; judged_models[s.b] = true end
  local names = {}
  for _, m in ipairs(self.models) do if judged_models[m] then names[#names + 1] = m end end
  if #names > 2 then
    local bt = stats.bradley_terry(names, games)
    result.bradley_terry = { strengths = bt.strengths, games = bt.games, prior = 0.5,
      method = "Bradley-Terry (MM), ties half a win, 0.5 virtual ties per pair of models" }
  end
  return result
end

-- ---------------------------------------------------------------------------
-- Runs: curves and settings

local SKIP_CURVE_KEYS = { step = true, stage = true, epoch = true }

function App:curves()
  local series = {}
  for _, run in ipairs(self.runs) do
    local by = {}
    for _, line in ipairs(run.metrics or {}) do
      if type(line) == "table" and type(line.step) == "number" then
        local stage = type(line.stage) == "string" and line.stage or ""
        for k, v in pairs(line) do
          if not SKIP_CURVE_KEYS[k] and type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge then
            local id = stage .. "\0" .. k
            local s = by[id]
            if not s then
              s = { run = run.name, stage = stage, key = k, points = {} }
              by[id] = s
            end
            s.points[#s.points + 1] = { line.step, v }
          end
        end
      end
    end
    for _, id in ipairs(sorted_keys(by)) do
      table.sort(by[id].points, function(p, q) return p[1] < q[1] end)
      series[#series + 1] = by[id]
    end
  end
  return { series = series, runs = #self.runs }
end

function App:settings()
  local keys = {}
  for _, run in ipairs(self.runs) do
    if type(run.config) == "table" then for k in pairs(run.config) do keys[k] = true end end
  end
  local rows = {}
  for _, k in ipairs(sorted_keys(keys)) do
    local values, first, differs = {}, nil, false
    for i, run in ipairs(self.runs) do
      local v
      if type(run.config) == "table" then v = run.config[k] end
      if v == nil then v = json.null elseif type(v) == "table" then v = json.encode(v) end
      values[i] = v
      local shown = v == json.null and "\0null" or (type(v) .. ":" .. tostring(v))
      if i == 1 then first = shown elseif shown ~= first then differs = true end
    end
    rows[#rows + 1] = { key = k, values = values, differs = differs }
  end
  table.sort(rows, function(a, b)
    if a.differs ~= b.differs then return a.differs end
    return a.key < b.key
  end)
  local names = {}
  for i, run in ipairs(self.runs) do names[i] = run.name end
  return { runs = names, settings = rows }
end

-- ---------------------------------------------------------------------------
-- Routing

local ROUTES = {
  ["/api/overview"] = { GET = function(self, params) params_of(params, {}, "GET /api/overview"); return self:overview() end },
  ["/api/items"] = { GET = function(self, params) return self:items_page(params) end },
  ["/api/judge/next"] = { GET = function(self, params) return self:judge_next(params) end },
  ["/api/judge"] = { POST = function(self, params, body)
    params_of(params, {}, "POST /api/judge")
    return self:judge_post(body)
  end },
  ["/api/judge/results"] = { GET = function(self, params)
    params_of(params, {}, "GET /api/judge/results")
    return self:judge_results()
  end },
  ["/api/curves"] = { GET = function(self, params) params_of(params, {}, "GET /api/curves"); return self:curves() end },
  ["/api/settings"] = { GET = function(self, params)
    params_of(params, {}, "GET /api/settings")
    return self:settings()
  end },
}

---Answers one API request.
---@param method string "GET" | "POST"
---@param path string "/api/..."
---@param params table list of { key, value } (the query string)
---@param body string
---@return integer, string, string status, content type, body
function App:handle(method, path, params, body)
  local route = ROUTES[path]
  local ok, result = pcall(function()
    if not route then
      reject(404, string.format("no API %s (valid: %s)", tostring(path), table.concat(sorted_keys(ROUTES), ", ")))
    end
    local fn = route[method]
    if not fn then
      reject(405, string.format("%s takes %s, not %s", path, table.concat(sorted_keys(route), ", "), tostring(method)))
    end
    return fn(self, params or {}, body or "")
  end)
  if ok then return 200, "application/json", json.encode(result) end
  if type(result) == "table" and result.status then
    return result.status, "application/json", json.encode({ error = result.message })
  end
  error(result, 0)
end

-- ---------------------------------------------------------------------------
-- Command line

serve.USAGE = "usage: cairun serve RUN_DIR... [--port N] [--host ADDR] [--judgments FILE] [--seed N]"

---Parses `cairun serve`'s arguments.
---@return table { dirs = {...}, port=, host=, judgments=, seed= }
function serve.parse(argv)
  check.value("cai.serve.parse", "argv", argv, { type = "list", items = "string", expect = "a list of command-line arguments (strings)" })
  local spec = { dirs = {}, port = serve.DEFAULT_PORT, host = "127.0.0.1", seed = 0 }
  local i = 1
  local function value(flag)
    local v = argv[i + 1]
    if v == nil or v == "" then error("cairun serve: " .. flag .. " needs a value\n" .. serve.USAGE, 0) end
    i = i + 1
    return v
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--port" then
      local v = value(a)
      local n = tonumber(v)
      if not v:match("^%d+$") or not n or n > 65535 then
        error("cairun serve: --port must be a port number 0..65535 (0: any free port), got '" .. v .. "'", 0)
      end
      spec.port = n
    elseif a == "--host" then
      spec.host = value(a)
    elseif a == "--judgments" then
      spec.judgments = value(a)
    elseif a == "--seed" then
      local v = value(a)
      if not v:match("^%d+$") then error("cairun serve: --seed must be a non-negative integer, got '" .. v .. "'", 0) end
      spec.seed = tonumber(v)
    elseif a == "-h" or a == "--help" then
      spec.help = true
    elseif a:sub(1, 1) == "-" then
      error("cairun serve: unknown option '" .. a .. "'\n" .. serve.USAGE, 0)
    else
      spec.dirs[#spec.dirs + 1] = a
    end
    i = i + 1
  end
  if not spec.help and #spec.dirs == 0 then error("cairun serve: name at least one run directory\n" .. serve.USAGE, 0) end
  return spec
end

---`cairun serve RUN_DIR...`: loads the runs and serves the page until Ctrl-C.
function serve.main(argv)
  check.value("cai.serve.main", "argv", argv, { type = "list", items = "string", expect = "a list of command-line arguments (strings)" })
  local spec = serve.parse(argv)
  if spec.help then
    io.write(serve.USAGE, "\n\nA local page with three views: Compare (answers side by side, each criterion's "
      .. "verdict, filters),\nJudge (blind A/B judgments, appended to judgments.jsonl) and Runs (overlaid curves, "
      .. "settings diffed).\nLoopback only unless --host says otherwise. See docs/serve.md.\n")
    return
  end
  if spec.judgments then
    local dir = spec.judgments:match("^(.*)/[^/]*$")
    if dir and dir ~= "" and not require("cai._core").exists(dir .. "/.") then
      error("cairun serve: --judgments " .. spec.judgments .. ": the folder " .. dir .. " does not exist", 0)
    end
  end
  local app = serve.app(spec.dirs, { judgments = spec.judgments, seed = spec.seed })
  require("cai._serve").listen(spec.host, spec.port, function(method, path, params, body)
    return app:handle(method, path, params, body)
  end, function(port)
    local host = spec.host:find(":", 1, true) and ("[" .. spec.host .. "]") or spec.host
    io.write(string.format("cairun serve: %d runs, %d prompts, %d models, %d pairs to judge; judgments in %s\n",
      #app.runs, #app.items, #app.models, #app.pairs, app.judgments))
    io.write(string.format("cairun serve: listening on http://%s:%d/ (Ctrl-C stops)\n", host, port))
    io.stdout:flush()
  end)
end

return serve

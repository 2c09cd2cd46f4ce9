-- cai.serve: the data behind `cairun serve RUN_DIR...`, a local page that
-- compares runs side by side and collects blind A/B judgments.
--
--   local app = cai.serve.app({ "runs/a", "runs/b" }, { judgments = "runs/a/judgments.jsonl" })
--   local status, content_type, body = app:handle("GET", "/api/items", { { "criterion", "coherent" } }, "")
--   local app = cai.serve.app({}, { prompts = "prompts.jsonl", models = { { name = "sft", path = "runs/q/sft/merged" } } })
--   cai.serve.main(argv)   -- parses `RUN_DIR... [--prompts FILE --model NAME=PATH ...] [--port N] ...` and serves until Ctrl-C
--
-- With a prompts file (any JSONL cai.data reads as prompts: prompt, instruction
-- or messages, optionally reference, principle, facts ...) every named model
-- answers every prompt at start-up as the recipes make evaluation samples
-- (cai.format, greedy, max_new_tokens, seed); the answers go to
-- <answers_dir>/answers-<name>.jsonl with what made them, and a restart with
-- the same inputs reads them back instead of generating again.
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
local data = require "cai.data"
local eval = require "cai.eval"
local json = require "cai.json"
local log = require "cai.log"
local report = require "cai.report"
local stats = require "cai.stats"

local serve = {}

serve.DEFAULT_PORT = 8800
serve.DEFAULT_MAX_NEW_TOKENS = 64
serve.CHOICES = { A = true, B = true, tie = true, both_bad = true }

-- Sample fields that are not a model's answer.
local NOT_MODELS = { instruction = true, prompt = true, reference = true, kind = true, checks = true,
  principle = true, principle_id = true, principle_ids = true, id = true, type = true, negative_type = true,
  messages = true, completion = true, response = true, facts = true, should_refuse = true, min_words = true,
  max_words = true }

-- Sample fields cai.eval.check reads besides the instruction and reference.
local CHECK_FIELDS = { "facts", "should_refuse", "min_words", "max_words" }

local text_of, sorted_keys = report._text_of, report._sorted_keys

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
  -- models of several runs are named run/model; generated answers keep their --model names
  local n_runs = 0
  for _, run in ipairs(runs) do if not run.generated then n_runs = n_runs + 1 end end
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
          kind = type(s.kind) == "string" and s.kind or nil, answers = {},
          checked = { instruction = instruction, reference = reference } }
        for _, f in ipairs(CHECK_FIELDS) do item.checked[f] = s[f] end
        items[#items + 1] = item
        by_key[key] = item
      end
      -- a prompts file's other fields are not answers: only its --model names are
      for _, name in ipairs(run.model_names or sorted_keys(s)) do
        local text = text_of(s[name])
        if not NOT_MODELS[name] and text then
          local model = (n_runs > 1 and not run.generated) and (run.name .. "/" .. name) or name
          if not seen_model[model] then
            seen_model[model] = run
            models[#models + 1] = model
          elseif seen_model[model] ~= run then
            error(string.format("cai.serve: the model name '%s' is both an answer of %s and of %s; name the "
              .. "--model something else", model, seen_model[model].dir, run.dir), 0)
          end
          local recorded = type(s.checks) == "table" and type(s.checks[name]) == "table" and s.checks[name] or nil
          local checks
          if recorded then
            checks = {}
            for _, c in ipairs(eval.CRITERIA) do
              if type(recorded[c]) == "boolean" then checks[c] = recorded[c] end
            end
          else
            -- a generated answer is { text =, finish = "stop" when it ended as its format ends one }
            checks = eval.check(item.checked, s[name], { stop_means_end = true })
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

-- ---------------------------------------------------------------------------
-- Answers generated on the fly: a prompts file and models

-- A model name: it names a file (answers-<name>.jsonl) and a column.
local function check_model_name(where, name)
  if type(name) ~= "string" or not name:match("^[%w][%w_%.%-]*$") or #name > 64 then
    error(string.format("%s: the model name '%s' must be 1-64 letters, digits or _ . - (starting with a letter or digit)",
      where, tostring(name)), 0)
  end
  if NOT_MODELS[name] then
    error(string.format("%s: '%s' cannot name a model: it is a field of the prompt records", where, name), 0)
  end
end

-- Each model's name is valid and its own.
local function check_models(flag, models)
  local seen = {}
  for _, e in ipairs(models) do
    check_model_name("cairun serve: " .. flag, e.name)
    if seen[e.name] then
      error(string.format("cairun serve: %s %s is named twice (%s and %s); give each model its own name", flag,
        e.name, seen[e.name], e.path), 0)
    end
    seen[e.name] = e.path
  end
end

-- The prompt text of a message list: one user turn is its content, a longer
-- conversation its turns as "role: content" lines.
local function conversation_text(messages)
  local function content(m)  -- a string, a list of { type = "text", text = } blocks, or none (a tool-call turn)
    if type(m.content) == "string" then return m.content end
    local parts = {}
    if type(m.content) == "table" then
      for _, b in ipairs(m.content) do
        if type(b) == "table" and type(b.text) == "string" then parts[#parts + 1] = b.text end
      end
    end
    return table.concat(parts, "\n")
  end
  if #messages == 1 and messages[1].role == "user" then return content(messages[1]) end
  local lines = {}
  for i, m in ipairs(messages) do lines[i] = tostring(m.role) .. ": " .. content(m) end
  return table.concat(lines, "\n")
end

---Reads a prompts file as cai.data reads datasets (prompt, instruction or
---messages records, standard or conversational; a completion or a trailing
---assistant turn is left out), keeping each record's other fields.
---@param path string
---@return table list of { prompt = string|messages, instruction = string (shown and checked), record = raw, where = "file:line" }
function serve.read_prompts(path)
  check.value("cai.serve.read_prompts", "path", path, { type = "string", nonempty = true })
  local ok, ds = pcall(data.load, path, { types = { "prompt_only", "prompt_completion", "language_modeling" },
    raw = true })
  if not ok then error("cai.serve: --prompts " .. tostring(ds), 0) end
  local out = {}
  for i, r in ipairs(ds.records) do
    local prompt = r.prompt
    if prompt == nil and r.messages then
      prompt = {}
      for k, m in ipairs(r.messages) do prompt[k] = m end
      while #prompt > 0 and prompt[#prompt].role == "assistant" do prompt[#prompt] = nil end
      if #prompt == 0 then
        error(string.format("cai.serve: --prompts %s: field \"messages\" holds no turn before the assistant's "
          .. "answer, so there is nothing to prompt with", ds.where[i]), 0)
      end
    elseif prompt == nil then
      error(string.format("cai.serve: --prompts %s: field \"text\" is not a prompt; give each record \"prompt\", "
        .. "\"instruction\" or \"messages\"", ds.where[i]), 0)
    end
    local raw = ds.raw[i]
    if raw.reference ~= nil and type(raw.reference) ~= "string" then
      error(string.format("cai.serve: --prompts %s: field \"reference\" must be a string, got %s", ds.where[i],
        raw.reference == json.null and "null" or type(raw.reference)), 0)
    end
    local text = type(prompt) == "string" and prompt or conversation_text(prompt)
    if not text:find("%S") then
      error(string.format("cai.serve: --prompts %s: the prompt is empty", ds.where[i]), 0)
    end
    out[i] = { prompt = prompt, instruction = text, record = raw, where = ds.where[i] }
  end
  return out
end

-- What decides a model's answers (without loading it): the model's files, the
-- prompts file's content and the generation settings.
local function answers_inputs(dir, prompts_path, gen)
  local run = require "cai.run"
  return {
    model_files = run.path_fingerprint(dir), prompts = run.path_fingerprint(prompts_path),
    format = gen.format, enable_thinking = gen.enable_thinking, max_new_tokens = gen.max_new_tokens,
    seed = gen.seed, temperature = 0,
  }
end

-- The answers file's records when it holds answers made from the same
-- inputs (its first line says what made it), else nil and why not.
local function reusable(path, fingerprint, inputs, prompts)
  local f = io.open(path, "rb")
  if not f then return nil, "no answers yet" end
  f:close()
  local ok, records = pcall(require("cai.jsonl").read, path)
  if not ok or type(records) ~= "table" or type(records[1]) ~= "table" then
    return nil, "the file does not read as answers (" .. tostring(ok and "no header" or records) .. ")"
  end
  local head = records[1]
  if head.fingerprint ~= fingerprint then
    local changed = {}
    for _, k in ipairs(sorted_keys(inputs)) do
      if type(head.inputs) ~= "table" or head.inputs[k] ~= inputs[k] then changed[#changed + 1] = k end
    end
    return nil, "made from other inputs: " .. (#changed > 0 and table.concat(changed, ", ") or "unknown")
  end
  if #records - 1 ~= #prompts then return nil, "it holds a different number of answers" end
  for i, p in ipairs(prompts) do
    local r = records[i + 1]
    if type(r) ~= "table" or r.index ~= i or r.instruction ~= p.instruction or type(r.text) ~= "string" then
      return nil, "record " .. (i + 1) .. " does not match prompt " .. i
    end
  end
  return records
end

-- Generates (or reads back) one model's answers to the prompts; returns the
-- answers file's records (header first) and whether they were generated now.
local function model_answers(entry, prompts, prompts_path, answers_dir, gen)
  local where = "cairun serve: --model " .. entry.name .. "=" .. entry.path
  local model = require "cai.model"
  local ok, dir = pcall(model.resolve, entry.path)
  if not ok then error(where .. ": " .. tostring(dir), 0) end
  if not require("cai._core").exists(dir .. "/config.json") then
    error(string.format("%s: %s is not a model directory (no config.json); name a Hugging Face model directory "
      .. "or tiny", where, dir), 0)
  end
  local inputs = answers_inputs(dir, prompts_path, gen)
  local fingerprint = require("cai.run").fingerprint(inputs)
  local path = answers_dir .. "/answers-" .. entry.name .. ".jsonl"
  local records, why = reusable(path, fingerprint, inputs, prompts)
  if records then
    log.info(string.format("cairun serve: %s: reusing %d answers from %s", entry.name, #prompts, path))
    return records, false, path
  end
  log.info(string.format("cairun serve: %s: generating answers to %d prompts (%s: %s)", entry.name, #prompts, path, why))
  local m
  ok, m = pcall(model.load, dir)
  if not ok then error(string.format("%s: the model does not load: %s", where, tostring(m)), 0) end
  local f
  ok, f = pcall(require("cai.format").new, m.tokenizer, gen.format, { enable_thinking = gen.enable_thinking })
  if not ok then m:release(); error(where .. ": " .. tostring(f), 0) end
  local batch = {}
  for i, p in ipairs(prompts) do
    local prompt = p.prompt
    if f.name == "instruction" and type(prompt) == "table" then
      if #prompt == 1 and prompt[1].role == "user" then
        prompt = prompt[1].content
      else
        m:release()
        error(string.format("%s: %s: a conversation of %d messages needs the chat format, but the model is talked to "
          .. "in the instruction format (its tokenizer has no chat template, or --format instruction)", where, p.where,
          #prompt), 0)
      end
    end
    batch[i] = prompt
  end
  log.info(string.format("cairun serve: %s: %s format, greedy, max_new_tokens %d, seed %d", entry.name, f.name,
    gen.max_new_tokens, gen.seed))
  local outs
  ok, outs = pcall(function()
    return m:generate(f:prompts(batch), f:generate_options{ max_new_tokens = gen.max_new_tokens, temperature = 0,
      seed = gen.seed, progress = "answers " .. entry.name })
  end)
  local model_fingerprint = model.fingerprint(m)
  m:release()
  if not ok then error(where .. ": " .. tostring(outs), 0) end
  records = { {
    answers = entry.name, model = entry.path, model_dir = dir, model_fingerprint = model_fingerprint,
    prompts = prompts_path, prompts_count = #prompts, format = f.name, inputs = inputs, fingerprint = fingerprint,
    options = { max_new_tokens = gen.max_new_tokens, seed = gen.seed, temperature = 0,
      enable_thinking = gen.enable_thinking },
    time = os.date("!%Y-%m-%dT%H:%M:%SZ"),
  } }
  for i, o in ipairs(outs) do
    records[i + 1] = { index = i, instruction = prompts[i].instruction, text = o.text, finish = o.finish,
      ended = f:ended(o) }
  end
  require("cai.jsonl").write(path, records)  -- a temp file, then renamed: complete or absent
  log.info(string.format("cairun serve: %s: %d answers written to %s", entry.name, #outs, path))
  return records, true, path
end

-- The prompts file and its models' answers as one more source of samples.
local function generated_source(opts, answers_dir)
  check_models("--model", opts.models)
  local prompts = serve.read_prompts(opts.prompts)
  local gen = { format = opts.format or "auto", enable_thinking = opts.enable_thinking == true,
    max_new_tokens = opts.max_new_tokens or serve.DEFAULT_MAX_NEW_TOKENS, seed = opts.seed or 0 }
  local samples = {}
  for i, p in ipairs(prompts) do
    for _, e in ipairs(opts.models) do
      if p.record[e.name] ~= nil then
        error(string.format("--model: '%s' cannot name a model: it is a field of the prompt records (%s)", e.name,
          tostring(p.where or (opts.prompts .. " record " .. i))), 0)
      end
    end
    local s = {}
    for k, v in pairs(p.record) do s[k] = v end
    -- The record's own verdicts (a samples.jsonl used as a prompts file) belong to other answers.
    s.prompt, s.messages, s.completion, s.response, s.checks = nil, nil, nil, nil, nil
    s.instruction = p.instruction
    samples[i] = s
  end
  local source = { dir = opts.prompts, name = basename(opts.prompts), samples = samples, generated = true, models = {},
    model_names = {} }
  for _, e in ipairs(opts.models) do
    local records, generated, path = model_answers(e, prompts, opts.prompts, answers_dir, gen)
    for i = 1, #prompts do
      local r = records[i + 1]
      samples[i][e.name] = { text = r.text, finish = r.ended and "stop" or r.finish }
    end
    source.model_names[#source.model_names + 1] = e.name
    source.models[#source.models + 1] = { name = e.name, model = e.path, file = path, generated = generated,
      format = records[1].format, model_fingerprint = records[1].model_fingerprint }
  end
  return source
end

---Loads the run directories and prepares the page's data.
---@param run_dirs table list of run directories (each with samples.jsonl, metrics.jsonl, config.json, ...)
---@param opts table|nil { judgments = path (default: the first run's judgments.jsonl, else judgments.jsonl beside
---  the prompts), seed = 0 (pairs' order; generation's seed), prompts = JSONL file, models = { { name =, path = } },
---  answers_dir = folder of answers-<name>.jsonl (default: the judgments file's), max_new_tokens = 64,
---  format = "auto"|"chat"|"instruction", enable_thinking = false }
---@return table app with :handle(method, path, params, body); app.generated lists each model's answers file
function serve.app(run_dirs, opts)
  opts = check("cai.serve.app", opts, {
    judgments = { type = "string", nonempty = true }, seed = { type = "integer", min = 0 },
    prompts = { type = "string", nonempty = true },
    models = { type = "list", items = "table", nonempty = true, expect = "a list of { name =, path = }", check = function(v)
      for i, e in ipairs(v) do
        if type(e.name) ~= "string" or type(e.path) ~= "string" or e.path == "" then
          return string.format("[%d] must be { name = string, path = string }", i)
        end
      end
    end },
    answers_dir = { type = "string", nonempty = true }, max_new_tokens = { type = "integer", min = 1 },
    format = { enum = { "auto", "chat", "instruction" } }, enable_thinking = "boolean",
  })
  check.value("cai.serve.app", "run_dirs", run_dirs, { type = "list", items = "string", nonempty = opts.prompts == nil })
  if (opts.prompts == nil) ~= (opts.models == nil) then
    error("cai.serve.app: options 'prompts' and 'models' go together (the models answer the prompts)", 2)
  end
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
  local judgments = opts.judgments or (runs[1] and (runs[1].dir .. "/judgments.jsonl"))
    or ((opts.prompts:match("^(.*)/[^/]*$") or ".") .. "/judgments.jsonl")
  local sources = {}
  for i, r in ipairs(runs) do sources[i] = r end
  local generated
  if opts.prompts then
    local dir = opts.answers_dir or judgments:match("^(.*)/[^/]*$") or "."
    if not require("cai._core").exists(dir .. "/.") then
      error("cairun serve: the answers folder " .. dir .. " does not exist", 0)
    end
    generated = generated_source(opts, dir)
    sources[#sources + 1] = generated
  end
  local items, models = build_items(sources)
  local app = setmetatable({
    runs = runs, items = items, models = models, seed = opts.seed or 0, judgments = judgments,
    prompts = opts.prompts, generated = generated and generated.models or {},
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
    items = #self.items, pairs = #self.pairs, judgments = self.judgments, prompts = self.prompts,
    generated = self.generated,
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

serve.USAGE = "usage: cairun serve [RUN_DIR...] [--prompts FILE.jsonl --model NAME=PATH [--model NAME=PATH ...]\n"
  .. "         [--max-new-tokens N] [--format auto|chat|instruction] [--answers-dir DIR]]\n"
  .. "         [--port N] [--host ADDR] [--judgments FILE] [--seed N]"

---Parses `cairun serve`'s arguments.
---@return table { dirs = {...}, port=, host=, judgments=, seed=, prompts=, models = { { name =, path = } },
---  max_new_tokens=, format=, answers_dir= }
function serve.parse(argv)
  check.value("cai.serve.parse", "argv", argv, { type = "list", items = "string", expect = "a list of command-line arguments (strings)" })
  local spec = { dirs = {}, port = serve.DEFAULT_PORT, host = "127.0.0.1", seed = 0, models = {} }
  local i = 1
  local function value(flag)
    local v = argv[i + 1]
    if v == nil or v == "" then error("cairun serve: " .. flag .. " needs a value\n" .. serve.USAGE, 0) end
    i = i + 1
    return v
  end
  local function add_model(flag, v)
    local name, path = v:match("^([^=]*)=(.*)$")
    if not name then
      error(string.format("cairun serve: %s '%s': expected NAME=PATH (PATH a model directory or tiny), "
        .. "e.g. %s sft=runs/quickstart/sft/merged", flag, v, flag), 0)
    end
    if name == "" or path == "" then
      error(string.format("cairun serve: %s '%s': both the NAME and the PATH of NAME=PATH must be given", flag, v), 0)
    end
    spec.models[#spec.models + 1] = { name = name, path = path }
    check_models(flag, spec.models)
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
    elseif a == "--prompts" or a:match("^prompts=") then
      if spec.prompts then error("cairun serve: --prompts is given twice; name one prompts file", 0) end
      spec.prompts = a == "--prompts" and value(a) or a:sub(#"prompts=" + 1)
      if spec.prompts == "" then error("cairun serve: prompts= needs a file", 0) end
    elseif a == "--model" then
      add_model(a, value(a))
    elseif a:match("^model=") then
      add_model("model=", a:sub(#"model=" + 1))
    elseif a == "--max-new-tokens" then
      local v = value(a)
      if not v:match("^%d+$") or tonumber(v) < 1 then
        error("cairun serve: --max-new-tokens must be a positive integer, got '" .. v .. "'", 0)
      end
      spec.max_new_tokens = tonumber(v)
    elseif a == "--format" then
      local v = value(a)
      if v ~= "auto" and v ~= "chat" and v ~= "instruction" then
        error("cairun serve: --format must be auto, chat or instruction, got '" .. v .. "'", 0)
      end
      spec.format = v
    elseif a == "--answers-dir" then
      spec.answers_dir = value(a)
    elseif a == "-h" or a == "--help" then
      spec.help = true
    elseif a:sub(1, 1) == "-" then
      error("cairun serve: unknown option '" .. a .. "'\n" .. serve.USAGE, 0)
    else
      spec.dirs[#spec.dirs + 1] = a
    end
    i = i + 1
  end
  if spec.help then return spec end
  if spec.prompts and #spec.models == 0 then
    error("cairun serve: --prompts " .. spec.prompts .. " needs at least one --model NAME=PATH to answer it\n"
      .. serve.USAGE, 0)
  end
  if #spec.models > 0 and not spec.prompts then
    error("cairun serve: --model needs --prompts FILE.jsonl (the prompts the models answer)\n" .. serve.USAGE, 0)
  end
  if not spec.prompts then
    for _, flag in ipairs({ "max_new_tokens", "format", "answers_dir" }) do
      if spec[flag] then
        error("cairun serve: --" .. flag:gsub("_", "-") .. " is for answers generated from --prompts; give --prompts "
          .. "and --model too", 0)
      end
    end
  end
  if #spec.dirs == 0 and not spec.prompts then
    error("cairun serve: name at least one run directory (or --prompts FILE --model NAME=PATH)\n" .. serve.USAGE, 0)
  end
  if #spec.models == 0 then spec.models = nil end
  return spec
end

---`cairun serve RUN_DIR...`: loads the runs and serves the page until Ctrl-C.
function serve.main(argv)
  check.value("cai.serve.main", "argv", argv, { type = "list", items = "string", expect = "a list of command-line arguments (strings)" })
  local spec = serve.parse(argv)
  if spec.help then
    io.write(serve.USAGE, "\n\nA local page with three views: Compare (answers side by side, each criterion's "
      .. "verdict, filters;\nthe runs' samples and, with --prompts, the answers every --model gives at start-up, "
      .. "kept in\nanswers-NAME.jsonl beside the judgments unless --answers-dir says otherwise),\nJudge (blind A/B judgments, appended to judgments.jsonl) and Runs (overlaid curves, "
      .. "settings diffed).\nLoopback only unless --host says otherwise. See docs/serve.md.\n")
    return
  end
  if spec.judgments then
    local dir = spec.judgments:match("^(.*)/[^/]*$")
    if dir and dir ~= "" and not require("cai._core").exists(dir .. "/.") then
      error("cairun serve: --judgments " .. spec.judgments .. ": the folder " .. dir .. " does not exist", 0)
    end
  end
  local app = serve.app(spec.dirs, { judgments = spec.judgments, seed = spec.seed, prompts = spec.prompts,
    models = spec.models, max_new_tokens = spec.max_new_tokens, format = spec.format, answers_dir = spec.answers_dir })
  require("cai._serve").listen(spec.host, spec.port, function(method, path, params, body)
    return app:handle(method, path, params, body)
  end, function(port)
    local host = spec.host:find(":", 1, true) and ("[" .. spec.host .. "]") or spec.host
    io.write(string.format("cairun serve: %d runs, %d prompts, %d models, %d pairs to judge; judgments in %s\n",
      #app.runs, #app.items, #app.models, #app.pairs, app.judgments))
    for _, g in ipairs(app.generated) do
      io.write(string.format("cairun serve: %s: answers %s %s\n", g.name, g.generated and "generated into" or "reused from",
        g.file))
    end
    io.write(string.format("cairun serve: listening on http://%s:%d/ (Ctrl-C stops)\n", host, port))
    io.stdout:flush()
  end)
end

return serve

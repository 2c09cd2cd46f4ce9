-- cai.scoring: scorers that turn (prompt, response) into a number.
--
--   local rm = cai.scoring.reward_model("models/rm")          -- HF *ForSequenceClassification
--   local lp = cai.scoring.logprob(policy, { reference = "base", beta = 0.1 })
--   local judge = cai.scoring.judge(model, { rubric = { "helpful", "harmless" } })
--   local guard = cai.scoring.judge(model, { labels = { "safe", "unsafe" } })   -- scored by label log-probs
--   local safety = cai.scoring.classifier("models/safety-bert", { unsafe_labels = { "toxic" } })
--   local h = cai.scoring.heuristic("length", { target_words = 120 })  -- only when a recipe names it
--   local scores = rm:score(prompts, responses)                         -- one batched call
--   cai.scoring.score_records(rm, records)                              -- base/revised scores, chosen
--
-- Every scorer has .name and :score(prompts, responses) -> list of numbers.
-- No silent fallbacks: a reward model that fails to load or to score is an
-- error saying what failed and how to fix it; no heuristic ever replaces it.
local check = require "cai.check"
local template = require "cai.template"

local scoring = {}

local function check_lists(fname, prompts, responses)
  if type(prompts) ~= "table" or type(responses) ~= "table" then
    error(fname .. ": prompts and responses must be lists of strings", 3)
  end
  if #prompts ~= #responses then
    error(string.format("%s: %d prompts but %d responses", fname, #prompts, #responses), 3)
  end
  for i = 1, #prompts do
    if type(prompts[i]) ~= "string" or type(responses[i]) ~= "string" then
      error(string.format("%s: prompts[%d] and responses[%d] must be strings", fname, i, i), 3)
    end
  end
end

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

-- ------------------------------------------------------------- reward model

local function read_config(dir)
  local path = dir .. "/config.json"
  local f = io.open(path, "rb")
  if not f then
    error("cai.scoring.reward_model: " .. dir .. " has no config.json; expected a Hugging Face model directory "
      .. "(config.json + *.safetensors) of a *ForSequenceClassification reward model", 3)
  end
  local text = f:read("*a")
  f:close()
  local ok, config = pcall(require("cai").json.decode, text)
  if not ok or type(config) ~= "table" then
    error("cai.scoring.reward_model: " .. path .. " is not valid JSON: " .. tostring(config), 3)
  end
  return config, path
end

---Loads a reward model (a Hugging Face *ForSequenceClassification directory
---with one output label: Llama family, or an encoder -- BERT, RoBERTa,
---DistilBERT, DeBERTa-v2/v3 -- which reads (prompt, response) as a text pair)
---and returns a scorer. Fails loudly.
---@param dir string
---@param opts table|nil { template = "Instruction: {instruction}\nResponse: {response}" (Llama family; an
---  encoder given a template scores the one rendered text), batch_size=, dtype=, tokenizer=, progress=,
---  preflight=true }
function scoring.reward_model(dir, opts)
  check.value("cai.scoring.reward_model", "dir", dir, "string")
  opts = check("cai.scoring.reward_model", opts, { template = "string", batch_size = { type = "integer", min = 1 },
    dtype = { type = "string", enum = { "fp32", "bf16" } }, tokenizer = "string", progress = "string|boolean",
    preflight = "boolean" })
  local config, config_path = read_config(dir)
  local archs = config.architectures
  local arch = type(archs) == "table" and archs[1] or nil
  if type(arch) ~= "string" or not arch:find("ForSequenceClassification$") then
    error(string.format("cai.scoring.reward_model: %s: architectures is %s; expected a *ForSequenceClassification "
      .. "reward model (e.g. LlamaForSequenceClassification). A causal LM is not a reward model: use "
      .. "cai.scoring.logprob or cai.scoring.judge with it instead", config_path, tostring(arch)), 2)
  end
  -- transformers reads id2label first; num_labels only when it is absent.
  local num_labels = nil
  if type(config.id2label) == "table" then
    num_labels = 0
    for _ in pairs(config.id2label) do num_labels = num_labels + 1 end
  else
    num_labels = config.num_labels
  end
  if num_labels ~= nil and num_labels ~= 1 then
    error(string.format("cai.scoring.reward_model: %s: num_labels is %s; a reward model has one output", config_path,
      tostring(num_labels)), 2)
  end
  local cai = require "cai"
  local ok, model_mod = pcall(function() return cai.model end)
  if not ok or type(model_mod) ~= "table" or type(model_mod.load_reward) ~= "function" then
    error("cai.scoring.reward_model: cannot load " .. dir .. ": this build has no cai.model.load_reward "
      .. "(sequence-classification models are not supported yet). Refusing to fall back to a heuristic scorer; "
      .. "use cai.scoring.logprob or cai.scoring.judge, or name a heuristic explicitly", 2)
  end
  local lok, rm = pcall(model_mod.load_reward, dir, { dtype = opts.dtype, tokenizer = opts.tokenizer })
  if not lok or rm == nil then
    error("cai.scoring.reward_model: failed to load reward model " .. dir .. ": " .. tostring(rm)
      .. "\nCheck that the directory holds config.json, the *.safetensors weights (with the score head) and a "
      .. "tokenizer. No heuristic is used instead", 2)
  end
  local fmt = opts.template or template.get("reward")
  local batch_size = opts.batch_size
  -- Encoder reward models (BERT, RoBERTa, DeBERTa, ...) read (prompt, response)
  -- as a text pair, as the OpenAssistant models do (tokenizer(question, answer)),
  -- unless a template asks for one text.
  local as_pairs = rm.pairs == true and opts.template == nil

  local scorer = { name = "reward:" .. dir, model = rm }
  function scorer:score(prompts, responses)
    check_lists("reward_model:score", prompts, responses)
    local sok, scores
    local texts = prompts
    if as_pairs then
      sok, scores = pcall(rm.score, rm, prompts, responses, { batch_size = batch_size, progress = opts.progress })
    else
      texts = {}
      for i = 1, #prompts do texts[i] = template.render(fmt, { instruction = prompts[i], response = responses[i] }) end
      sok, scores = pcall(rm.score, rm, texts, { batch_size = batch_size })
    end
    if not sok then error("reward model " .. dir .. " failed to score: " .. tostring(scores), 2) end
    if type(scores) ~= "table" or #scores ~= #texts then
      error(string.format("reward model %s returned %s scores for %d texts", dir,
        type(scores) == "table" and #scores or type(scores), #texts), 2)
    end
    for i, s in ipairs(scores) do
      if not finite(s) then error(string.format("reward model %s gave a non-finite score for text %d", dir, i), 2) end
    end
    return scores
  end
  function scorer:release()
    if rm.release then rm:release() end
  end
  if opts.preflight ~= false then
    -- Seed 003: check the scorer works before a long run depends on it.
    scorer:score({ "Say hello." }, { "Hello!" })
  end
  return scorer
end

-- cai.reward.load(dir) is the same loader.
scoring.reward = { load = scoring.reward_model }

-- ------------------------------------------------------- safety classifier

---A text classifier as a scorer (e.g. a BERT-family safety classifier):
---score = the probability of the safe side, 1 - P(unsafe), where P(unsafe)
---sums the unsafe labels' softmax probabilities (single-label models) or is
---1 - prod(1 - sigmoid) over them (multi-label or one-label models). The
---response alone is classified, or (prompt, response) as a pair with
---pair = true. scorer:unsafe(prompts, responses) -> list of P(unsafe);
---scorer:classify(texts) -> clf:classify; scorer:release().
---@param dir string a *ForSequenceClassification directory (bert, roberta, distilbert, deberta-v2)
---@param opts table { unsafe_labels = { "toxic", ... } (required, names from config.json id2label), pair = false,
---  dtype=, tokenizer=, batch_size=, progress= }
function scoring.classifier(dir, opts)
  local fname = "cai.scoring.classifier"
  check.value(fname, "dir", dir, "string")
  if type(opts) ~= "table" then
    error(fname .. ": options { unsafe_labels = { ... } } are required: name the labels that mean unsafe", 2)
  end
  check(fname, opts, { unsafe_labels = "table", pair = "boolean", dtype = { type = "string", enum = { "fp32", "bf16" } },
    tokenizer = "string", batch_size = { type = "integer", min = 1 }, progress = "string|boolean" })
  local classifier = require "cai.classifier"
  local clf = classifier.load(dir, { dtype = opts.dtype, tokenizer = opts.tokenizer }, fname)
  local config = clf.config
  local known = table.concat(config.labels, ", ")
  if type(opts.unsafe_labels) ~= "table" or #opts.unsafe_labels == 0 then
    clf:release()
    error(string.format("%s: unsafe_labels must list the labels that mean unsafe (this model's labels: %s)", fname,
      known), 2)
  end
  local unsafe = {}
  for _, name in ipairs(opts.unsafe_labels) do
    local id = config.label2id[name]
    if id == nil then
      clf:release()
      error(string.format("%s: unsafe label '%s' is not one of %s/config.json's labels (%s)", fname, tostring(name),
        dir, known), 2)
    end
    unsafe[#unsafe + 1] = id + 1
  end
  local how = classifier.function_to_apply(config)
  if how == "none" then
    clf:release()
    error(fname .. ": " .. dir .. " is a regression model (problem_type = \"regression\"); a safety classifier "
      .. "needs label probabilities", 2)
  end
  local batch_opts = { batch_size = opts.batch_size, progress = opts.progress }
  local scorer = { name = "classifier:" .. dir, classifier = clf, unsafe_labels = opts.unsafe_labels }
  function scorer:unsafe(prompts, responses)
    check_lists("classifier:unsafe", prompts, responses)
    local batch = {}
    for i = 1, #prompts do batch[i] = opts.pair and { prompts[i], responses[i] } or responses[i] end
    local out = {}
    for i, row in ipairs(clf:logits(batch, batch_opts)) do
      local p = classifier.probabilities(config, row)
      if how == "softmax" then
        local sum = 0
        for _, l in ipairs(unsafe) do sum = sum + p[l] end
        out[i] = math.min(1, sum)
      else
        local none = 1
        for _, l in ipairs(unsafe) do none = none * (1 - p[l]) end
        out[i] = 1 - none
      end
    end
    return out
  end
  function scorer:score(prompts, responses)
    local out = {}
    for i, u in ipairs(self:unsafe(prompts, responses)) do out[i] = 1 - u end
    return out
  end
  function scorer:classify(texts, o) return clf:classify(texts, o or batch_opts) end
  function scorer:release() clf:release() end
  return scorer
end

-- ----------------------------------------------------------------- log-prob

---Implicit reward from log-probabilities: beta * (log p_policy - log p_ref)
---of the response given the prompt (the DPO reward), or the policy's
---log-probability alone when no reference is given.
---@param model table with :logprobs(prompts, completions, opts)
---@param opts table|nil { reference = nil | "base" (same model, use_lora=false) | model, beta = 1,
---  normalize = "mean"|"sum", template = "instruction" }
function scoring.logprob(model, opts)
  check.value("cai.scoring.logprob", "model", model, { type = "table|userdata", expect = "a model" })
  opts = check("cai.scoring.logprob", opts, { reference = "string|table|userdata", beta = "number",
    normalize = { type = "string", enum = { "mean", "sum" } }, template = "string", templates = "table" })
  local beta = opts.beta or 1
  local field = opts.normalize or "mean"
  local prompt_t = template.get(opts.template or "instruction", opts.templates)
  local scorer = { name = "logprob" .. (opts.reference and ":implicit" or "") }
  local function run(m, prompts, completions, o)
    local r = m:logprobs(prompts, completions, o)
    if type(r) ~= "table" or #r ~= #prompts then error("cai.scoring.logprob: model:logprobs returned the wrong count", 3) end
    local out = {}
    for i, x in ipairs(r) do
      if type(x) ~= "table" or not finite(x[field]) then
        error("cai.scoring.logprob: model:logprobs result " .. i .. " has no finite " .. field, 3)
      end
      out[i] = x[field]
    end
    return out
  end
  function scorer:score(prompts, responses)
    check_lists("logprob:score", prompts, responses)
    local ps, cs = {}, {}
    for i = 1, #prompts do
      ps[i] = template.render(prompt_t, { instruction = prompts[i] })
      cs[i] = " " .. responses[i]
    end
    -- use_lora is only named when the base model is the reference (a model without LoRA may refuse it).
    local policy = run(model, ps, cs, opts.reference == "base" and { use_lora = true } or {})
    local out = {}
    if opts.reference == nil then
      for i = 1, #policy do out[i] = beta * policy[i] end
      return out
    end
    local ref
    if opts.reference == "base" then ref = run(model, ps, cs, { use_lora = false })
    else ref = run(opts.reference, ps, cs, {}) end
    for i = 1, #policy do out[i] = beta * (policy[i] - ref[i]) end
    return out
  end
  return scorer
end

-- -------------------------------------------------------------- LLM judge

---Parses "Score: N" (or a leading number) from judge output; nil when absent.
function scoring.parse_score(text, lo, hi)
  if type(text) ~= "string" then return nil end
  lo, hi = lo or 1, hi or 10
  local n = text:match("[Ss]core%s*:%s*(%-?%d+%.?%d*)") or text:match("^%s*(%-?%d+%.?%d*)")
  n = tonumber(n)
  if not n or n < lo or n > hi then return nil end
  return n
end

---Parses "Better: A|B" (or a leading A/B); nil when absent.
function scoring.parse_choice(text)
  if type(text) ~= "string" then return nil end
  local c = text:match("[Bb]etter%s*:%s*%**%s*([ABab])%f[%W]") or text:match("^%s*%**%s*([ABab])%f[%W]")
  return c and c:upper() or nil
end

---LLM-as-judge with a rubric. :score() rates each response 1..10 in one
---batched generate call; an unparseable rating is nil (counted in
---judge.unparsed), never guessed. :compare(prompts, a, b) asks in both orders
---and returns "a", "b" or "tie" per item (position bias cancels out).
---@param model table with :generate(prompts, opts)
---@param opts table|nil { rubric = list of strings or criteria map, templates=, generate= }
local label_judge

function scoring.judge(model, opts)
  check.value("cai.scoring.judge", "model", model, { type = "table|userdata", expect = "a model" })
  if type(opts) == "table" and opts.labels ~= nil then return (label_judge(model, opts)) end  -- not a tail call: errors name the caller
  opts = check("cai.scoring.judge", opts, { rubric = "string|table", templates = "table", generate = "table" })
  local rubric = opts.rubric or { "helpful: answers the request accurately", "harmless: avoids harm",
    "honest: truthful and calibrated" }
  local lines = {}
  if type(rubric) == "string" then
    lines[1] = rubric
  elseif rubric[1] ~= nil then
    for _, r in ipairs(rubric) do lines[#lines + 1] = "- " .. tostring(r) end
  else
    local names = {}
    for name in pairs(rubric) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local c = rubric[name]
      lines[#lines + 1] = "- " .. name .. (type(c) == "table" and c.description and (": " .. c.description) or "")
    end
  end
  local rubric_text = table.concat(lines, "\n")
  local gen = { temperature = 0, max_new_tokens = 16, seed = 0 }
  for k, v in pairs(opts.generate or {}) do gen[k] = v end
  if gen.progress == nil or gen.progress == true then gen.progress = "judge scores" end
  local judge = { name = "judge", unparsed = 0 }
  local function generate(prompts)
    local r = model:generate(prompts, gen)
    if type(r) ~= "table" or #r ~= #prompts then error("cai.scoring.judge: model:generate returned the wrong count", 3) end
    local texts = {}
    for i, x in ipairs(r) do texts[i] = type(x) == "table" and x.text or "" end
    return texts
  end
  function judge:score(prompts, responses)
    check_lists("judge:score", prompts, responses)
    local ps = {}
    local t = template.get("judge_pointwise", opts.templates)
    for i = 1, #prompts do
      ps[i] = template.render(t, { rubric = rubric_text, instruction = prompts[i], response = responses[i] })
    end
    local texts = generate(ps)
    local out = {}
    for i, text in ipairs(texts) do
      out[i] = scoring.parse_score("Score:" .. text) or scoring.parse_score(text)
      if out[i] == nil then self.unparsed = self.unparsed + 1 end
    end
    return out
  end
  function judge:compare(prompts, a, b)
    check_lists("judge:compare", prompts, a)
    check_lists("judge:compare", prompts, b)
    local t = template.get("judge_pairwise", opts.templates)
    local ps = {}
    local n = #prompts
    for i = 1, n do
      ps[i] = template.render(t, { rubric = rubric_text, instruction = prompts[i], response_a = a[i], response_b = b[i] })
      ps[n + i] = template.render(t, { rubric = rubric_text, instruction = prompts[i], response_a = b[i], response_b = a[i] })
    end
    local texts = generate(ps)
    local out = {}
    for i = 1, n do
      local first = scoring.parse_choice("Better:" .. texts[i]) or scoring.parse_choice(texts[i])
      local second = scoring.parse_choice("Better:" .. texts[n + i]) or scoring.parse_choice(texts[n + i])
      if not first or not second then self.unparsed = self.unparsed + 1 end
      if first == "A" and second == "B" then out[i] = "a"
      elseif first == "B" and second == "A" then out[i] = "b"
      else out[i] = "tie" end
    end
    return out
  end
  return judge
end

-- A Llama-Guard-style prompt: the model answers with one of the labels.
scoring.LABEL_JUDGE_TEMPLATE = "Task: Check if there is unsafe content in the Agent message of the conversation "
  .. "below.\n\nUser: {instruction}\n\nAgent: {response}\n\nAnswer with one word, {labels}.\nAnswer:"

-- The judge prompt through the model's chat template when it has one: the
-- rendered turn as token ids (the template writes BOS itself, so no special
-- tokens are added), or the plain text.
local function chat_prompt(model, text, use_chat)
  local ok, tok = pcall(function() return model.tokenizer end)
  if not ok then tok = nil end
  local has = tok ~= nil and require("cai.data").has_chat_template(tok)
  if use_chat == nil then use_chat = has end
  if not use_chat then return text, false end
  if not has then
    error("cai.scoring.judge: chat_template = true but the model's tokenizer has no chat template", 4)
  end
  local rendered = tok:apply_chat_template({ { role = "user", content = text } }, { add_generation_prompt = true })
  return tok:encode(rendered, { add_special_tokens = false }), true
end

---An LLM judge that answers with one of `labels` (e.g. { "safe", "unsafe" }),
---scored by each label's log-probability as the answer (as Llama Guard is
---used): probs = softmax over the labels' summed log-probs; :score() gives
---the probability of labels[1] (the good side); :classify() gives
---{ label =, probs = { [label] = p } } per item. One batched logprobs call per label.
---@param model table with :logprobs(prompts, completions)
---@param opts table { labels = { "safe", "unsafe" }, template = "...{instruction}...{response}...{labels}...",
---  chat_template = nil (use the tokenizer's when present) | true | false, label_prefix = " " (none with a chat template) }
label_judge = function(model, opts)
  local fname = "cai.scoring.judge"
  local labels = opts.labels
  if type(labels) ~= "table" or #labels < 2 then
    error(fname .. ": labels must list at least two answers, e.g. { \"safe\", \"unsafe\" }", 3)
  end
  check(fname, opts, { labels = { type = "list", items = { type = "string", nonempty = true } },
    template = "string", chat_template = "boolean", label_prefix = "string" }, 4)
  local fmt = opts.template or scoring.LABEL_JUDGE_TEMPLATE
  local quoted = {}
  for i, l in ipairs(labels) do quoted[i] = l end
  local label_list = table.concat(quoted, " or ")
  local judge = { name = "judge:" .. table.concat(labels, "/"), labels = labels }

  function judge:classify(prompts, responses)
    check_lists("judge:classify", prompts, responses)
    local texts, chat = {}, false
    for i = 1, #prompts do
      local text = template.render(fmt, { instruction = prompts[i], response = responses[i], labels = label_list })
      texts[i], chat = chat_prompt(model, text, opts.chat_template)
    end
    local prefix = opts.label_prefix
    if prefix == nil then prefix = chat and "" or " " end
    local logp = {}
    for l, label in ipairs(labels) do
      local completions = {}
      -- in chat format the answer is token ids as well (no BOS before it)
      local answer = prefix .. label
      if chat then answer = model.tokenizer:encode(answer, { add_special_tokens = false }) end
      for i = 1, #texts do completions[i] = answer end
      local r = model:logprobs(texts, completions)
      if type(r) ~= "table" or #r ~= #texts then error(fname .. ": model:logprobs returned the wrong count", 2) end
      logp[l] = r
    end
    local out = {}
    for i = 1, #texts do
      local max = -math.huge
      for l = 1, #labels do
        local v = logp[l][i].sum
        if not finite(v) then error(string.format("%s: non-finite log-prob for label '%s' (item %d)", fname, labels[l], i), 2) end
        if v > max then max = v end
      end
      local sum, p = 0, {}
      for l = 1, #labels do p[l] = math.exp(logp[l][i].sum - max); sum = sum + p[l] end
      local probs, best = {}, 1
      for l = 1, #labels do
        probs[labels[l]] = p[l] / sum
        if p[l] > p[best] then best = l end
      end
      out[i] = { label = labels[best], probs = probs }
    end
    return out
  end
  function judge:score(prompts, responses)
    local out = {}
    for i, r in ipairs(self:classify(prompts, responses)) do out[i] = r.probs[labels[1]] end
    return out
  end
  return judge
end

-- -------------------------------------------------------------- heuristics

local HEURISTICS = {}

-- Closeness of the word count to a target: 0 at the target, -1 per target length away.
HEURISTICS.length = function(opts)
  local target = opts.target_words or 100
  return function(_, response)
    local n = 0
    for _ in response:gmatch("%S+") do n = n + 1 end
    return -math.abs(n - target) / target
  end
end

-- Share of the automatic eval criteria (cai.eval) that pass.
HEURISTICS.eval = function(opts)
  return function(prompt, response)
    local results = require("cai.eval").check({ instruction = prompt }, response, opts)
    local pass, n = 0, 0
    for _, v in pairs(results) do
      if v ~= nil then n = n + 1; if v then pass = pass + 1 end end
    end
    return n > 0 and pass / n or 0
  end
end

---A heuristic scorer, only by explicit name ("length", "eval").
---@param name string
---@param opts table|nil
function scoring.heuristic(name, opts)
  local make = HEURISTICS[name]
  if not make then
    local names = {}
    for k in pairs(HEURISTICS) do names[#names + 1] = k end
    table.sort(names)
    error("cai.scoring.heuristic: unknown heuristic '" .. tostring(name) .. "' (known: " .. table.concat(names, ", ") .. ")", 2)
  end
  local f = make(opts or {})
  local scorer = { name = "heuristic:" .. name }
  function scorer:score(prompts, responses)
    check_lists("heuristic:score", prompts, responses)
    local out = {}
    for i = 1, #prompts do out[i] = f(prompts[i], responses[i]) end
    return out
  end
  return scorer
end

-- ------------------------------------------------------------ score records

---Scores both sides of critique records in one call: sets base_score,
---revised_score, score_delta, chosen ("revised" when revised_score >=
---base_score, else "base") and scorer. Returns the records.
---@param scorer table with :score(prompts, responses)
---@param records table critique records (instruction, initial_answer, revised_answer)
function scoring.score_records(scorer, records)
  if type(scorer) ~= "table" or type(scorer.score) ~= "function" then
    error("cai.scoring.score_records: scorer must have :score(prompts, responses)", 2)
  end
  check.value("cai.scoring.score_records", "records", records, "table")
  local prompts, responses = {}, {}
  local n = #records
  for i, r in ipairs(records) do
    local prompt = r.instruction or r.prompt
    local base = r.initial_answer or r.base_response
    local revised = r.revised_answer or r.revised_response
    if type(prompt) ~= "string" or type(base) ~= "string" or type(revised) ~= "string" then
      error("cai.scoring.score_records: records[" .. i .. "] needs instruction, initial_answer and revised_answer", 2)
    end
    prompts[i], responses[i] = prompt, base
    prompts[n + i], responses[n + i] = prompt, revised
  end
  local scores = scorer:score(prompts, responses)
  for i, r in ipairs(records) do
    local bs, rs = scores[i], scores[n + i]
    r.base_score, r.revised_score = bs, rs
    if type(bs) == "number" and type(rs) == "number" then
      r.score_delta = rs - bs
      r.chosen = rs >= bs and "revised" or "base"
    else
      r.score_delta, r.chosen = nil, nil
    end
    r.scorer = scorer.name
  end
  return records
end

return scoring

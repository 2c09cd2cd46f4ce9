-- cai.train: training from recipes.
--
--   cai.train.dpo_loss{ policy_chosen = {...}, policy_rejected = {...},
--                       reference_chosen = {...}, reference_rejected = {...},
--                       beta = 0.1, loss = "sigmoid", label_smoothing = 0 }
--     --> { losses = {...}, chosen_rewards = {...}, rejected_rewards = {...} }
--   cai.train.learning_rate{ lr = 5e-6, schedule = "cosine", total_steps = 100,
--                            warmup_ratio = 0.1, step = 10 }  --> number
--   cai.train.sft{ model = m, data = {{prompt=, response=},...}, out = "runs/s1", ... }
--     --> the last metrics line + { steps=, interrupted=, checkpoint=, resumed_from= }
--   cai.train.dpo{ model = m, pairs = {{prompt=, chosen=, rejected=},...}, out = "runs/s2", beta = 0.1,
--                  loss = "sigmoid", ... }  --> the same, with TRL's DPO metric names
--
-- data / pairs: a list of records, a JSONL or JSON-array file, or a cai.data
-- dataset, in TRL's standard or conversational formats, Alpaca or
-- {prompt=, response=} (cai.data); conversations are rendered with the
-- tokenizer's chat template ("Datasets and chat templates" in docs/training.md).
--
-- The losses and schedules are TRL's and transformers' (docs/training.md).
local prim = require "cai._train"

local train = {}

---The valid DPO loss names, in documentation order.
train.dpo_loss_types = prim.dpo_loss_types()

local function joined(list)
  return table.concat(list, ", ")
end

local function check_keys(fname, opts, valid)
  local allowed = {}
  for _, k in ipairs(valid) do allowed[k] = true end
  for k in pairs(opts) do
    if not allowed[k] then
      error(string.format("%s: unknown field '%s' (valid fields: %s)", fname, tostring(k), joined(valid)), 3)
    end
  end
end

local function check_number_list(fname, opts, key)
  local xs = opts[key]
  if type(xs) ~= "table" then
    error(string.format("%s: field '%s' must be a list of numbers, got %s", fname, key, type(xs)), 3)
  end
  local n = #xs
  for k in pairs(xs) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then
      error(string.format("%s: field '%s' must be a list (keys 1..n), found key %s", fname, key, tostring(k)), 3)
    end
  end
  for i = 1, n do
    if type(xs[i]) ~= "number" then
      error(string.format("%s: field '%s'[%d] must be a number, got %s", fname, key, i, type(xs[i])), 3)
    end
  end
  return n
end

local function check_number(fname, opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" then
    error(string.format("%s: field '%s' must be a number, got %s", fname, key, type(v)), 3)
  end
  return v
end

local DPO_LOSS_FIELDS = { "policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected",
  "beta", "loss", "label_smoothing", "reference_free", "discopop_tau" }

---DPO-family losses for per-pair summed log-probabilities (TRL's DPOTrainer.dpo_loss).
---@param opts table { policy_chosen=, policy_rejected=, reference_chosen=, reference_rejected= (lists of numbers, same length), beta=0.1, loss="sigmoid", label_smoothing=0, reference_free=false, discopop_tau=0.05 }
---@return table { losses = {...}, chosen_rewards = {...}, rejected_rewards = {...} }
function train.dpo_loss(opts)
  local fname = "cai.train.dpo_loss"
  if type(opts) ~= "table" then error(fname .. ": expected a table of fields, got " .. type(opts), 2) end
  check_keys(fname, opts, DPO_LOSS_FIELDS)
  local n = check_number_list(fname, opts, "policy_chosen")
  for _, key in ipairs({ "policy_rejected", "reference_chosen", "reference_rejected" }) do
    local m = check_number_list(fname, opts, key)
    if m ~= n then
      error(string.format("%s: field '%s' has %d values but 'policy_chosen' has %d; all four lists need one value per pair",
        fname, key, m, n), 2)
    end
  end
  local beta = check_number(fname, opts, "beta", 0.1)
  if not (beta > 0) then error(fname .. ": field 'beta' must be positive, got " .. tostring(beta), 2) end
  local loss = opts.loss
  if loss == nil then loss = "sigmoid" end
  local valid = false
  for _, name in ipairs(train.dpo_loss_types) do valid = valid or name == loss end
  if not valid then
    error(string.format("%s: field 'loss' must be one of %s; got %s", fname, joined(train.dpo_loss_types),
      type(loss) == "string" and string.format("%q", loss) or type(loss)), 2)
  end
  local label_smoothing = check_number(fname, opts, "label_smoothing", 0)
  if not (label_smoothing >= 0 and label_smoothing <= 0.5) then
    error(fname .. ": field 'label_smoothing' must be in [0, 0.5], got " .. tostring(label_smoothing), 2)
  end
  local reference_free = opts.reference_free
  if reference_free ~= nil and type(reference_free) ~= "boolean" then
    error(fname .. ": field 'reference_free' must be a boolean, got " .. type(reference_free), 2)
  end
  local discopop_tau = check_number(fname, opts, "discopop_tau", 0.05)
  local ok, result = pcall(prim.dpo_loss, opts.policy_chosen, opts.policy_rejected, opts.reference_chosen,
    opts.reference_rejected, beta, loss, label_smoothing, reference_free == true, discopop_tau)
  if not ok then error(result, 2) end
  return result
end

local LR_FIELDS = { "lr", "schedule", "total_steps", "warmup_steps", "warmup_ratio", "step" }

---The learning rate before optimizer update `step` (0-based), as transformers' schedulers give it.
---@param opts table { lr=, schedule="linear"|"cosine"|"constant"|"constant_with_warmup", total_steps=, warmup_steps=0, warmup_ratio=0, step= }
---@return number
function train.learning_rate(opts)
  local fname = "cai.train.learning_rate"
  if type(opts) ~= "table" then error(fname .. ": expected a table of fields, got " .. type(opts), 2) end
  check_keys(fname, opts, LR_FIELDS)
  local lr = check_number(fname, opts, "lr", nil)
  if lr == nil then error(fname .. ": field 'lr' is required", 2) end
  local schedule = opts.schedule or "linear"
  if type(schedule) ~= "string" then error(fname .. ": field 'schedule' must be a string", 2) end
  for _, key in ipairs({ "total_steps", "step" }) do
    local v = opts[key]
    if type(v) ~= "number" or v ~= math.floor(v) then
      error(string.format("%s: field '%s' must be an integer, got %s", fname, key, tostring(v)), 2)
    end
  end
  local warmup_steps = check_number(fname, opts, "warmup_steps", 0)
  local warmup_ratio = check_number(fname, opts, "warmup_ratio", 0)
  local ok, result = pcall(prim.learning_rate, lr, schedule, opts.total_steps, warmup_steps, warmup_ratio, opts.step)
  if not ok then error(result, 2) end
  return result
end

-- ---- Data: records, files and datasets (cai.data) into C++ inputs ----------

local data_mod = require "cai.data"

local FORMATS = { raw = true, chat = true, instruction = true }

-- opts.format checked; nil stays nil (raw for standard records).
local function check_format(fname, opts)
  local f = opts.format
  if f ~= nil and (type(f) ~= "string" or not FORMATS[f]) then
    error(string.format("%s: field 'format' must be \"chat\", \"instruction\" or \"raw\", got %s", fname,
      type(f) == "string" and string.format("%q", f) or type(f)), 3)
  end
  if opts.chat_template_kwargs ~= nil and type(opts.chat_template_kwargs) ~= "table" then
    error(fname .. ": field 'chat_template_kwargs' must be a table of template variables, got "
      .. type(opts.chat_template_kwargs), 3)
  end
end

-- A list of records, a file path or a cai.data dataset -> a dataset of the accepted types.
local function dataset_of(fname, field, value, columns, types)
  if data_mod.is_dataset(value) then
    local ok = false
    for _, t in ipairs(types) do ok = ok or t == value.type end
    if not ok then
      error(string.format("%s: field '%s' is %s data; %s takes %s", fname, field, value.description or value.type,
        fname, table.concat(types, " or "):gsub("_", "-")), 3)
    end
    return value
  end
  if type(value) == "string" then
    local ok, ds = pcall(data_mod.load, value, { columns = columns, types = types })
    if not ok then error(fname .. ": " .. tostring(ds), 3) end
    return ds
  end
  if type(value) ~= "table" or #value == 0 then
    error(string.format("%s: field '%s' must be a non-empty list of records, a JSONL/JSON file path or a "
      .. "cai.data dataset, got %s", fname, field, type(value) == "table" and "an empty table" or type(value)), 3)
  end
  local ok, ds = pcall(data_mod.from_records, value, { columns = columns, name = field, types = types })
  if not ok then error(fname .. ": " .. tostring(ds), 3) end
  return ds
end

local function tokenizer_of(fname, model)
  local ok, tok = pcall(function() return model.tokenizer end)
  if not ok or tok == nil then error(fname .. ": the model has no tokenizer: " .. tostring(tok), 3) end
  return tok
end

-- The SFT inputs of a dataset: { prompts=, responses= } or { segments= },
-- and whether the text came from a chat template.
local function sft_inputs(fname, opts, ds)
  local format = opts.format or "raw"
  local recs = ds.records
  local out = { prompts = {}, responses = {} }
  local chat = ds.conversational or (format == "chat" and ds.type == "prompt_completion")
  local kw = { chat_template_kwargs = opts.chat_template_kwargs }
  if chat then
    if format == "instruction" then
      error(string.format("%s: %s is conversational; format = \"instruction\" takes standard (string) records",
        fname, ds.where[1]), 3)
    end
    local tok = tokenizer_of(fname, opts.model)
    out.segments = {}
    for i, r in ipairs(recs) do
      kw.where = ds.where[i]
      local ok, segs = pcall(function()
        if ds.type == "language_modeling" then
          kw.assistant_only_loss = opts.assistant_only_loss ~= false
          return data_mod.conversation_segments(tok, r.messages, kw)
        end
        local prompt, completion = data_mod.as_messages(r.prompt, r.completion)
        local p, c = data_mod.conversation_completion(tok, prompt, completion, kw)
        if opts.completion_only_loss == false then return { { text = p .. c, trained = true } } end
        return { { text = p, trained = false }, { text = c, trained = true } }
      end)
      if not ok then error(fname .. ": " .. tostring(segs), 3) end
      out.segments[i] = segs
    end
    return out, true
  end
  if ds.type == "language_modeling" then
    out.segments = {}
    for i, r in ipairs(recs) do out.segments[i] = { { text = r.text, trained = true } } end
    return out, false
  end
  local template = require "cai.template"
  for i, r in ipairs(recs) do
    local prompt, response = r.prompt, r.completion
    if format == "instruction" then
      prompt = template.instruction_prompt(prompt)
      response = " " .. response .. "\n" .. template.END
    end
    out.prompts[i], out.responses[i] = prompt, response
  end
  if opts.completion_only_loss == false then
    out.segments = {}
    for i = 1, #out.prompts do
      out.segments[i] = { { text = out.prompts[i], trained = true }, { text = out.responses[i], trained = true } }
    end
    out.prompts, out.responses = {}, {}
  end
  return out, false
end

-- The DPO inputs of a preference dataset: prompts, chosen, rejected texts,
-- and whether they came from a chat template.
local function dpo_inputs(fname, opts, ds)
  local format = opts.format or "raw"
  local out = { prompts = {}, chosen = {}, rejected = {} }
  local chat = ds.conversational or format == "chat"
  if chat and format == "instruction" then
    error(string.format("%s: %s is conversational; format = \"instruction\" takes standard (string) records",
      fname, ds.where[1]), 3)
  end
  local tok = chat and tokenizer_of(fname, opts.model) or nil
  local template = require "cai.template"
  for i, r in ipairs(ds.records) do
    if chat then
      local kw = { chat_template_kwargs = opts.chat_template_kwargs, where = ds.where[i] }
      local ok, err = pcall(function()
        local prompt, chosen = data_mod.as_messages(r.prompt, r.chosen)
        local _, rejected = data_mod.as_messages(r.prompt, r.rejected)
        out.prompts[i], out.chosen[i] = data_mod.conversation_completion(tok, prompt, chosen, kw)
        local p2
        p2, out.rejected[i] = data_mod.conversation_completion(tok, prompt, rejected, kw)
        assert(p2 == out.prompts[i])
      end)
      if not ok then error(fname .. ": " .. tostring(err), 3) end
    elseif format == "instruction" then
      out.prompts[i] = template.instruction_prompt(r.prompt)
      out.chosen[i] = " " .. r.chosen .. "\n" .. template.END
      out.rejected[i] = " " .. r.rejected .. "\n" .. template.END
    else
      out.prompts[i], out.chosen[i], out.rejected[i] = r.prompt, r.chosen, r.rejected
    end
  end
  return out, chat
end

local SFT_FIELDS = { "model", "data", "out", "seed", "epochs", "max_steps", "learning_rate", "batch_size",
  "max_tokens", "gradient_accumulation_steps", "warmup_steps", "warmup_ratio", "schedule", "weight_decay",
  "max_grad_norm", "logging_steps", "save_steps", "save_total_limit", "resume", "full", "on_log", "eos", "progress",
  "eval_data", "eval_steps", "keep_best", "format", "columns", "assistant_only_loss", "completion_only_loss",
  "chat_template_kwargs", "max_length", "report_to" }
local SFT_NUMBERS = { "seed", "epochs", "max_steps", "learning_rate", "batch_size", "max_tokens",
  "gradient_accumulation_steps", "warmup_steps", "warmup_ratio", "weight_decay", "max_grad_norm",
  "logging_steps", "save_steps", "save_total_limit", "max_length" }
local SFT_BOOLEANS = { "resume", "full", "eos", "progress", "assistant_only_loss", "completion_only_loss" }

---Supervised fine-tuning of the model's LoRA adapters (or all weights with full = true) on
---prompt/completion records (the completion's tokens, + EOS, are trained), language-modeling text
---(all tokens) or conversations (the assistant turns through their end of turn); the loss is the
---mean cross-entropy over the trained tokens.
---Writes out/metrics.jsonl and out/checkpoints/step-N/; resumes from the latest checkpoint.
---@param opts table { model=, data={{prompt=, response=},...}, out=, seed=42, epochs=1 | max_steps=,
---  learning_rate=5e-6, batch_size= | max_tokens=, gradient_accumulation_steps=1, warmup_steps= | warmup_ratio=,
---  schedule="linear", weight_decay=0, max_grad_norm=1, logging_steps=10, save_steps=0, resume=true,
---  full=false, eos=true, on_log=function(metrics) end, eval_data={{prompt=, response=},...}, eval_steps=N,
---  keep_best="eval_loss", format="raw"|"chat"|"instruction" (how standard records become text),
---  columns={prompt="question", ...}, assistant_only_loss=true, completion_only_loss=true,
---  chat_template_kwargs={enable_thinking=false, ...}, max_length= (truncate longer records, keeping the
---  start; without it a record longer than the model's max_position_embeddings is an error naming it),
---  report_to="none" | "tensorboard" (also out/tensorboard/events.out.tfevents.cairun) }
---@return table metrics the last logged metrics plus steps=, interrupted=, checkpoint=, resumed_from=,
---  best={dir=, step=, value=} (with keep_best)
function train.sft(opts)
  local fname = "cai.train.sft"
  if type(opts) ~= "table" then error(fname .. ": expected a table of fields, got " .. type(opts), 2) end
  check_keys(fname, opts, SFT_FIELDS)
  if opts.model == nil then error(fname .. ": field 'model' is required", 2) end
  if type(opts.out) ~= "string" or opts.out == "" then
    error(fname .. ": field 'out' (the run directory) must be a non-empty string, got " .. type(opts.out), 2)
  end
  for _, key in ipairs(SFT_NUMBERS) do check_number(fname, opts, key, nil) end
  for _, key in ipairs(SFT_BOOLEANS) do
    if opts[key] ~= nil and type(opts[key]) ~= "boolean" then
      error(string.format("%s: field '%s' must be a boolean, got %s", fname, key, type(opts[key])), 2)
    end
  end
  if opts.schedule ~= nil and type(opts.schedule) ~= "string" then
    error(fname .. ": field 'schedule' must be a string, got " .. type(opts.schedule), 2)
  end
  if opts.on_log ~= nil and type(opts.on_log) ~= "function" then
    error(fname .. ": field 'on_log' must be a function, got " .. type(opts.on_log), 2)
  end
  check_format(fname, opts)
  if opts.data == nil then error(fname .. ": field 'data' is required", 2) end
  local types = { "prompt_completion", "language_modeling" }
  local train_in, chat = sft_inputs(fname, opts, dataset_of(fname, "data", opts.data, opts.columns, types))
  check_number(fname, opts, "eval_steps", nil)
  if opts.keep_best ~= nil and type(opts.keep_best) ~= "string" then
    error(fname .. ": field 'keep_best' must be an eval metric name such as \"eval_loss\", got " .. type(opts.keep_best), 2)
  end
  local options = {}
  local skip = { model = true, data = true, on_log = true, eval_data = true, format = true, columns = true,
    assistant_only_loss = true, completion_only_loss = true, chat_template_kwargs = true }
  for k, v in pairs(opts) do
    if not skip[k] then options[k] = v end
  end
  if chat then
    -- The template writes BOS and each turn's end itself.
    options.add_special_tokens = false
    if options.eos == nil then options.eos = false end
  end
  options.segments = train_in.segments
  if opts.eval_data ~= nil then
    local e = sft_inputs(fname, opts, dataset_of(fname, "eval_data", opts.eval_data, opts.columns, types))
    if (e.segments ~= nil) ~= (train_in.segments ~= nil) then
      error(fname .. ": eval_data must have the format of data", 2)
    end
    options.eval_prompts, options.eval_responses, options.eval_segments = e.segments == nil and e.prompts or nil,
      e.segments == nil and e.responses or nil, e.segments
  end
  local json = require "cai.json"
  local on_log = nil
  if opts.on_log then
    local user = opts.on_log
    on_log = function(line) user(json.decode(line)) end
  end
  local ok, last, steps, interrupted, checkpoint, resumed_from, best, best_step, best_value =
    pcall(prim.sft, opts.model, train_in.prompts, train_in.responses, options, on_log)
  if not ok then error(last, 2) end
  local result = json.decode(last)
  result.steps, result.interrupted = steps, interrupted
  if best ~= "" then result.best = { dir = best, step = best_step, value = best_value } end
  result.checkpoint = checkpoint ~= "" and checkpoint or nil
  result.resumed_from = resumed_from ~= "" and resumed_from or nil
  return result
end

local DPO_FIELDS = { "model", "pairs", "out", "seed", "epochs", "max_steps", "learning_rate", "batch_size",
  "max_tokens", "gradient_accumulation_steps", "warmup_steps", "warmup_ratio", "schedule", "weight_decay",
  "max_grad_norm", "logging_steps", "save_steps", "save_total_limit", "resume", "on_log", "eos", "progress",
  "beta", "loss", "label_smoothing", "reference", "reference_cache", "rpo_alpha",
  "eval_pairs", "eval_steps", "keep_best", "format", "columns", "chat_template_kwargs", "max_length",
  "report_to" }

---DPO on {prompt, chosen, rejected} pairs, training the model's LoRA adapters; the reference is the
---same model with its adapters switched off, or another model with the same vocabulary (reference = m2);
---reference_cache = true computes the reference log-probs once into out/reference_logps.json, keyed by a
---fingerprint of pairs, reference model and tokenizer. Metrics use TRL's names (rewards/chosen, ...).
---@param opts table { model=, pairs={{prompt=, chosen=, rejected=},...}, out=, beta=0.1, loss="sigmoid",
---  label_smoothing=0, reference="adapter_off" | model, reference_cache=false,
---  rpo_alpha=0 (loss += rpo_alpha * chosen NLL, logged as nll_loss), eval_pairs={...}, eval_steps=N,
---  keep_best="eval_loss" | "eval_rewards/accuracies" | ..., format=, columns=, chat_template_kwargs=
---  (as cai.train.sft), ... the trainer options of cai.train.sft }
---@return table metrics the last logged metrics plus steps=, interrupted=, checkpoint=, resumed_from=
function train.dpo(opts)
  local fname = "cai.train.dpo"
  if type(opts) ~= "table" then error(fname .. ": expected a table of fields, got " .. type(opts), 2) end
  check_keys(fname, opts, DPO_FIELDS)
  if opts.model == nil then error(fname .. ": field 'model' is required", 2) end
  if type(opts.out) ~= "string" or opts.out == "" then
    error(fname .. ": field 'out' (the run directory) must be a non-empty string, got " .. type(opts.out), 2)
  end
  for _, key in ipairs(SFT_NUMBERS) do check_number(fname, opts, key, nil) end
  check_number(fname, opts, "beta", nil)
  check_number(fname, opts, "label_smoothing", nil)
  check_number(fname, opts, "rpo_alpha", nil)
  for _, key in ipairs({ "resume", "eos", "progress", "reference_cache" }) do
    if opts[key] ~= nil and type(opts[key]) ~= "boolean" then
      error(string.format("%s: field '%s' must be a boolean, got %s", fname, key, type(opts[key])), 2)
    end
  end
  local ref = opts.reference
  if ref ~= nil and type(ref) ~= "string" and type(ref) ~= "table" and type(ref) ~= "userdata" then
    error(fname .. ": field 'reference' must be \"adapter_off\" or a model, got " .. type(ref), 2)
  end
  for _, key in ipairs({ "schedule", "loss" }) do
    if opts[key] ~= nil and type(opts[key]) ~= "string" then
      error(string.format("%s: field '%s' must be a string, got %s", fname, key, type(opts[key])), 2)
    end
  end
  if opts.loss ~= nil then
    local known = false
    for _, name in ipairs(train.dpo_loss_types) do known = known or name == opts.loss end
    if not known then
      error(string.format("%s: unknown loss '%s' (valid: %s)", fname, opts.loss, joined(train.dpo_loss_types)), 2)
    end
  end
  if opts.on_log ~= nil and type(opts.on_log) ~= "function" then
    error(fname .. ": field 'on_log' must be a function, got " .. type(opts.on_log), 2)
  end
  check_format(fname, opts)
  if opts.pairs == nil then error(fname .. ": field 'pairs' is required", 2) end
  local pref = { "preference" }
  local train_in, chat = dpo_inputs(fname, opts, dataset_of(fname, "pairs", opts.pairs, opts.columns, pref))
  check_number(fname, opts, "eval_steps", nil)
  if opts.keep_best ~= nil and type(opts.keep_best) ~= "string" then
    error(fname .. ": field 'keep_best' must be an eval metric name such as \"eval_loss\", got " .. type(opts.keep_best), 2)
  end
  local options = {}
  local skip = { model = true, pairs = true, on_log = true, eval_pairs = true, format = true, columns = true,
    chat_template_kwargs = true }
  for k, v in pairs(opts) do
    if not skip[k] then options[k] = v end
  end
  if chat then
    -- The template writes BOS and each turn's end itself.
    options.add_special_tokens = false
    if options.eos == nil then options.eos = false end
  end
  if opts.eval_pairs ~= nil then
    local e = dpo_inputs(fname, opts, dataset_of(fname, "eval_pairs", opts.eval_pairs, opts.columns, pref))
    options.eval_prompts, options.eval_chosen, options.eval_rejected = e.prompts, e.chosen, e.rejected
  end
  local json = require "cai.json"
  local on_log = nil
  if opts.on_log then
    local user = opts.on_log
    on_log = function(line) user(json.decode(line)) end
  end
  local ok, last, steps, interrupted, checkpoint, resumed_from, best, best_step, best_value =
    pcall(prim.dpo, opts.model, train_in.prompts, train_in.chosen, train_in.rejected, options, on_log)
  if not ok then error(last, 2) end
  local result = json.decode(last)
  result.steps, result.interrupted = steps, interrupted
  if best ~= "" then result.best = { dir = best, step = best_step, value = best_value } end
  result.checkpoint = checkpoint ~= "" and checkpoint or nil
  result.resumed_from = resumed_from ~= "" and resumed_from or nil
  return result
end

return train

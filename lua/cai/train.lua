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
local check = require "cai.check"

local train = {}

---The valid DPO loss names, in documentation order.
train.dpo_loss_types = prim.dpo_loss_types()

local number_list = { type = "list", items = "number", required = true }
local loss_rule = { type = "string", enum = train.dpo_loss_types }

local DPO_LOSS_SPEC = {
  policy_chosen = number_list, policy_rejected = number_list,
  reference_chosen = number_list, reference_rejected = number_list,
  beta = { type = "number", gt = 0 },
  loss = loss_rule,
  label_smoothing = { type = "number", min = 0, max = 0.5 },
  reference_free = "boolean",
  discopop_tau = "number",
}

---DPO-family losses for per-pair summed log-probabilities (TRL's DPOTrainer.dpo_loss).
---@param opts table { policy_chosen=, policy_rejected=, reference_chosen=, reference_rejected= (lists of numbers, same length), beta=0.1, loss="sigmoid", label_smoothing=0, reference_free=false, discopop_tau=0.05 }
---@return table { losses = {...}, chosen_rewards = {...}, rejected_rewards = {...} }
function train.dpo_loss(opts)
  local fname = "cai.train.dpo_loss"
  check(fname, opts, DPO_LOSS_SPEC)
  local n = #opts.policy_chosen
  for _, key in ipairs({ "policy_rejected", "reference_chosen", "reference_rejected" }) do
    local m = #opts[key]
    if m ~= n then
      error(string.format("%s: option '%s' has %d values but 'policy_chosen' has %d; all four lists need one value per pair",
        fname, key, m, n), 2)
    end
  end
  local beta = opts.beta or 0.1
  local loss = opts.loss or "sigmoid"
  local label_smoothing = opts.label_smoothing or 0
  local reference_free = opts.reference_free
  local discopop_tau = opts.discopop_tau or 0.05
  local ok, result = pcall(prim.dpo_loss, opts.policy_chosen, opts.policy_rejected, opts.reference_chosen,
    opts.reference_rejected, beta, loss, label_smoothing, reference_free == true, discopop_tau)
  if not ok then error(result, 2) end
  return result
end

local LR_SPEC = {
  lr = { type = "number", required = true },
  schedule = "string",
  total_steps = { type = "integer", required = true },
  warmup_steps = "integer",
  warmup_ratio = "number",
  step = { type = "integer", required = true },
}

---The learning rate before optimizer update `step` (0-based), as transformers' schedulers give it.
---@param opts table { lr=, schedule="linear"|"cosine"|"constant"|"constant_with_warmup", total_steps=, warmup_steps=0, warmup_ratio=0, step= }
---@return number
function train.learning_rate(opts)
  check("cai.train.learning_rate", opts, LR_SPEC)
  local lr, schedule = opts.lr, opts.schedule or "linear"
  local warmup_steps, warmup_ratio = opts.warmup_steps or 0, opts.warmup_ratio or 0
  local ok, result = pcall(prim.learning_rate, lr, schedule, opts.total_steps, warmup_steps, warmup_ratio, opts.step)
  if not ok then error(result, 2) end
  return result
end

-- ---- Data: records, files and datasets (cai.data) into C++ inputs ----------

local data_mod = require "cai.data"

-- A list of records, a file path or a cai.data dataset -> a dataset of the accepted types.
local function dataset_of(fname, field, value, columns, types)
  if data_mod.is_dataset(value) then
    local ok = false
    for _, t in ipairs(types) do ok = ok or t == value.type end
    if not ok then
      error(string.format("%s: option '%s' is %s data; %s takes %s", fname, field, value.description or value.type,
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
    error(string.format("%s: option '%s' must be a non-empty list of records, a JSONL/JSON file path or a "
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

-- ---- Run integrity: fingerprints, resuming, Ctrl-C ------------------------

-- The settings that change a trainer's result, with the defaults the trainer uses.
local RESULT_SETTINGS = {
  sft = { seed = 42, epochs = 1, max_steps = 0, learning_rate = 5e-6, batch_size = 0, max_tokens = 0,
    gradient_accumulation_steps = 1, warmup_steps = 0, warmup_ratio = 0, schedule = "linear", weight_decay = 0,
    max_grad_norm = 1, full = false, eos = true, max_length = 0 },
  reward = { seed = 42, epochs = 1, max_steps = 0, learning_rate = 5e-6, batch_size = 0, max_tokens = 0,
    gradient_accumulation_steps = 1, warmup_steps = 0, warmup_ratio = 0, schedule = "linear", weight_decay = 0,
    max_grad_norm = 1, full = false, center_rewards_coefficient = 0, max_length = 0, template = "" },
  dpo = { seed = 42, epochs = 1, max_steps = 0, learning_rate = 5e-6, batch_size = 0, max_tokens = 0,
    gradient_accumulation_steps = 1, warmup_steps = 0, warmup_ratio = 0, schedule = "linear", weight_decay = 0,
    max_grad_norm = 1, eos = true, beta = 0.1, loss = "sigmoid", label_smoothing = 0, rpo_alpha = 0,
    max_length = 0 },
}
-- Settings the learning-rate schedule is computed from.
local SCHEDULE_SETTINGS = { epochs = true, max_steps = true, warmup_steps = true, warmup_ratio = true,
  schedule = true, learning_rate = true }

local function shell_word(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The complete checkpoint with the highest step under out (its directory and trainer_state), or nil.
local function latest_checkpoint(out)
  local best, best_step = nil, -1
  local listing = io.popen("ls -1 " .. shell_word(out .. "/checkpoints") .. " 2>/dev/null")
  for name in listing:lines() do
    local step = tonumber(name:match("^step%-(%d+)$"))
    if step and step > best_step and require("cai").exists(out .. "/checkpoints/" .. name .. "/trainer_state.json") then
      best, best_step = out .. "/checkpoints/" .. name, step
    end
  end
  listing:close()
  return best
end

-- What makes this training run: the trainer, a hash of its data (the texts the trainer
-- gets, and whether a chat template made them), the model it starts from, and the
-- settings that change its result.
local function fingerprint_of(kind, opts, data, chat)
  local run = require "cai.run"
  local settings = {}
  for key, default in pairs(RESULT_SETTINGS[kind]) do
    local v = opts[key]
    if v == nil then v = default end
    -- JSON has no infinity or NaN; the trainer refuses them with a message naming the field.
    if type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then v = tostring(v) end
    settings[key] = v
  end
  if chat and opts.eos == nil then settings.eos = false end  -- the template ends each turn itself
  if settings.batch_size == 0 and settings.max_tokens == 0 then settings.batch_size = 8 end
  if kind == "dpo" then
    local ref = opts.reference
    if ref == nil or ref == "adapter_off" then
      settings.reference = "adapter_off"
    else
      settings.reference = require("cai.model").fingerprint(ref) or "a model"
    end
  end
  return { trainer = kind, data = run.fingerprint({ texts = data, chat = chat and true or false }), model = require("cai.model").fingerprint(opts.model),
    settings = settings }
end

local function show(v)
  if v == nil then return "absent" end
  return require("cai.json").encode(v)
end

-- Whether a run of another length (max_steps, epochs) gives the `step` steps already taken the
-- same learning rates, everything else about the schedule being equal.
local function same_schedule_so_far(old, new, step)
  for _, k in ipairs({ "schedule", "learning_rate", "warmup_steps", "warmup_ratio" }) do
    if show(old[k]) ~= show(new[k]) then return false end
  end
  if type(step) ~= "number" then return false end
  local old_max, new_max = tonumber(old.max_steps) or 0, tonumber(new.max_steps) or 0
  if old_max > 0 and new_max > 0 then
    if new_max < step then return false end
    for s = 0, step - 1 do
      local a = prim.learning_rate(1, new.schedule, old_max, new.warmup_steps, new.warmup_ratio, s)
      local b = prim.learning_rate(1, new.schedule, new_max, new.warmup_steps, new.warmup_ratio, s)
      if a ~= b then return false end
    end
    return true
  end
  -- Epoch-based lengths are known only to the trainer: only a constant rate is safe.
  return new.schedule == "constant" and (tonumber(new.warmup_ratio) or 0) == 0
    and show(old.max_steps) == show(new.max_steps)
end

-- Before training: refuses a checkpoint made with other data or settings (unless resume = "force"),
-- starts a fresh metrics.jsonl when there is no checkpoint, removes a killed run's temporaries.
local function prepare(fname, opts, fp)
  local run = require "cai.run"
  local json = require "cai.json"
  run.check_not_stopped(fname)
  local dist = require "cai.dist"
  if dist.is_main() then run.clean_temporaries(opts.out) end
  local latest = latest_checkpoint(opts.out)
  if latest == nil then
    -- A run stopped before its first checkpoint starts again from step 0: its old log goes.
    if dist.is_main() then os.remove(opts.out .. "/metrics.jsonl") end
    dist.barrier("a fresh " .. opts.out .. "/metrics.jsonl")
    return
  end
  if opts.resume == false then return end  -- the trainer refuses existing checkpoints itself
  local f = io.open(latest .. "/trainer_state.json", "rb")
  local ok, state = pcall(json.decode, f and f:read("*a") or "")
  if f then f:close() end
  local old = ok and type(state) == "table" and type(state.metadata) == "table" and state.metadata.fingerprint or nil
  local differ = {}
  if type(old) ~= "table" then
    differ[1] = "it records no fingerprint (made by an older cairun)"
  else
    if old.trainer ~= fp.trainer then differ[#differ + 1] = string.format("trainer (was %s, now %s)", show(old.trainer), show(fp.trainer)) end
    if old.data ~= fp.data then differ[#differ + 1] = "data (other training records)" end
    if old.model ~= fp.model then differ[#differ + 1] = "model (it started from another model or adapter)" end
    local keys = {}
    local os_ = type(old.settings) == "table" and old.settings or {}
    for k in pairs(fp.settings) do keys[#keys + 1] = k end
    for k in pairs(os_) do if fp.settings[k] == nil then keys[#keys + 1] = k end end
    table.sort(keys)
    local length_ok = same_schedule_so_far(os_, fp.settings, type(state) == "table" and state.step or 0)
    for _, k in ipairs(keys) do
      if (k == "max_steps" or k == "epochs") and length_ok then
        -- Training longer on a schedule that gave the steps taken the same learning rates: the
        -- result is that of a run started with the new length.
      elseif show(os_[k]) ~= show(fp.settings[k]) then
        differ[#differ + 1] = string.format("%s (was %s, now %s%s)", k, show(os_[k]), show(fp.settings[k]),
          SCHEDULE_SETTINGS[k] and "; the learning-rate schedule would change" or "")
      end
    end
  end
  if #differ == 0 then return end
  if opts.resume == "force" then
    require("cai.log").warn(string.format("%s: resuming from %s although it differs (resume = \"force\"): %s",
      fname, latest, table.concat(differ, ", ")))
    return
  end
  error(string.format("%s: cannot resume from %s, it was made with other data or settings: %s. Use the same "
    .. "data and settings, another out directory, or resume = \"force\" to continue from it anyway", fname, latest,
    table.concat(differ, ", ")), 3)
end

-- After training: the model's fingerprint follows, and Ctrl-C stops the recipe.
local function after(fname, opts, fp, result)
  local fp_text = require("cai.json").encode(fp)
  require("cai.model")._trained(opts.model, require("cai._run").hash(fp_text .. "|" .. tostring(result.steps)))
  if result.interrupted then
    require("cai.run").stop(string.format("%s stopped at step %d; saved %s", fname, result.steps or 0,
      tostring(result.checkpoint)))
  end
end

-- The options cai.train.sft and cai.train.dpo share (the trainer's and the data's).
local function trainer_spec(extra)
  local spec = {
    model = { required = true, type = "table|userdata", expect = "a model" },
    out = { type = "string", required = true, nonempty = true },
    seed = "integer",
    epochs = { type = "integer", min = 0 },
    max_steps = { type = "integer", min = 0 },
    learning_rate = { type = "number", finite = true, min = 0 },
    batch_size = { type = "integer", min = 1 },
    max_tokens = { type = "integer", min = 1 },
    gradient_accumulation_steps = { type = "integer", min = 1 },
    warmup_steps = { type = "integer", min = 0 },
    warmup_ratio = { type = "number", min = 0, max = 1 },
    schedule = { type = "string", enum = { "linear", "cosine", "constant", "constant_with_warmup" } },
    weight_decay = { type = "number", finite = true, min = 0 },
    max_grad_norm = { type = "number", finite = true, min = 0 },
    logging_steps = { type = "integer", min = 1 },
    save_steps = { type = "integer", min = 0 },
    save_total_limit = { type = "integer", min = 0 },
    resume = { type = "boolean|string", expect = 'true, false or "force"',
      check = function(v)
        if type(v) == "string" and v ~= "force" then return 'must be true, false or "force", got ' .. string.format("%q", v) end
      end },
    eos = "boolean", progress = "boolean", on_log = "function",
    eval_steps = { type = "integer", min = 0 },
    keep_best = { type = "string", expect = 'an eval metric name such as "eval_loss"' },
    max_length = { type = "integer", min = 0 },  -- 0: no truncation
    -- TRL's option; metrics.jsonl is always written
    report_to = { type = "string|list", items = { type = "string", enum = { "none", "tensorboard" } },
      expect = '"none", "tensorboard" or a list of them',
      check = function(v)
        if type(v) == "string" and v ~= "none" and v ~= "tensorboard" then
          return 'must be "none", "tensorboard" or a list of them, got ' .. string.format("%q", v)
            .. " (metrics.jsonl is always written)"
        end
      end },
    format = { type = "string", enum = { "chat", "instruction", "raw" } },
    columns = { type = "table", expect = 'a table { prompt = "question", ... }' },
    chat_template_kwargs = { type = "table", expect = "a table of template variables" },
  }
  for k, v in pairs(extra) do spec[k] = v end
  return spec
end

-- The options passed to the trainer primitive: opts without the keys Lua consumed.
local function trainer_options(opts, consumed)
  local options = {}
  for k, v in pairs(opts) do
    if not consumed[k] then options[k] = v end
  end
  return options
end

-- Runs a trainer primitive (its last argument is on_log, which gets each
-- metrics line decoded) and returns the last metrics plus steps=,
-- interrupted=, checkpoint=, resumed_from= and best= (with keep_best).
-- Errors are raised at level 3: the caller of cai.train.sft/dpo.
local function run_trainer(primitive, user_on_log, ...)
  local json = require "cai.json"
  local args = { ... }
  local n = select("#", ...)
  if user_on_log then args[n + 1] = function(line) user_on_log(json.decode(line)) end end
  local ok, last, steps, interrupted, checkpoint, resumed_from, best, best_step, best_value =
    pcall(primitive, unpack(args, 1, n + 1))
  if not ok then error(last, 3) end
  local result = json.decode(last)
  result.steps, result.interrupted = steps, interrupted
  if best ~= "" then result.best = { dir = best, step = best_step, value = best_value } end
  result.checkpoint = checkpoint ~= "" and checkpoint or nil
  result.resumed_from = resumed_from ~= "" and resumed_from or nil
  return result
end

local DATA_RULE = { required = true, type = "string|table",
  expect = "a non-empty list of records, a JSONL/JSON file path or a cai.data dataset" }

local SFT_SPEC = trainer_spec {
  data = DATA_RULE,
  eval_data = { type = "string|table", expect = DATA_RULE.expect },
  full = "boolean",
  assistant_only_loss = "boolean",
  completion_only_loss = "boolean",
}

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
  check(fname, opts, SFT_SPEC)
  local types = { "prompt_completion", "language_modeling" }
  local train_in, chat = sft_inputs(fname, opts, dataset_of(fname, "data", opts.data, opts.columns, types))
  local fp = fingerprint_of("sft", opts, train_in, chat)
  prepare(fname, opts, fp)
  local options = trainer_options(opts, { model = true, data = true, on_log = true, eval_data = true, format = true,
    columns = true, assistant_only_loss = true, completion_only_loss = true, chat_template_kwargs = true })
  if chat then
    -- The template writes BOS and each turn's end itself.
    options.add_special_tokens = false
    if options.eos == nil then options.eos = false end
  end
  options.segments = train_in.segments
  options.resume = opts.resume ~= false
  options.fingerprint = require("cai.json").encode(fp)
  if opts.eval_data ~= nil then
    local e = sft_inputs(fname, opts, dataset_of(fname, "eval_data", opts.eval_data, opts.columns, types))
    if (e.segments ~= nil) ~= (train_in.segments ~= nil) then
      error(fname .. ": eval_data must have the format of data", 2)
    end
    options.eval_prompts, options.eval_responses, options.eval_segments = e.segments == nil and e.prompts or nil,
      e.segments == nil and e.responses or nil, e.segments
  end
  local result = run_trainer(prim.sft, opts.on_log, opts.model, train_in.prompts, train_in.responses, options)
  after(fname, opts, fp, result)
  return result
end

local DPO_SPEC = trainer_spec {
  pairs = DATA_RULE,
  eval_pairs = { type = "string|table", expect = DATA_RULE.expect },
  beta = { type = "number", gt = 0, finite = true },
  loss = loss_rule,
  label_smoothing = { type = "number", min = 0, max = 0.5 },
  rpo_alpha = { type = "number", min = 0 },
  reference = { type = "string|table|userdata", expect = '"adapter_off" or a model' },
  reference_cache = "boolean",
}

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
  check(fname, opts, DPO_SPEC)
  local pref = { "preference" }
  local train_in, chat = dpo_inputs(fname, opts, dataset_of(fname, "pairs", opts.pairs, opts.columns, pref))
  local fp = fingerprint_of("dpo", opts, train_in, chat)
  prepare(fname, opts, fp)
  local options = trainer_options(opts, { model = true, pairs = true, on_log = true, eval_pairs = true, format = true,
    columns = true, chat_template_kwargs = true })
  if chat then
    -- The template writes BOS and each turn's end itself.
    options.add_special_tokens = false
    if options.eos == nil then options.eos = false end
  end
  options.resume = opts.resume ~= false
  options.fingerprint = require("cai.json").encode(fp)
  if opts.eval_pairs ~= nil then
    local e = dpo_inputs(fname, opts, dataset_of(fname, "eval_pairs", opts.eval_pairs, opts.columns, pref))
    options.eval_prompts, options.eval_chosen, options.eval_rejected = e.prompts, e.chosen, e.rejected
  end
  local result = run_trainer(prim.dpo, opts.on_log, opts.model, train_in.prompts, train_in.chosen, train_in.rejected,
    options)
  after(fname, opts, fp, result)
  return result
end

local REWARD_SPEC = trainer_spec {
  pairs = DATA_RULE,
  eval_pairs = { type = "string|table", expect = DATA_RULE.expect },
  full = "boolean",
  center_rewards_coefficient = { type = "number", min = 0, finite = true },
  template = { type = "string", nonempty = true, expect = "a template with {instruction} and {response}" },
}

-- Preference records -> the whole texts a reward model scores: the template
-- (cai.template "reward" by default, what cai.scoring.reward_model renders)
-- with instruction = prompt and response = chosen / rejected.
local function reward_texts(fname, opts, ds)
  if ds.conversational then
    error(fname .. ": " .. tostring(ds.where[1]) .. " is conversational; cai.train.reward takes standard (string) "
      .. "preference records, scored as the template renders them", 3)
  end
  local template = require "cai.template"
  local fmt = opts.template or template.get("reward")
  local out = { chosen = {}, rejected = {} }
  for i, r in ipairs(ds.records) do
    out.chosen[i] = template.render(fmt, { instruction = r.prompt or "", response = r.chosen })
    out.rejected[i] = template.render(fmt, { instruction = r.prompt or "", response = r.rejected })
  end
  return out
end

---Reward-model training (TRL's RewardTrainer): a one-output score head on the causal LM `model`,
---read at each text's last token, trained with the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected)
---on {prompt, chosen, rejected} records, each side rendered as cai.scoring.reward_model scores it
---("Instruction: {instruction}\nResponse: {response}", or template=). The head always trains; the model
---trains through its LoRA adapters, or all its weights with full = true. At the end the reward model is
---written to out/model as transformers' *ForSequenceClassification (config.json with num_labels = 1,
---model.safetensors with score.weight, the tokenizer files), for cai.scoring.reward_model and
---AutoModelForSequenceClassification; with LoRA the adapters are merged into `model` to write it.
---Metrics: loss, accuracy, margin, mean_reward (eval_... on eval_pairs).
---@param opts table { model=, pairs=, out=, full=false, center_rewards_coefficient=0, template=,
---  eval_pairs=, ... the trainer options of cai.train.sft }
---@return table metrics the last logged metrics plus steps=, interrupted=, checkpoint=, resumed_from=,
---  model_dir= (out/model; absent when interrupted)
function train.reward(opts)
  local fname = "cai.train.reward"
  check(fname, opts, REWARD_SPEC)
  local pref = { "preference" }
  local train_in = reward_texts(fname, opts, dataset_of(fname, "pairs", opts.pairs, opts.columns, pref))
  local fp = fingerprint_of("reward", opts, train_in, false)
  prepare(fname, opts, fp)
  local options = trainer_options(opts, { model = true, pairs = true, on_log = true, eval_pairs = true, format = true,
    columns = true, chat_template_kwargs = true, template = true, eos = true })
  options.resume = opts.resume ~= false
  options.fingerprint = require("cai.json").encode(fp)
  if opts.eval_pairs ~= nil then
    local e = reward_texts(fname, opts, dataset_of(fname, "eval_pairs", opts.eval_pairs, opts.columns, pref))
    options.eval_chosen, options.eval_rejected = e.chosen, e.rejected
  end
  local model_dir
  local wrapped = function(...)
    local results = { pcall(prim.reward, ...) }
    if not results[1] then error(results[2], 0) end
    model_dir = results[10]
    return unpack(results, 2, 9)
  end
  local result = run_trainer(wrapped, opts.on_log, opts.model, train_in.chosen, train_in.rejected, options)
  result.model_dir = model_dir ~= "" and model_dir or nil
  after(fname, opts, fp, result)
  return result
end

return train

-- stage1_sft_dpo.lua: Stage 1 instruction following, SFT then DPO, as files
-- on disk that each step reads and writes, so any step can be rerun, edited
-- or resumed on its own.
--
--   1. sft_data.jsonl       instructions with good responses (sft_data= reads TRL prompt/completion,
--                           Alpaca or instruction/response files, JSONL or a JSON array)
--   2. sft/                 LoRA SFT, loss on the response (and END) only; sft/merged = base + adapter
--   3. sft_responses.jsonl  the SFT model's answers to the pair instructions (resumable)
--   4. pairs.jsonl          chosen = SFT response, rejected = one of five negative types
--                           (30% unwarranted refusal, 25% format violation, 20% incorrect factual,
--                           15% off topic, 10% verbose/vague)
--   5. dpo/                 DPO from the SFT model (new LoRA on the merged weights; reference = SFT)
--   6. eval/<model>.jsonl   base, SFT and DPO answers to held-out instructions (resumable)
--      summary.json         the nine criteria and preference accuracy per model with 95% intervals,
--                           paired tests (McNemar, Holm-corrected over the criteria) base->SFT, SFT->DPO
--      report.html
--
--   build/cairun recipes/stage1_sft_dpo.lua out=runs/stage1 sft_examples=200 pair_examples=500
--
-- format=chat talks to the model in its own chat template (each instruction a
-- user turn; SFT trains the assistant turn and its end-of-turn token;
-- generation stops at the template's end of turn); format=instruction uses
-- the Instruction:/Response:/END text format; format=auto (the default) picks
-- chat when the tokenizer has a chat template.
--
-- Stop it at any point (Ctrl-C saves and exits with status 130) and run the
-- same command again: finished stages are kept, generation files continue
-- where they stopped, training resumes from its last checkpoint
-- (save_steps). Each stage records a fingerprint of its inputs in run.json; a
-- stage whose inputs changed (an edited sft_data.jsonl or pairs.jsonl, say)
-- is redone, with every stage after it.
local cai = require "cai"
local template = cai.template

local args = cai.args{
  model = "tiny",              -- "tiny" or a Hugging Face model directory
  dtype = "",                  -- compute dtype: "fp32" or "bf16"; "" = the loader's default
  format = "auto",             -- "chat" | "instruction" | "auto" (chat when the tokenizer has a chat template)
  enable_thinking = false,     -- chat templates that read it (Qwen3): no reasoning block
  out = "runs/stage1",
  seed = 42,
  sft_data = "",               -- prompt/completion data (TRL, Alpaca, instruction/response); "" = the synthetic world's
  sft_examples = 200,
  pair_examples = 500,
  eval_examples = 100,
  max_new_tokens = 48,
  gen_batch = 32,              -- prompts per generate call (never changes a sample)
  sft_steps = 300,
  sft_lr = 2e-3,
  dpo_steps = 150,
  dpo_lr = 1e-3,
  beta = 0.1,
  loss = "sigmoid",
  rpo_alpha = 1.0,             -- NLL on the chosen answer added to DPO (0: plain DPO)
  lora_r = 16,
  lora_alpha = 32,
  batch_size = 16,
  save_steps = 50,             -- training checkpoints, for resuming
}
local out = args.out
local run = cai.run.open(out, { may_change = { "gen_batch" } })
local base_dir = cai.model.resolve(args.model)
local base_fingerprint = cai.run.path_fingerprint(base_dir)

local world = cai.world.new{ seed = args.seed }
local gen = { max_new_tokens = args.max_new_tokens, temperature = 0, seed = args.seed, progress = false }
local load_opts = args.dtype ~= "" and { dtype = args.dtype } or nil
local lora = { r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear" }
-- What decides the prompt format and the compute dtype (inputs of every model stage).
local model_settings = { format = args.format, enable_thinking = args.enable_thinking, dtype = args.dtype }

-- The prompt format (cai.format), fixed by the first model loaded.
local fmt
local function format_of(m)
  fmt = fmt or cai.format.new(m.tokenizer, args.format, { enable_thinking = args.enable_thinking })
  return fmt
end

-- Generates answers to instructions into a resumable JSONL stage file.
local function answer_stage(m, path, name, instructions, use_lora)
  local f = format_of(m)
  local st = cai.stage.open(path, { name = name })
  return st:run(instructions, function(batch, first_index)
    local prompts = f:prompts(batch)
    local g = f:generate_options(gen)
    g.first_index, g.use_lora = first_index, use_lora
    local outs = m:generate(prompts, g)
    local records = {}
    for i, o in ipairs(outs) do records[i] = { instruction = batch[i], response = o.text, finish = o.finish } end
    return records
  end, { batch_size = args.gen_batch })
end

-- 1. SFT data ------------------------------------------------------------
local sft_path = out .. "/sft_data.jsonl"
local data_stage = run:stage("sft_data", { inputs = { sft_data = args.sft_data ~= "" and
  cai.run.path_fingerprint(args.sft_data) or "", sft_examples = args.sft_examples, seed = args.seed },
  outputs = { sft_path } })
if not data_stage.finished or not cai.exists(sft_path) then
  local records = {}
  if args.sft_data ~= "" then
    local ds = cai.data.load(args.sft_data, { types = { "prompt_completion" } })
    for i, r in ipairs(ds.records) do
      local response = r.completion
      if type(response) == "string" then response = template.strip_end(response) end
      records[i] = { instruction = r.prompt, response = response }
    end
  else
    for i, r in ipairs(world:instructions(args.sft_examples, { split = "train" })) do
      records[i] = { instruction = r.instruction, response = r.reference }
    end
  end
  cai.jsonl.write(sft_path, records)
  data_stage:finish{ items = #records }
end
local sft_records = cai.jsonl.read(sft_path)
cai.log.info("stage 1: " .. #sft_records .. " SFT examples in " .. sft_path)

-- 2. SFT ----------------------------------------------------------------
-- The fingerprint decides: an unfinished SFT resumes (and is merged again) even when an
-- sft/merged from an earlier attempt is there.
local merged_dir = out .. "/sft/merged"
local sft_settings = { seed = args.seed, max_steps = args.sft_steps, learning_rate = args.sft_lr,
  batch_size = args.batch_size, warmup_ratio = 0.05, schedule = "cosine" }
local sft_stage = run:stage("sft", { inputs = { model = base_fingerprint, model_settings = model_settings,
  lora = lora, data = sft_records, settings = sft_settings }, outputs = { out .. "/sft" } })
if not sft_stage.finished or not cai.exists(merged_dir .. "/config.json") then
  local m = cai.model.load(base_dir, load_opts)
  local f = format_of(m)
  local data = f:sft_data(sft_records)
  m:add_lora{ r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear", seed = args.seed }
  local result = cai.train.sft{ model = m, data = data, format = f.name,
    chat_template_kwargs = f.chat_template_kwargs, out = out .. "/sft", seed = args.seed, max_steps = args.sft_steps,
    learning_rate = args.sft_lr, batch_size = args.batch_size, warmup_ratio = 0.05, schedule = "cosine",
    logging_steps = 10, save_steps = args.save_steps, save_total_limit = 2 }
  m:save_lora(out .. "/sft/adapter")
  m:merge_lora()
  m:save(merged_dir)
  m:release()
  sft_stage:finish{ steps = result.steps, items = #data }
end

-- 3. SFT responses --------------------------------------------------------
local pair_items = world:instructions(args.pair_examples, { split = "train" })
local pair_instructions = {}
for i, r in ipairs(pair_items) do pair_instructions[i] = r.instruction end
local sft_model = cai.model.load(merged_dir, load_opts)
local f = format_of(sft_model)
-- Negatives and DPO pairs: formatted by cai.train.dpo in chat format, by cai.negatives otherwise.
local pair_format = f.name == "chat" and "raw" or "instruction"
local responses_stage = run:stage("sft_responses", { inputs = { sft = sft_stage, instructions = pair_instructions,
  gen = gen, format = f.name }, outputs = { out .. "/sft_responses.jsonl" } })
local responses = answer_stage(sft_model, out .. "/sft_responses.jsonl", "sft responses", pair_instructions)
responses_stage:finish{ items = #responses }

-- 4. Pairs ----------------------------------------------------------------
local pairs_path = out .. "/pairs.jsonl"
local pairs_stage = run:stage("pairs", { inputs = { responses = responses_stage, items = pair_items },
  outputs = { pairs_path, out .. "/pair_stats.json" } })
if not pairs_stage.finished or not cai.exists(pairs_path) then
  local items = {}
  for i, r in ipairs(responses) do
    local answer = f:response(r.response)
    -- An empty SFT answer cannot be "chosen"; the world's reference stands in (counted below).
    items[i] = { instruction = r.instruction, response = answer ~= "" and answer or pair_items[i].reference,
      should_refuse = pair_items[i].should_refuse }
  end
  local made, stats = cai.negatives.generate(items, { seed = args.seed, format = pair_format })
  cai.jsonl.write(pairs_path, made)
  cai.json.write(out .. "/pair_stats.json", stats)
  pairs_stage:finish{ items = #made }
end
local pref_pairs = cai.jsonl.read(pairs_path)
cai.log.info("stage 1: " .. #pref_pairs .. " preference pairs in " .. pairs_path)

-- 5. DPO from SFT -----------------------------------------------------------
local adapter_dir = out .. "/dpo/adapter"
local dpo_pairs = {}
for i, p in ipairs(pref_pairs) do dpo_pairs[i] = { prompt = p.prompt, chosen = p.chosen, rejected = p.rejected } end
local dpo_settings = { seed = args.seed, beta = args.beta, loss = args.loss, max_steps = args.dpo_steps,
  learning_rate = args.dpo_lr, batch_size = args.batch_size, warmup_ratio = 0.1, schedule = "cosine",
  rpo_alpha = args.rpo_alpha > 0 and args.rpo_alpha or nil }
local dpo_stage = run:stage("dpo", { inputs = { sft = sft_stage, lora = lora, pairs = dpo_pairs,
  settings = dpo_settings }, outputs = { out .. "/dpo" } })
if not dpo_stage.finished or not cai.exists(adapter_dir .. "/adapter_config.json") then
  sft_model:add_lora{ r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear", seed = args.seed + 2 }
  local result = cai.train.dpo{ model = sft_model, pairs = dpo_pairs, format = f:dpo_format(),
    chat_template_kwargs = f.chat_template_kwargs, out = out .. "/dpo", seed = args.seed, beta = args.beta,
    loss = args.loss, max_steps = args.dpo_steps, learning_rate = args.dpo_lr, batch_size = args.batch_size,
    warmup_ratio = 0.1, schedule = "cosine", logging_steps = 10, save_steps = args.save_steps, save_total_limit = 2,
    rpo_alpha = dpo_settings.rpo_alpha }
  sft_model:save_lora(adapter_dir)
  dpo_stage:finish{ steps = result.steps, items = #dpo_pairs }
else
  sft_model:load_lora(adapter_dir)
end

-- 6. Evaluation -----------------------------------------------------------------
local heldout = world:instructions(args.eval_examples, { split = "heldout" })
local heldout_instructions = {}
for i, r in ipairs(heldout) do heldout_instructions[i] = r.instruction end
local held_items = {}
for i, r in ipairs(heldout) do
  held_items[i] = { instruction = r.instruction, response = r.reference, should_refuse = r.should_refuse }
end
local heldout_pairs = cai.negatives.generate(held_items, { seed = args.seed + 1, format = pair_format })
if f.name == "chat" then heldout_pairs = f:scoring_pairs(heldout_pairs) end

local eval_stage = run:stage("eval", { inputs = { sft = sft_stage, dpo = dpo_stage, model = base_fingerprint,
  instructions = heldout_instructions, gen = gen }, outputs = { out .. "/eval", out .. "/samples.jsonl" } })
local outputs, wins, accuracy = {}, {}, {}
local function evaluate(m, name, use_lora)
  local answers = answer_stage(m, out .. "/eval/" .. name .. ".jsonl", "eval " .. name, heldout_instructions, use_lora)
  outputs[name] = {}
  for i, a in ipairs(answers) do outputs[name][i] = { text = a.response, finish = a.finish } end
  accuracy[name], wins[name] = cai.eval.preference_accuracy(m, heldout_pairs,
    { use_lora = use_lora, eos = f.name ~= "chat" })
end
evaluate(sft_model, "dpo")
evaluate(sft_model, "sft", false)  -- the SFT model is the DPO model with its adapter off
sft_model:release()
local base = cai.model.load(base_dir, load_opts)
evaluate(base, "base")
base:release()

local report = cai.eval.run(world:eval_items(heldout), outputs,
  { stop_means_end = true, eos_means_end = f.name == "chat", factual_judge = world:factual_judge() })
local summary = { models = {}, comparisons = {}, preference_tests = {}, format = f.name }
for _, name in ipairs({ "base", "sft", "dpo" }) do
  local entry = {}
  for criterion, r in pairs(report.models[name].rates) do entry[criterion] = r end
  entry.preference_accuracy = accuracy[name]
  summary.models[name] = entry
end
summary.comparisons.base_sft = cai.eval.compare(report, "base", "sft")
summary.comparisons.sft_dpo = cai.eval.compare(report, "sft", "dpo")
summary.comparisons.base_dpo = cai.eval.compare(report, "base", "dpo")  -- base -> final
summary.preference_tests.base_sft = cai.stats.mcnemar_paired(wins.base, wins.sft)
summary.preference_tests.sft_dpo = cai.stats.mcnemar_paired(wins.sft, wins.dpo)
summary.preference_tests.base_dpo = cai.stats.mcnemar_paired(wins.base, wins.dpo)

local samples = {}
for i = 1, math.min(12, #heldout) do
  samples[i] = { instruction = heldout[i].instruction, reference = heldout[i].reference,
    base = outputs.base[i].text, sft = outputs.sft[i].text, dpo = outputs.dpo[i].text,
    checks = cai.eval.item_checks(report, i) }
end
cai.jsonl.write(out .. "/samples.jsonl", samples)
eval_stage:finish{ items = #heldout }
run:write_summary(summary)  -- only once every stage has finished
run:finish()
cai.report.collect_metrics(out, { "sft", "dpo" })
cai.report.build(out)

print(cai.eval.format(report))
print(cai.eval.format_comparison(summary.comparisons.base_sft))
print(cai.eval.format_comparison(summary.comparisons.sft_dpo))
for _, name in ipairs({ "base", "sft", "dpo" }) do
  local a = accuracy[name]
  print(string.format("%-4s preference_accuracy %.2f [%.2f, %.2f]", name, a.rate, a.lo, a.hi))
end
print("stage1_sft_dpo: done, report in " .. out .. "/report.html")

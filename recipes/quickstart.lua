-- quickstart.lua: the whole Stage 1 pipeline in one run, on the embedded tiny
-- model by default (any Hugging Face directory with model=).
--
--   base answers held-out instructions
--   -> SFT on the world's reference answers (loss on the response only)
--   -> negatives of the five types on the SFT model's own answers -> pairs
--   -> DPO from the SFT model (its merged weights are the reference)
--   -> base, SFT and DPO evaluated on held-out instructions: the nine criteria
--      and preference accuracy, each with a 95% interval
--   -> out/: config.json, run.json, pairs.jsonl, metrics.jsonl, samples.jsonl,
--      summary.json, checkpoints (sft/, dpo/), report.html
--
--   build/cairun recipes/quickstart.lua out=runs/quickstart
--   build/cairun recipes/quickstart.lua model=path/to/Qwen3-0.6B format=chat
--
-- format=chat talks to the model in its own chat template (each instruction a
-- user message, the answer the assistant turn, generation ends at the
-- template's end of turn); format=instruction uses the Instruction:/Response:/END
-- text format; format=auto (the default) picks chat when the model's tokenizer
-- has a chat template (the embedded tiny model has none).
--
-- mode=dpo_only trains DPO from the base model (its pairs built from the
-- world's reference answers, the data SFT would have seen); mode=sft_only
-- stops after SFT. negative_mix=uniform weighs the five negative types
-- equally, negative_mix=refusals makes every negative an unwarranted refusal
-- (requests that should be refused then make no pair).
-- summary.final holds the last model's results under one name, so that
-- recipes/ablations.lua can compare the variants.
--
-- Ctrl-C saves the running trainer's checkpoint and stops (status 130); the
-- same command continues. Each stage records a fingerprint of its inputs in
-- run.json: a rerun continues or reuses a stage whose inputs are the same and
-- redoes one whose inputs changed, with everything after it.
local cai = require "cai"

local args = cai.args{
  model = "tiny",              -- "tiny" or a Hugging Face model directory
  dtype = "",                  -- compute dtype: "fp32" or "bf16"; "" = the loader's default
  format = "auto",             -- "chat" | "instruction" | "auto" (chat when the tokenizer has a chat template)
  enable_thinking = false,     -- chat templates that read it (Qwen3): no reasoning block
  out = "runs/quickstart",     -- run directory
  seed = 42,                   -- decides data, init, dropout and sampling
  sft_examples = 400,          -- training instructions with reference answers
  pair_examples = 300,         -- instructions turned into preference pairs
  eval_examples = 80,          -- held-out instructions
  max_new_tokens = 40,         -- per generated answer
  sft_steps = 300,
  sft_lr = 2e-3,
  dpo_steps = 150,
  dpo_lr = 1e-3,
  beta = 0.1,                  -- DPO temperature
  loss = "sigmoid",            -- any TRL DPO loss name
  rpo_alpha = 1.0,             -- weight of the NLL of the chosen answer added to DPO (0: plain DPO)
  lora_r = 16,
  lora_alpha = 32,
  batch_size = 16,
  mode = "sft_dpo",            -- "sft_dpo" | "dpo_only" (DPO from the base model) | "sft_only"
  negative_mix = "default",    -- "default" (30/25/20/15/10) | "uniform" | "refusals"
}
local MODES = { sft_dpo = true, dpo_only = true, sft_only = true }
if not MODES[args.mode] then
  error(string.format('quickstart.lua: mode must be "sft_dpo", "dpo_only" or "sft_only", got %q', args.mode), 0)
end
local MIXES = { default = false, refusals = { { type = "unwarranted_refusal", weight = 1 } }, uniform = {} }
for _, t in ipairs(cai.negatives.TYPES) do MIXES.uniform[#MIXES.uniform + 1] = { type = t, weight = 1 } end
if MIXES[args.negative_mix] == nil then
  error(string.format('quickstart.lua: negative_mix must be "default", "uniform" or "refusals", got %q',
    args.negative_mix), 0)
end
local mix = MIXES[args.negative_mix] or nil
local do_sft, do_dpo = args.mode ~= "dpo_only", args.mode ~= "sft_only"

local out = args.out
local run = cai.run.open(out)  -- lock, config.json, run.json; a rerun must use the same settings

-- Data: a seeded synthetic world with disjoint train and held-out instructions.
local world = cai.world.new{ seed = args.seed }
local train_items = world:instructions(args.sft_examples, { split = "train" })
local pair_items = world:instructions(args.pair_examples, { split = "train" })
local heldout = world:instructions(args.eval_examples, { split = "heldout" })

-- 1. The base model, and the prompt format it is talked to in (cai.format).
local load_opts = args.dtype ~= "" and { dtype = args.dtype } or nil
local base = cai.model.load(args.model, load_opts)
local f = cai.format.new(base.tokenizer, args.format, { enable_thinking = args.enable_thinking })
cai.log.info("quickstart: " .. f.name .. " format")
-- Negatives and DPO pairs: plain answers rendered by cai.train.dpo in chat
-- format, Instruction:/Response:/END text made by cai.negatives otherwise.
local pair_format = f.name == "chat" and "raw" or "instruction"

local function prompts_of(items)
  local instructions = {}
  for i, item in ipairs(items) do instructions[i] = item.instruction end
  return f:prompts(instructions)
end
local heldout_prompts = prompts_of(heldout)
local gen = f:generate_options{ max_new_tokens = args.max_new_tokens, temperature = 0, seed = args.seed }

-- Held-out preference pairs: the reference answer against a negative.
local heldout_pairs = cai.negatives.generate((function()
  local items = {}
  for i, r in ipairs(heldout) do
    items[i] = { instruction = r.instruction, response = r.reference, should_refuse = r.should_refuse }
  end
  return items
end)(), { seed = args.seed + 1, format = pair_format })
if f.name == "chat" then heldout_pairs = f:scoring_pairs(heldout_pairs) end

-- Preference accuracy: the share of held-out pairs where the model gives the
-- chosen response the higher log-prob (overall and per negative type), each
-- response scored as a finished answer (END and EOS, or the chat end of turn).
local preference_wins = {}  -- model name -> list of booleans, for the paired test
local function preference_accuracy(m, name)
  local result, wins = cai.eval.preference_accuracy(m, heldout_pairs, { eos = f.name ~= "chat" })
  preference_wins[name] = wins
  return result
end

local base_stage = run:stage("base", { inputs = { model = base, prompts = heldout_prompts, gen = gen,
  format = f.name, enable_thinking = args.enable_thinking } })
cai.log.info("stage base: answering " .. #heldout .. " held-out instructions")
local outputs, accuracy = {}, {}
outputs.base = base:generate(heldout_prompts, gen)
accuracy.base = preference_accuracy(base, "base")
base_stage:finish{ items = #heldout }

-- 2. SFT with LoRA, loss on the response only (with END and EOS, or the chat end of turn).
local sft_stage
if do_sft then
  local sft_records = {}
  for i, r in ipairs(train_items) do sft_records[i] = { instruction = r.instruction, response = r.reference } end
  local sft_data = f:sft_data(sft_records)
  base:add_lora{ r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear", seed = args.seed }
  local sft_settings = { seed = args.seed, max_steps = args.sft_steps, learning_rate = args.sft_lr,
    batch_size = args.batch_size, warmup_ratio = 0.05, schedule = "cosine" }
  sft_stage = run:stage("sft", { inputs = { model = base, data = sft_data, settings = sft_settings },
    outputs = { out .. "/sft" } })
  cai.log.info("stage sft: " .. #sft_data .. " examples")
  local sft_result = cai.train.sft{ model = base, data = sft_data, format = f.name,
    chat_template_kwargs = f.chat_template_kwargs, out = out .. "/sft", seed = args.seed,
    max_steps = args.sft_steps, learning_rate = args.sft_lr, batch_size = args.batch_size, warmup_ratio = 0.05,
    schedule = "cosine", logging_steps = 10 }
  outputs.sft = base:generate(heldout_prompts, gen)
  accuracy.sft = preference_accuracy(base, "sft")
  sft_stage:finish{ steps = sft_result.steps, items = #sft_data }
end

-- 3. Pairs: chosen = the SFT model's answer (with mode=dpo_only the world's
--    reference answer), rejected = a negative of the five types.
local pair_stats, dpo_pairs
if do_dpo then
  local pairs_stage = run:stage("pairs", { inputs = { sft = sft_stage, items = pair_items, gen = gen,
    mix = args.negative_mix }, outputs = { out .. "/pairs.jsonl" } })
  local sft_answers = do_sft and base:generate(prompts_of(pair_items), gen) or nil
  local items = {}
  for i, r in ipairs(pair_items) do
    local answer = sft_answers and f:response(sft_answers[i].text) or r.reference
    if answer == "" then answer = r.reference end
    -- (refusals only: a request that should be refused has no refusal negative, so it makes no pair)
    if not (args.negative_mix == "refusals" and r.should_refuse) then
      items[#items + 1] = { instruction = r.instruction, response = answer, should_refuse = r.should_refuse }
    end
  end
  local pref_pairs
  pref_pairs, pair_stats = cai.negatives.generate(items, { seed = args.seed, format = pair_format, mix = mix })
  cai.jsonl.write(out .. "/pairs.jsonl", pref_pairs)
  cai.log.info("stage pairs: " .. #pref_pairs .. " pairs written")
  pairs_stage:finish{ items = #pref_pairs }
  dpo_pairs = {}
  for i, p in ipairs(pref_pairs) do dpo_pairs[i] = { prompt = p.prompt, chosen = p.chosen, rejected = p.rejected } end
end

-- 4. DPO from the SFT model: merge SFT, save, reload, new adapters; the
--    reference is the SFT model (adapters off). Plain DPO only widens the
--    margin, and does so by lowering the rejected *and* the chosen answers'
--    likelihood (END included); the NLL term on the chosen answer (TRL's
--    rpo_alpha) keeps the chosen answers likely. With mode=dpo_only the
--    policy and reference are the base model.
local dpo_stage
if do_dpo then
  local policy = base
  if do_sft then
    base:merge_lora()
    base:save(out .. "/sft/merged")
    base:release()
    policy = cai.model.load(out .. "/sft/merged", load_opts)
  end
  policy:add_lora{ r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear", seed = args.seed + 2 }
  local dpo_settings = { seed = args.seed, beta = args.beta, loss = args.loss, max_steps = args.dpo_steps,
    learning_rate = args.dpo_lr, batch_size = args.batch_size, warmup_ratio = 0.1, schedule = "cosine",
    rpo_alpha = args.rpo_alpha > 0 and args.rpo_alpha or nil }
  dpo_stage = run:stage("dpo", { inputs = { sft = sft_stage, model = policy, pairs = dpo_pairs,
    settings = dpo_settings }, outputs = { out .. "/dpo" } })
  cai.log.info("stage dpo: " .. #dpo_pairs .. " pairs, beta " .. args.beta)
  local dpo_result = cai.train.dpo{ model = policy, pairs = dpo_pairs, format = f:dpo_format(),
    chat_template_kwargs = f.chat_template_kwargs, out = out .. "/dpo", seed = args.seed,
    beta = args.beta, loss = args.loss, max_steps = args.dpo_steps, learning_rate = args.dpo_lr,
    batch_size = args.batch_size, warmup_ratio = 0.1, schedule = "cosine", logging_steps = 10,
    rpo_alpha = dpo_settings.rpo_alpha }
  outputs.dpo = policy:generate(heldout_prompts, gen)
  accuracy.dpo = preference_accuracy(policy, "dpo")
  policy:save_lora(out .. "/dpo/adapter")
  dpo_stage:finish{ steps = dpo_result.steps, items = #dpo_pairs }
end
local names = { "base" }
if do_sft then names[#names + 1] = "sft" end
if do_dpo then names[#names + 1] = "dpo" end
local final = names[#names]

-- 5. Evaluation: the nine criteria and preference accuracy, with intervals.
local eval_stage = run:stage("eval", { inputs = { base = base_stage, sft = sft_stage, dpo = dpo_stage },
  outputs = { out .. "/samples.jsonl" } })
local eval_items = world:eval_items(heldout)
local report = cai.eval.run(eval_items, outputs, { stop_means_end = true, eos_means_end = f.name == "chat",
  factual_judge = world:factual_judge() })
local summary = { models = {}, format = f.name, mode = args.mode, final_model = final }
for _, name in ipairs(names) do
  local entry = {}
  for criterion, r in pairs(report.models[name].rates) do entry[criterion] = r end
  entry.text_metrics = report.models[name].text_metrics -- BLEU, chrF, ROUGE-L against the world's references
  entry.preference_accuracy = accuracy[name]
  summary.models[name] = entry
end
summary.final = summary.models[final]  -- the last model's results under one name, for sweeps
-- Each stage against the one before it, and base -> final.
-- Preference accuracy, paired over the same held-out pairs (McNemar; as in
-- cai.eval.compare, b = pairs only the first model gets right, c = only the second).
summary.comparisons, summary.preference_tests = {}, {}
local compared = {}
for i = 2, #names do compared[#compared + 1] = { names[i - 1], names[i] } end
if #names > 2 then compared[#compared + 1] = { "base", final } end
for _, c in ipairs(compared) do
  local key = c[1] .. "_" .. c[2]
  summary.comparisons[key] = cai.eval.compare(report, c[1], c[2])
  summary.preference_tests[key] = cai.stats.mcnemar_paired(preference_wins[c[1]], preference_wins[c[2]])
end
summary.pairs = pair_stats

local samples = {}
for i = 1, math.min(12, #heldout) do
  samples[i] = { instruction = heldout[i].instruction, reference = heldout[i].reference,
    checks = cai.eval.item_checks(report, i) }
  for _, name in ipairs(names) do samples[i][name] = outputs[name][i].text end
end
cai.jsonl.write(out .. "/samples.jsonl", samples)
eval_stage:finish{ items = #heldout }
run:write_summary(summary)  -- summary.json, with every stage's status: written only when all finished
run:finish()

cai.report.collect_metrics(out, { "sft", "dpo" })  -- metrics.jsonl: both trainers' logs, tagged
cai.report.build(out)

print(cai.eval.format(report))
for _, name in ipairs(names) do
  local e, a = summary.models[name].ends_with_end, accuracy[name]
  print(string.format("%-4s ends_with_end %.2f [%.2f, %.2f]   preference_accuracy %.2f [%.2f, %.2f]", name,
    e.rate or 0, e.lo or 0, e.hi or 0, a.rate, a.lo, a.hi))
end
print("quickstart: done, report in " .. out .. "/report.html")

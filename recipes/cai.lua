-- cai.lua: the Constitutional AI loop of the Anthropic paper, end to end, on
-- the embedded tiny world by default (any Hugging Face model with model=).
--
--   1. sft:    a helpful-only start: SFT that answers everything, harmful
--              requests included (in the tiny world those answers are
--              harmless placeholders: "Sure. Here is a plan to ...: step one, ...")
--   2. critique: the start answers red-team and helpful prompts; for rounds=
--              rounds a principle is sampled from the constitution
--              (cai.principles, strategy=), the critic (critic=base: the
--              pretrained model; policy: the start itself, as in the paper)
--              critiques the answer and revises it or says KEEP_ORIGINAL;
--              meta-commentary is refused (cai.critique) -> records.jsonl
--              (seed 004's format)
--   3. sl_cai: SFT of the start on the final revisions and answers
--   4. rl_cai: the SL-CAI model samples two answers per prompt; the feedback
--              model (the critic; with critic=policy the SL-CAI model)
--              answers "Which answer is more <principle>? (A)/(B)" in both
--              orders; the averaged normalised
--              probability is the label (feedback.jsonl); pairs whose label is
--              less confident than min_confidence are dropped; DPO from SL-CAI
--   5. evaluation of base, sft, sl_cai and rl_cai on held-out prompts, judged
--              with the world's ground truth (never with a model):
--              harmlessness (harmful requests refused), helpfulness (harmless
--              requests answered correctly), over_refusal (harmless requests
--              refused), each with a 95% interval; paired McNemar tests between
--              consecutive stages, Holm-corrected
--   -> out/: config.json, records.jsonl, sl_data.jsonl, feedback.jsonl,
--      pairs.jsonl, samples.jsonl, metrics.jsonl, summary.json, report.html
--
--   build/cairun recipes/cai.lua out=runs/cai
local cai = require "cai"
local template = cai.template

local args = cai.args{
  model = "tiny",              -- "tiny" or a Hugging Face model directory
  dtype = "",                  -- compute dtype: "fp32" or "bf16"; "" = the loader's default
  out = "runs/cai",            -- run directory
  seed = 42,                   -- decides data, init, principle draws and sampling
  constitution = "constitutions/tiny_world.yaml",
  strategy = "weighted",       -- how a round's principle is drawn (cai.principles)
  critic = "base",             -- who critiques, revises and labels: "base" (the pretrained model) or "policy"
  sft_examples = 400,          -- helpful-only SFT: train instructions, harmful ones answered
  sft_steps = 300,
  sft_lr = 2e-3,
  redteam_prompts = 120,       -- harmful train prompts critiqued and revised
  helpful_prompts = 120,       -- harmless train prompts critiqued and revised
  rounds = 2,                  -- critique/revision rounds, one principle each
  retries = 4,                 -- a revision refused (unparsed, too short, meta) is asked again this many times
  answer_temperature = 0.7,
  critique_temperature = 0.3,
  critique_tokens = 80,
  max_new_tokens = 40,         -- per answer
  sl_steps = 300,
  sl_lr = 2e-3,
  rl_prompts = 240,            -- prompts the SL-CAI model answers twice for RL-CAI
  rl_temperature = 1.0,
  min_confidence = 0.6,        -- feedback labels below this confidence are dropped
  dpo_steps = 150,
  dpo_lr = 1e-3,
  beta = 0.1,                  -- DPO temperature
  rpo_alpha = 1.0,             -- NLL of the chosen answer added to DPO (0: plain DPO)
  eval_harmful = 40,           -- held-out harmful requests
  eval_benign = 80,            -- held-out harmless requests
  min_pairs = 8,               -- fewer RL-CAI pairs after the filters stop the run
  lora_r = 16,
  lora_alpha = 32,
  batch_size = 16,
}

if args.critic ~= "base" and args.critic ~= "policy" then
  error('cai.lua: critic must be "base" or "policy", got "' .. args.critic .. '"', 0)
end
local out = args.out
cai.run.open(out)
local constitution = cai.constitution.load(args.constitution)
local world = cai.world.new{ seed = args.seed }
local load_opts = args.dtype ~= "" and { dtype = args.dtype } or nil
local BENIGN = { capital = 14, person = 18, animal = 10, colour = 8, arithmetic = 15, definition = 10, task = 10 }

-- Data: disjoint train and held-out instructions of the world.
local sft_items = world:instructions(args.sft_examples, { split = "train" })
local redteam = world:instructions(args.redteam_prompts, { split = "train", kinds = { "harmful" } })
local helpful = world:instructions(args.helpful_prompts, { split = "train", kinds = BENIGN })
local rl_items = world:instructions(args.rl_prompts, { split = "train",
  kinds = { harmful = 40, capital = 8, person = 12, animal = 8, colour = 6, arithmetic = 10, definition = 8, task = 8 } })
local heldout = world:instructions(args.eval_harmful, { split = "heldout", kinds = { "harmful" } })
for _, r in ipairs(world:instructions(args.eval_benign, { split = "heldout", kinds = BENIGN })) do
  heldout[#heldout + 1] = r
end

local function prompts_of(items)
  local list = {}
  for i, item in ipairs(items) do list[i] = template.instruction_prompt(item.instruction) end
  return list
end
local heldout_prompts = prompts_of(heldout)
local greedy = { max_new_tokens = args.max_new_tokens, temperature = 0, stop = template.stop, seed = args.seed }
local outputs = {}   -- stage -> held-out answers

local function answers(m, prompts, opts)
  local list = {}
  for i, o in ipairs(m:generate(prompts, opts)) do list[i] = template.strip_end(o.text) end
  return list
end

-- SFT with fresh LoRA adapters, merged and saved as out/<name>/merged.
local function sft_stage(m, name, data, steps, lr, seed)
  m:add_lora{ r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear", seed = seed }
  cai.log.info(string.format("stage %s: %d examples", name, #data))
  cai.train.sft{ model = m, data = data, out = out .. "/" .. name, seed = args.seed, max_steps = steps,
    learning_rate = lr, batch_size = args.batch_size, warmup_ratio = 0.05, schedule = "cosine", logging_steps = 10 }
  m:merge_lora()
  m:save(out .. "/" .. name .. "/merged")
  m:release()
  return cai.model.load(out .. "/" .. name .. "/merged", load_opts)
end

local function sft_example(instruction, response)
  return { prompt = template.instruction_prompt(instruction), response = " " .. response .. "\n" .. template.END }
end

-- 0. The base model. With critic=base a second copy critiques, revises and
--    labels: the tiny model learned those moves in pretraining, in plain
--    text, and the SFT stages teach it the Instruction/Response/END format,
--    after which it ends its critiques where a response would end.
local m = cai.model.load(args.model, load_opts)
local critic = args.critic == "base" and cai.model.load(args.model, load_opts) or nil
cai.log.info("stage base: answering " .. #heldout .. " held-out instructions")
outputs.base = answers(m, heldout_prompts, greedy)

-- 1. Helpful-only start: every request answered, harmful ones with the world's compliant placeholder.
m = sft_stage(m, "sft", cai.cailoop.helpful_only_data(world, sft_items), args.sft_steps, args.sft_lr, args.seed)
outputs.sft = answers(m, heldout_prompts, greedy)

-- 2. Critique and revision of the start's own answers.
local critique_items = {}
for _, r in ipairs(redteam) do critique_items[#critique_items + 1] = r end
for _, r in ipairs(helpful) do critique_items[#critique_items + 1] = r end
local first = answers(m, prompts_of(critique_items), { max_new_tokens = args.max_new_tokens,
  temperature = args.answer_temperature, stop = template.stop, seed = args.seed })
local items = {}
for i, r in ipairs(critique_items) do items[i] = { instruction = r.instruction, answer = first[i] } end
cai.log.info(string.format("stage critique: %d answers, %d rounds", #items, args.rounds))
local records, critique_run = cai.critique.run(critic or m, items, { constitution = constitution, rounds = args.rounds,
  per_round = 1, strategy = args.strategy, seed = args.seed, first_index = 0, format = "instruction",
  retries = args.retries,
  generate = { temperature = args.critique_temperature, max_new_tokens = args.critique_tokens,
    stop = { "\nPrinciple:", "\nQuestion:", "\nInstruction:" } } })
for i, rec in ipairs(records) do rec.kind = critique_items[i].kind end
cai.jsonl.write(out .. "/records.jsonl", records)
local critique_stats = cai.cailoop.critique_stats(world, critique_items, records, critique_run)

-- 3. SL-CAI: SFT of the start on the final answers (revised or kept).
local sl_data = {}
for i, rec in ipairs(records) do sl_data[i] = sft_example(rec.instruction, rec.revised_answer) end
cai.jsonl.write(out .. "/sl_data.jsonl", sl_data)
m = sft_stage(m, "sl_cai", sl_data, args.sl_steps, args.sl_lr, args.seed + 1)
outputs.sl_cai = answers(m, heldout_prompts, greedy)

-- 4. RL-CAI: two samples per prompt, labelled by the feedback model, DPO.
local rl_prompts = prompts_of(rl_items)
local sample_a = answers(m, rl_prompts, { max_new_tokens = args.max_new_tokens, temperature = args.rl_temperature,
  stop = template.stop, seed = args.seed + 10 })
local sample_b = answers(m, rl_prompts, { max_new_tokens = args.max_new_tokens, temperature = args.rl_temperature,
  stop = template.stop, seed = args.seed + 11 })
local rng = cai.rng(args.seed):derive("rl_cai/principles")
local asked, usage = {}, {}
for i, r in ipairs(rl_items) do
  local p = cai.principles.sample(constitution.principles, 1, { strategy = args.strategy, rng = rng,
    prompt = r.instruction, state = {}, usage = usage })[1]
  asked[i] = { instruction = r.instruction, a = sample_a[i], b = sample_b[i], principle = p }
end
local labels = cai.feedback.label(critic or m, asked, { templates = constitution.templates })
if critic then critic:release() end
local feedback_log, candidates = {}, {}
for i, q in ipairs(asked) do
  local l = labels[i]
  feedback_log[i] = { instruction = q.instruction, kind = rl_items[i].kind, response_a = q.a, response_b = q.b,
    principle_id = q.principle.id, p_a = l.p_a, p_ab = l.p_ab, p_ba = l.p_ba, confidence = l.confidence,
    chosen = l.chosen }
  local chosen, rejected = q.a, q.b
  if l.chosen == "b" then chosen, rejected = q.b, q.a end
  candidates[i] = { prompt = q.instruction, chosen = chosen, rejected = rejected, chosen_score = l.confidence,
    rejected_score = 1 - l.confidence, principle_id = q.principle.id, label = l.p_a, index = i }
end
cai.jsonl.write(out .. "/feedback.jsonl", feedback_log)
-- Filters: identical samples, then labels closer to 0.5 than min_confidence
-- (|confidence - (1 - confidence)| < 2 * min_confidence - 1), meta-commentary, duplicates.
local kept, filter_stats = cai.filters.apply(candidates, { min_score_delta = 2 * args.min_confidence - 1,
  near_duplicate = false, target_revised_win_rate = false, quiet = true })
cai.filters.require_pairs("cai.lua", kept, filter_stats, args.min_pairs,
  { hint = "see " .. out .. "/feedback.jsonl; lower min_confidence or raise rl_prompts" })
local dpo_pairs = {}
for i, p in ipairs(kept) do
  dpo_pairs[i] = { prompt = template.instruction_prompt(p.prompt), chosen = " " .. p.chosen .. "\n" .. template.END,
    rejected = " " .. p.rejected .. "\n" .. template.END, principle_id = p.principle_id, label = p.label }
end
cai.jsonl.write(out .. "/pairs.jsonl", dpo_pairs)
local rl_stats = cai.cailoop.feedback_stats(world, rl_items, feedback_log, kept, filter_stats, args.min_confidence)
m:add_lora{ r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear", seed = args.seed + 2 }
cai.log.info("stage rl_cai: " .. #dpo_pairs .. " pairs, beta " .. args.beta)
local train_pairs = {}
for i, p in ipairs(dpo_pairs) do train_pairs[i] = { prompt = p.prompt, chosen = p.chosen, rejected = p.rejected } end
cai.train.dpo{ model = m, pairs = train_pairs, out = out .. "/rl_cai", seed = args.seed, beta = args.beta,
  max_steps = args.dpo_steps, learning_rate = args.dpo_lr, batch_size = math.min(args.batch_size, #train_pairs),
  warmup_ratio = 0.1, schedule = "cosine", logging_steps = 10,
  rpo_alpha = args.rpo_alpha > 0 and args.rpo_alpha or nil }
m:save_lora(out .. "/rl_cai/adapter")
outputs.rl_cai = answers(m, heldout_prompts, greedy)
m:release()

-- 5. Evaluation with the world's ground truth.
local stages = { "base", "sft", "sl_cai", "rl_cai" }
local evaluation = cai.cailoop.evaluate(world, heldout, outputs, stages)
local summary = { models = evaluation.models, critique = critique_stats, rl_cai = rl_stats,
  tests = evaluation.tests, principle_usage = { critique = critique_run.principle_usage, rl_cai = usage } }
cai.json.write(out .. "/summary.json", summary)

local samples = {}
for i = 1, math.min(16, #heldout) do
  local k = i % 2 == 1 and (i + 1) / 2 or args.eval_harmful + i / 2   -- harmful and harmless alternately
  local r = heldout[k]
  if r then
    samples[#samples + 1] = { instruction = r.instruction, reference = r.reference, base = outputs.base[k],
      sft = outputs.sft[k], sl_cai = outputs.sl_cai[k], rl_cai = outputs.rl_cai[k] }
  end
end
cai.jsonl.write(out .. "/samples.jsonl", samples)
cai.report.collect_metrics(out, { "sft", "sl_cai", "rl_cai" })
cai.report.build(out)
cai.cailoop.add_report_section(out, summary, records)

print(cai.cailoop.format(summary))
print("cai: done, report in " .. out .. "/report.html")

-- cai_pipeline.lua: the Constitutional AI self-critique pipeline, scaled by
-- milestones. For each instruction:
--
--   initial answer (T 0.7, up to 500 tokens)
--   -> principle(s) from the constitution
--   -> critique (T 0.3, up to 300 tokens) -> revision
--   -> a record { instruction, initial_answer, principle, critique,
--                 revised_answer, preference_pair = { prompt, chosen, rejected } }
--   -> DPO on the pairs (chosen = revision, rejected = initial answer)
--   -> does the model prefer the revised answers, before and after DPO?
--
-- Milestones (n=): 1 (the mechanism works; a 1-step DPO), 10 (two principles
-- each, ~10 DPO steps, >70% meaningful critiques, DPO loss decreases), 100
-- (100+ DPO steps, revised preferred >80%), 5000 (production scale, several
-- epochs). Steps default to the milestone's; every size is an argument.
--
--   build/cairun recipes/cai_pipeline.lua n=10 out=runs/cai_m1
--   build/cairun recipes/cai_pipeline.lua model=/models/qwen2.5-0.5b n=100 constitution=constitutions/default.yaml
--
-- format=chat talks to the model in its own chat template (answers, critique
-- and revision requests are user turns; DPO renders the pairs with the
-- template); format=instruction uses the Instruction:/Response:/END text
-- format; format=auto (the default) picks chat when the tokenizer has a
-- chat template (the embedded tiny model has none).
--
-- answers.jsonl and records.jsonl grow as items finish; rerun the same
-- command after a stop and they continue where they were.
local cai = require "cai"

local args = cai.args{
  model = "tiny-helpful",       -- answers and is trained; "tiny-helpful" is the tiny model's helpful-only start
  critic = "",                  -- critiques and revises; "" = "tiny" for the tiny models, else the model itself
  dtype = "",                  -- compute dtype: "fp32" or "bf16"; "" = the loader's default
  format = "auto",             -- "chat" | "instruction" | "auto" (chat when the tokenizer has a chat template)
  enable_thinking = false,     -- chat templates that read it (Qwen3): no reasoning block
  out = "",                     -- default runs/cai_pipeline_n<N>
  n = 10,                       -- instructions: 1, 10, 100, 5000 are the milestones
  seed = 42,
  constitution = "",            -- "" = constitutions/tiny_world.yaml for model=tiny, else constitutions/default.yaml
  instructions = "",            -- a JSONL of { instruction= } (or strings); "" = the synthetic world's
  principles_per_item = 0,      -- 0: 1 at n=1, else 2
  answer_temperature = 0.7,
  answer_tokens = 500,
  critique_temperature = 0.3,
  critique_tokens = 300,
  mode = "combined",            -- "combined" (one call writes critique and revision) or "two_step"
  retries = 2,                  -- a revision refused (unparsed, too short, meta) is asked again this many times
  gen_batch = 16,
  dpo_steps = 0,                -- 0: the milestone's (1, 10, 100, or 3 epochs)
  dpo_lr = 5e-4,                -- the 32B recipe used 5e-6; a model this small needs more
  beta = 0.1,
  lora_r = 32,
  lora_alpha = 64,
  batch_size = 4,
  min_pairs = 1,                -- fewer pairs after the filters stop the run with an error naming the filters
}
local n = args.n
if n < 1 then error("cai_pipeline.lua: n must be >= 1, got " .. n, 0) end
local out = args.out ~= "" and args.out or ("runs/cai_pipeline_n" .. n)
local milestone = n <= 1 and 0 or n <= 10 and 1 or n <= 100 and 2 or 3
local per_item = args.principles_per_item > 0 and args.principles_per_item or (n == 1 and 1 or 2)
local run = cai.run.open(out, { may_change = { "gen_batch" } })
local constitution = cai.constitution.load(args.constitution ~= "" and args.constitution
  or cai.tiny.is_tiny(args.model) and "constitutions/tiny_world.yaml" or "constitutions/default.yaml")

-- 1. Instructions --------------------------------------------------------
local instructions = {}
if args.instructions ~= "" then
  instructions = cai.jsonl.instructions(args.instructions, n)
  if #instructions < n then
    error(string.format("%s: has %d instructions, n = %d", args.instructions, #instructions, n), 0)
  end
else
  for i, r in ipairs(cai.world.new{ seed = args.seed }:instructions(n, { split = "train" })) do
    instructions[i] = r.instruction
  end
end

local load_opts = args.dtype ~= "" and { dtype = args.dtype } or nil
local m = cai.model.load(args.model, load_opts)
local f = cai.format.new(m.tokenizer, args.format, { enable_thinking = args.enable_thinking })
cai.log.info("cai_pipeline: " .. f.name .. " format")
-- The critic: the tiny models' critiques live in the pretrained tiny model.
local critic_name = args.critic ~= "" and args.critic or (cai.tiny.is_tiny(args.model) and "tiny" or "")
local critic, cf = m, f
if critic_name ~= "" and critic_name ~= args.model then
  critic = cai.model.load(critic_name, load_opts)
  cf = cai.format.new(critic.tokenizer, args.format, { enable_thinking = args.enable_thinking })
  cai.log.info("cai_pipeline: " .. critic_name .. " critiques and revises (" .. cf.name .. " format)")
end

-- 2. Initial answers -------------------------------------------------------
local answers = cai.stage.open(out .. "/answers.jsonl", { name = "answers" }):run(instructions,
  function(batch, first_index)
    local outs = m:generate(f:prompts(batch), f:generate_options{ temperature = args.answer_temperature,
      max_new_tokens = args.answer_tokens, stop = f.name == "instruction" and cai.template.stop or nil,
      seed = args.seed, first_index = first_index, progress = false })
    local records = {}
    for i, o in ipairs(outs) do records[i] = { instruction = batch[i], answer = f:response(o.text) } end
    return records
  end, { batch_size = args.gen_batch })

-- 3. Principles, critique, revision -------------------------------------------
local usage = {}
local records = cai.stage.open(out .. "/records.jsonl", { name = "critiques" }):run(answers,
  function(batch, first_index)
    local items = {}
    for i, a in ipairs(batch) do items[i] = { instruction = a.instruction, answer = a.answer } end
    local recs = cai.critique.run(critic, items, { constitution = constitution, per_round = per_item,
      mode = args.mode, format = cf, seed = args.seed, first_index = first_index, retries = args.retries,
      generate = { temperature = args.critique_temperature, max_new_tokens = args.critique_tokens, progress = false } })
    return recs
  end, { batch_size = args.gen_batch })
local outcomes = {}
for _, r in ipairs(records) do
  for _, id in ipairs(r.principle_ids or {}) do usage[id] = (usage[id] or 0) + 1 end
  for _, o in ipairs(r.outcomes or {}) do outcomes[o] = (outcomes[o] or 0) + 1 end
end

if critic ~= m then critic:release() end

-- 4. Pairs: revision over initial answer; pairs whose revision changed nothing teach nothing.
local pref_pairs, pair_stats = cai.filters.apply(records, { min_score_delta = false, near_duplicate = false,
  meta = true, quiet = true })
local dpo_pairs, plain_pairs = {}, {}
for i, p in ipairs(pref_pairs) do
  local v = cai.filters.view(p)
  dpo_pairs[i] = f:dpo_pair(v.prompt, v.chosen, v.rejected)
  plain_pairs[i] = { instruction = v.prompt, chosen = v.chosen, rejected = v.rejected }
end
-- The same pairs as preference_accuracy scores them (chat: rendered with the template).
local scored_pairs = f.name == "chat" and f:scoring_pairs(plain_pairs) or dpo_pairs
cai.jsonl.write(out .. "/pairs.jsonl", dpo_pairs)
cai.log.info(string.format("cai_pipeline: %d records, %d pairs kept for DPO", #records, #dpo_pairs))
cai.filters.require_pairs("cai_pipeline.lua", dpo_pairs, pair_stats, args.min_pairs, { outcomes = outcomes,
  hint = "see " .. out .. "/records.jsonl (a model that cannot critique keeps every answer as it was)" })

-- 5. Preference for the revised answers, before and after DPO.
local function prefers_revised(use_lora)
  if #dpo_pairs == 0 then return nil end
  return (cai.eval.preference_accuracy(m, scored_pairs, { use_lora = use_lora, eos = f.name ~= "chat" }))
end
local before = prefers_revised()

local steps = args.dpo_steps
if steps == 0 then
  steps = ({ [0] = 1, 10, 100 })[milestone] or math.max(100, math.ceil(3 * #dpo_pairs / args.batch_size))
end
local result, after
do
  m:add_lora{ r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear", seed = args.seed + 1 }
  result = cai.train.dpo{ model = m, pairs = dpo_pairs, format = f:dpo_format(),
    chat_template_kwargs = f.chat_template_kwargs, out = out .. "/dpo", seed = args.seed, beta = args.beta,
    max_steps = steps, learning_rate = args.dpo_lr, batch_size = math.min(args.batch_size, #dpo_pairs),
    warmup_ratio = milestone >= 2 and 0.1 or 0, logging_steps = 1, save_steps = math.max(10, math.floor(steps / 5)) }
  m:save_lora(out .. "/dpo/adapter")
  after = prefers_revised(true)
end

-- 6. Milestone criteria --------------------------------------------------------
local losses = {}
for _, line in ipairs(cai.jsonl.read(out .. "/dpo/metrics.jsonl")) do
  if line.loss then losses[#losses + 1] = line.loss end
end
local meaningful = (outcomes.revised or 0) / math.max(1, #records)
local checks = { pipeline_completed = #records == n and #dpo_pairs >= args.min_pairs }
if milestone >= 1 then
  checks.meaningful_critiques_over_70pct = meaningful > 0.7
  checks.dpo_loss_decreases = #losses >= 2 and losses[#losses] < losses[1]
end
if milestone >= 2 then checks.prefers_revised_over_80pct = after ~= nil and after.rate > 0.8 end
local summary = { milestone = milestone, n = n, format = f.name, records = #records, pairs = #dpo_pairs, dpo_steps = result and steps or 0,
  outcomes = outcomes, meaningful_critique_rate = meaningful, principle_usage = usage, filter = pair_stats,
  prefers_revised = { before = before, after = after }, dpo_loss = { first = losses[1], last = losses[#losses] },
  checks = checks }
run:write_summary(summary)  -- summary.json, status "finished"
run:finish()

print(string.format("cai_pipeline: milestone %d, %d records, %d DPO pairs, %d steps", milestone, #records,
  #dpo_pairs, summary.dpo_steps))
for _, row in ipairs(cai.principles.usage_report(usage)) do
  print(string.format("  principle %-28s %4d  %5.1f%%", row.id, row.count, 100 * row.share))
end
if before then print(string.format("prefers revised: before %.2f, after %s", before.rate,
  after and string.format("%.2f", after.rate) or "-")) end
local names = {}
for k in pairs(checks) do names[#names + 1] = k end
table.sort(names)
for _, k in ipairs(names) do print(string.format("  %-34s %s", k, checks[k] and "yes" or "NO")) end
print("cai_pipeline: done, records in " .. out .. "/records.jsonl")

-- critique_revision.lua: the Stage 3 critique-revision loop as its post-mortem
-- asked for it (v2):
--
--   answers -> principles (tracked) -> critique and revision (resumable records.jsonl)
--   -> both sides scored by a real reward model (scored.jsonl) (a *ForSequenceClassification
--      directory; a model that cannot load or score stops the run: there is no
--      heuristic fallback)
--   -> quality filters (identical, weak score delta, meta-commentary, length,
--      near-duplicates) -> pairs.jsonl (chosen = the higher-scored side)
--   -> pair analysis (pair_report.json): deltas, revised win rate, principle usage,
--      the worst revisions
--   -> DPO with warmup, held-out eval pairs every eval_steps, the best
--      checkpoint by eval_loss kept in dpo/best, resume from dpo/checkpoints
--   -> summary.json, report.html
--
--   build/cairun recipes/critique_revision.lua reward_model=/models/rm n=200 out=runs/stage3_v2
--
-- format=chat talks to the model in its own chat template (critique and
-- revision requests are user turns; DPO renders the pairs with the template);
-- format=instruction uses the Instruction:/Response:/END text format;
-- format=auto (the default) picks chat when the tokenizer has a chat template.
--
-- Rerunning the same command continues a stopped run: records.jsonl from the
-- next unfinished item, DPO from its last checkpoint.
local cai = require "cai"

local args = cai.args{
  model = "tiny-helpful",       -- answers and is trained; "tiny-helpful" is the tiny model's helpful-only start
  critic = "",                  -- critiques and revises; "" = "tiny" for the tiny models, else the model itself
  dtype = "",                  -- compute dtype: "fp32" or "bf16"; "" = the loader's default
  format = "auto",             -- "chat" | "instruction" | "auto" (chat when the tokenizer has a chat template)
  enable_thinking = false,     -- chat templates that read it (Qwen3): no reasoning block
  reward_model = "",            -- required: a Hugging Face *ForSequenceClassification directory
  out = "runs/critique_revision",
  n = 200,                      -- instructions
  seed = 42,
  constitution = "",            -- "" = constitutions/tiny_world.yaml for model=tiny, else harmlessness.yaml
  instructions = "",            -- a JSONL of { instruction= }; "" = the synthetic world's (harmful ones included)
  per_round = 2,                -- principles per critique
  rounds = 1,
  mode = "combined",
  retries = 2,                  -- a revision refused (unparsed, too short, meta) is asked again this many times
  answer_tokens = 128,
  critique_tokens = 160,
  gen_batch = 16,
  min_score_delta = 0.1,        -- pairs whose sides score closer than this are dropped
  target_revised_win_rate = 0.6,
  eval_fraction = 0.1,          -- pairs held out for eval_loss
  dpo_steps = 200,
  dpo_lr = 5e-4,
  warmup_ratio = 0.1,
  eval_steps = 20,
  save_steps = 20,
  beta = 0.1,
  lora_r = 16,
  lora_alpha = 32,
  batch_size = 8,
  min_pairs = 2,                -- fewer pairs after the filters stop the run with an error naming the filters
}
if args.reward_model == "" then
  error("critique_revision.lua: reward_model= is required: a Hugging Face *ForSequenceClassification directory "
    .. "(e.g. a Llama/Qwen/Gemma reward model with one label). The pairs are chosen by its scores; no heuristic "
    .. "scorer is used instead", 0)
end
-- Pre-flight: the reward model loads and scores, and the constitution loads,
-- before the run directory is made and any long work starts.
local rm = cai.scoring.reward_model(args.reward_model)
local constitution = cai.constitution.load(args.constitution ~= "" and args.constitution
  or cai.tiny.is_tiny(args.model) and "constitutions/tiny_world.yaml" or "constitutions/harmlessness.yaml")
local out = args.out
local run = cai.run.open(out, { may_change = { "gen_batch" } })

local instructions = {}
if args.instructions ~= "" then
  instructions = cai.jsonl.instructions(args.instructions, args.n)
else
  for i, r in ipairs(cai.world.new{ seed = args.seed }:instructions(args.n, { split = "train" })) do
    instructions[i] = r.instruction
  end
end

-- 1. Critique and revision, appended as items finish.
local load_opts = args.dtype ~= "" and { dtype = args.dtype } or nil
local m = cai.model.load(args.model, load_opts)
local f = cai.format.new(m.tokenizer, args.format, { enable_thinking = args.enable_thinking })
cai.log.info("critique_revision: " .. f.name .. " format")
-- The critic: the tiny models' critiques live in the pretrained tiny model.
local critic_name = args.critic ~= "" and args.critic or (cai.tiny.is_tiny(args.model) and "tiny" or "")
local critic = m
if critic_name ~= "" and critic_name ~= args.model then
  critic = cai.model.load(critic_name, load_opts)
  cai.log.info("critique_revision: " .. critic_name .. " critiques and revises")
end
local records = cai.stage.open(out .. "/records.jsonl", { name = "critique-revision" }):run(instructions,
  function(batch, first_index)
    return (cai.critique.run(critic, batch, { constitution = constitution, rounds = args.rounds,
      per_round = args.per_round, mode = args.mode, format = critic == m and f or args.format, seed = args.seed,
      first_index = first_index, retries = args.retries, answer_model = m,
      answer_generate = { max_new_tokens = args.answer_tokens, progress = false },
      generate = { max_new_tokens = args.critique_tokens, progress = false } }))
  end, { batch_size = args.gen_batch })
if critic ~= m then critic:release() end
local usage = {}
for _, r in ipairs(records) do
  for _, id in ipairs(r.principle_ids or {}) do usage[id] = (usage[id] or 0) + 1 end
end

-- 2. Reward-model scores of both sides, kept with every record in scored.jsonl
--    (analyze_pairs.lua reads it).
cai.scoring.score_records(rm, records)
rm:release()
cai.jsonl.write(out .. "/scored.jsonl", records)

-- 3. Filters, then the analysis of what survived and of everything.
local kept, filter_stats = cai.filters.apply(records, { min_score_delta = args.min_score_delta,
  target_revised_win_rate = args.target_revised_win_rate })
local report = cai.analysis.pairs(records)
report.filter = filter_stats
cai.analysis.write(report, out .. "/pair_report.json")
print(cai.analysis.format(report))

local dpo_pairs = {}
for i, p in ipairs(kept) do
  local v = cai.filters.view(p)
  local pair = f:dpo_pair(v.prompt, v.chosen, v.rejected)
  pair.chosen_side, pair.score_delta, pair.principle_ids = v.side, p.score_delta, p.principle_ids
  dpo_pairs[i] = pair
end
cai.jsonl.write(out .. "/pairs.jsonl", dpo_pairs)
local outcomes = {}
for _, r in ipairs(records) do
  for _, o in ipairs(r.outcomes or {}) do outcomes[o] = (outcomes[o] or 0) + 1 end
end
cai.filters.require_pairs("critique_revision.lua", dpo_pairs, filter_stats, math.max(2, args.min_pairs),
  { outcomes = outcomes, hint = "see " .. out .. "/pair_report.json; lower min_score_delta or raise n" })

-- 4. DPO: a seeded split into train and eval pairs, warmup, eval, best checkpoint, resume.
local order = {}
for i = 1, #dpo_pairs do order[i] = i end
cai.rng(args.seed):shuffle(order)
local n_eval = math.max(1, math.floor(#dpo_pairs * args.eval_fraction + 0.5))
local train_pairs, eval_pairs = {}, {}
for k, i in ipairs(order) do
  local p = dpo_pairs[i]
  local pair = { prompt = p.prompt, chosen = p.chosen, rejected = p.rejected }
  if k <= n_eval then eval_pairs[#eval_pairs + 1] = pair else train_pairs[#train_pairs + 1] = pair end
end
m:add_lora{ r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear", seed = args.seed + 1 }
local result = cai.train.dpo{ model = m, pairs = train_pairs, eval_pairs = eval_pairs, format = f:dpo_format(),
  chat_template_kwargs = f.chat_template_kwargs, out = out .. "/dpo",
  seed = args.seed, beta = args.beta, max_steps = args.dpo_steps, learning_rate = args.dpo_lr,
  batch_size = math.min(args.batch_size, #train_pairs), warmup_ratio = args.warmup_ratio, schedule = "cosine",
  logging_steps = 10, eval_steps = args.eval_steps, save_steps = args.save_steps, save_total_limit = 2,
  keep_best = "eval_loss", on_log = function(line)
    if line["rewards/accuracies"] then
      cai.log.info(string.format("dpo step %d | loss %.4f | acc %.3f | margin %+.3f", line.step or 0, line.loss or 0,
        line["rewards/accuracies"], line["rewards/margins"] or 0))
    end
  end }

local summary = { format = f.name, records = #records, pairs = #dpo_pairs, train_pairs = #train_pairs, eval_pairs = #eval_pairs,
  filter = filter_stats, principle_usage = usage, revised_win_rate = (report.chosen.revised or 0) / math.max(1, #records),
  dpo = result }
run:write_summary(summary)  -- summary.json, status "finished"
run:finish()
cai.report.collect_metrics(out, { "dpo" })
cai.report.build(out)  -- DPO curves, pair quality, principle usage
print(string.format("critique_revision: %d records, %d pairs after filters, DPO %d steps; best %s at step %s",
  #records, #dpo_pairs, result.steps or 0, result.best and tostring(result.best.value) or "-",
  result.best and tostring(result.best.step) or "-"))
print("critique_revision: done, best adapter in " .. out .. "/dpo/best")

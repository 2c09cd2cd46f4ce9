-- reward_model.lua: trains a reward model (TRL's RewardTrainer: a score head
-- on a causal LM, Bradley-Terry loss on preference pairs) and writes it as a
-- Hugging Face *ForSequenceClassification directory, the kind
-- critique_revision.lua scores with.
--
--   pairs: data= (JSONL/JSON of { prompt, chosen, rejected }, TRL's preference
--          format), or "" = the tiny world's ground truth: a harmful request's
--          refusal over its compliance, a harmless one's correct answer over a
--          wrong answer or a refusal (train split; held-out pairs from the
--          held-out split)
--   -> LoRA (or full=true) + score head, eval accuracy every eval_steps
--   -> out/model (the reward model), summary.json (held-out pairwise accuracy
--      by kind), metrics.jsonl, report.html
--
--   build/cairun recipes/reward_model.lua out=runs/rm
--   build/cairun recipes/critique_revision.lua reward_model=runs/rm/model
--   build/cairun recipes/reward_model.lua model=/models/qwen2.5-0.5b data=prefs.jsonl out=runs/rm_qwen
--
-- The texts are scored as cai.scoring.reward_model renders them
-- ("Instruction: {instruction}\nResponse: {response}").
local cai = require "cai"

local args = cai.args{
  model = "tiny",               -- the causal LM the reward model starts from
  dtype = "",                   -- compute dtype: "fp32" or "bf16"; "" = the loader's default
  data = "",                    -- preference JSONL/JSON; "" = the tiny world's ground-truth pairs
  eval_data = "",               -- held-out preference pairs; "" with data= : eval_fraction of data
  eval_fraction = 0.15,
  train_pairs = 600,            -- with data = "": pairs drawn from the world's train split
  eval_pairs = 150,             -- with data = "": held-out pairs
  out = "runs/reward_model",
  seed = 42,
  full = false,                 -- train every weight (else LoRA adapters; the score head always trains)
  steps = 300,
  lr = 2e-3,
  warmup_ratio = 0.05,
  eval_steps = 50,
  batch_size = 16,
  lora_r = 16,
  lora_alpha = 32,
  center_rewards_coefficient = 0.0,
}
local out = args.out
local run = cai.run.open(out)

-- 1. Pairs ------------------------------------------------------------------
local train, heldout = {}, {}
if args.data ~= "" then
  local ds = cai.data.load(args.data, { types = { "preference" } })
  if ds.conversational then
    error("reward_model.lua: " .. args.data .. " is conversational; give { prompt, chosen, rejected } strings", 0)
  end
  local records = ds.records
  if args.eval_data ~= "" then
    train = records
    heldout = cai.data.load(args.eval_data, { types = { "preference" } }).records
  else
    local order = {}
    for i = 1, #records do order[i] = i end
    cai.rng(args.seed):derive("reward_model/split"):shuffle(order)
    local n_eval = math.floor(#records * args.eval_fraction + 0.5)
    for k, i in ipairs(order) do
      local r = records[i]
      local pair = { prompt = r.prompt or "", chosen = r.chosen, rejected = r.rejected }
      if k <= n_eval then heldout[#heldout + 1] = pair else train[#train + 1] = pair end
    end
  end
else
  local world = cai.world.new{ seed = args.seed }
  local rng = cai.rng(args.seed):derive("reward_model/pairs")
  local function pairs_of(items)
    local list = {}
    for _, r in ipairs(items) do
      local good, bad = world:preference_pair(r, rng)
      list[#list + 1] = { prompt = r.instruction, chosen = good, rejected = bad, kind = r.harmful and "harmful"
        or (bad == cai.world.REFUSAL and "refused" or "wrong") }
    end
    return list
  end
  train = pairs_of(world:instructions(args.train_pairs, { split = "train" }))
  heldout = pairs_of(world:instructions(args.eval_pairs, { split = "heldout" }))
end
if #train == 0 then error("reward_model.lua: no training pairs", 0) end
cai.log.info(string.format("reward_model: %d training pairs, %d held-out pairs", #train, #heldout))

-- 2. Training -------------------------------------------------------------------
local m = cai.model.load(args.model, args.dtype ~= "" and { dtype = args.dtype } or nil)
if not args.full then m:add_lora{ r = args.lora_r, alpha = args.lora_alpha, targets = "all-linear", seed = args.seed } end
local function plain(list)
  local outl = {}
  for i, p in ipairs(list) do outl[i] = { prompt = p.prompt, chosen = p.chosen, rejected = p.rejected } end
  return outl
end
local result = cai.train.reward{ model = m, pairs = plain(train), eval_pairs = #heldout > 0 and plain(heldout) or nil,
  out = out .. "/train", full = args.full, seed = args.seed, max_steps = args.steps, learning_rate = args.lr,
  warmup_ratio = args.warmup_ratio, schedule = "cosine", batch_size = math.min(args.batch_size, #train),
  eval_steps = #heldout > 0 and args.eval_steps or nil, logging_steps = 10,
  center_rewards_coefficient = args.center_rewards_coefficient > 0 and args.center_rewards_coefficient or nil }
m:release()
local model_dir = out .. "/model"
-- The trainer wrote out/train/model; the run's reward model is out/model.
os.execute("rm -rf '" .. model_dir:gsub("'", "'\\''") .. "'")
assert(os.rename(result.model_dir, model_dir))

-- 3. Held-out pairwise accuracy of the written model, by kind ----------------------
local summary = { model = model_dir, train_pairs = #train, heldout_pairs = #heldout, train = result }
if #heldout > 0 then
  local rm = cai.scoring.reward_model(model_dir)
  local prompts, chosen, rejected = {}, {}, {}
  for i, p in ipairs(heldout) do prompts[i], chosen[i], rejected[i] = p.prompt, p.chosen, p.rejected end
  local sc, sr = rm:score(prompts, chosen), rm:score(prompts, rejected)
  rm:release()
  local by_kind = {}
  local function add(kind, ok)
    local k = by_kind[kind] or { n = 0, pass = 0 }
    by_kind[kind] = k
    k.n, k.pass = k.n + 1, k.pass + (ok and 1 or 0)
  end
  for i, p in ipairs(heldout) do
    add("all", sc[i] > sr[i])
    if p.kind then add(p.kind, sc[i] > sr[i]) end
  end
  for _, k in pairs(by_kind) do
    k.rate = k.pass / k.n
    k.lo, k.hi = cai.stats.wilson(k.pass, k.n)
  end
  summary.heldout_accuracy = by_kind
end
run:write_summary(summary)
run:finish()
cai.report.collect_metrics(out, { "train" })
cai.report.build(out)

if summary.heldout_accuracy then
  local kinds = {}
  for k in pairs(summary.heldout_accuracy) do kinds[#kinds + 1] = k end
  table.sort(kinds)
  for _, k in ipairs(kinds) do
    local a = summary.heldout_accuracy[k]
    print(string.format("  held-out accuracy %-8s %5.1f%% [%5.1f%%, %5.1f%%] n=%d", k, 100 * a.rate, 100 * a.lo,
      100 * a.hi, a.n))
  end
end
print("reward_model: done, the reward model is " .. model_dir)
print("  use it: cairun recipes/critique_revision.lua reward_model=" .. model_dir)

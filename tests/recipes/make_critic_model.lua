-- Writes dir=: the tiny model after a short SFT on critique/revision
-- demonstrations in the combined format of cai.critique (a bad answer, its
-- principles, then "<critique>\nRevision: <good answer>"), so recipe tests
-- can drive the critique -> revision -> pairs -> DPO path on a model that
-- actually revises. A fixture, not a recipe: the demonstrations come from
-- the synthetic world's reference answers.
local cai = require "cai"
local args = cai.args{ dir = "", seed = 11, n = 200, steps = 150, batch_size = 8, lr = 1e-3,
  constitution = "tests/recipes/critic.yaml" }
if args.dir == "" then error("make_critic_model.lua: dir= is required", 0) end
local c = cai.constitution.load(args.constitution)
local world = cai.world.new{ seed = args.seed }
local rng = cai.rng(args.seed)
local items = world:instructions(args.n, { split = "train" })
local kinds = { "unwarranted_refusal", "off_topic", "verbose_vague", "format_violation" }
local data = {}
for i, r in ipairs(items) do
  local item = { instruction = r.instruction, response = r.reference, others = { items[(i % #items) + 1].reference } }
  local bad = cai.negatives.transform(kinds[(i % #kinds) + 1], item, rng)
  local picked = cai.principles.sample(c.principles, 2, { rng = rng })
  data[i] = { prompt = cai.critique.combined_prompt(r.instruction, bad.text, picked,
    { few_shot = 0, templates = c.templates }),
    response = " The response does not give the answer that was asked for.\nRevision: " .. r.reference }
end
local m = cai.model.load("tiny")
cai.train.sft{ model = m, data = data, out = args.dir .. ".train", seed = args.seed, max_steps = args.steps,
  learning_rate = args.lr, batch_size = args.batch_size, warmup_ratio = 0.05, schedule = "cosine", logging_steps = 20, full = true,
  progress = false }
m:save(args.dir)
print("critic model: " .. args.dir)

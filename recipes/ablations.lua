-- ablations.lua: the first three questions of the researchers' own plan,
-- answered on the tiny world with recipes/quickstart.lua, each question a
-- `cairun sweep` across seeds (resumable: a rerun runs only missing cells):
--
--   1. mode:         is SFT -> DPO better than DPO from the base model alone,
--                    and than SFT only?        mode=sft_dpo,dpo_only,sft_only
--   2. negative_mix: does the mix of negatives matter?
--                    the 30/25/20/15/10 mix vs uniform vs refusals only
--   3. sft_examples: is the sample size enough?  100, 200, 400 SFT examples
--
-- The first value of each question is the baseline. Every variant is compared
-- with it on the final model's held-out results (summary.final.*: the nine
-- criteria and preference accuracy), paired by seed: mean difference with a
-- 95% interval, an exact sign-flip test, Holm's correction, and a power note
-- (cai.sweep). out/ gets one directory per question (cells/, comparison.md,
-- comparison.json), ablations.md with the three answers, and summary.json.
--
--   build/cairun recipes/ablations.lua out=runs/ablations seeds=1,2,3
--   build/cairun recipes/ablations.lua out=runs/ablations_small seeds=1,2,3 sft_steps=60 dpo_steps=30 \
--     pair_examples=64 eval_examples=40 max_new_tokens=24
local cai = require "cai"
local sweep = require "cai.sweep"

local args = cai.args{
  out = "runs/ablations",
  seeds = "1,2,3",             -- comma-separated; 10 (up to 16) are needed for p < 0.05 after Holm over 20 tests
  questions = "mode,negative_mix,sft_examples", -- which questions to run (comma-separated)
  model = "tiny",
  sft_examples = 400,          -- fixed in questions 1 and 2
  pair_examples = 300,
  eval_examples = 80,
  sft_steps = 300,
  dpo_steps = 150,
  max_new_tokens = 40,
  batch_size = 16,
  nproc = 0,                   -- passed on to every cell (cairun --nproc N)
}

local QUESTIONS = {
  { key = "mode", values = "sft_dpo,dpo_only,sft_only",
    asks = "Is SFT -> DPO better than DPO from the base model alone, and than SFT only?" },
  { key = "negative_mix", values = "default,uniform,refusals",
    asks = "Does the negative mix matter (30/25/20/15/10 vs uniform vs refusals only)?" },
  { key = "sft_examples", values = "100,200,400", asks = "Is the sample size enough (100, 200, 400 SFT examples)?" },
}
local wanted = {}
for q in (args.questions .. ","):gmatch("([^,]*),") do
  if q ~= "" then wanted[q] = true end
end
for q in pairs(wanted) do
  local known = false
  for _, spec in ipairs(QUESTIONS) do known = known or spec.key == q end
  if not known then error("ablations.lua: questions: unknown question '" .. q .. "' (mode, negative_mix, sft_examples)", 0) end
end
if not args.seeds:match("^%d+[%d,]*$") then
  error("ablations.lua: seeds must be comma-separated integers, got '" .. args.seeds .. "'", 0)
end

-- The quickstart beside this recipe.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local recipe = here .. "quickstart.lua"
local fixed = { "model", "sft_examples", "pair_examples", "eval_examples", "sft_steps", "dpo_steps", "max_new_tokens",
  "batch_size" }

local results, md = {}, { "# Ablations on the tiny world", "",
  "Each question is a sweep of `recipes/quickstart.lua` across seeds " .. args.seeds .. "; the first value is the "
  .. "baseline; effects are on the final model's held-out results, paired by seed (`cai.sweep`).", "" }
for _, q in ipairs(QUESTIONS) do
  if wanted[q.key] then
    local argv = { recipe, "seed=" .. args.seeds, q.key .. "=" .. q.values, "out=" .. args.out .. "/" .. q.key }
    for _, k in ipairs(fixed) do
      if k ~= q.key then argv[#argv + 1] = k .. "=" .. tostring(args[k]) end
    end
    if args.nproc > 1 then argv[#argv + 1] = "nproc=" .. math.floor(args.nproc) end
    -- A config's name is every key but seed; the question's key is the one that varies.
    local function variant(config) return tostring(config):match("%f[%w_]" .. q.key .. "=[^,]*") or tostring(config) end
    cai.log.info("ablations: " .. q.asks)
    sweep.main(argv)
    local path = args.out .. "/" .. q.key .. "/comparison.json"
    local cmp = cai.json.decode(assert(io.open(path, "rb")):read("*a"))
    -- The answer: each variant's effects on the final model, significant ones first.
    -- The question's family of tests is the final model's metrics (the sweep corrects over every
    -- metric of the summary, each stage's included): Holm's correction again over these alone.
    local final = {}
    for _, e in ipairs(cmp.effects or {}) do
      if tostring(e.metric):match("^final%.") then final[#final + 1] = e end
    end
    local seeds_run = cmp.configs and cmp.configs[1] and #cmp.configs[1].seeds or 0
    cmp.power = sweep.power(seeds_run, sweep.holm(final))
    table.sort(final, function(a, b)
      if (a.significant == true) ~= (b.significant == true) then return a.significant == true end
      return math.abs(a.mean_diff) > math.abs(b.mean_diff)
    end)
    results[q.key] = { asks = q.asks, values = q.values, comparison = path, baseline = cmp.baseline,
      power = cmp.power, final_effects = final }
    md[#md + 1] = "## " .. q.asks
    md[#md + 1] = ""
    md[#md + 1] = "Baseline `" .. variant(cmp.baseline) .. "`; " .. cmp.power.note .. ". The full tables: `"
      .. path .. "`."
    md[#md + 1] = ""
    md[#md + 1] = "| variant | metric (final model) | diff | 95% CI | p | p (Holm) |"
    md[#md + 1] = "|---|---|---|---|---|---|"
    for _, e in ipairs(final) do
      if e.mean_diff ~= 0 or e.significant then
        md[#md + 1] = string.format("| %s | %s | %+.3f | [%+.3f, %+.3f] | %s | %s%s |", variant(e.config),
          e.metric:gsub("^final%.", ""):gsub("%.rate$", ""), e.mean_diff, e.lo, e.hi,
          e.p and string.format("%.3f", e.p) or "-", e.p_holm and string.format("%.3f", e.p_holm) or "-",
          e.significant and " (significant)" or "")
      end
    end
    md[#md + 1] = ""
  end
end

cai.json.write(args.out .. "/summary.json", { seeds = args.seeds, questions = results })
cai.write_file(args.out .. "/ablations.md", table.concat(md, "\n"))
print(table.concat(md, "\n"))
print("ablations: done, answers in " .. args.out .. "/ablations.md")

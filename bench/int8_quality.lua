-- int8 weights against the float model on the tiny default: perplexity of
-- held-out answers (the world's reference answers after their instructions)
-- and the logits' KL, for fp32 and bf16 compute.
--
--   build/cairun bench/int8_quality.lua [n=200]
local cai = require "cai"
local args = cai.args{ n = 200, model = "tiny" }

local world = cai.world.new{ seed = 42 }
local items = world:instructions(args.n, { split = "heldout" })
local prompts, completions = {}, {}
for i, r in ipairs(items) do
  prompts[i] = cai.template.instruction_prompt(r.instruction)
  completions[i] = " " .. r.reference .. "\n" .. cai.template.END
end

local function nll(m)
  local total, count = 0, 0
  for _, lp in ipairs(m:logprobs(prompts, completions, { batch_size = 16 })) do
    total, count = total - lp.sum, count + lp.n
  end
  return total / count
end

print(string.format("%-6s %-8s %12s %12s", "dtype", "weights", "perplexity", "vs float"))
for _, dtype in ipairs({ "fp32", "bf16" }) do
  local f = cai.model.load(args.model, { dtype = dtype })
  local q = cai.model.load(args.model, { dtype = dtype, weights = "int8" })
  local pf, pq = math.exp(nll(f)), math.exp(nll(q))
  print(string.format("%-6s %-8s %12.4f %12s", dtype, dtype, pf, ""))
  print(string.format("%-6s %-8s %12.4f %+11.2f%%", dtype, "int8", pq, 100 * (pq / pf - 1)))
  f:release()
  q:release()
end

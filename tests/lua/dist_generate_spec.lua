-- Sharded generation and scoring: `cairun --nproc 2` gives every rank the
-- same list, in the original order, as one process with the same seed.
--
-- The file is its own worker: with role=generate (under cairun --nproc) each
-- rank generates and scores and writes what it got to out/rank-<r>.json.
local cai = require "cai"

local args = cai.args{
  role = "",  -- "" (the specs) or "generate" (on every rank)
  root = "",  -- folder holding the tiny model
  out = "",   -- where each rank writes its results
}

local prompts = { "The cat", "A dog ran", "Birds", "Fish swim in", "The sun is", "Rain", "Snow falls on the" }
local completions = { " sat.", " fast.", " fly south.", " water.", " warm.", " falls down.", " hills." }

-- Everything a rank sees, as JSON text.
local function results(root)
  local m = cai.model.load(root .. "/tiny")
  local sampled = m:generate(prompts, { max_new_tokens = 6, temperature = 0.9, top_k = 20, seed = 7, batch_size = 2,
                                        progress = false })
  local greedy = m:generate(prompts, { max_new_tokens = 5, seed = 1, stop = { "." }, progress = false })
  local scores = m:logprobs(prompts, completions, { batch_size = 3 })
  return cai.json.encode({ sampled = sampled, greedy = greedy, scores = scores })
end

if args.role == "generate" then
  local text = results(args.root)
  local f = assert(io.open(string.format("%s/rank-%d.json", args.out, cai.dist.rank()), "wb"))
  f:write(text)
  f:close()
  return
end

local spec = require "spec"
local read = spec.read
local root = spec.tmpdir()
local cairun = assert(os.getenv("CAI_TEST_BUILD_DIR"), "CAI_TEST_BUILD_DIR is not set") .. "/cairun"

spec.random_model(root .. "/tiny", { seed = 5, config = { rms_norm_eps = 1e-5 } })

spec.describe("cairun --nproc 2: m:generate and m:logprobs", function()
  spec.it("give every rank the single-process results in the original order", function()
    local want = cai.json.decode(results(root))
    spec.eq(#want.sampled, #prompts)
    local status = os.execute(string.format("CAI_DIST_TIMEOUT=60 %s --nproc 2 tests/lua/dist_generate_spec.lua role=generate root=%s out=%s",
                                            cairun, root, root))
    spec.truthy(status == 0 or status == true, "cairun --nproc 2 failed")
    for rank = 0, 1 do
      local got = cai.json.decode(read(string.format("%s/rank-%d.json", root, rank)))
      -- Text, finish reason and token ids exactly; log-probs to float noise.
      spec.eq(got.sampled, want.sampled, "rank " .. rank .. ": sampled")
      spec.eq(got.greedy, want.greedy, "rank " .. rank .. ": greedy")
      spec.eq(#got.scores, #want.scores)
      for i, s in ipairs(want.scores) do
        spec.eq(got.scores[i].n, s.n, "rank " .. rank .. ": scores[" .. i .. "].n")
        spec.near(got.scores[i].sum, s.sum, 1e-4, "rank " .. rank .. ": scores[" .. i .. "].sum")
      end
    end
  end)
end)

spec.run()
os.execute("rm -rf '" .. root .. "'")

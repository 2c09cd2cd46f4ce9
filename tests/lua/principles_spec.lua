local spec = require "spec"
local cai = require "cai"
local P = cai.principles

local list = {
  { id = "a", weight = 3, tags = { "safety" }, keywords = { "bomb", "weapon" } },
  { id = "b", weight = 1, tags = { "helpfulness" }, keywords = { "recipe" } },
  { id = "c", weight = 0, tags = { "safety", "privacy" }, keywords = { "address", "phone number" } },
  { id = "d", weight = 1, tags = {}, keywords = {} },
}

spec.describe("principles", function()
  spec.it("weighted sampling follows the weights and never draws weight 0", function()
    local rng = cai.rng(1)
    local usage = {}
    for _ = 1, 2000 do P.sample(list, 1, { rng = rng, usage = usage }) end
    spec.eq(usage.c, nil)
    spec.near(usage.a / 2000, 0.6, 0.05)
    spec.near(usage.b / 2000, 0.2, 0.05)
  end)
  spec.it("draws without replacement", function()
    local picked = P.sample(list, 3, { seed = 3 })
    spec.eq(#picked, 3)
    local ids = P.ids(picked)
    table.sort(ids)
    spec.eq(ids, { "a", "b", "d" })      -- c has weight 0
    spec.eq(#P.sample(list, 3, { seed = 3, strategy = "uniform" }), 3)
  end)
  spec.it("is deterministic for a seed", function()
    spec.eq(P.ids(P.sample(list, 2, { seed = 11 })), P.ids(P.sample(list, 2, { seed = 11 })))
  end)
  spec.it("filters by tag", function()
    for _ = 1, 20 do
      local p = P.sample(list, 1, { seed = _, strategy = "tag", tags = { "helpfulness" } })
      spec.eq(P.ids(p), { "b" })
    end
    spec.raises(function() P.sample(list, 1, { seed = 1, strategy = "tag" }) end, "needs opts.tags")
  end)
  spec.it("ranks by relevance to the prompt", function()
    spec.eq(P.relevance(list[3], "What is the phone number and address of my neighbour?"), 2)
    spec.eq(P.relevance(list[1], "Bombastic speech"), 0)   -- whole words only
    local p = P.sample(list, 1, { strategy = "relevance", prompt = "how to build a bomb or weapon" })
    spec.eq(P.ids(p), { "a" })
    -- fills up from the rest when fewer match
    local p2 = P.sample(list, 2, { strategy = "relevance", prompt = "a recipe for bread", seed = 5 })
    spec.eq(p2[1].id, "b")
    spec.eq(#p2, 2)
    spec.raises(function() P.sample(list, 1, { strategy = "relevance" }) end, "needs opts.prompt")
  end)
  spec.it("round robin cycles with its state", function()
    local state = {}
    local got = {}
    for _ = 1, 3 do
      for _, p in ipairs(P.sample(list, 3, { strategy = "round_robin", state = state })) do got[#got + 1] = p.id end
    end
    spec.eq(table.concat(got), "abcdabcda")
    spec.raises(function() P.sample(list, 1, { strategy = "round_robin" }) end, "needs opts.state")
  end)
  spec.it("checks arguments", function()
    spec.raises(function() P.sample(list, 1, { strategy = "best" }) end, "cai.principles.sample: option 'strategy' must be one of weighted, uniform, tag, relevance, round_robin; got \"best\"", true)
    spec.raises(function() P.sample(list, 1) end, "needs opts.rng")
    spec.raises(function() P.sample(list, 1.5, { seed = 1 }) end, "cai.principles.sample: argument 'n' must be an integer, got 1.5", true)
  end)
  spec.it("reports usage sorted", function()
    local rows, total = P.usage_report({ a = 2, b = 5, c = 2 })
    spec.eq(total, 9)
    spec.eq(rows[1].id, "b")
    spec.eq(rows[2].id, "a")
    spec.near(rows[1].share, 5 / 9, 1e-12)
  end)
end)
spec.run()

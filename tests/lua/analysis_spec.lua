local spec = require "spec"
local cai = require "cai"
local A = cai.analysis

local records = {
  { prompt = "p1", base_response = "same", revised_response = "same", base_score = 0.2, revised_score = 0.2,
    chosen = "revised", principle_ids = { "a" } },
  { prompt = "p2", base_response = "b2", revised_response = "I could say something better.", base_score = 0.1,
    revised_score = 0.5, chosen = "revised", principle_ids = { "a", "b" } },
  { prompt = "p3", base_response = "good base", revised_response = "worse revision", base_score = 1.0,
    revised_score = 0.2, chosen = "base", principle_ids = { "b" } },
  { prompt = "p4", base_response = "b4", revised_response = "r4", base_score = 0.0, revised_score = 0.05,
    chosen = "revised", principle_ids = { "c" } },
}

spec.describe("analysis", function()
  spec.it("computes the pair report", function()
    local r = A.pairs(records)
    spec.eq(r.total, 4)
    spec.eq(r.identical, 1)
    spec.near(r.identical_share, 0.25, 1e-12)
    spec.eq(r.meta, 1)
    -- deltas 0, 0.4, -0.8, 0.05: mean -0.0875; > 0.1: one; < -0.1: one
    spec.near(r.deltas.mean, -0.0875, 1e-12)
    spec.eq(r.deltas.revised_better, 1)
    spec.eq(r.deltas.base_better, 1)
    spec.eq(r.chosen, { revised = 3, base = 1 })
    spec.eq(r.principle_usage[1].id, "a")
    spec.eq(r.principle_usage[1].count, 2)
    spec.eq(r.principle_usage[2].id, "b")
    spec.eq(#r.worst, 1)
    spec.eq(r.worst[1].prompt, "p3")
    spec.near(r.worst[1].delta, -0.8, 1e-12)
    spec.eq(r.identical_examples[1].prompt, "p1")
  end)
  spec.it("formats as text and JSON", function()
    local r = A.pairs(records)
    local text = A.format(r)
    spec.truthy(text:find("identical base/revised%s+1 %(25.0%%%)"), text)
    spec.truthy(text:find("worst revisions", 1, true))
    local decoded = cai.json.decode(A.to_json(r))
    spec.eq(decoded.total, 4)
    spec.eq(decoded.chosen.base, 1)
    local dir = spec.tmpdir()
    A.write(r, dir .. "/report.json")
    local f = assert(io.open(dir .. "/report.json"))
    spec.eq(cai.json.decode(f:read("*a")).identical, 1)
    f:close()
    os.remove(dir .. "/report.json")
    os.remove(dir)
  end)
  spec.it("works on critique records without scores", function()
    local r = A.pairs({ { instruction = "q", initial_answer = "a", revised_answer = "b", principle_ids = { "x" } } })
    spec.eq(r.deltas.n, 0)
    spec.eq(r.chosen, { revised = 1 })
    spec.truthy(A.format(r):find("no scores"))
  end)
end)
spec.run()

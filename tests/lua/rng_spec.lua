local cai = require "cai"
local spec = require "spec"

spec.describe("cai.rng", function()
  spec.it("is reproducible from its seed", function()
    local a, b = cai.rng(42), cai.rng(42)
    for _ = 1, 20 do spec.eq(a:random(), b:random()) end
    spec.truthy(cai.rng(1):random() ~= cai.rng(2):random())
  end)
  spec.it("draws integers in inclusive bounds", function()
    local r = cai.rng(3)
    local seen = {}
    for _ = 1, 500 do
      local v = r:int(1, 4)
      spec.truthy(v >= 1 and v <= 4 and v == math.floor(v))
      seen[v] = true
    end
    spec.eq(seen, { [1] = true, [2] = true, [3] = true, [4] = true })
  end)
  spec.it("shuffles in place to a permutation", function()
    local list = { 1, 2, 3, 4, 5, 6, 7, 8 }
    cai.rng(5):shuffle(list)
    table.sort(list)
    spec.eq(list, { 1, 2, 3, 4, 5, 6, 7, 8 })
    local a, b = { 1, 2, 3, 4, 5 }, { 1, 2, 3, 4, 5 }
    cai.rng(9):shuffle(a)
    cai.rng(9):shuffle(b)
    spec.eq(a, b)
  end)
  spec.it("chooses by weight", function()
    local r = cai.rng(11)
    local counts = { 0, 0, 0 }
    for _ = 1, 20000 do
      local i = r:weighted({ 30, 0, 70 })
      counts[i] = counts[i] + 1
    end
    spec.eq(counts[2], 0)
    spec.near(counts[3] / 20000, 0.7, 0.015)
  end)
  spec.it("derives independent reproducible streams", function()
    local a = cai.rng(1):derive("negatives")
    local b = cai.rng(1):derive("negatives")
    local c = cai.rng(1):derive("pairs")
    local x = a:random()
    spec.eq(x, b:random())
    spec.truthy(x ~= c:random())
  end)
  spec.it("checks its arguments", function()
    spec.raises(function() cai.rng("x") end, "cai.rng: argument 'seed' must be an integer, got string", true)
    spec.raises(function() cai.rng(1):int(5, 1) end, "empty range")
    spec.raises(function() cai.rng(1):choice({}) end, "empty")
    spec.raises(function() cai.rng(1).random() end, "expected a cai.rng object")
  end)
end)

spec.describe("cai.log and cai.progress", function()
  spec.it("logs at levels and refuses unknown ones", function()
    cai.log.info("visible", 1, true)
    spec.eq(cai.log.level("error"), "error")
    cai.log.info("hidden")
    spec.eq(cai.log.level("warn"), "warn")
    spec.raises(function() cai.log.level("loud") end, "unknown level 'loud'")
  end)
  spec.it("tracks progress", function()
    local p = cai.progress{ total = 3, label = "test" }
    p:advance()
    p:update(3, "loss 0.1")
    p:finish()
    p:finish()
    spec.raises(function() cai.progress{ label = "x" } end, "cai.progress: option 'total' is required", true)
  end)
end)

spec.run()

local spec = require "spec"
local cai = require "cai"
local world = require "cai.world"

local function find(records, pred)
  for _, r in ipairs(records) do if pred(r) then return r end end
end

spec.describe("cai.world", function()
  local w = world.new { seed = 42 }

  spec.it("is deterministic for a seed and differs between seeds", function()
    local a, b = world.new { seed = 42 }, world.new { seed = 42 }
    spec.eq(a:pretraining_corpus(500), b:pretraining_corpus(500))
    spec.eq(a:instructions(200, { split = "train" }), b:instructions(200, { split = "train" }))
    spec.eq(a:instructions(50, { split = "heldout" }), b:instructions(50, { split = "heldout" }))
    local c = world.new { seed = 43 }
    spec.truthy(cai.json.encode(c:pretraining_corpus(500)) ~= cai.json.encode(a:pretraining_corpus(500)),
      "seed 43 gives another corpus")
    spec.truthy(c.people[1].name ~= a.people[1].name or c.countries[1].capital ~= a.countries[1].capital,
      "seed 43 invents other names")
  end)

  spec.it("returns exactly the requested counts", function()
    spec.eq(#w:pretraining_corpus(0), 0)
    spec.eq(#w:pretraining_corpus(1234), 1234)
    spec.eq(#w:instructions(0), 0)
    spec.eq(#w:instructions(317, { split = "train" }), 317)
    spec.eq(#w:instructions(5000, { split = "heldout" }), 5000)   -- more than the pool: repeats within the split
  end)

  spec.it("states every fact in a corpus of one pass and never uses the instruction format", function()
    local lines = w:pretraining_corpus(3000)
    local text = table.concat(lines, "\n")
    for _, c in ipairs(w.countries) do
      spec.truthy(text:find(c.capital, 1, true), "capital " .. c.capital .. " appears")
    end
    for _, p in ipairs(w.people) do
      spec.truthy(text:find(p.name .. " lives in " .. p.city, 1, true) or text:find(p.name .. " has a home in "
        .. p.city, 1, true), "home of " .. p.name)
    end
    for _, line in ipairs(lines) do
      spec.truthy(not line:find("Instruction:", 1, true) and not line:find("Response:", 1, true)
        and not line:find("%f[%w]END%f[%W]") and not line:find("\n", 1, true), "plain prose line: " .. line)
      spec.truthy(#line > 0 and #line < 200, "short line: " .. line)
    end
  end)

  spec.it("keeps the vocabulary small", function()
    local vocab, n = {}, 0
    for _, line in ipairs(w:pretraining_corpus(5000)) do
      for word in line:lower():gmatch("%a+") do
        if not vocab[word] then vocab[word] = true; n = n + 1 end
      end
    end
    spec.truthy(n < 600, "distinct words " .. n)
  end)

  spec.it("keeps train and held-out instructions disjoint, also by fact", function()
    local train = w:instructions(3000, { split = "train" })
    local held = w:instructions(800, { split = "heldout" })
    local texts, ids = {}, {}
    for _, r in ipairs(train) do texts[r.instruction] = true; ids[r.id] = true end
    for _, r in ipairs(held) do
      spec.truthy(not texts[r.instruction], "held-out instruction also in train: " .. r.instruction)
      spec.truthy(not ids[r.id], "held-out fact also in train: " .. r.id)
    end
  end)

  spec.it("draws distinct texts until a pool is used up", function()
    local sizes = w:pool_sizes()
    local n = sizes.train.capital
    local list = w:instructions(n, { split = "train", kinds = { "capital" } })
    local seen = {}
    for _, r in ipairs(list) do
      spec.truthy(not seen[r.instruction], "repeat before the pool ran out: " .. r.instruction)
      seen[r.instruction] = true
    end
  end)

  spec.it("gives every record the fields, with the exact kind mix and harmful share", function()
    local list = w:instructions(1000, { split = "train" })
    local by_kind, harmful = {}, 0
    for _, r in ipairs(list) do
      spec.eq(type(r.instruction), "string")
      spec.eq(type(r.reference), "string")
      spec.eq(type(r.kind), "string")
      spec.eq(type(r.harmful), "boolean")
      spec.eq(type(r.facts), "table")
      spec.eq(r.should_refuse, r.harmful)
      spec.truthy(#r.instruction > 0 and #r.reference > 0)
      by_kind[r.kind] = (by_kind[r.kind] or 0) + 1
      if r.harmful then
        harmful = harmful + 1
        spec.truthy(cai.eval.is_refusal(r.reference), "harmful reference is a refusal: " .. r.reference)
        spec.eq(r.kind, "harmful")
      else
        spec.truthy(not cai.eval.is_refusal(r.reference), "benign reference is no refusal: " .. r.reference)
      end
    end
    spec.eq(harmful, 150)                  -- 15 of 100 weight units
    spec.eq(by_kind.arithmetic, 150)
    spec.eq(by_kind.person, 180)
    local only = w:instructions(40, { split = "heldout", kinds = { "arithmetic", "harmful" } })
    local h = 0
    for _, r in ipairs(only) do
      spec.truthy(r.kind == "arithmetic" or r.kind == "harmful")
      if r.harmful then h = h + 1 end
    end
    spec.eq(h, 20)
    local weighted = w:instructions(10, { kinds = { harmful = 3, capital = 1 } })
    local hw = 0
    for _, r in ipairs(weighted) do if r.harmful then hw = hw + 1 end end
    spec.eq(hw, 7)       -- 2.5 / 7.5: the tied remainder goes to the kind listed first (capital)
  end)

  spec.it("checks facts in right and wrong answers", function()
    local list = w:instructions(2000, { split = "train" })
    for _, r in ipairs(list) do
      local verdict = w:check_fact(r, r.reference)
      if r.harmful or r.kind == "task" and r.topic == nil then
        spec.eq(verdict, nil, "not checkable: " .. r.instruction)
      else
        spec.eq(verdict, true, "reference passes: " .. r.instruction .. " -> " .. r.reference)
      end
    end
    local add = find(list, function(r) return r.kind == "arithmetic" and r.instruction:find("plus") end)
    local a, b = add.operands[1], add.operands[2]
    local c = a + b
    spec.eq(w:check_fact(add, tostring(c)), true)
    spec.eq(w:check_fact(add, ("%d plus %d is %d.\nEND"):format(a, b, c)), true)
    spec.eq(w:check_fact(add, ("%d plus %d is %d."):format(a, b, c + 1)), false)
    spec.eq(w:check_fact(add, "I do not know."), false)
    local zero = { instruction = "What is 0 plus 5?", facts = { "5" }, topic = "number", operands = { 0, 5 } }
    spec.eq(w:check_fact(zero, "0 plus 5 is 5."), true)
    spec.eq(w:check_fact(zero, "0 plus 5 is 0."), false)
    spec.eq(w:check_fact(zero, "Five."), true)
    spec.eq(w:check_fact(zero, "It is 6."), false)

    local cap_q = find(list, function(r) return r.kind == "capital" end)
    local right = cap_q.facts[1]
    local wrong
    for _, c2 in ipairs(w.countries) do if c2.capital ~= right then wrong = c2.capital; break end end
    spec.eq(w:check_fact(cap_q, "It is " .. right .. "."), true)
    spec.eq(w:check_fact(cap_q, "It is " .. wrong .. "."), false)
    spec.eq(w:check_fact(cap_q, "It is " .. wrong .. " or " .. right .. "."), false)   -- a contradicting value
    spec.eq(w:check_fact(cap_q, "It is " .. right:lower() .. "."), true)               -- case-insensitive

    local colour_q = find(list, function(r) return r.kind == "person" and r.topic == "colour" end)
    local other = colour_q.facts[1] == "red" and "blue" or "red"
    spec.eq(w:check_fact(colour_q, "Blue and red and green and " .. colour_q.facts[1]), false)
    spec.eq(w:check_fact(colour_q, other), false)

    local legs = find(list, function(r) return r.kind == "animal" and r.topic == "number" end)
    local n = tonumber(legs.facts[1])
    local words = { [2] = "two", [4] = "four", [6] = "six" }
    spec.eq(w:check_fact(legs, "It has " .. words[n] .. " legs."), true)
    spec.eq(w:check_fact(legs, "It has " .. (n + 1) .. " legs."), false)

    local harmful = find(list, function(r) return r.harmful end)
    spec.eq(w:check_fact(harmful, "anything"), nil)
  end)

  spec.it("plugs into cai.eval with check_fact as the factual judge", function()
    local records = w:instructions(30, { split = "heldout" })
    local good, bad = {}, {}
    for i, r in ipairs(records) do
      good[i] = r.reference .. "\nEND"
      bad[i] = "I do not know.\nEND"
    end
    local report = cai.eval.run(w:eval_items(records), { good = good, bad = bad },
      { factual_judge = w:factual_judge() })
    local checkable = 0
    for _, r in ipairs(records) do if w:check_fact(r, r.reference) ~= nil then checkable = checkable + 1 end end
    local fc = report.models.good.rates.factually_correct
    spec.eq(fc.n, checkable)
    spec.eq(fc.pass, checkable)
    spec.eq(report.models.bad.rates.factually_correct.pass, 0)
    spec.eq(report.models.good.rates.no_unwarranted_refusal.pass, 30)   -- refusals only where harmful
    spec.eq(report.models.good.rates.ends_with_end.pass, 30)
  end)

  spec.it("rejects bad arguments with clear messages", function()
    spec.raises(function() world.new { seed = 1.5 } end, "cai.world.new: option 'seed' must be an integer, got 1.5", true)
    spec.raises(function() world.new { sede = 1 } end, "unknown option 'sede'")
    spec.raises(function() w:instructions(3, { split = "test" }) end, 'world:instructions: option \'split\' must be one of train, heldout; got "test"', true)
    spec.raises(function() w:instructions(3, { kinds = { "capitals" } }) end, "kinds%[1%] must be one of")
    spec.raises(function() w:pretraining_corpus(-1) end, "non%-negative integer")
    spec.raises(function() w:check_fact("x", "y") end, "record must be")
  end)
end)

spec.run()

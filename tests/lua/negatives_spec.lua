local spec = require "spec"
local cai = require "cai"
local N = cai.negatives

local function make_items(n)
  local items = {}
  for i = 1, n do
    items[i] = { instruction = "Question " .. i .. "?", response = "The answer to question " .. i .. " is 42 and it is true." }
  end
  return items
end

spec.describe("negatives", function()
  spec.it("counts are exact with largest remainder", function()
    -- 10 items at 30/25/20/15/10: 3, 2.5, 2, 1.5, 1 -> floors 3,2,2,1,1 (9); the .5 tie goes to format (listed first)
    spec.eq(N.counts(10), { unwarranted_refusal = 3, format_violation = 3, incorrect_factual = 2, off_topic = 1,
      verbose_vague = 1 })
    spec.eq(N.counts(100), { unwarranted_refusal = 30, format_violation = 25, incorrect_factual = 20, off_topic = 15,
      verbose_vague = 10 })
    -- 7: 2.1, 1.75, 1.4, 1.05, 0.7 -> 2,1,1,1,0 (5); remainders .75 (format) and .7 (verbose) get one each
    spec.eq(N.counts(7), { unwarranted_refusal = 2, format_violation = 2, incorrect_factual = 1, off_topic = 1,
      verbose_vague = 1 })
    spec.eq(N.counts(0).off_topic, 0)
  end)

  spec.it("plans a shuffled list with those counts", function()
    local plan = N.plan(20, nil, cai.rng(1))
    local c = {}
    for _, t in ipairs(plan) do c[t] = (c[t] or 0) + 1 end
    spec.eq(c, { unwarranted_refusal = 6, format_violation = 5, incorrect_factual = 4, off_topic = 3, verbose_vague = 2 })
  end)

  spec.it("each programmatic transform makes a different, typed text", function()
    local rng = cai.rng(3)
    local item = { instruction = "When did the Berlin Wall fall?", response = "The Berlin Wall fell in 1989.",
      others = { "Water boils at 100 degrees Celsius at sea level." }, other_instructions = { "Boiling point?" } }
    for _, kind in ipairs(N.TYPES) do
      local r = N.transform(kind, item, rng)
      spec.truthy(r and r.text ~= item.response, kind .. " changes the text")
    end
    local f = N.transform("incorrect_factual", item, rng)
    spec.eq(f.variant, "number")
    spec.truthy(not f.text:find("1989") and f.text:find("^The Berlin Wall fell in %d%d%d%d%.$"), f.text)
    spec.eq(N.transform("off_topic", item, rng).text, "Water boils at 100 degrees Celsius at sea level.")
    local v = N.transform("verbose_vague", item, rng)
    spec.truthy(#v.text > 2 * #item.response and not v.text:find("1989"), v.text)
    local r = N.transform("unwarranted_refusal", item, rng, { templates = { "No: {instruction}" } })
    spec.eq(r.text, "No: When did the Berlin Wall fall?")
  end)

  spec.it("incorrect_factual falls back to antonyms and negation, else says why", function()
    local rng = cai.rng(1)
    spec.eq(N.transform("incorrect_factual", { instruction = "q", response = "Prices always rise." }, rng).text,
      "Prices never rise.")
    spec.eq(N.transform("incorrect_factual", { instruction = "q", response = "Paris is the capital." }, rng).text,
      "Paris is not the capital.")
    local r, why = N.transform("incorrect_factual", { instruction = "q", response = "Hello there." }, rng)
    spec.eq(r, nil)
    spec.truthy(why:find("nothing to change"))
  end)

  spec.it("generates pairs to the exact mix in the Instruction/Response/END format", function()
    local pairs, stats = N.generate(make_items(20), { seed = 7 })
    spec.eq(#pairs, 20)
    spec.eq(stats.by_type, { unwarranted_refusal = 6, format_violation = 5, incorrect_factual = 4, off_topic = 3,
      verbose_vague = 2 })
    spec.eq(pairs[1].prompt, "Instruction: Question 1?\nResponse:")
    spec.eq(pairs[1].chosen, " The answer to question 1 is 42 and it is true.\nEND")
    for _, p in ipairs(pairs) do
      spec.truthy(p.rejected ~= p.chosen, "rejected differs")
      if p.negative_type ~= "format_violation" then spec.truthy(p.rejected:find("\nEND$"), "ends with END") end
    end
    local again = N.generate(make_items(20), { seed = 7 })
    spec.eq(again, pairs)
  end)

  spec.it("swaps types to keep the mix when a transform cannot apply", function()
    local items = make_items(10)
    items[1].response = "Hello there."       -- nothing factual to change
    items[2].response = "Good morning."
    local pairs, stats = N.generate(items, { seed = 1, format = "raw" })
    spec.eq(stats.by_type.incorrect_factual, 2)
    spec.truthy(pairs[1].negative_type ~= "incorrect_factual" and pairs[2].negative_type ~= "incorrect_factual")
    spec.eq(pairs[3].prompt, "Question 3?")
  end)

  spec.it("never gives a request that should be refused a refusal as its negative", function()
    local items = make_items(10)
    for i = 1, 6 do items[i].should_refuse = true end  -- 3 refusal slots, only 4 items can take them
    local pairs, stats = N.generate(items, { seed = 3, format = "raw" })
    spec.eq(stats.by_type.unwarranted_refusal, 3)
    for i = 1, 6 do spec.truthy(pairs[i].negative_type ~= "unwarranted_refusal", "item " .. i) end
    for i = 1, 8 do items[i].should_refuse = true end  -- 2 items left for 3 refusals
    spec.raises(function() N.generate(items, { seed = 3, format = "raw" }) end, "should be refused", true)
  end)

  spec.it("uses the constitution's mix and templates", function()
    local c = cai.constitution.load("constitutions/stage1_instruction_following.yaml")
    local _, stats = N.generate(make_items(10), { constitution = c, seed = 2 })
    spec.eq(stats.by_type.unwarranted_refusal, 3)
    local pairs = N.generate(make_items(4), { mix = { { type = "unwarranted_refusal", weight = 1 } }, constitution = c, seed = 2 })
    for _, p in ipairs(pairs) do spec.eq(p.negative_type, "unwarranted_refusal") end
  end)

  spec.it("model-prompted negatives: one batched call, bad outputs replaced and counted", function()
    local calls = {}
    local model = { generate = function(self, prompts, opts)
      calls[#calls + 1] = prompts
      local out = {}
      for i, p in ipairs(prompts) do
        out[i] = { text = (i == 1) and "" or (" Model negative " .. i .. "\nEND"), finish = "stop", tokens = 3 }
      end
      return out
    end }
    local pairs, stats = N.generate(make_items(10), { seed = 3, model = model, model_share = 0.5 })
    spec.eq(#calls, 1)
    spec.eq(#calls[1], 7)    -- half of 3/3/2/1/1, rounded half up: 2 + 2 + 1 + 1 + 1
    spec.eq(stats.model_rejected, 1)
    spec.eq(stats.by_source.model, 6)
    spec.eq(stats.by_source.programmatic, 4)
    local found = false
    for _, p in ipairs(pairs) do
      if p.source == "model" then found = true; spec.truthy(p.rejected:find("^ Model negative %d\nEND$") or p.rejected:find("^ Model negative %d$"), p.rejected) end
    end
    spec.truthy(found)
  end)

  spec.it("checks arguments", function()
    spec.raises(function() N.generate({ { instruction = 1 } }) end, "items%[1%] must be")
    spec.raises(function() N.generate(make_items(2), { mixx = {} }) end, "unknown option 'mixx'")
    spec.raises(function() N.counts(3, { { type = "a", weight = 0 } }) end, "sum to 0")
    spec.raises(function() N.transform("rude", { instruction = "", response = "" }, cai.rng(1)) end, "unknown negative type 'rude'")
  end)
end)
spec.run()

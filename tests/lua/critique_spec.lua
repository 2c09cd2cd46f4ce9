-- The critique/revision loop against a scripted fake model.
local spec = require "spec"
local cai = require "cai"
local C = cai.critique

-- A fake model: generate() answers each prompt with respond(prompt, i) and
-- records every call (so batching can be checked).
local function fake_model(respond)
  local m = { calls = {} }
  function m:generate(prompts, opts)
    self.calls[#self.calls + 1] = { prompts = prompts, opts = opts }
    local out = {}
    for i, p in ipairs(prompts) do out[i] = { text = respond(p, i, #self.calls), finish = "stop", tokens = 5 } end
    return out
  end
  return m
end

local principles = {
  { id = "helpful", title = "Helpful", critique = "Find unhelpful parts.", revision = "Make it helpful.", weight = 1,
    tags = {}, examples = { { prompt = "P?", response = "R.", critique = "Too short.", revision = "A longer answer here." } } },
  { id = "safe", title = "Safe", critique = "Find unsafe parts.", revision = "Make it safe.", weight = 1, tags = {},
    examples = {} },
}

spec.describe("critique.parse", function()
  spec.it("splits critique and revision", function()
    local r = C.parse("Critique: It is vague.\nRevision: Paris is the capital of France.")
    spec.eq(r.critique, "It is vague.")
    spec.eq(r.revision, "Paris is the capital of France.")
    spec.eq(r.keep_original, false)
  end)
  spec.it("accepts markdown bold, other case, a missing Critique label", function()
    local r = C.parse("The answer lacks detail.\n**REVISION:** A detailed answer with enough words.")
    spec.eq(r.critique, "The answer lacks detail.")
    spec.eq(r.revision, "A detailed answer with enough words.")
  end)
  spec.it("cuts a model that continues with a new example", function()
    local r = C.parse("Critique: ok\nRevision: The answer is four.\nEND\nOriginal Question: next one\nCritique: x")
    spec.eq(r.revision, "The answer is four.")
    local r2 = C.parse("Critique: fine\nRevision: Good text here.\n\nExample 4 - something")
    spec.eq(r2.revision, "Good text here.")
  end)
  spec.it("recognises KEEP_ORIGINAL", function()
    local r = C.parse("Critique: Already good.\nRevision: KEEP_ORIGINAL")
    spec.eq(r.keep_original, true)
    spec.eq(r.revision, nil)
  end)
  spec.it("has no revision when the label is missing", function()
    local r = C.parse("Just some rambling without labels")
    spec.eq(r.revision, nil)
    spec.eq(r.critique, "Just some rambling without labels")
  end)
end)

spec.describe("critique.meta_commentary", function()
  spec.it("flags descriptions of changes", function()
    spec.truthy(C.meta_commentary("I could answer the question literally by saying..."))
    spec.truthy(C.meta_commentary("The response should mention safety."))
    spec.truthy(C.meta_commentary("Here is a revised response: hello"))
    spec.truthy(C.meta_commentary('"Here\'s an improved version of the answer'))
    spec.truthy(C.meta_commentary("Instead of refusing, the assistant..."))
    spec.truthy(C.meta_commentary("Sure. The revised response removes the insult."))
  end)
  spec.it("does not flag real answers", function()
    spec.eq(C.meta_commentary("Paris is the capital of France."), nil)
    spec.eq(C.meta_commentary("I would recommend seeing a doctor if the pain continues."), nil)
    spec.eq(C.meta_commentary("I can't help with making weapons, but I can explain the chemistry."), nil)
  end)
end)

spec.describe("critique.run", function()
  spec.it("revises in one batched call per round and records principle ids", function()
    local m = fake_model(function(p, i)
      return " The answer is too short.\nRevision: Revised answer number " .. i .. " with enough words.\nOriginal Question: x"
    end)
    local records, stats = C.run(m, { { instruction = "Q1", answer = "A1" }, { instruction = "Q2", answer = "A2" } },
      { principles = principles, seed = 1 })
    spec.eq(#m.calls, 1)
    spec.eq(#m.calls[1].prompts, 2)
    spec.eq(m.calls[1].opts.temperature, 0.3)
    spec.truthy(m.calls[1].prompts[1]:find("Original Question: Q1\nOriginal Response: A1\nCritique:$"))
    spec.eq(records[1].revised_answer, "Revised answer number 1 with enough words.")
    spec.eq(records[1].initial_answer, "A1")
    spec.eq(records[1].critique, "The answer is too short.")
    spec.eq(records[1].rounds, 1)
    spec.eq(#records[1].principle_ids, 1)
    spec.eq(records[1].changed, true)
    spec.eq(records[1].preference_pair, { prompt = "Q1", chosen = records[1].revised_answer, rejected = "A1" })
    spec.eq(stats.outcomes.revised, 2)
  end)

  spec.it("first_index: items done in chunks draw the principles and streams of the whole list", function()
    local many = {}
    for i = 1, 6 do many[i] = { id = "p" .. i, title = "P" .. i, critique = "C" .. i, revision = "R" .. i, weight = 1,
      tags = {}, examples = {} } end
    local items = {}
    for i = 1, 5 do items[i] = { instruction = "Q" .. i, answer = "A" .. i } end
    local function respond() return "Short.\nRevision: A revised answer with enough words." end
    local opts = { principles = many, per_round = 2, seed = 9, first_index = 0 }
    local whole_model = fake_model(respond)
    local whole = C.run(whole_model, items, opts)
    local head_model, tail_model = fake_model(respond), fake_model(respond)
    local head = C.run(head_model, { items[1], items[2] }, opts)
    local tail = C.run(tail_model, { items[3], items[4], items[5] },
      { principles = many, per_round = 2, seed = 9, first_index = 2 })
    local chunked = { head[1], head[2], tail[1], tail[2], tail[3] }
    for i = 1, 5 do spec.eq(chunked[i].principle_ids, whole[i].principle_ids, "item " .. i) end
    spec.eq(tail_model.calls[1].opts.first_index, 2)
    spec.eq(tail_model.calls[1].opts.seed, whole_model.calls[1].opts.seed)
    spec.raises(function() C.run(fake_model(respond), items, { principles = many, first_index = -1 }) end,
      "cai.critique.run: option 'first_index' must be >= 0, got -1", true)
    spec.raises(function() C.run(fake_model(respond), { "Q1", { instruction = "Q2", answer = "A2" } },
      { principles = many, first_index = 0 }) end, "give every item an answer or none", true)
  end)

  spec.it("retries: a refused revision is asked again from the item's own stream, up to retries times", function()
    local items = {}
    for i = 1, 4 do items[i] = { instruction = "Q" .. i, answer = "The first answer number " .. i .. "." } end
    -- Items 2 and 4 write a too-short revision on the first call, item 4 also on the second.
    local function respond(prompt, k, call)
      local item = tonumber(prompt:match("Q(%d)"))
      if (item == 2 and call == 1) or (item == 4 and call <= 2) then return "Bad.\nRevision: Too short." end
      return "Fine.\nRevision: A revised answer with enough words " .. item .. "."
    end
    local m = fake_model(respond)
    local records, stats = C.run(m, items, { principles = principles, seed = 4, retries = 2, first_index = 10 })
    spec.eq(#m.calls, 3)
    spec.eq(m.calls[2].opts.streams, { 11, 13 })
    spec.eq(m.calls[3].opts.streams, { 13 })
    spec.eq(m.calls[2].opts.seed, 4 + 1 + 1000)
    spec.near(m.calls[2].opts.temperature, 0.5, 1e-12)   -- 0.3 + 0.2
    spec.near(m.calls[3].opts.temperature, 0.7, 1e-12)
    for i = 1, 4 do spec.eq(records[i].history[1].outcome, "revised", "item " .. i) end
    spec.eq(records[2].history[1].retries, 1)
    spec.eq(records[4].history[1].retries, 2)
    spec.eq(records[1].history[1].retries, nil)
    spec.eq(stats.retries, 3)
    -- Without retries the refusals stand.
    local plain = C.run(fake_model(respond), items, { principles = principles, seed = 4 })
    spec.eq(plain[2].history[1].outcome, "too_short")
    spec.raises(function() C.run(fake_model(respond), items, { principles = principles, retries = -1 }) end,
      "option 'retries' must be >= 0", true)
  end)

  spec.it("answer_model answers the items, model critiques them", function()
    local answerer = fake_model(function() return "An answer from the answering model." end)
    local critic = fake_model(function() return "Fine.\nRevision: KEEP_ORIGINAL" end)
    local records = C.run(critic, { "Q1", "Q2" }, { principles = principles, seed = 1, answer_model = answerer })
    spec.eq(#answerer.calls, 1)
    spec.eq(#critic.calls, 1)
    spec.eq(records[1].initial_answer, "An answer from the answering model.")
  end)

  spec.it("includes few-shot examples of the chosen principle", function()
    local m = fake_model(function() return "ok\nRevision: KEEP_ORIGINAL" end)
    C.run(m, { { instruction = "Q", answer = "A" } }, { principles = { principles[1] }, seed = 1 })
    local prompt = m.calls[1].prompts[1]
    spec.truthy(prompt:find("Original Question: P%?\nOriginal Response: R%.\nCritique: Too short%.\nRevision: A longer answer here%."))
    spec.truthy(prompt:find("Find unhelpful parts.", 1, true))
  end)

  spec.it("keeps the original on KEEP_ORIGINAL, meta-commentary, too short and unparsed output", function()
    local replies = {
      "Fine.\nRevision: KEEP_ORIGINAL",
      "Bad.\nRevision: I could answer the question literally by listing sites.",
      "Bad.\nRevision: Too short.",
      "no labels at all",
    }
    local m = fake_model(function(_, i) return replies[i] end)
    local items = {}
    for i = 1, 4 do items[i] = { instruction = "Q" .. i, answer = "Original answer " .. i } end
    local records, stats = C.run(m, items, { principles = principles, seed = 2 })
    for i = 1, 4 do
      spec.eq(records[i].revised_answer, "Original answer " .. i)
      spec.eq(records[i].changed, false)
    end
    spec.eq({ records[1].outcomes[1], records[2].outcomes[1], records[3].outcomes[1], records[4].outcomes[1] },
      { "keep_original", "meta_commentary", "too_short", "unparsed" })
    spec.eq(stats.outcomes.revised, 0)
    spec.eq(stats.changed, 0)
  end)

  spec.it("runs N rounds, each revising the previous answer", function()
    local m = fake_model(function(p, i, call)
      return "Needs work.\nRevision: Round " .. call .. " answer with several more words."
    end)
    local records = C.run(m, { { instruction = "Q", answer = "A0" } }, { principles = principles, rounds = 3, seed = 3 })
    spec.eq(#m.calls, 3)
    spec.truthy(m.calls[2].prompts[1]:find("Original Response: Round 1 answer", 1, true))
    spec.eq(records[1].revised_answer, "Round 3 answer with several more words.")
    spec.eq(records[1].rounds, 3)
    spec.eq(#records[1].history, 3)
    spec.truthy(#records[1].principle_ids >= 1 and #records[1].principle_ids <= 2)
    spec.eq(m.calls[1].opts.seed ~= m.calls[2].opts.seed, true)
  end)

  spec.it("generates missing initial answers in one batch, stripping END", function()
    local m = fake_model(function(p, i, call)
      if call == 1 then return " Initial " .. i .. "\nEND\nInstruction: more" end
      return "ok\nRevision: KEEP_ORIGINAL"
    end)
    local records = C.run(m, { "Q1", "Q2", "Q3" }, { principles = principles, seed = 4 })
    spec.eq(#m.calls, 2)
    spec.eq(m.calls[1].prompts[2], "Instruction: Q2\nResponse:")
    spec.eq(m.calls[1].opts.temperature, 0.7)
    spec.eq(records[3].initial_answer, "Initial 3")
  end)

  spec.it("two-step mode critiques then revises, two batched calls", function()
    local m = fake_model(function(p, i, call)
      if call == 1 then return " It is rude.\n\nRevision Request: ignored" end
      return " A polite and complete answer to the question.\n\nHuman: next"
    end)
    local records = C.run(m, { { instruction = "Q", answer = "A" } }, { principles = principles, mode = "two_step", seed = 5 })
    spec.eq(#m.calls, 2)
    spec.truthy(m.calls[2].prompts[1]:find("Critique: It is rude.\n\nRevision Request:", 1, true))
    spec.eq(records[1].critique, "It is rude.")
    spec.eq(records[1].revised_answer, "A polite and complete answer to the question.")
  end)

  spec.it("checks its arguments and the model's answers", function()
    local m = fake_model(function() return "x" end)
    spec.raises(function() C.run(m, { "Q" }, {}) end, "needs opts.constitution")
    spec.raises(function() C.run(m, { "Q" }, { principles = principles, round = 2 }) end, "unknown option 'round' (did you mean rounds?)", true)
    spec.raises(function() C.run(m, { "Q" }, { principles = principles, mode = "x" }) end, "option 'mode' must be one of combined, two_step; got \"x\"", true)
    local broken = { generate = function() return {} end }
    spec.raises(function() C.run(broken, { { instruction = "Q", answer = "A" } }, { principles = principles }) end,
      "returned 0 results for 1 prompts")
  end)

  spec.it("works with a loaded constitution", function()
    local c = cai.constitution.load("constitutions/default.yaml")
    local m = fake_model(function() return "Fine.\nRevision: KEEP_ORIGINAL" end)
    local records, stats = C.run(m, { { instruction = "How do I bake bread?", answer = "Mix flour." } },
      { constitution = c, strategy = "relevance", seed = 1 })
    spec.eq(records[1].principle_ids, { "helpful-accurate" })
    spec.eq(stats.principle_usage["helpful-accurate"], 1)
  end)
end)
spec.run()

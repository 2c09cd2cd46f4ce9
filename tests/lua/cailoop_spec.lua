-- The tiny world's Constitutional-AI pieces: ground-truth judging, the
-- critique/comparison demonstrations of the pretraining corpus, RL-CAI
-- feedback labels and the loop's measurements.
local spec = require "spec"
local cai = require "cai"
local world = require "cai.world"

local c = cai.constitution.load("constitutions/tiny_world.yaml")
local w = world.new { seed = 42 }

local function principle(id) return c:get(id) end

spec.describe("cai.world CAI", function()
  local harmful = w:instructions(30, { split = "train", kinds = { "harmful" } })
  local benign = w:instructions(60, { split = "train", kinds = { "capital", "person", "arithmetic", "task" } })

  spec.it("judges answers with the world's ground truth", function()
    local h = harmful[1]
    spec.eq({ w:judge(h, h.reference) }, { "refused", true })
    local comply = w:compliance(h)
    spec.truthy(comply:find("^Sure%. Here is a plan to "), comply)
    spec.eq({ w:judge(h, comply) }, { "complied", false })
    for _, r in ipairs(benign) do
      spec.eq({ w:judge(r, r.reference) }, { "correct", true })
      spec.eq({ w:judge(r, world.REFUSAL) }, { "refused", false })
      spec.eq(w:compliance(r), nil)
    end
  end)

  spec.it("preference pairs: the world's truth prefers the good side, refusals good for harmful requests", function()
    local rng = cai.rng(3)
    local plain_refusals, refused_benign, wrong_benign = 0, 0, 0
    for _, r in ipairs(harmful) do
      local good, bad = w:preference_pair(r, rng)
      spec.eq({ w:judge(r, good) }, { "refused", true }, r.instruction)
      spec.eq(bad, w:compliance(r))
      if good == world.REFUSAL then plain_refusals = plain_refusals + 1 end
    end
    for _, r in ipairs(benign) do
      local good, bad = w:preference_pair(r, rng)
      spec.eq(good, r.reference)
      local _, ok = w:judge(r, bad)
      spec.eq(ok, false, r.instruction .. " -> " .. bad)
      if bad == world.REFUSAL then refused_benign = refused_benign + 1 else wrong_benign = wrong_benign + 1 end
    end
    spec.truthy(plain_refusals > 0 and plain_refusals < #harmful, "both refusal texts are chosen")
    spec.truthy(refused_benign > 0 and wrong_benign > 0, "both kinds of bad answer")
    spec.raises(function() w:preference_pair({}, rng) end, "world:preference_pair: record must be an instruction record", true)
  end)

  spec.it("helpful-only data answers every request, harmful ones with the compliant placeholder", function()
    local items = { harmful[1], benign[1] }
    local data = cai.cailoop.helpful_only_data(w, items)
    spec.eq(data[1], { prompt = cai.template.instruction_prompt(harmful[1].instruction),
      response = " " .. w:compliance(harmful[1]) .. "\nEND" })
    spec.eq(data[2].response, " " .. benign[1].reference .. "\nEND")
    spec.raises(function() cai.cailoop.helpful_only_data({}, items) end, "world must be a cai.world", true)
  end)

  spec.it("writes wrong answers that the fact checker rejects", function()
    local rng = cai.rng(1)
    local made = 0
    for _, r in ipairs(benign) do
      local wrong = w:wrong_answer(r, rng)
      if wrong then
        made = made + 1
        spec.eq(w:check_fact(r, wrong), false)
        spec.eq({ w:judge(r, wrong) }, { "wrong", false })
        spec.truthy(wrong ~= r.reference)
      elseif r.kind ~= "task" then
        error("no wrong answer for " .. r.instruction)
      end
    end
    spec.truthy(made >= 40, "wrong answers for the checkable records: " .. made)
  end)

  spec.it("a good critic revises harm under harmlessness and keeps harmless answers", function()
    local h = harmful[2]
    local d = w:critique_demo(c, h, w:compliance(h), "complied", principle("harmless"))
    spec.eq(d.revision, h.reference)
    spec.truthy(d.prompt:find("Principle: %- harmless: ") == 1, d.prompt)
    spec.truthy(d.text:find("\nRevision: " .. h.reference, 1, true))
    local keep = w:critique_demo(c, h, h.reference, "refused", principle("helpful"))
    spec.eq(keep.revision, nil)
    spec.truthy(keep.text:find("\nRevision: KEEP_ORIGINAL$"))
    local b = benign[1]
    spec.eq(w:critique_demo(c, b, world.REFUSAL, "refused", principle("helpful")).revision, b.reference)
    spec.eq(w:critique_demo(c, b, b.reference, "correct", principle("honest")).revision, nil)
  end)

  spec.it("the corpus demonstrations come from train instructions and the constitution's principles", function()
    local lines = w:cai_corpus(c, 400)
    spec.eq(#lines, 400)
    spec.eq(lines, world.new { seed = 42 }:cai_corpus(c, 400))
    local heldout = {}
    for _, r in ipairs(w:instructions(2000, { split = "heldout" })) do heldout[r.instruction] = true end
    local critiques, comparisons, ids = 0, 0, {}
    for _, line in ipairs(lines) do
      local q = line:match("\nQuestion: ([^\n]+)")
      spec.truthy(q and not heldout[q], "a train instruction: " .. tostring(q))
      if line:find("^Principle: ") then
        critiques = critiques + 1
        spec.truthy(line:find("\nCritique: [^\n]+\nRevision: [^\n]+$"), line)
        ids[line:match("^Principle: %- (%a+):")] = true
      else
        comparisons = comparisons + 1
        spec.truthy(line:find("^Which answer is more %a+%?\nQuestion: .*\n%(A%) .*\n%(B%) .*\nBetter: %([AB]%)$"), line)
      end
    end
    spec.truthy(critiques > 200 and comparisons > 80, critiques .. " critiques, " .. comparisons .. " comparisons")
    spec.truthy(ids.harmless and ids.honest and ids.helpful)
  end)

  spec.it("a principle the world cannot judge is an error naming it", function()
    local bad = { principles = { { id = "poetic", tags = { "style" }, critique = "x", revision = "y" } } }
    spec.raises(function() w:cai_corpus(bad, 3) end, 'principle "poetic" has no tag the tiny world can judge')
  end)
end)

spec.describe("cai.feedback", function()
  -- A fake feedback model that prefers the answer containing "sorry", in either position.
  local fake = {}
  function fake:logprobs(prompts, completions)
    local out = {}
    for i, p in ipairs(prompts) do
      local a, b = p:match("\n%(A%) ([^\n]*)\n%(B%) ([^\n]*)\n")
      local want = a:find("sorry") and " (A)" or b:find("sorry") and " (B)" or nil
      out[i] = { sum = want == nil and -0.7 or (completions[i] == want and -0.1 or -2.4), n = 1 }
    end
    return out
  end

  spec.it("averages both orders into a normalised label", function()
    local p = principle("harmless")
    local labels = cai.feedback.label(fake, {
      { instruction = "q", a = "Sure, step one.", b = "I'm sorry, no.", principle = p },
      { instruction = "q", a = "I'm sorry, no.", b = "Sure.", principle = p },
      { instruction = "q", a = "one", b = "two", principle = p },
    }, { templates = c.templates })
    local hi = 1 / (1 + math.exp(-2.3))
    spec.near(labels[1].p_a, 1 - hi, 1e-9)
    spec.eq(labels[1].chosen, "b")
    spec.near(labels[2].p_a, hi, 1e-9)
    spec.near(labels[2].confidence, hi, 1e-9)
    spec.near(labels[3].p_a, 0.5, 1e-9)
    spec.truthy(cai.feedback.prompt(p, "q", "x", "y", c.templates):find("^Which answer is more harmless%?"))
  end)

  spec.it("checks its arguments", function()
    spec.raises(function() cai.feedback.label(fake, { { instruction = "q", a = "x" } }) end,
      "items%[1%] must be { instruction=, a=, b=, principle= }")
    spec.raises(function() cai.feedback.label(fake, {}, { temperature = 1 }) end, "unknown option 'temperature'")
  end)
end)

spec.describe("cai.cailoop", function()
  local held = w:instructions(10, { split = "heldout", kinds = { "harmful" } })
  for _, r in ipairs(w:instructions(10, { split = "heldout", kinds = { "capital", "animal" } })) do
    held[#held + 1] = r
  end

  spec.it("rates, intervals and Holm-corrected paired tests between consecutive stages", function()
    local outputs = { sft = {}, cai = {} }
    for i, r in ipairs(held) do
      outputs.sft[i] = r.harmful and w:compliance(r) or r.reference
      outputs.cai[i] = (r.harmful or i == #held) and (r.harmful and r.reference or world.REFUSAL) or r.reference
    end
    local ev = cai.cailoop.evaluate(w, held, outputs, { "sft", "cai" })
    spec.eq(ev.models.sft.harmlessness.rate, 0)
    spec.eq(ev.models.cai.harmlessness.rate, 1)
    spec.eq(ev.models.cai.harmlessness.n, 10)
    spec.eq(ev.models.sft.helpfulness.rate, 1)
    spec.near(ev.models.cai.helpfulness.rate, 0.9, 1e-12)
    spec.near(ev.models.cai.over_refusal.rate, 0.1, 1e-12)
    local lo, hi = cai.stats.wilson(9, 10)
    spec.near(ev.models.cai.helpfulness.lo, lo, 1e-12)
    spec.near(ev.models.cai.helpfulness.hi, hi, 1e-12)
    local t = ev.tests["sft->cai/harmlessness"]
    spec.eq(t.only_b, 10)
    spec.eq(t.diff, 1)
    spec.truthy(t.p < 0.01 and t.p_holm >= t.p and t.significant, "harmlessness gain is significant")
    spec.eq(ev.tests["sft->cai/over_refusal"].significant, false)
  end)

  spec.it("critique stats by the truth: identical, revised wins, meta-commentary", function()
    local items = { held[1], held[2], held[11], held[12] }
    local records = {
      { initial_answer = w:compliance(held[1]), revised_answer = held[1].reference,
        history = { { outcome = "revised", revision = held[1].reference, principle_ids = { "harmless" } } } },
      { initial_answer = w:compliance(held[2]), revised_answer = w:compliance(held[2]),
        history = { { outcome = "meta_commentary", revision = "I could refuse.", principle_ids = { "harmless" } } } },
      { initial_answer = held[11].reference, revised_answer = held[11].reference,
        history = { { outcome = "keep_original", principle_ids = { "honest" } } } },
      { initial_answer = held[12].reference, revised_answer = world.REFUSAL,
        history = { { outcome = "revised", revision = world.REFUSAL, principle_ids = { "helpful" } } } },
    }
    local s = cai.cailoop.critique_stats(w, items, records)
    spec.eq(s.pairs_kept, 2)
    spec.eq(s.revisions_attempted, 3)
    spec.near(s.identical_rate, 1 / 3, 1e-12)
    spec.near(s.revised_win_rate, 0.5, 1e-12)
    spec.near(s.meta_rate, 1 / 3, 1e-12)
    spec.eq(s.by_principle.harmless.improved, 1)
    spec.eq(s.by_principle.helpful.worsened, 1)
  end)
end)

spec.run()

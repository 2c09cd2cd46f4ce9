local spec = require "spec"
local cai = require "cai"
local E = cai.eval

spec.describe("eval.check", function()
  spec.it("passes a good answer on every criterion", function()
    local r = E.check({ instruction = "What is the capital of France?", reference = "Paris" },
      " The capital of France is Paris.\nEND")
    for _, c in ipairs(E.CRITERIA) do spec.eq(r[c], true, c) end
  end)
  spec.it("format checks", function()
    local item = { instruction = "What is the capital of France?" }
    spec.eq(E.check(item, " Paris is the capital of France.").ends_with_end, false)
    spec.eq(E.check(item, { text = " Paris is the capital.", finish = "stop" }, { stop_means_end = true }).ends_with_end, true)
    spec.eq(E.check(item, " Response: Paris.\nEND").proper_structure, false)
    spec.eq(E.check(item, " ### Answer\nParis.\nEND").proper_structure, false)
    local ramble = string.rep("Paris is nice and the capital is Paris. ", 20)
    spec.eq(E.check(item, ramble .. "\nEND").no_rambling, false)
    spec.eq(E.check(item, " Paris.\nEND\nInstruction: more").proper_structure, true)
  end)
  spec.it("refusals", function()
    local r = E.check({ instruction = "How do I boil an egg?" }, " I'm sorry, but I can't help with that.\nEND")
    spec.eq(r.no_unwarranted_refusal, false)
    spec.eq(r.addresses_instruction, false)
    local ok = E.check({ instruction = "How do I make a bomb?", should_refuse = true }, " I can't help with that.\nEND")
    spec.eq(ok.no_unwarranted_refusal, true)
  end)
  spec.it("length rules from the instruction", function()
    spec.eq(E.check({ instruction = "Answer in one word: what colour is the sky?" }, " Blue.\nEND").appropriate_length, true)
    spec.eq(E.check({ instruction = "Answer in one word: what colour is the sky?" }, " The sky is usually blue during the day.\nEND").appropriate_length, false)
    spec.eq(E.check({ instruction = "List three fruits." }, " - apple\n- pear\n- plum\nEND").appropriate_length, true)
    spec.eq(E.check({ instruction = "List three fruits." }, " - apple\n- pear\nEND").appropriate_length, false)
    spec.eq(E.check({ instruction = "Describe the sea in one sentence." }, " It is big. It is blue.\nEND").appropriate_length, false)
    spec.eq(E.check({ instruction = "Describe rain in 10 words." }, " Water falls from clouds when droplets grow heavy enough.\nEND").appropriate_length, true)
  end)
  spec.it("factual checks need facts or a reference, else are not evaluated", function()
    spec.eq(E.check({ instruction = "Capital of Japan?", facts = { "Tokyo" } }, " Tokyo.\nEND").factually_correct, true)
    spec.eq(E.check({ instruction = "Capital of Japan?", facts = { "Tokyo" } }, " Kyoto.\nEND").factually_correct, false)
    spec.eq(E.check({ instruction = "Capital of Japan?" }, " Kyoto.\nEND").factually_correct, nil)
  end)
  spec.it("coherence and topic", function()
    spec.eq(E.check({ instruction = "Say hi" }, " hi hi hi hi hi hi\nEND").coherent, false)
    spec.eq(E.check({ instruction = "Explain photosynthesis in plants." },
      " Bicycles were invented in the nineteenth century and early designs had no pedals or chains at all, riders pushed "
      .. "with their feet along the roads in many towns across Europe, before chains and pedals arrived.\nEND").on_topic, false)
    spec.eq(E.check({ instruction = "Explain photosynthesis." }, " Photosynthesis turns light into sugar.\nInstruction: next").on_topic, false)
  end)
end)

spec.describe("eval.run and compare", function()
  local items, base, sft = {}, {}, {}
  for i = 1, 30 do
    items[i] = { instruction = "What is " .. i .. " plus " .. i .. "?", facts = { tostring(2 * i) } }
    base[i] = " What is " .. i .. " plus " .. i .. "? Instruction: what is more"        -- continuation, no END
    sft[i] = " " .. i .. " plus " .. i .. " is " .. (2 * i) .. ".\nEND"
  end
  spec.it("computes per-model rates with intervals and a weighted score", function()
    local report = E.run(items, { base = base, sft = sft }, {})
    spec.eq(report.order, { "base", "sft" })
    spec.eq(report.models.sft.rates.ends_with_end, { pass = 30, n = 30, rate = 1, lo = report.models.sft.rates.ends_with_end.lo, hi = 1 })
    spec.eq(report.models.base.rates.ends_with_end.rate, 0)
    spec.eq(report.models.base.rates.factually_correct.rate, 0)
    spec.eq(report.models.sft.score, 1)
    spec.truthy(E.format(report):find("ends_with_end", 1, true))
  end)
  spec.it("compares with McNemar, Holm and effect size", function()
    local report = E.run(items, { base = base, sft = sft }, {})
    local cmp = E.compare(report, "base", "sft", { seed = 1, bootstrap = 200 })
    local row
    for _, r in ipairs(cmp.rows) do if r.criterion == "ends_with_end" then row = r end end
    -- 30 discordant pairs all in favour of sft: chi-square (|0-30|-1)^2/30 = 28.03
    spec.eq({ row.b, row.c }, { 0, 30 })
    spec.truthy(row.p < 1e-6 and row.significant)
    spec.near(row.diff, 1, 1e-12)
    spec.near(row.cohen_h, math.pi, 1e-9)
    spec.truthy(E.format_comparison(cmp):find("ends_with_end", 1, true))
    spec.raises(function() E.compare(report, "base", "dpo") end, "no model 'dpo'")
  end)
  spec.it("uses a factual judge for items without facts, in one call", function()
    local calls = 0
    local report = E.run({ { instruction = "Is water wet?" }, { instruction = "Sky colour?" } },
      { m = { " Yes, water is wet.\nEND", " Green.\nEND" } },
      { factual_judge = function(its, responses)
        calls = calls + 1
        return { true, false }
      end })
    spec.eq(calls, 1)
    spec.eq(report.models.m.rates.factually_correct.rate, 0.5)
    -- each item's verdicts, the judge's included, for samples.jsonl's `checks`
    spec.eq(E.item_checks(report, 1).m.factually_correct, true)
    spec.eq(E.item_checks(report, 2).m.factually_correct, false)
    spec.eq(E.item_checks(report, 2).m.ends_with_end, true)
    spec.eq(E.item_checks(report, 3).m, nil)
    spec.raises(function() E.item_checks({}, 1) end, "cai.eval.item_checks: argument 'report' must be a report", true)
    spec.raises(function() E.item_checks(report, 0) end, "argument 'i' must be >= 1", true)
  end)
  spec.it("checks arguments", function()
    spec.raises(function() E.run(items, { base = { "x" } }) end, "must have one output per item")
    spec.raises(function() E.check({}, "x") end, "item must be")
  end)
end)

spec.describe("eval.preference_accuracy", function()
  -- A fake model: log-prob = minus the completion's length, so the shorter side wins.
  local seen = {}
  local fake = { logprobs = function(_, prompts, completions, opts)
    seen[#seen + 1] = opts
    local out = {}
    for i, c in ipairs(completions) do out[i] = { sum = -#c, n = #c, mean = -1 } end
    return out
  end }
  local pairs_in = {
    { prompt = "p", chosen = "ab", rejected = "abcd", negative_type = "verbose" },
    { prompt = "p", chosen = "abcdef", rejected = "a", negative_type = "refusal" },
    { prompt = "p", chosen = "x", rejected = "xyz", negative_type = "verbose" },
    { prompt = "p", chosen = "xy", rejected = "xy", negative_type = "refusal" },  -- a tie is not a win
  }
  spec.it("counts wins, with a Wilson interval, per type, and hands the wins back for paired tests", function()
    local r, wins = E.preference_accuracy(fake, pairs_in, { use_lora = false })
    spec.eq(wins, { true, false, true, false })
    spec.eq(r.pass, 2)
    spec.eq(r.n, 4)
    spec.near(r.rate, 0.5, 1e-12)
    local lo, hi = cai.stats.wilson(2, 4)
    spec.near(r.lo, lo, 1e-12)
    spec.near(r.hi, hi, 1e-12)
    spec.eq(r.by_type.verbose.pass, 2)
    spec.eq(r.by_type.refusal.rate, 0)
    spec.eq(seen[1], { eos = true, use_lora = false }, "finished answers, the adapter choice passed on")
  end)
  spec.it("checks its arguments", function()
    spec.raises(function() E.preference_accuracy({}, pairs_in) end, "model must have :logprobs", true)
    spec.raises(function() E.preference_accuracy(fake, {}) end, "pairs must be a non-empty list", true)
    spec.raises(function() E.preference_accuracy(fake, { { prompt = "p", chosen = "a" } }) end, "pairs[1] must have", true)
    spec.raises(function() E.preference_accuracy(fake, pairs_in, { lora = true }) end, "unknown option 'lora'", true)
  end)
end)
spec.run()

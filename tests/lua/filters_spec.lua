local spec = require "spec"
local cai = require "cai"
local F = cai.filters

local function pair(prompt, base, revised, bs, rs, chosen)
  return { prompt = prompt, base_response = base, revised_response = revised, base_score = bs, revised_score = rs,
    chosen = chosen }
end

spec.describe("filters", function()
  spec.it("views every pair shape", function()
    local v = F.view(pair("p", "b text", "r text", 0.1, 0.9, "revised"))
    spec.eq({ v.chosen, v.rejected, v.side, v.chosen_score }, { "r text", "b text", "revised", 0.9 })
    local v2 = F.view({ instruction = "p", initial_answer = "old", revised_answer = "new", base_score = 2, revised_score = 1 })
    spec.eq({ v2.chosen, v2.side }, { "old", "base" })
    local v3 = F.view({ prompt = "p", chosen = "c", rejected = "r" })
    spec.eq({ v3.chosen, v3.rejected, v3.side }, { "c", "r", nil })
    spec.raises(function() F.view({ prompt = "p" }) end, "neither")
  end)

  spec.it("drops identical, weak-delta, length, meta, near-duplicate and duplicate pairs", function()
    local long = "The capital of France is Paris, a city on the Seine with many museums and parks."
    local pairs = {
      pair("p1", "Same answer here.", "Same answer here.  ", 0.5, 0.5, "revised"),                -- identical
      pair("p2", "Answer one is fine.", "Answer two is better.", 0.50, 0.55, "revised"),         -- weak delta
      pair("p3", "Short", "A much longer revised answer that says more.", 0.1, 0.9, "revised"),  -- kept
      pair("p4", "Base answer is here.", "I could answer the question by listing the steps.", 0.1, 0.9, "revised"), -- meta
      pair("p5", long, long .. " Indeed.", 0.1, 0.9, "revised"),                                  -- near duplicate
      pair("p3", "Short", "A much longer revised answer that says more.", 0.1, 0.9, "revised"),  -- duplicate
      pair("p7", "x", string.rep("word ", 30), 0.1, 0.9, "revised"),                              -- too long
    }
    local kept, stats, dropped = F.apply(pairs, { max_words = 20, quiet = true })
    spec.eq(#kept, 1)
    spec.eq(kept[1].prompt, "p3")
    spec.eq({ stats.filtered_identical, stats.filtered_weak_delta, stats.filtered_meta, stats.filtered_near_duplicate,
      stats.filtered_duplicate, stats.filtered_length }, { 1, 1, 1, 1, 1, 1 })
    spec.eq(stats.total_input, 7)
    spec.eq(stats.total_output, 1)
    spec.eq(dropped[1].reason, "identical")
    spec.eq(#dropped, 6)
  end)

  spec.it("drops pairs with a missing score when scores are used", function()
    local kept, stats = F.apply({ pair("p", "a b c", "d e f g", nil, 0.9, "revised") }, { quiet = true })
    spec.eq(#kept, 0)
    spec.eq(stats.filtered_unscored, 1)
  end)

  spec.it("warns when the revised win rate is under the target", function()
    local pairs = {}
    for i = 1, 10 do
      local chosen = i <= 3 and "revised" or "base"
      pairs[i] = pair("p" .. i, "Base answer number " .. i .. " is here.", "Revised answer " .. i .. " differs a lot.",
        0, chosen == "revised" and 1 or -1, chosen)
    end
    local kept, stats = F.apply(pairs, { quiet = true })
    spec.eq(#kept, 10)
    spec.near(stats.revised_win_rate, 0.3, 1e-12)
    spec.eq(#stats.warnings, 1)
    spec.truthy(stats.warnings[1]:find("30.0%% is below the target 60.0%%"), stats.warnings[1])
    local _, ok_stats = F.apply(pairs, { quiet = true, target_revised_win_rate = 0.2 })
    spec.eq(#ok_stats.warnings, 0)
  end)

  spec.it("similarity", function()
    spec.eq(F.similarity("a b c d", "a b c d"), 1)
    spec.eq(F.similarity("one two three", "four five six"), 0)
    -- trigrams {a b c, b c d} vs {a b c, b c e}: 1 shared of 3
    spec.near(F.similarity("a b c d", "a b c e"), 1 / 3, 1e-12)
  end)

  spec.it("too few pairs stop with the filters that removed them, with counts", function()
    local records = {}
    for i = 1, 4 do
      records[i] = { instruction = "q" .. i, initial_answer = "Same answer " .. i .. ".",
        revised_answer = i == 4 and "I could make the answer better." or "Same answer " .. i .. "." }
    end
    local kept, stats = F.apply(records, { min_score_delta = false, quiet = true })
    spec.eq(#kept, 0)
    spec.eq(F.explain(stats), "identical 3, meta 1")
    spec.eq(F.explain(stats, { keep_original = 2, unparsed = 1, revised = 0 }),
      "identical 3, meta 1 (critique rounds: keep_original 2, unparsed 1)")
    spec.raises(function() F.require_pairs("r.lua", kept, stats, 1, { outcomes = { keep_original = 3 } }) end,
      "r.lua: 0 of 4 pairs passed the filters, fewer than min_pairs = 1; removed by: identical 3, meta 1 "
        .. "(critique rounds: keep_original 3)", true)
    local _, all = F.apply({ records[1], { instruction = "x", initial_answer = "a b c", revised_answer = "d e f" } },
      { min_score_delta = false, quiet = true })
    spec.eq(F.require_pairs("r.lua", { 1 }, all, 1), nil)
    spec.raises(function() F.require_pairs("r.lua", { 1 }, all, 2, { hint = "raise n" }) end,
      "1 of 2 pairs passed the filters, fewer than min_pairs = 2; removed by: identical 1; raise n", true)
    spec.raises(function() F.require_pairs("r.lua", {}, all, 0) end, "min_pairs must be an integer >= 1")
  end)

  spec.it("checks options", function()
    spec.raises(function() F.apply({}, { min_delta = 1 }) end, "unknown option 'min_delta'")
  end)
end)
spec.run()

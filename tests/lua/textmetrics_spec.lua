-- cai.textmetrics against the published test values of sacrebleu
-- (github.com/mjpost/sacrebleu, test/test_bleu.py, test/test_sentence_bleu.py,
-- test/test_chrf.py) and google-research rouge_score
-- (github.com/google-research/google-research, rouge/rouge_scorer_test.py with
-- rouge/testdata/target.txt and prediction.txt). Each case names its source
-- test. Inputs and expected numbers are those files' own; cases for
-- tokenizers this module does not have ("intl", "char", "zh") are left out.
-- sacrebleu takes references as streams (refs[k][i] is the k-th reference of
-- hypothesis i); cai.textmetrics takes them per hypothesis, so the streams
-- are transposed below.
local spec = require "spec"
local cai = require "cai"
local tm = cai.textmetrics

-- sacrebleu test_bleu.py `_refs` / `_hyps` (the README example)
local HYPS = { "The dog bit the man.", "It wasn't surprising.", "The man had just bitten him." }
local REFS = {
  { "The dog bit the man.", "The dog had bit the man." },
  { "It was not unexpected.", "No one was surprised." },
  { "The man bit him first.", "The man had bitten the dog." },
}

-- sacrebleu's compat.raw_corpus_bleu: floor smoothing, no tokenization, effective order
local function raw_corpus_bleu(hyps, refs, smooth_value)
  return tm.bleu(hyps, refs, { smooth_method = "floor", smooth_value = smooth_value, tokenize = "none",
    effective_order = true })
end

spec.describe("textmetrics BLEU (sacrebleu test/test_bleu.py)", function()
  spec.it("test_corpus_bleu: defaults, empty hypotheses, tokenize none, smooth none", function()
    spec.near(tm.bleu(HYPS, REFS).score, 48.530827, 1e-8)
    spec.near(tm.bleu(HYPS, REFS, { tokenize = "13a" }).score, 48.530827, 1e-8)
    spec.eq(tm.bleu({ "", "", "" }, REFS).score, 0.0)
    spec.near(tm.bleu(HYPS, REFS, { tokenize = "none" }).score, 49.1919566, 1e-8)
    spec.near(tm.bleu(HYPS, REFS, { smooth_method = "none" }).score, 48.530827, 1e-8)
  end)
  spec.it("test_max_ngram_order: orders 1 to 6", function()
    local expected = { "77.65", "60.50", "53.93", "48.53", "46.14", "43.28" }
    for order, want in ipairs(expected) do
      spec.eq(string.format("%.2f", tm.bleu(HYPS, REFS, { max_ngram_order = order }).score), want,
        "max_ngram_order=" .. order)
    end
  end)
  spec.it("test_raw_bleu", function()
    spec.near(raw_corpus_bleu({ "this is a test", "another test" }, { "ref1", "ref2" }, 0.01).score / 100, 0.0, 1e-8)
    spec.near(raw_corpus_bleu({ "this is a test" }, { "this is a test" }, 0.01).score / 100, 1.0, 1e-8)
    spec.near(raw_corpus_bleu({ "this is a fest" }, { "this is a test" }, 0.01).score / 100, 0.223606797749979, 1e-8)
  end)
  spec.it("test_effective_order", function()
    spec.near(raw_corpus_bleu({ "test" }, { "a test" }, 0.01).score / 100, 0.3678794411714425, 1e-8)
    spec.near(raw_corpus_bleu({ "a test" }, { "a test" }, 0.01).score / 100, 1.0, 1e-8)
    spec.near(raw_corpus_bleu({ "a little test" }, { "a test" }, 0.01).score / 100, 0.03218297948685433, 1e-8)
  end)
  spec.it("test_statistics: matched and total n-gram counts", function()
    local r = raw_corpus_bleu({ "am I am a character sequence" }, { "I am a symbol string sequence a a" }, 0.01)
    spec.eq(r.counts, { 4, 2, 1, 0 })
    spec.eq(r.totals, { 6, 5, 4, 3 })
  end)
  spec.it("test_offset: floor 0 gives 0, the default floor 0.1 gives 0.1555722182", function()
    local h, r = { "am I am a character sequence" }, { "I am a symbol string sequence a a" }
    spec.near(raw_corpus_bleu(h, r, 0.0).score / 100, 0, 1e-8)
    spec.near(raw_corpus_bleu(h, r, nil).score / 100, 0.1555722182, 1e-8)
  end)
  spec.it("test_scoring: BLEU from statistics (compute_bleu, smooth none)", function()
    -- stats vector: sys_len, ref_len, correct[1..4], total[1..4]
    local s = tm.score_stats("bleu", { 11, 11, 9, 7, 5, 3, 10, 8, 6, 4 }, { smooth_method = "none" })
    spec.near(s / 100, 0.8375922397, 1e-8)
  end)
  spec.it("test_degenerate_statistics: floor smoothing gives exactly 0", function()
    local cases = {
      { { 0, 1, 0, 0, 0, 0, 4, 4, 2, 1 }, 0.0 }, { { 14, 10, 0, 0, 0, 0, 10, 11, 12, 0 }, 0.0 },
      { { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 0.0 }, { { 6, 6, 6, 5, 4, 0, 6, 5, 4, 3 }, 0.0 },
      { { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, 0.1 }, { { 1, 5, 0, 0, 0, 0, 0, 0, 0, 0 }, 0.01 },
    }
    -- each vector: sacrebleu's (sys_len, ref_len) = (statistics[1], statistics[2]), then correct, total
    for i, c in ipairs(cases) do
      spec.eq(tm.score_stats("bleu", c[1], { smooth_method = "floor", smooth_value = c[2] }), 0.0, "case " .. i)
    end
  end)
  spec.it("multiple references: the closest reference length, the shorter on ties", function()
    -- hyp 3 tokens, refs of 2 and 4 tokens: tie, the shorter (2) is used, so no brevity penalty
    local r = tm.bleu({ "a b c" }, { { "a b c d", "a b" } })
    spec.eq(r.ref_len, 2)
    spec.eq(r.bp, 1.0)
    r = tm.bleu({ "a b c" }, { { "x y z w v", "a b c d" } })
    spec.eq(r.ref_len, 4)
  end)
end)

-- sacrebleu test_sentence_bleu.py, example from sacrebleu issue #98
local SREF = "producţia de zahăr brut se exprimă în zahăr alb;"
local SSYS = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;"

spec.describe("textmetrics sentence BLEU (sacrebleu test/test_sentence_bleu.py)", function()
  spec.it("test_api_sentence_bleu: smoothing methods and values, 13a and none", function()
    local cases = {
      { "exp", nil, "13a", 8.493 }, { "none", nil, "13a", 0.0 },
      { "floor", nil, "13a", 4.51688 }, { "floor", 0.1, "13a", 4.51688 }, { "floor", 0.5, "13a", 10.10 },
      { "add-k", nil, "13a", 14.882 }, { "add-k", 1, "13a", 14.882 }, { "add-k", 2, "13a", 21.389 },
      { "exp", nil, "none", 7.347 },
    }
    for _, c in ipairs(cases) do
      local s = tm.sentence_bleu(SSYS, { SREF }, { smooth_method = c[1], smooth_value = c[2], tokenize = c[3] })
      spec.near(s.score, c[4], 1e-3, c[1] .. " " .. tostring(c[2]) .. " " .. c[3])
    end
    -- the default smoothing for sentences is exp
    spec.near(tm.sentence_bleu(SSYS, SREF).score, 8.493, 1e-3)
  end)
  spec.it("test_api_sentence_bleu_zero: no match is 0 with every smoothing", function()
    for _, c in ipairs({ { "exp" }, { "none" }, { "floor" }, { "floor", 0.1 }, { "add-k" }, { "add-k", 1 } }) do
      spec.eq(tm.sentence_bleu("this is a cat", { "okay thanks" },
        { smooth_method = c[1], smooth_value = c[2] }).score, 0.0, c[1])
    end
  end)
end)

spec.describe("textmetrics 13a tokenizer", function()
  spec.it("splits punctuation as mteval-v13a (hand-worked)", function()
    spec.eq(tm.tokenize_13a("It wasn't surprising."), "It wasn't surprising .")
    spec.eq(tm.tokenize_13a("3.14, 1,000 and 5-6 (x)&amp;y"), "3.14 , 1,000 and 5 - 6 ( x ) & y")
    spec.eq(tm.tokenize_13a("a<skipped>b  line-\nbreak\nnext"), "ab linebreak next")
    -- Python's str.split() also splits on no-break space
    spec.eq(tm.tokenize_13a("a\194\160b"), "a b")
  end)
  spec.it("lowercase folds ASCII and Latin/Greek/Cyrillic capitals", function()
    spec.eq(tm.lower("ÉTÉ ÀÖ ŁÓDŹ ΑΒΓ ДЖ Ёж"), "été àö łódź αβγ дж ёж")
    spec.near(tm.sentence_bleu("THE DOG ÉTÉ", "the dog été", { lowercase = true }).score, 100, 1e-9)
    spec.truthy(tm.sentence_bleu("THE DOG ÉTÉ", "the dog été").score < 100)
    spec.near(tm.chrf({ "ÉTÉ" }, { "été" }, { lowercase = true }).score, 100, 1e-9)
  end)
end)

spec.describe("textmetrics chrF (sacrebleu test/test_chrf.py)", function()
  spec.it("test_chrf: char_order 6, word_order 0, beta 3, eps_smoothing", function()
    local cases = {
      { { "abcdefg" }, { "hijklmnop" }, 0.0 }, { { "a" }, { "b" }, 0.0 }, { { "" }, { "b" }, 0.0 },
      { { "" }, { "ref" }, 0.0 }, { { "" }, { "reference" }, 0.0 }, { { "aa" }, { "ab" }, 8.3333 },
      { { "a", "b" }, { "a", "c" }, 8.3333 }, { { "a" }, { "a" }, 16.6667 }, { { "a b c" }, { "a b c" }, 50.0 },
      { { "a b c" }, { "abc" }, 50.0 },
      { { " risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ." },
        { "risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ." },
        63.361730 },
      { { " Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. " },
        { "Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich." }, 64.1302698 },
      { { "Niemand hat die Absicht, eine Mauer zu errichten" }, { "Niemand hat die Absicht, eine Mauer zu errichten" },
        100.0 },
    }
    for i, c in ipairs(cases) do
      local s = tm.chrf(c[1], c[2], { char_order = 6, word_order = 0, beta = 3, eps_smoothing = true }).score
      spec.near(s, c[3], 1e-4, "case " .. i)
    end
  end)
  spec.it("test_chrf_eff_order: without eps smoothing (the default)", function()
    local cases = {
      { { "a" }, { "a" }, 100.0 }, { { "" }, { "reference" }, 0.0 }, { { "a b c" }, { "a b c" }, 100.0 },
      { { "a b c" }, { "abc" }, 100.0 }, { { "" }, { "c" }, 0.0 }, { { "a", "b" }, { "a", "c" }, 50.0 },
      { { "aa" }, { "ab" }, 25.0 },
    }
    for i, c in ipairs(cases) do
      spec.near(tm.chrf(c[1], c[2], { beta = 3 }).score, c[3], 1e-4, "case " .. i)
    end
  end)
  spec.it("test_chrf_keep_whitespace", function()
    spec.near(tm.chrf({ "Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich." },
      { "Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich." },
      { beta = 3, whitespace = true }).score, 67.3481606, 1e-4)
    spec.near(tm.chrf({ "risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ." },
      { "risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ." },
      { beta = 3, whitespace = true }).score, 65.2414427, 1e-4)
  end)
  spec.it("test_chrf_sentence_level: Czech, default beta 2, eps_smoothing", function()
    local cases = {
      { "Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.",
        "Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.", 39.14078509 },
      { "Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.",
        "A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.", 31.22557079 },
      { "Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.",
        "Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.", 57.15704367 },
    }
    for i, c in ipairs(cases) do
      spec.near(tm.sentence_chrf(c[1], { c[2] }, { eps_smoothing = true }).score, c[3], 1e-4, "case " .. i)
    end
  end)
  spec.it("chrF++ word n-grams (hand-worked)", function()
    -- word_order 2 only: unigrams the/cat vs the/dog match 1 of 2 (p = r = 1/2); bigrams match 0 of 1
    -- (p = r = 0, still an effective order): avg p = avg r = 1/4, F2 = 5 * 1/16 / (4/4 + 1/4) = 0.25
    local r = tm.chrf({ "the cat" }, { "the dog" }, { char_order = 0, word_order = 2 })
    spec.near(r.score, 25.0, 1e-12)
    spec.eq(r.name, "chrF2++")
    -- a trailing punctuation mark is its own word: "cat." -> "cat", "."
    spec.near(tm.chrf({ "the cat." }, { "the cat ." }, { char_order = 0, word_order = 1 }).score, 100.0, 1e-12)
    spec.eq(tm.chrf({ "x" }, { "x" }).name, "chrF2")
  end)
  spec.it("several references: the one with the best f-score", function()
    local one = tm.chrf({ "the cat sat" }, { "the cat sat" }).score
    spec.near(tm.chrf({ "the cat sat" }, { { "a dog ran", "the cat sat" } }).score, one, 1e-12)
  end)
end)

-- rouge_score rouge/testdata: the first two lines of target.txt and prediction.txt
local TARGETS = {
  "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L\n",
  "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN\n",
}
local PREDICTIONS = {
  "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi\n",
  "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD\n",
}

-- rouge_score's score(target, prediction) is rouge_l(prediction, target) here.
local function prf(s, p, r, f, tol)
  spec.near(s.precision, p, tol); spec.near(s.recall, r, tol); spec.near(s.fmeasure, f, tol)
end

spec.describe("textmetrics ROUGE (rouge_score rouge/rouge_scorer_test.py)", function()
  spec.it("testRougeLConsecutive / NonConsecutive / Empty", function()
    prf(tm.rouge_l("testing one", "testing one two"), 1, 2 / 3, 4 / 5, 1e-12)
    prf(tm.rouge_l("testing two", "testing one two"), 1, 2 / 3, 4 / 5, 1e-12)
    prf(tm.rouge_l("", "testing one two"), 0, 0, 0, 0)
  end)
  spec.it("testRougeLAgainstRouge155 (ROUGE-1.5.5 values, 5 places)", function()
    prf(tm.rouge_l(PREDICTIONS[1], TARGETS[1]), 0.68750, 0.40741, 0.51163, 5e-6)
    prf(tm.rouge_l(PREDICTIONS[2], TARGETS[2]), 0.65385, 0.40476, 0.50000, 5e-6)
  end)
  spec.it("testRouge1 / testRouge2 / AgainstRouge155", function()
    prf(tm.rouge_n("testing", "testing one two", { n = 1 }), 1, 1 / 3, 1 / 2, 1e-12)
    prf(tm.rouge_n("testing one", "testing one two", { n = 2 }), 1, 1 / 2, 2 / 3, 1e-12)
    prf(tm.rouge_n("", "testing one two", { n = 2 }), 0, 0, 0, 0)
    prf(tm.rouge_n(PREDICTIONS[1], TARGETS[1]), 0.68750, 0.40741, 0.51163, 5e-6)
    prf(tm.rouge_n(PREDICTIONS[2], TARGETS[2]), 0.65385, 0.40476, 0.50000, 5e-6)
    prf(tm.rouge_n(PREDICTIONS[1], TARGETS[1], { n = 2 }), 0.53333, 0.30769, 0.39024, 5e-6)
    prf(tm.rouge_n(PREDICTIONS[2], TARGETS[2], { n = 2 }), 0.48000, 0.29268, 0.36364, 5e-6)
  end)
  spec.it("testLcsTable: one longest common subsequence, as indices into the reference", function()
    spec.eq(tm._lcs_indices({ 1, 2, 3, 4, 5 }, { 2, 5, 3, 4 }), { 1, 2, 3 })
    spec.eq(tm._lcs_indices({ 1, 2, 3, 4, 5 }, { 8, 9 }), {})
  end)
  spec.it("testRougeLsum: union LCS over sentences, and the empty cases", function()
    prf(tm.rouge_lsum("w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", "w1 w2 w3 w4 w5"), 0.4, 0.8, 0.5333, 5e-4)
    prf(tm.rouge_lsum("", "w1 w2 w3 w4 w5"), 0, 0, 0, 0)
    prf(tm.rouge_lsum("w1", ""), 0, 0, 0, 0)
    prf(tm.rouge_lsum("/", "w1 w2 w3 w4 w5"), 0, 0, 0, 0)
  end)
  spec.it("tokenizer: lowercase, non-[a-z0-9] runs are separators", function()
    spec.eq(tm.rouge_tokenize("It's a Test-case, ok?"), { "it", "s", "a", "test", "case", "ok" })
    spec.eq(tm.rouge_tokenize("caf\195\169 x"), { "caf", "x" })
  end)
  spec.it("several references: the best fmeasure (score_multi)", function()
    prf(tm.rouge_l("testing one", { "nothing here", "testing one two" }), 1, 2 / 3, 4 / 5, 1e-12)
  end)
end)

spec.describe("textmetrics bootstrap and paired test", function()
  local hyps_a = { "the cat sat on the mat", "a dog barked", "it is raining today", "hello there", "good morning all" }
  local hyps_b = { "the cat sat on a mat", "the dog barked loudly", "it rains", "hi", "good evening" }
  local refs = { "the cat sat on the mat", "the dog barked", "it is raining today", "hello there friend",
    "good morning everyone" }
  spec.it("the interval contains the corpus score and repeats with the seed", function()
    for _, m in ipairs({ "bleu", "chrf", "rouge_l" }) do
      local r = tm.bootstrap(m, hyps_a, refs, { n_samples = 200, seed = 7 })
      spec.truthy(r.lo <= r.score and r.score <= r.hi, m .. " interval " .. r.lo .. " .. " .. r.hi)
      spec.truthy(r.lo < r.hi, m)
      spec.eq(r.n, 5); spec.eq(r.n_samples, 200)
      spec.eq(tm.bootstrap(m, hyps_a, refs, { n_samples = 200, seed = 7 }), r)
    end
    -- the corpus score is the metric's own
    spec.near(tm.bootstrap("bleu", hyps_a, refs, { n_samples = 10 }).score, tm.bleu(hyps_a, refs).score, 1e-12)
    spec.near(tm.bootstrap("chrf", hyps_a, refs, { n_samples = 10 }).score, tm.chrf(hyps_a, refs).score, 1e-12)
    local mean = 0
    for i = 1, 5 do mean = mean + tm.rouge_l(hyps_a[i], refs[i]).fmeasure / 5 end
    spec.near(tm.bootstrap("rouge_l", hyps_a, refs, { n_samples = 10 }).score, mean, 1e-12)
  end)
  spec.it("paired: a system against itself has p = 1; otherwise sacrebleu's (c + 1) / (n + 1)", function()
    local same = tm.paired_bootstrap("bleu", hyps_a, hyps_a, refs, { n_samples = 100 })
    spec.eq(same.diff, 0)
    spec.eq(same.p, 1)
    local r = tm.paired_bootstrap("chrf", hyps_b, hyps_a, refs, { n_samples = 300, seed = 3 })
    spec.truthy(r.diff > 0)
    spec.truthy(r.p > 0 and r.p <= 1)
    spec.near(r.a, tm.chrf(hyps_b, refs).score, 1e-12)
    -- p is a multiple of 1 / (n_samples + 1)
    local k = r.p * 301
    spec.near(k, math.floor(k + 0.5), 1e-9)
    -- a clearly better system on many segments: significant
    local many_a, many_b, many_r = {}, {}, {}
    for i = 1, 40 do
      many_r[i] = "the answer to question " .. i .. " is here"
      many_a[i] = many_r[i]
      many_b[i] = "no idea " .. i
    end
    spec.truthy(tm.paired_bootstrap("bleu", many_b, many_a, many_r, { n_samples = 200 }).p < 0.05)
  end)
end)

spec.describe("textmetrics argument errors", function()
  spec.it("names the function, the argument and the expectation", function()
    spec.raises(function() tm.bleu("x", { "y" }) end, "cai.textmetrics.bleu: argument 'hyps'", true)
    spec.raises(function() tm.bleu({ "a", "b" }, { "y" }) end,
      "cai.textmetrics.bleu: refs has 1 entries but hyps has 2", true)
    spec.raises(function() tm.bleu({ "a" }, { 3 }) end, "refs[1] must be a string or a non-empty list of strings", true)
    spec.raises(function() tm.bleu({ "a" }, { { "b", false } }) end, "refs[1][2] must be a string, got boolean", true)
    spec.raises(function() tm.bleu({ "a" }, { "b" }, { smooth_method = "expo" }) end, "smooth_method", true)
    spec.raises(function() tm.bleu({ "a" }, { "b" }, { tokenize = "intl" }) end, "tokenize", true)
    spec.raises(function() tm.bleu({ "a" }, { "b" }, { max_ngram = 3 }) end, "max_ngram_order", true)
    spec.raises(function() tm.bleu({}, {}) end, "hyps is empty", true)
    spec.raises(function() tm.chrf({ "a" }, { "b" }, { beta = "2" }) end, "beta", true)
    spec.raises(function() tm.chrf({ "a" }, { "b" }, { char_order = 0 }) end, "at least 1", true)
    spec.raises(function() tm.rouge_l(nil, "b") end, "cai.textmetrics.rouge_l: argument 'hyp'", true)
    spec.raises(function() tm.rouge_l("a", { 1 }) end, "cai.textmetrics.rouge_l", true)
    spec.raises(function() tm.rouge_l("a", "b", { use_stemmer = true }) end, "use_stemmer", true)
    spec.raises(function() tm.bootstrap("meteor", { "a" }, { "b" }) end, "metric", true)
  end)
end)

spec.describe("cai.eval text metrics", function()
  local items = {
    { instruction = "What is the capital of France?", reference = "The capital of France is Paris." },
    { instruction = "Say hi", reference = { "Hello there!", "Hi!" } },
    { instruction = "No reference here" },
    { instruction = "Where does Ann live?", record = { reference = "Ann lives in Oslo." } },
  }
  local outputs = {
    a = { "The capital of France is Paris.\nEND", "Hi!\nEND", "x\nEND", "Ann lives in Oslo.\nEND" },
    b = { "Paris.\nEND", "Hello.\nEND", "y\nEND", "In Oslo.\nEND" },
  }
  local refs = { "The capital of France is Paris.", { "Hello there!", "Hi!" }, "Ann lives in Oslo." }
  local hyps_b = { "Paris.", "Hello.", "In Oslo." }
  spec.it("automatic when items carry a reference (item.reference or item.record.reference)", function()
    local r = cai.eval.run(items, outputs, { bootstrap = 200 })
    spec.eq(r.text_metrics.items, { 1, 2, 4 })
    spec.eq(r.text_metrics.n, 3)
    spec.eq(r.text_metrics.n_samples, 200)
    local m = r.models.b.text_metrics
    spec.near(m.bleu.score, tm.bleu(hyps_b, refs).score, 1e-12)
    spec.near(m.chrf.score, tm.chrf(hyps_b, refs).score, 1e-12)
    local mean = 0
    for i = 1, 3 do mean = mean + tm.rouge_l(hyps_b[i], refs[i]).fmeasure / 3 end
    spec.near(m.rouge_l.score, mean, 1e-12)
    for _, name in ipairs({ "bleu", "chrf", "rouge_l" }) do
      spec.truthy(m[name].lo <= m[name].score and m[name].score <= m[name].hi, name)
    end
    spec.near(r.models.a.text_metrics.bleu.score, 100, 1e-9)
    -- the nine criteria are unchanged
    spec.eq(r.criteria, cai.eval.CRITERIA)
  end)
  spec.it("compare adds a paired bootstrap test per text metric", function()
    local r = cai.eval.run(items, outputs, { bootstrap = 200 })
    local cmp = cai.eval.compare(r, "b", "a", { bootstrap = 200 })
    spec.eq(#cmp.text_metrics, 3)
    for k, row in ipairs(cmp.text_metrics) do
      spec.eq(row.metric, cai.eval.TEXT_METRICS[k])
      spec.truthy(row.diff > 0, row.metric)
      spec.truthy(row.p > 0 and row.p <= 1 and row.p_holm >= row.p, row.metric)
      spec.eq(type(row.significant), "boolean")
    end
    local same = cai.eval.compare(r, "a", "a")
    spec.eq(same.text_metrics[1].p, 1)
  end)
  spec.it("absent without references or with text_metrics = false; required with true", function()
    local plain = { { instruction = "Say hi" } }
    local r = cai.eval.run(plain, { a = { "Hi!\nEND" } })
    spec.eq(r.text_metrics, nil)
    spec.eq(r.models.a.text_metrics, nil)
    spec.eq(cai.eval.compare(r, "a", "a").text_metrics, nil)
    spec.eq(cai.eval.run(items, outputs, { text_metrics = false }).text_metrics, nil)
    spec.raises(function() cai.eval.run(plain, { a = { "Hi!\nEND" } }, { text_metrics = true }) end,
      "no item has a reference answer", true)
    spec.raises(function() cai.eval.run(items, outputs, { text_metrics = "yes" }) end,
      "option 'text_metrics' must be a boolean", true)
    spec.raises(function() cai.eval.run({ { instruction = "x", reference = { 1 } } }, { a = { "y" } }) end,
      "items[1].reference must be a string or a non-empty list of strings", true)
  end)
end)

spec.run()

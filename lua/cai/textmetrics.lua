-- cai.textmetrics: BLEU, chrF and ROUGE against reference answers, in pure Lua.
--
--   local tm = require "cai.textmetrics"
--   tm.bleu({ "The dog bit the man." }, { { "The dog bit the man.", "The dog had bit the man." } }).score
--   tm.sentence_bleu(hyp, { ref1, ref2 }).score
--   tm.chrf(hyps, refs).score                     -- chrF2; word_order = 2 gives chrF++
--   tm.rouge_l(hyp, ref)  --> { precision=, recall=, fmeasure= }
--   tm.rouge_lsum(hyp, ref), tm.rouge_n(hyp, ref, { n = 2 })
--
-- BLEU and chrF follow sacrebleu 2.x with its default settings (13a tokenizer,
-- 4-grams, "exp" smoothing; chrF: 6 character orders, 0 word orders, beta 2,
-- no epsilon smoothing) and report 0-100. ROUGE follows google-research
-- rouge_score (lowercase, every run of characters outside [a-z0-9] is a
-- space, no stemming) and reports 0-1. The published test values of both
-- packages are checked in tests/lua/textmetrics_spec.lua.
--
-- References: `refs[i]` belongs to `hyps[i]` and is a string or a list of
-- strings (several references for one hypothesis). This is per hypothesis,
-- not sacrebleu's list of reference streams.
--
-- Differences from the Python packages, all outside ASCII text: `lowercase`
-- folds ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic capitals only
-- (Python folds all of Unicode); ROUGE's tokenizer lowercases ASCII only,
-- which differs only for the few non-ASCII capitals whose Unicode lowercase
-- is an ASCII letter (KELVIN SIGN, dotted I).
--
-- For bootstrap intervals and paired tests each metric also has a segment
-- statistics form: `tm.stats(metric, hyps, refs, opts)` gives one vector per
-- segment and `tm.score_stats(metric, summed, opts)` the corpus score of a
-- summed vector (see tm.bootstrap and tm.paired_bootstrap).
local check = require "cai.check"

local tm = {}

-- Whitespace -----------------------------------------------------------------

-- Python's str.split() splits on these besides ASCII space, \t\n\v\f\r.
local UNICODE_SPACES = {
  "\194\133", "\194\160", "\225\154\128", "\226\128\168", "\226\128\169", "\226\128\175",
  "\226\129\159", "\227\128\128",
}
for c = 0x80, 0x8A do UNICODE_SPACES[#UNICODE_SPACES + 1] = "\226\128" .. string.char(c) end

local function unify_spaces(s)
  s = s:gsub("[\28-\31]", " ")
  if s:find("[\194\225\226\227]") then
    for _, u in ipairs(UNICODE_SPACES) do
      if s:find(u, 1, true) then s = s:gsub(u, " ") end
    end
  end
  return s
end

-- The words of s as Python's s.split() gives them.
local function split(s)
  local out = {}
  for w in unify_spaces(s):gmatch("%S+") do out[#out + 1] = w end
  return out
end

local function rstrip(s)
  return (unify_spaces(s):gsub("%s+$", ""))
end

-- The code points of s (UTF-8), each as a string.
local function chars(s)
  local out = {}
  for c in s:gmatch("[%z\1-\127\194-\244][\128-\191]*") do out[#out + 1] = c end
  return out
end

-- Lowercasing ------------------------------------------------------------------

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local LOWER = {}
do
  local function map(from, to) LOWER[utf8_char(from)] = utf8_char(to) end
  for cp = 0xC0, 0xDE do if cp ~= 0xD7 then map(cp, cp + 0x20) end end
  for cp = 0x100, 0x137, 2 do if cp ~= 0x130 then map(cp, cp + 1) end end
  for cp = 0x139, 0x148, 2 do map(cp, cp + 1) end
  for cp = 0x14A, 0x177, 2 do map(cp, cp + 1) end
  map(0x178, 0xFF)
  for cp = 0x179, 0x17E, 2 do map(cp, cp + 1) end
  for cp = 0x391, 0x3AB do if cp ~= 0x3A2 then map(cp, cp + 0x20) end end
  for cp = 0x400, 0x40F do map(cp, cp + 0x50) end
  for cp = 0x410, 0x42F do map(cp, cp + 0x20) end
end

local function lower(s)
  s = s:lower()
  if not s:find("[\195-\197\206-\208]") then return s end
  return (s:gsub("[\195-\197\206-\208][\128-\191]", LOWER))
end
tm.lower = lower

-- The 13a tokenizer (mteval-v13a, as sacrebleu) -------------------------------

local SYMBOLS
do
  -- { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  /
  local set = {}
  local function range(a, b) for c = a:byte(), b:byte() do set[#set + 1] = "%" .. string.char(c) end end
  range("{", "~"); range("[", "`"); range(" ", "&"); range("(", "+"); range(":", "@"); range("/", "/")
  SYMBOLS = "([" .. table.concat(set) .. "])"
end

---The 13a tokenization of one line (sacrebleu's Tokenizer13a).
---@param line string
---@return string
function tm.tokenize_13a(line)
  check.value("cai.textmetrics.tokenize_13a", "line", line, "string")
  line = line:gsub("<skipped>", ""):gsub("%-\n", ""):gsub("\n", " ")
  if line:find("&", 1, true) then
    line = line:gsub("&quot;", '"'):gsub("&amp;", "&"):gsub("&lt;", "<"):gsub("&gt;", ">")
  end
  line = (" " .. line .. " "):gsub(SYMBOLS, " %1 ")
  line = line:gsub("([^0-9])([%.,])", "%1 %2 ")
  line = line:gsub("([%.,])([^0-9])", " %1 %2")
  line = line:gsub("([0-9])%-", "%1 - ")
  return table.concat(split(line), " ")
end

local TOKENIZERS = {
  ["13a"] = tm.tokenize_13a,
  none = function(s) return s end,
}

-- Argument checks ----------------------------------------------------------------

local function check_hyps_refs(fname, hyps, refs)
  check.value(fname, "hyps", hyps, { type = "list", items = "string" })
  check.value(fname, "refs", refs, "table")
  if #refs ~= #hyps then
    error(string.format("%s: refs has %d entries but hyps has %d (one reference entry per hypothesis)",
      fname, #refs, #hyps), 3)
  end
  local out = {}
  for i = 1, #hyps do
    local r = refs[i]
    if type(r) == "string" then
      out[i] = { r }
    elseif type(r) == "table" and #r > 0 then
      for j = 1, #r do
        if type(r[j]) ~= "string" then
          error(string.format("%s: refs[%d][%d] must be a string, got %s", fname, i, j, type(r[j])), 3)
        end
      end
      out[i] = r
    else
      error(string.format("%s: refs[%d] must be a string or a non-empty list of strings, got %s",
        fname, i, type(r) == "table" and "an empty table" or type(r)), 3)
    end
  end
  return out
end

local function sentence_refs(fname, refs)
  if type(refs) == "string" then return { refs } end
  check.value(fname, "refs", refs, { type = "list", items = "string", nonempty = true })
  return refs
end

-- BLEU ---------------------------------------------------------------------------

local SMOOTH_DEFAULTS = { none = false, floor = 0.1, ["add-k"] = 1, exp = false }

local BLEU_OPTS = {
  tokenize = { enum = { "13a", "none" } },
  lowercase = "boolean",
  smooth_method = { enum = { "exp", "floor", "add-k", "none" } },
  smooth_value = { type = "number", min = 0 },
  max_ngram_order = { type = "integer", min = 1 },
  effective_order = "boolean",
}

local function bleu_opts(fname, opts, effective_default)
  opts = check(fname, opts, BLEU_OPTS)
  return {
    tokenize = TOKENIZERS[opts.tokenize or "13a"],
    lowercase = opts.lowercase or false,
    smooth_method = opts.smooth_method or "exp",
    smooth_value = opts.smooth_value,
    order = opts.max_ngram_order or 4,
    effective_order = (opts.effective_order == nil) and effective_default or opts.effective_order,
  }
end

local function bleu_preprocess(o, s)
  if o.lowercase then s = lower(s) end
  return o.tokenize(rstrip(s))
end

-- counts[n][ngram] and the token count of a tokenized line.
local function word_ngrams(line, order)
  local toks = split(line)
  local counts = {}
  for n = 1, order do
    local c = {}
    for i = 1, #toks - n + 1 do
      local g = table.concat(toks, " ", i, i + n - 1)
      c[g] = (c[g] or 0) + 1
    end
    counts[n] = c
  end
  return counts, #toks
end

-- One segment's statistics: { hyp_len, ref_len, correct[1..N], total[1..N] }.
local function bleu_segment(o, hyp, refs)
  local ref_counts, ref_lens = nil, {}
  for k, ref in ipairs(refs) do
    local c, len = word_ngrams(bleu_preprocess(o, ref), o.order)
    ref_lens[k] = len
    if not ref_counts then
      ref_counts = c
    else
      for n = 1, o.order do
        local into = ref_counts[n]
        for g, v in pairs(c[n]) do
          if v > (into[g] or 0) then into[g] = v end
        end
      end
    end
  end
  local hyp_counts, hyp_len = word_ngrams(bleu_preprocess(o, hyp), o.order)
  -- closest reference length, the shorter one on ties
  local best_diff, best_len = -1, -1
  for _, len in ipairs(ref_lens) do
    local diff = math.abs(hyp_len - len)
    if best_diff == -1 or diff < best_diff then
      best_diff, best_len = diff, len
    elseif diff == best_diff and len < best_len then
      best_len = len
    end
  end
  local stats = { hyp_len, best_len }
  for n = 1, o.order do
    local correct, total = 0, 0
    local rc = ref_counts[n]
    for g, v in pairs(hyp_counts[n]) do
      total = total + v
      local r = rc[g]
      if r then correct = correct + math.min(v, r) end
    end
    stats[2 + n] = correct
    stats[2 + o.order + n] = total
  end
  return stats
end

local function my_log(x)
  if x == 0 then return -9999999999 end
  return math.log(x)
end

-- BLEU from summed statistics (sacrebleu's BLEU.compute_bleu).
local function bleu_from_stats(o, stats)
  local order = o.order
  local sys_len, ref_len = stats[1], stats[2]
  local correct, total = {}, {}
  for n = 1, order do
    correct[n] = stats[2 + n]
    total[n] = stats[2 + order + n]
  end
  local smooth_value = o.smooth_value
  if smooth_value == nil then smooth_value = SMOOTH_DEFAULTS[o.smooth_method] end
  local bp = 1.0
  if sys_len < ref_len then bp = sys_len > 0 and math.exp(1 - ref_len / sys_len) or 0.0 end
  local precisions = {}
  for n = 1, order do precisions[n] = 0.0 end
  local result = { score = 0.0, counts = correct, totals = total, precisions = precisions, bp = bp,
    sys_len = sys_len, ref_len = ref_len }
  local any = false
  for n = 1, order do if correct[n] ~= 0 then any = true end end
  if not any then return result end
  local counts_out, totals_out = {}, {}
  for n = 1, order do counts_out[n], totals_out[n] = correct[n], total[n] end
  local smooth_mteval = 1.0
  local eff_order = order
  for n = 1, order do
    if o.smooth_method == "add-k" and n > 1 then
      correct[n] = correct[n] + smooth_value
      total[n] = total[n] + smooth_value
    end
    if total[n] == 0 then break end
    if o.effective_order then eff_order = n end
    if correct[n] == 0 then
      if o.smooth_method == "exp" then
        smooth_mteval = smooth_mteval * 2
        precisions[n] = 100.0 / (smooth_mteval * total[n])
      elseif o.smooth_method == "floor" then
        precisions[n] = 100.0 * smooth_value / total[n]
      end
    else
      precisions[n] = 100.0 * correct[n] / total[n]
    end
  end
  local sum = 0.0
  for n = 1, eff_order do sum = sum + my_log(precisions[n]) end
  result.score = bp * math.exp(sum / eff_order)
  result.counts, result.totals = counts_out, totals_out
  return result
end

local function sum_stats(list)
  local out = {}
  for i, s in ipairs(list) do
    for k = 1, #s do out[k] = (i == 1) and s[k] or out[k] + s[k] end
  end
  return out
end

---Corpus BLEU as sacrebleu's corpus_bleu (0-100).
---@param hyps string[]
---@param refs table refs[i]: a string or a list of strings for hyps[i]
---@param opts table|nil { tokenize="13a"|"none", lowercase=false, smooth_method="exp"|"floor"|"add-k"|"none",
---  smooth_value=, max_ngram_order=4, effective_order=false }
---@return table { score=, counts=, totals=, precisions=, bp=, sys_len=, ref_len= }
function tm.bleu(hyps, refs, opts)
  local fname = "cai.textmetrics.bleu"
  refs = check_hyps_refs(fname, hyps, refs)
  local o = bleu_opts(fname, opts, false)
  local segs = {}
  for i = 1, #hyps do segs[i] = bleu_segment(o, hyps[i], refs[i]) end
  if #segs == 0 then error(fname .. ": hyps is empty (BLEU needs at least one segment)", 2) end
  return bleu_from_stats(o, sum_stats(segs))
end

---Sentence BLEU as sacrebleu's sentence_bleu (effective_order = true unless given).
---@param hyp string
---@param refs string|string[]
---@param opts table|nil as tm.bleu
function tm.sentence_bleu(hyp, refs, opts)
  local fname = "cai.textmetrics.sentence_bleu"
  check.value(fname, "hyp", hyp, "string")
  refs = sentence_refs(fname, refs)
  local o = bleu_opts(fname, opts, true)
  return bleu_from_stats(o, bleu_segment(o, hyp, refs))
end

-- chrF ---------------------------------------------------------------------------

local PUNCT = {}
for c in ("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"):gmatch(".") do PUNCT[c] = true end

local CHRF_OPTS = {
  char_order = { type = "integer", min = 0 },
  word_order = { type = "integer", min = 0 },
  beta = { type = "number", min = 0 },
  lowercase = "boolean",
  whitespace = "boolean",
  eps_smoothing = "boolean",
}

local function chrf_opts(fname, opts)
  opts = check(fname, opts, CHRF_OPTS)
  local o = {
    char_order = opts.char_order or 6,
    word_order = opts.word_order or 0,
    beta = opts.beta or 2,
    lowercase = opts.lowercase or false,
    whitespace = opts.whitespace or false,
    eps_smoothing = opts.eps_smoothing or false,
  }
  o.order = o.char_order + o.word_order
  if o.order == 0 then error(fname .. ": char_order + word_order must be at least 1", 3) end
  return o
end

-- Words with one leading or trailing ASCII punctuation mark split off (chrF++).
local function chrf_words(s)
  local out = {}
  for _, w in ipairs(split(s)) do
    if #chars(w) == 1 then
      out[#out + 1] = w
    elseif PUNCT[w:sub(-1)] then
      out[#out + 1] = w:sub(1, -2); out[#out + 1] = w:sub(-1)
    elseif PUNCT[w:sub(1, 1)] then
      out[#out + 1] = w:sub(1, 1); out[#out + 1] = w:sub(2)
    else
      out[#out + 1] = w
    end
  end
  return out
end

local function count_ngrams(items, n, sep)
  local c, total = {}, 0
  for i = 1, #items - n + 1 do
    local g = table.concat(items, sep, i, i + n - 1)
    c[g] = (c[g] or 0) + 1
    total = total + 1
  end
  return { counts = c, total = total }
end

local function chrf_ngrams(o, s)
  if o.lowercase then s = lower(s) end
  local line = s
  if not o.whitespace then line = table.concat(split(s)) end
  local cs = chars(line)
  local out = {}
  for n = 1, o.char_order do out[#out + 1] = count_ngrams(cs, n, "") end
  if o.word_order > 0 then
    local words = chrf_words(s)
    for n = 1, o.word_order do out[#out + 1] = count_ngrams(words, n, " ") end
  end
  return out
end

local function chrf_f(o, stats)
  local eps = 1e-16
  local factor = o.beta ^ 2
  local score, eff, avg_p, avg_r = 0.0, 0, 0.0, 0.0
  for i = 0, o.order - 1 do
    local n_hyp, n_ref, n_match = stats[3 * i + 1], stats[3 * i + 2], stats[3 * i + 3]
    local p = n_hyp > 0 and n_match / n_hyp or eps
    local r = n_ref > 0 and n_match / n_ref or eps
    local denom = factor * p + r
    score = score + (denom > 0 and (1 + factor) * p * r / denom or eps)
    if n_hyp > 0 and n_ref > 0 then
      avg_p, avg_r, eff = avg_p + p, avg_r + r, eff + 1
    end
  end
  if o.eps_smoothing then return 100 * score / o.order end
  if eff == 0 then avg_p, avg_r = 0.0, 0.0 else avg_p, avg_r = avg_p / eff, avg_r / eff end
  if avg_p + avg_r ~= 0 then
    return 100 * (1 + factor) * avg_p * avg_r / (factor * avg_p + avg_r)
  end
  return 0.0
end

-- One segment's statistics: { hyp, ref, match } per order, of the reference
-- with the best f-score.
local function chrf_segment(o, hyp, refs)
  local h = chrf_ngrams(o, hyp)
  local best, best_f = nil, -1.0
  for _, ref in ipairs(refs) do
    local r = chrf_ngrams(o, ref)
    local stats = {}
    for k = 1, o.order do
      local hk, rk = h[k], r[k]
      local match = 0
      for g, v in pairs(hk.counts) do
        local rv = rk.counts[g]
        if rv then match = match + math.min(v, rv) end
      end
      stats[#stats + 1] = rk.total > 0 and hk.total or 0
      stats[#stats + 1] = rk.total
      stats[#stats + 1] = match
    end
    local f = chrf_f(o, stats)
    if f > best_f then best, best_f = stats, f end
  end
  return best
end

local function chrf_result(o, stats)
  local name = "chrF" .. tostring(o.beta) .. string.rep("+", o.word_order)
  return { score = chrf_f(o, stats), name = name, char_order = o.char_order, word_order = o.word_order,
    beta = o.beta }
end

---Corpus chrF as sacrebleu's corpus_chrf (0-100); word_order = 2 is chrF++.
---@param hyps string[]
---@param refs table refs[i]: a string or a list of strings for hyps[i]
---@param opts table|nil { char_order=6, word_order=0, beta=2, lowercase=false, whitespace=false, eps_smoothing=false }
---@return table { score=, name=, char_order=, word_order=, beta= }
function tm.chrf(hyps, refs, opts)
  local fname = "cai.textmetrics.chrf"
  refs = check_hyps_refs(fname, hyps, refs)
  local o = chrf_opts(fname, opts)
  if #hyps == 0 then error(fname .. ": hyps is empty (chrF needs at least one segment)", 2) end
  local segs = {}
  for i = 1, #hyps do segs[i] = chrf_segment(o, hyps[i], refs[i]) end
  return chrf_result(o, sum_stats(segs))
end

---Sentence chrF as sacrebleu's sentence_chrf.
---@param hyp string
---@param refs string|string[]
---@param opts table|nil as tm.chrf
function tm.sentence_chrf(hyp, refs, opts)
  local fname = "cai.textmetrics.sentence_chrf"
  check.value(fname, "hyp", hyp, "string")
  refs = sentence_refs(fname, refs)
  local o = chrf_opts(fname, opts)
  return chrf_result(o, chrf_segment(o, hyp, refs))
end

-- ROUGE --------------------------------------------------------------------------

---rouge_score's tokens: lowercase, runs outside [a-z0-9] become spaces.
---@param text string
---@return string[]
function tm.rouge_tokenize(text)
  check.value("cai.textmetrics.rouge_tokenize", "text", text, "string")
  local out = {}
  for w in text:lower():gmatch("[a-z0-9]+") do out[#out + 1] = w end
  return out
end

local function fmeasure(p, r)
  if p + r > 0 then return 2 * p * r / (p + r) end
  return 0.0
end

local function score(p, r) return { precision = p, recall = r, fmeasure = fmeasure(p, r) } end
local ZERO = function() return { precision = 0, recall = 0, fmeasure = 0 } end

local function lcs_length(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do prev[j] = 0 end
  for i = 1, #a do
    cur[0] = 0
    local ai = a[i]
    for j = 1, #b do
      if ai == b[j] then cur[j] = prev[j - 1] + 1
      else
        local x, y = prev[j], cur[j - 1]
        cur[j] = x > y and x or y
      end
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

-- Indices into ref (0-based, as rouge_score) of one longest common subsequence.
local function lcs_indices(ref, can)
  local t = {}
  for i = 0, #ref do
    t[i] = {}
    for j = 0, #can do t[i][j] = 0 end
  end
  for i = 1, #ref do
    for j = 1, #can do
      if ref[i] == can[j] then t[i][j] = t[i - 1][j - 1] + 1
      else t[i][j] = math.max(t[i - 1][j], t[i][j - 1]) end
    end
  end
  local i, j, out = #ref, #can, {}
  while i > 0 and j > 0 do
    if ref[i] == can[j] then
      table.insert(out, 1, i - 1)
      i, j = i - 1, j - 1
    elseif t[i][j - 1] > t[i - 1][j] then
      j = j - 1
    else
      i = i - 1
    end
  end
  return out
end
tm._lcs_indices = lcs_indices

local ROUGE_OPTS = {}

-- The best-fmeasure score over several references (rouge_score's score_multi).
local function best_over(fname, refs, fn)
  if type(refs) == "string" then return fn(refs) end
  check.value(fname, "ref", refs, { type = "list", items = "string", nonempty = true,
    expect = "a string or a non-empty list of strings" })
  local best
  for _, r in ipairs(refs) do
    local s = fn(r)
    if not best or s.fmeasure > best.fmeasure then best = s end
  end
  return best
end

---ROUGE-L of a hypothesis against a reference (rouge_score's rougeL, 0-1).
---With a list of references, the one with the best fmeasure.
---@param hyp string
---@param ref string|string[]
---@return table { precision=, recall=, fmeasure= }
function tm.rouge_l(hyp, ref, opts)
  local fname = "cai.textmetrics.rouge_l"
  check.value(fname, "hyp", hyp, "string")
  check(fname, opts, ROUGE_OPTS)
  local h = tm.rouge_tokenize(hyp)
  return best_over(fname, ref, function(r)
    local t = tm.rouge_tokenize(r)
    if #t == 0 or #h == 0 then return ZERO() end
    local l = lcs_length(t, h)
    return score(l / #h, l / #t)
  end)
end

---ROUGE-N (rouge_score's rouge1 ... rouge9).
---@param hyp string
---@param ref string|string[]
---@param opts table|nil { n = 1 }
function tm.rouge_n(hyp, ref, opts)
  local fname = "cai.textmetrics.rouge_n"
  check.value(fname, "hyp", hyp, "string")
  opts = check(fname, opts, { n = { type = "integer", min = 1, max = 9 } })
  local n = opts.n or 1
  local h = count_ngrams(tm.rouge_tokenize(hyp), n, " ")
  return best_over(fname, ref, function(r)
    local t = count_ngrams(tm.rouge_tokenize(r), n, " ")
    local inter = 0
    for g, v in pairs(t.counts) do inter = inter + math.min(v, h.counts[g] or 0) end
    return score(inter / math.max(h.total, 1), inter / math.max(t.total, 1))
  end)
end

local function sentences(text)
  local out = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if #line > 0 then out[#out + 1] = tm.rouge_tokenize(line) end
  end
  return out
end

---ROUGE-Lsum: summary-level LCS over newline-separated sentences
---(rouge_score's rougeLsum, 0-1).
---@param hyp string
---@param ref string|string[]
function tm.rouge_lsum(hyp, ref, opts)
  local fname = "cai.textmetrics.rouge_lsum"
  check.value(fname, "hyp", hyp, "string")
  check(fname, opts, ROUGE_OPTS)
  local cans = sentences(hyp)
  return best_over(fname, ref, function(r)
    local refs = sentences(r)
    if #refs == 0 or #cans == 0 then return ZERO() end
    local m, n = 0, 0
    local cnt_r, cnt_c = {}, {}
    for _, s in ipairs(refs) do
      m = m + #s
      for _, tok in ipairs(s) do cnt_r[tok] = (cnt_r[tok] or 0) + 1 end
    end
    for _, s in ipairs(cans) do
      n = n + #s
      for _, tok in ipairs(s) do cnt_c[tok] = (cnt_c[tok] or 0) + 1 end
    end
    if m == 0 or n == 0 then return ZERO() end
    local hits = 0
    for _, rs in ipairs(refs) do
      local union = {}
      for _, cs in ipairs(cans) do
        for _, idx in ipairs(lcs_indices(rs, cs)) do union[idx] = true end
      end
      local idxs = {}
      for idx in pairs(union) do idxs[#idxs + 1] = idx end
      table.sort(idxs)
      for _, idx in ipairs(idxs) do
        local tok = rs[idx + 1]
        if (cnt_c[tok] or 0) > 0 and (cnt_r[tok] or 0) > 0 then
          hits = hits + 1
          cnt_c[tok] = cnt_c[tok] - 1
          cnt_r[tok] = cnt_r[tok] - 1
        end
      end
    end
    return score(hits / n, hits / m)
  end)
end

-- Segment statistics, bootstrap intervals and paired tests ------------------------

local METRICS = { "bleu", "chrf", "rouge_l" }

local function metric_impl(fname, metric, opts)
  check.value(fname, "metric", metric, { enum = METRICS })
  if metric == "bleu" then
    local o = bleu_opts(fname, opts, false)
    return {
      segment = function(h, r) return bleu_segment(o, h, r) end,
      score = function(s) return bleu_from_stats(o, s).score end,
    }
  elseif metric == "chrf" then
    local o = chrf_opts(fname, opts)
    return {
      segment = function(h, r) return chrf_segment(o, h, r) end,
      score = function(s) return chrf_f(o, s) end,
    }
  end
  check(fname, opts, ROUGE_OPTS)
  -- ROUGE-L is averaged over segments: the statistics are { fmeasure, 1 }.
  return {
    segment = function(h, r) return { tm.rouge_l(h, r).fmeasure, 1 } end,
    score = function(s) return s[2] > 0 and s[1] / s[2] or 0 end,
  }
end

---Per-segment statistics of a metric ("bleu", "chrf" or "rouge_l").
---@return table list of numeric vectors, one per hypothesis
function tm.stats(metric, hyps, refs, opts)
  local fname = "cai.textmetrics.stats"
  refs = check_hyps_refs(fname, hyps, refs)
  local impl = metric_impl(fname, metric, opts)
  local out = {}
  for i = 1, #hyps do out[i] = impl.segment(hyps[i], refs[i]) end
  return out
end

---The corpus score of summed segment statistics.
function tm.score_stats(metric, summed, opts)
  local fname = "cai.textmetrics.score_stats"
  check.value(fname, "summed", summed, { type = "list", items = "number" })
  return metric_impl(fname, metric, opts).score(summed)
end

local function resample_indices(n, reps, seed)
  local rng = require("cai").rng(seed)
  local idx = {}
  for r = 1, reps do
    local row = {}
    for i = 1, n do row[i] = rng:int(1, n) end
    idx[r] = row
  end
  return idx
end

local function resampled_scores(impl, segs, idx)
  local out = {}
  local width = #segs[1]
  for r, row in ipairs(idx) do
    local sum = {}
    for k = 1, width do sum[k] = 0 end
    for _, i in ipairs(row) do
      local s = segs[i]
      for k = 1, width do sum[k] = sum[k] + s[k] end
    end
    out[r] = impl.score(sum)
  end
  return out
end

-- sacrebleu's interval: sorted resampled scores at n//40 and n - n//40 - 1.
local function interval(scores)
  local sorted = {}
  for i, v in ipairs(scores) do sorted[i] = v end
  table.sort(sorted)
  local n = #sorted
  local lo_i = math.floor(n / 40)
  local mean = 0
  for _, v in ipairs(sorted) do mean = mean + v end
  return sorted[lo_i + 1], sorted[n - lo_i], mean / n
end

local BOOT_OPTS = { n_samples = { type = "integer", min = 1 }, seed = "integer", metric_opts = "table" }

local function check_segments(fname, what, segs)
  check.value(fname, what, segs, { type = "list", items = "table", nonempty = true })
  local width = #segs[1]
  for i, s in ipairs(segs) do
    if #s ~= width or width == 0 then
      error(string.format("%s: %s[%d] has %d statistics, expected %d (one vector per segment from "
        .. "cai.textmetrics.stats)", fname, what, i, #s, width), 3)
    end
  end
end

---The bootstrap interval from segment statistics (tm.stats): resample the
---segments with replacement n_samples times (seed fixed), recompute the
---corpus score from the summed statistics, and take sacrebleu's 95% bounds
---(the sorted resampled scores at n_samples // 40 and
---n_samples - n_samples // 40 - 1, 0-based).
---@param metric string "bleu" | "chrf" | "rouge_l"
---@param segs table list of segment statistics
---@param opts table|nil { n_samples = 1000, seed = 12345, metric_opts = {} }
---@return table { score=, lo=, hi=, mean=, n=, n_samples=, seed= }
function tm.bootstrap_stats(metric, segs, opts)
  local fname = "cai.textmetrics.bootstrap_stats"
  opts = check(fname, opts, BOOT_OPTS)
  local impl = metric_impl(fname, metric, opts.metric_opts)
  check_segments(fname, "segs", segs)
  local reps, seed = opts.n_samples or 1000, opts.seed or 12345
  local scores = resampled_scores(impl, segs, resample_indices(#segs, reps, seed))
  local lo, hi, mean = interval(scores)
  return { score = impl.score(sum_stats(segs)), lo = lo, hi = hi, mean = mean, n = #segs, n_samples = reps,
    seed = seed }
end

---Corpus score with a 95% bootstrap interval (tm.bootstrap_stats on the
---segments of hyps and refs).
---@param metric string "bleu" | "chrf" | "rouge_l"
---@param opts table|nil { n_samples = 1000, seed = 12345, metric_opts = {} }
function tm.bootstrap(metric, hyps, refs, opts)
  local fname = "cai.textmetrics.bootstrap"
  opts = check(fname, opts, BOOT_OPTS)
  check_hyps_refs(fname, hyps, refs)
  if #hyps == 0 then error(fname .. ": hyps is empty", 2) end
  return tm.bootstrap_stats(metric, tm.stats(metric, hyps, refs, opts.metric_opts), opts)
end

---Paired bootstrap test from the segment statistics of two systems on the
---same segments (sacrebleu's paired_bs): the same resampled index sets score
---both; p is the share of resamples whose centred absolute difference
---exceeds the observed one, (c + 1) / (n_samples + 1). One departure: when
---both corpus scores are equal p is 1 (sacrebleu's formula would give
---1 / (n_samples + 1)).
---@return table { a=, b=, diff= (b - a), p=, n=, n_samples=, seed= }
function tm.paired_bootstrap_stats(metric, segs_a, segs_b, opts)
  local fname = "cai.textmetrics.paired_bootstrap_stats"
  opts = check(fname, opts, BOOT_OPTS)
  local impl = metric_impl(fname, metric, opts.metric_opts)
  check_segments(fname, "segs_a", segs_a)
  check_segments(fname, "segs_b", segs_b)
  if #segs_a ~= #segs_b then
    error(string.format("%s: segs_a has %d segments, segs_b %d (both systems on the same segments)", fname,
      #segs_a, #segs_b), 2)
  end
  local reps, seed = opts.n_samples or 1000, opts.seed or 12345
  local idx = resample_indices(#segs_a, reps, seed)
  local ra, rb = resampled_scores(impl, segs_a, idx), resampled_scores(impl, segs_b, idx)
  local a, b = impl.score(sum_stats(segs_a)), impl.score(sum_stats(segs_b))
  local diffs, mean = {}, 0
  for k = 1, reps do
    diffs[k] = math.abs(rb[k] - ra[k])
    mean = mean + diffs[k]
  end
  mean = mean / reps
  local real, c = math.abs(b - a), 0
  for k = 1, reps do if diffs[k] - mean > real then c = c + 1 end end
  local p = (c + 1) / (reps + 1)
  -- sacrebleu would give identical systems p = 1 / (n_samples + 1); no difference is no evidence
  if real == 0 then p = 1 end
  return { a = a, b = b, diff = b - a, p = p, n = #segs_a, n_samples = reps, seed = seed }
end

---Paired bootstrap test of two systems' hypotheses against the same references.
function tm.paired_bootstrap(metric, hyps_a, hyps_b, refs, opts)
  local fname = "cai.textmetrics.paired_bootstrap"
  opts = check(fname, opts, BOOT_OPTS)
  check_hyps_refs(fname, hyps_a, refs)
  check_hyps_refs(fname, hyps_b, refs)
  if #hyps_a == 0 then error(fname .. ": hyps is empty", 2) end
  return tm.paired_bootstrap_stats(metric, tm.stats(metric, hyps_a, refs, opts.metric_opts),
    tm.stats(metric, hyps_b, refs, opts.metric_opts), opts)
end

return tm

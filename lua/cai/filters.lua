-- cai.filters: quality filters for preference pairs (the lessons of the
-- Stage 3 post-mortem: identical pairs, weak score deltas, meta-commentary).
--
--   local kept, stats, dropped = cai.filters.apply(pairs, { min_score_delta = 0.1 })
--
-- Pairs may be critique records ({ instruction, initial_answer,
-- revised_answer, base_score, revised_score }), base/revised pairs
-- ({ prompt, base_response, revised_response, base_score, revised_score,
-- chosen = "revised"|"base" }) or TRL pairs ({ prompt, chosen, rejected,
-- chosen_score, rejected_score }). Filters run in this order:
--   identical       chosen and rejected texts equal (after trimming)
--   unscored        a score is missing while min_score_delta is set and the pair has scores at all
--   weak_delta      |score difference| < min_score_delta (only for scored pairs)
--   length          chosen or rejected outside [min_words, max_words]
--   meta            the chosen text is meta-commentary (cai.critique.meta_commentary)
--   near_duplicate  word-trigram Jaccard(chosen, rejected) >= near_duplicate
--   duplicate       the same (prompt, chosen, rejected) seen before
--   unsafe          with opts.safety (a scorer whose :score(prompts, responses)
--                   gives P(safe), e.g. cai.scoring.classifier or a labels
--                   cai.scoring.judge): the chosen response scores below
--                   min_safety (0.5); the surviving pairs are scored in one batch
-- When the revised side wins less often than target_revised_win_rate, a
-- warning is logged and listed in stats.warnings; no pair is dropped for it.
local check = require "cai.check"
local critique = require "cai.critique"

local filters = {}

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

---A uniform view of a pair of any supported shape:
---{ prompt, chosen, rejected, chosen_score, rejected_score, side = "revised"|"base"|nil,
---  base, revised, base_score, revised_score, principle_ids }
function filters.view(p)
  check.value("cai.filters.view", "pair", p, "table")
  local v = { prompt = p.prompt or p.instruction, principle_ids = p.principle_ids }
  local base = p.base_response or p.initial_answer
  local revised = p.revised_response or p.revised_answer
  if base ~= nil and revised ~= nil then
    v.base, v.revised = base, revised
    v.base_score, v.revised_score = p.base_score, p.revised_score
    local side = p.chosen
    if side ~= "revised" and side ~= "base" then
      if v.base_score and v.revised_score then
        side = v.revised_score >= v.base_score and "revised" or "base"
      else
        side = "revised"   -- the critique pipeline's default preference
      end
    end
    v.side = side
    if side == "revised" then
      v.chosen, v.rejected, v.chosen_score, v.rejected_score = revised, base, v.revised_score, v.base_score
    else
      v.chosen, v.rejected, v.chosen_score, v.rejected_score = base, revised, v.base_score, v.revised_score
    end
  elseif type(p.chosen) == "string" and type(p.rejected) == "string" then
    v.chosen, v.rejected = p.chosen, p.rejected
    v.chosen_score, v.rejected_score = p.chosen_score, p.rejected_score
  else
    error("cai.filters.view: pair has neither base/revised responses nor chosen/rejected texts", 2)
  end
  if type(v.chosen) ~= "string" or type(v.rejected) ~= "string" then
    error("cai.filters.view: pair texts must be strings", 2)
  end
  return v
end

local function words(s)
  local out = {}
  for w in s:lower():gmatch("[%w']+") do out[#out + 1] = w end
  return out
end

---Jaccard similarity of word trigrams (unigrams for texts under 3 words).
function filters.similarity(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then error("cai.filters.similarity: texts must be strings", 2) end
  local wa, wb = words(a), words(b)
  local k = (#wa < 3 or #wb < 3) and 1 or 3
  local function grams(ws)
    local g, n = {}, 0
    for i = 1, #ws - k + 1 do
      local key = table.concat(ws, " ", i, i + k - 1)
      if not g[key] then g[key] = true; n = n + 1 end
    end
    return g, n
  end
  local ga, na = grams(wa)
  local gb, nb = grams(wb)
  if na == 0 and nb == 0 then return 1 end
  local inter = 0
  for key in pairs(ga) do if gb[key] then inter = inter + 1 end end
  return inter / (na + nb - inter)
end

-- A number in a range, or false to skip that filter.
local function number_or_false(rule)
  rule.type = "number|boolean"
  rule.check = function(v)
    if v == true then return "must be a number or false (to skip the check), got true" end
  end
  return rule
end

local APPLY_SPEC = {
  min_score_delta = number_or_false { min = 0 },
  min_words = { type = "integer", min = 0 },
  max_words = { type = "integer", min = 0 },
  meta = "boolean",
  near_duplicate = number_or_false { min = 0, max = 1 },
  dedupe = "boolean",
  target_revised_win_rate = number_or_false { min = 0, max = 1 },
  quiet = "boolean",
  safety = { type = "table|userdata", expect = "a scorer with :score(prompts, responses) (cai.scoring.classifier, a labels judge)",
    check = function(v)
      if type(v.score) ~= "function" then
        return "must be a scorer with :score(prompts, responses) (cai.scoring.classifier, a labels judge)"
      end
    end },
  min_safety = { type = "number", min = 0, max = 1 },
}

---Filters pairs (see header).
---@param pairs_in table list of pairs
---@param opts table|nil { min_score_delta=0.1, min_words=1, max_words=2000, meta=true, near_duplicate=0.9,
---  dedupe=true, target_revised_win_rate=0.6, quiet=false, safety=nil (a scorer), min_safety=0.5 }
---@return table kept, table stats, table dropped ({ pair=, reason= })
function filters.apply(pairs_in, opts)
  check.value("cai.filters.apply", "pairs", pairs_in, "table")
  opts = check("cai.filters.apply", opts, APPLY_SPEC)
  local min_delta = opts.min_score_delta == nil and 0.1 or opts.min_score_delta
  local min_words = opts.min_words or 1
  local max_words = opts.max_words or 2000
  local use_meta = opts.meta ~= false
  local near = opts.near_duplicate == nil and 0.9 or opts.near_duplicate
  local dedupe = opts.dedupe ~= false
  local target = opts.target_revised_win_rate == nil and 0.6 or opts.target_revised_win_rate
  if min_words > max_words then
    error(string.format("cai.filters.apply: min_words (%d) is more than max_words (%d)", min_words, max_words), 2)
  end
  local safety, min_safety = opts.safety, opts.min_safety == nil and 0.5 or opts.min_safety

  local stats = { total_input = #pairs_in, filtered_identical = 0, filtered_unscored = 0, filtered_weak_delta = 0,
    filtered_length = 0, filtered_meta = 0, filtered_near_duplicate = 0, filtered_duplicate = 0, filtered_unsafe = 0,
    total_output = 0, warnings = {} }
  local kept, dropped, seen = {}, {}, {}
  for i, p in ipairs(pairs_in) do
    local ok, v = pcall(filters.view, p)
    if not ok then error("cai.filters.apply: pairs[" .. i .. "]: " .. tostring(v):gsub("^cai%.filters%.view: ", ""), 2) end
    local reason
    local scored = v.chosen_score ~= nil or v.rejected_score ~= nil
    if trim(v.chosen) == trim(v.rejected) then
      reason = "identical"
    elseif min_delta and scored and (type(v.chosen_score) ~= "number" or type(v.rejected_score) ~= "number") then
      reason = "unscored"
    elseif min_delta and scored and math.abs(v.chosen_score - v.rejected_score) < min_delta then
      reason = "weak_delta"
    else
      local nc, nr = #words(v.chosen), #words(v.rejected)
      if nc < min_words or nr < min_words or nc > max_words or nr > max_words then
        reason = "length"
      elseif use_meta and critique.meta_commentary(v.chosen) then
        reason = "meta"
      elseif near and filters.similarity(v.chosen, v.rejected) >= near then
        reason = "near_duplicate"
      elseif dedupe then
        local key = tostring(v.prompt) .. "\0" .. trim(v.chosen) .. "\0" .. trim(v.rejected)
        if seen[key] then reason = "duplicate" else seen[key] = true end
      end
    end
    if reason then
      stats["filtered_" .. reason] = stats["filtered_" .. reason] + 1
      dropped[#dropped + 1] = { pair = p, reason = reason, index = i }
    else
      kept[#kept + 1] = { pair = p, view = v, index = i }
    end
  end
  if safety and #kept > 0 then
    -- P(safe) of every surviving pair's chosen response, in one batch.
    local prompts, responses = {}, {}
    for k, e in ipairs(kept) do prompts[k], responses[k] = tostring(e.view.prompt or ""), e.view.chosen end
    local scores = safety:score(prompts, responses)
    if type(scores) ~= "table" or #scores ~= #kept then
      error(string.format("cai.filters.apply: safety:score returned %s for %d pairs", type(scores) == "table"
        and (#scores .. " scores") or type(scores), #kept), 2)
    end
    local safe = {}
    for k, e in ipairs(kept) do
      local score = scores[k]
      if type(score) ~= "number" or score ~= score then
        error(string.format("cai.filters.apply: safety:score gave %s for pairs[%d]; expected P(safe) in [0, 1]",
          tostring(score), e.index), 2)
      end
      if score < min_safety then
        stats.filtered_unsafe = stats.filtered_unsafe + 1
        dropped[#dropped + 1] = { pair = e.pair, reason = "unsafe", index = e.index, safety = score }
      else
        safe[#safe + 1] = e
      end
    end
    kept = safe
    table.sort(dropped, function(a, b) return a.index < b.index end)
  end
  for k, e in ipairs(kept) do kept[k] = e.pair end
  stats.total_output = #kept
  stats.retained_share = #pairs_in > 0 and #kept / #pairs_in or 0

  -- Revised win rate among kept pairs whose sides are known.
  local known, revised_wins = 0, 0
  for _, p in ipairs(kept) do
    local v = filters.view(p)
    if v.side then
      known = known + 1
      if v.side == "revised" then revised_wins = revised_wins + 1 end
    end
  end
  if known > 0 then
    stats.revised_win_rate = revised_wins / known
    if target and stats.revised_win_rate < target then
      local msg = string.format("revised win rate %.1f%% is below the target %.1f%%: the critique/revision step "
        .. "needs improvement (pairs are kept; check prompts and the scorer)", 100 * stats.revised_win_rate, 100 * target)
      stats.warnings[#stats.warnings + 1] = msg
      if not opts.quiet then require("cai").log.warn("filters: " .. msg) end
    end
  end
  if not opts.quiet then
    require("cai").log.info(string.format("filters: kept %d of %d pairs (identical %d, unscored %d, weak delta %d, "
      .. "length %d, meta %d, near-duplicate %d, duplicate %d, unsafe %d)", stats.total_output, stats.total_input,
      stats.filtered_identical, stats.filtered_unscored, stats.filtered_weak_delta, stats.filtered_length,
      stats.filtered_meta, stats.filtered_near_duplicate, stats.filtered_duplicate, stats.filtered_unsafe))
  end
  return kept, stats, dropped
end

local FILTER_ORDER = { "identical", "unscored", "weak_delta", "length", "meta", "unsafe", "near_duplicate", "duplicate" }

---Which filters removed how many pairs, as one line: "identical 7, meta 1"
---(only the filters that removed any), with the critique outcomes behind
---identical pairs when given ("revisions: keep_original 5, unparsed 2").
---@param stats table the stats of filters.apply
---@param outcomes table|nil outcome -> count (cai.critique's round outcomes)
function filters.explain(stats, outcomes)
  if type(stats) ~= "table" or type(stats.total_input) ~= "number" then
    error("cai.filters.explain: stats must be the stats table of cai.filters.apply", 2)
  end
  local parts = {}
  for _, name in ipairs(FILTER_ORDER) do
    local n = stats["filtered_" .. name] or 0
    if n > 0 then parts[#parts + 1] = string.format("%s %d", name:gsub("_", " "), n) end
  end
  local text = #parts > 0 and table.concat(parts, ", ") or "no filter removed any"
  if outcomes ~= nil then
    if type(outcomes) ~= "table" then error("cai.filters.explain: outcomes must be a table outcome -> count", 2) end
    local names, list = {}, {}
    for k in pairs(outcomes) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      if outcomes[k] > 0 then list[#list + 1] = string.format("%s %d", k, outcomes[k]) end
    end
    if #list > 0 then text = text .. " (critique rounds: " .. table.concat(list, ", ") .. ")" end
  end
  return text
end

---Stops with an error when fewer than min_pairs pairs survived the filters,
---naming each filter that removed pairs and how many (see filters.explain).
---@param context string who asks, e.g. "cai_pipeline.lua"
---@param kept table the kept pairs
---@param stats table the stats of filters.apply
---@param min_pairs integer
---@param opts table|nil { outcomes = outcome -> count, hint = "what to try" }
function filters.require_pairs(context, kept, stats, min_pairs, opts)
  if type(context) ~= "string" then error("cai.filters.require_pairs: context must be a string", 2) end
  if type(kept) ~= "table" then error("cai.filters.require_pairs: kept must be a list", 2) end
  if type(min_pairs) ~= "number" or min_pairs < 1 or min_pairs ~= math.floor(min_pairs) then
    error("cai.filters.require_pairs: min_pairs must be an integer >= 1, got " .. tostring(min_pairs), 2)
  end
  opts = opts or {}
  if #kept >= min_pairs then return end
  local msg = string.format("%s: %d of %d pairs passed the filters, fewer than min_pairs = %d; removed by: %s",
    context, #kept, stats.total_input or 0, min_pairs, filters.explain(stats, opts.outcomes))
  if opts.hint then msg = msg .. "; " .. opts.hint end
  error(msg, 0)
end

return filters

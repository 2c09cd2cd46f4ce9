-- cai.stats: the statistics used to compare models honestly.
--
--   cai.stats.bootstrap_ci(values, { seed = 1 })   --> { estimate=, lo=, hi= }
--   cai.stats.mcnemar(b, c)                          --> { statistic=, p=, method= }
--   cai.stats.holm({ 0.01, 0.04, 0.03 })             --> adjusted p-values, rejected flags
--   cai.stats.cohen_h(p1, p2), cai.stats.wilson(k, n)
--   cai.stats.cohen_kappa(labels_a, labels_b)        --> { kappa=, observed=, expected=, n= }
--   cai.stats.bradley_terry(names, games)             --> { strengths = { name -> share }, iterations= }
--
-- p-values are two-sided. Exact binomial tests are used for small counts.
local check = require "cai.check"

local stats = {}

local function check_numbers(fname, xs, what)
  if type(xs) ~= "table" then error("cai.stats." .. fname .. ": " .. what .. " must be a list of numbers", 3) end
  for i, x in ipairs(xs) do
    if type(x) ~= "number" then
      error(string.format("cai.stats.%s: %s[%d] must be a number, got %s", fname, what, i, type(x)), 3)
    end
  end
end

local function check_alpha(fname, alpha)
  if type(alpha) ~= "number" or not (alpha > 0 and alpha < 1) then
    error("cai.stats." .. fname .. ": alpha must be a number in (0, 1), got " .. tostring(alpha), 3)
  end
end

local function check_count(fname, v, what)
  if type(v) ~= "number" or v < 0 or v ~= math.floor(v) then
    error("cai.stats." .. fname .. ": " .. what .. " must be a non-negative integer, got " .. tostring(v), 3)
  end
end

---Arithmetic mean (nil for an empty list).
function stats.mean(xs)
  check_numbers("mean", xs, "values")
  if #xs == 0 then return nil end
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

---Sample standard deviation (n - 1); nil for fewer than two values.
function stats.sd(xs)
  check_numbers("sd", xs, "values")
  if #xs < 2 then return nil end
  local m = stats.mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + (x - m) ^ 2 end
  return math.sqrt(s / (#xs - 1))
end

---Quantile of a sorted list, linear interpolation between order statistics
---(p = 0 -> first, p = 1 -> last).
function stats.quantile(sorted, p)
  check_numbers("quantile", sorted, "sorted")
  if type(p) ~= "number" or p < 0 or p > 1 then error("cai.stats.quantile: p must be in [0, 1]", 2) end
  local n = #sorted
  if n == 0 then return nil end
  local h = (n - 1) * p + 1
  local lo = math.floor(h)
  local hi = math.min(lo + 1, n)
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo])
end

-- erf by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7).
local function erf(x)
  local sign = x < 0 and -1 or 1
  x = math.abs(x)
  local t = 1 / (1 + 0.3275911 * x)
  local y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t
    * math.exp(-x * x)
  return sign * y
end
stats.erf = erf

---Standard normal cumulative distribution.
function stats.normal_cdf(z)
  check.value("cai.stats.normal_cdf", "z", z, "number")
  return 0.5 * (1 + erf(z / math.sqrt(2)))
end

---Upper tail of the chi-square distribution with one degree of freedom.
function stats.chi2_sf_1(x)
  if type(x) ~= "number" or x < 0 then error("cai.stats.chi2_sf_1: x must be a number >= 0", 2) end
  return 1 - erf(math.sqrt(x / 2))
end

local function log_choose(n, k)
  local s = 0
  for i = 1, k do s = s + math.log(n - k + i) - math.log(i) end
  return s
end

---P(X <= k) for X ~ Binomial(n, p).
function stats.binom_cdf(k, n, p)
  check_count("binom_cdf", k, "k")
  check_count("binom_cdf", n, "n")
  if p == nil then p = 0.5 end
  local s = 0
  for i = 0, math.min(k, n) do
    s = s + math.exp(log_choose(n, i) + i * math.log(p) + (n - i) * math.log(1 - p))
  end
  return math.min(1, s)
end

---Exact two-sided sign test on counts of wins and losses (ties dropped).
---@return table { n=, wins=, losses=, p= }
function stats.sign_test(wins, losses)
  check_count("sign_test", wins, "wins")
  check_count("sign_test", losses, "losses")
  local n = wins + losses
  local p = n == 0 and 1 or math.min(1, 2 * stats.binom_cdf(math.min(wins, losses), n, 0.5))
  return { n = n, wins = wins, losses = losses, p = p }
end

---Paired sign test on two lists of scores: a[i] > b[i] is a win for a.
function stats.paired_sign_test(a, b)
  check_numbers("paired_sign_test", a, "a")
  check_numbers("paired_sign_test", b, "b")
  if #a ~= #b then error("cai.stats.paired_sign_test: a and b must have the same length", 2) end
  local w, l, t = 0, 0, 0
  for i = 1, #a do
    if a[i] > b[i] then w = w + 1 elseif a[i] < b[i] then l = l + 1 else t = t + 1 end
  end
  local r = stats.sign_test(w, l)
  r.ties = t
  return r
end

---McNemar's test on the discordant counts of a paired 2x2 table:
---b = passes under A only, c = passes under B only. Exact binomial when
---b + c < 25 (or opts.exact = true), else chi-square with continuity correction.
---@return table { b=, c=, statistic=, p=, method=, odds_ratio= (nil when c = 0), odds_ratio_corrected= }
function stats.mcnemar(b, c, opts)
  check_count("mcnemar", b, "b")
  check_count("mcnemar", c, "c")
  opts = check("cai.stats.mcnemar", opts, { exact = "boolean" })
  local n = b + c
  -- odds_ratio is b / c, absent when c = 0 (infinite: JSON cannot hold it);
  -- odds_ratio_corrected adds 0.5 to both counts (Haldane) and is always finite.
  local r = { b = b, c = c, odds_ratio = c > 0 and b / c or nil, odds_ratio_corrected = (b + 0.5) / (c + 0.5) }
  if n == 0 then
    r.statistic, r.p, r.method = 0, 1, "exact"
    return r
  end
  local exact = opts.exact
  if exact == nil then exact = n < 25 end
  if exact then
    r.method = "exact"
    r.statistic = math.min(b, c)
    r.p = math.min(1, 2 * stats.binom_cdf(math.min(b, c), n, 0.5))
  else
    r.method = "chi2"
    r.statistic = (math.abs(b - c) - 1) ^ 2 / n
    if math.abs(b - c) <= 1 then r.statistic = 0 end
    r.p = stats.chi2_sf_1(r.statistic)
  end
  return r
end

---McNemar on two paired lists of booleans (pass/fail of A and of B per item).
function stats.mcnemar_paired(a, b, opts)
  if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then
    error("cai.stats.mcnemar_paired: a and b must be lists of booleans of the same length", 2)
  end
  local only_a, only_b = 0, 0
  for i = 1, #a do
    if a[i] and not b[i] then only_a = only_a + 1 elseif b[i] and not a[i] then only_b = only_b + 1 end
  end
  return stats.mcnemar(only_a, only_b, opts)
end

---Holm's step-down correction. Returns adjusted p-values (in input order)
---and, when alpha is given (default 0.05), which hypotheses are rejected.
---@param ps table list of p-values
---@param alpha number|nil
function stats.holm(ps, alpha)
  check_numbers("holm", ps, "p-values")
  alpha = alpha or 0.05
  check_alpha("holm", alpha)
  for i, p in ipairs(ps) do
    if not (p >= 0 and p <= 1) then
      error(string.format("cai.stats.holm: p-values[%d] must be in [0, 1], got %s", i, tostring(p)), 2)
    end
  end
  local m = #ps
  local order = {}
  for i = 1, m do order[i] = i end
  table.sort(order, function(x, y)
    if ps[x] ~= ps[y] then return ps[x] < ps[y] end
    return x < y
  end)
  local adjusted, rejected = {}, {}
  local running = 0
  for rank, i in ipairs(order) do
    running = math.max(running, math.min(1, (m - rank + 1) * ps[i]))
    adjusted[i] = running
  end
  for i = 1, m do rejected[i] = adjusted[i] <= alpha end
  return adjusted, rejected
end

---Cohen's h for two proportions (0.2 small, 0.5 medium, 0.8 large).
function stats.cohen_h(p1, p2)
  if type(p1) ~= "number" or type(p2) ~= "number" or p1 < 0 or p1 > 1 or p2 < 0 or p2 > 1 then
    error("cai.stats.cohen_h: p1 and p2 must be proportions in [0, 1]", 2)
  end
  return 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))
end

---Cohen's d of paired differences (mean / sd of a[i] - b[i]).
function stats.cohen_d_paired(a, b)
  check_numbers("cohen_d_paired", a, "a")
  check_numbers("cohen_d_paired", b, "b")
  if #a ~= #b or #a < 2 then error("cai.stats.cohen_d_paired: a and b need the same length >= 2", 2) end
  local d = {}
  for i = 1, #a do d[i] = a[i] - b[i] end
  local sd = stats.sd(d)
  if sd == 0 then return 0 end
  return stats.mean(d) / sd
end

---Wilson score interval for k successes out of n.
---@return number, number lo, hi
function stats.wilson(k, n, z)
  check_count("wilson", k, "k")
  check_count("wilson", n, "n")
  if k > n then error("cai.stats.wilson: k must be <= n", 2) end
  if n == 0 then return 0, 1 end
  z = z or 1.959963984540054
  if type(z) ~= "number" or not (z > 0) or z == math.huge then
    error("cai.stats.wilson: z must be a positive number, got " .. tostring(z), 2)
  end
  local p = k / n
  local denom = 1 + z * z / n
  local center = (p + z * z / (2 * n)) / denom
  local half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  local lo, hi = math.max(0, center - half), math.min(1, center + half)
  if k == 0 then lo = 0 end
  if k == n then hi = 1 end
  return lo, hi
end

local BOOTSTRAP_SPEC = {
  n = { type = "integer", min = 1 },  -- resamples
  alpha = { type = "number", gt = 0, lt = 1 },
  stat = "function", rng = "table|userdata", seed = "integer",
}

---Percentile bootstrap confidence interval of a statistic (default: the mean).
---@param values table list of numbers (booleans count as 1/0)
---@param opts table|nil { n = 2000, alpha = 0.05, stat = function(list) -> number, rng= or seed= }
---@return table { estimate=, lo=, hi=, n= }
function stats.bootstrap_ci(values, opts)
  check.value("cai.stats.bootstrap_ci", "values", values, "table")
  opts = check("cai.stats.bootstrap_ci", opts, BOOTSTRAP_SPEC)
  local xs = {}
  for i, v in ipairs(values) do
    if type(v) == "boolean" then xs[i] = v and 1 or 0
    elseif type(v) == "number" then xs[i] = v
    else error(string.format("cai.stats.bootstrap_ci: values[%d] must be a number or boolean", i), 2) end
  end
  local stat = opts.stat or stats.mean
  local reps = opts.n or 2000
  local alpha = opts.alpha or 0.05
  if #xs == 0 then return { estimate = nil, lo = nil, hi = nil, n = 0 } end
  local rng = opts.rng or require("cai").rng(opts.seed or 0)
  local results = {}
  local sample = {}
  local n = #xs
  for r = 1, reps do
    for i = 1, n do sample[i] = xs[rng:int(1, n)] end
    results[r] = stat(sample)
  end
  table.sort(results)
  return { estimate = stat(xs), lo = stats.quantile(results, alpha / 2), hi = stats.quantile(results, 1 - alpha / 2),
    n = n }
end

---Cohen's kappa: agreement of two raters on the same items beyond chance,
---(p_o - p_e) / (1 - p_e) with p_e from each rater's own label shares.
---Labels are strings (or numbers); both lists are in the same item order.
---When both raters always give one and the same label, p_e = 1 and kappa is
---1 (complete agreement); n = 0 gives kappa = nil.
---@param a table list of labels of rater 1
---@param b table list of labels of rater 2 (same length)
---@return table { kappa=, observed=, expected=, n= }
function stats.cohen_kappa(a, b)
  check.value("cai.stats.cohen_kappa", "a", a, { type = "list" })
  check.value("cai.stats.cohen_kappa", "b", b, { type = "list" })
  if #a ~= #b then
    error(string.format("cai.stats.cohen_kappa: a and b must have the same length, got %d and %d", #a, #b), 2)
  end
  for i = 1, #a do
    for _, pair in ipairs { { "a", a[i] }, { "b", b[i] } } do
      local t = type(pair[2])
      if t ~= "string" and t ~= "number" then
        error(string.format("cai.stats.cohen_kappa: %s[%d] must be a label (string or number), got %s", pair[1], i, t), 2)
      end
    end
  end
  local n = #a
  if n == 0 then return { n = 0 } end
  local agree, ca, cb = 0, {}, {}
  for i = 1, n do
    if a[i] == b[i] then agree = agree + 1 end
    ca[a[i]] = (ca[a[i]] or 0) + 1
    cb[b[i]] = (cb[b[i]] or 0) + 1
  end
  local po, pe = agree / n, 0
  for label, k in pairs(ca) do pe = pe + (k / n) * ((cb[label] or 0) / n) end
  local kappa = pe >= 1 and 1 or (po - pe) / (1 - pe)
  return { kappa = kappa, observed = po, expected = pe, n = n }
end

---Bradley-Terry strengths from pairwise games, fitted by Hunter's (2004)
---minorization-maximization updates. A tie counts half a win to each side.
---opts.prior (default 0.5) adds that many virtual ties between every pair of
---names, so a model that never won still gets a finite, non-zero strength.
---Strengths are shares that sum to 1: P(i beats j) = s_i / (s_i + s_j).
---@param names table list of the players' names
---@param games table list of { a=, b=, winner = a|b|"tie" }
---@param opts table|nil { prior = 0.5, iterations = 1000, tolerance = 1e-10 }
---@return table { strengths = { name -> share }, iterations = n, games = n }
function stats.bradley_terry(names, games, opts)
  check.value("cai.stats.bradley_terry", "names", names, { type = "list", items = "string" })
  check.value("cai.stats.bradley_terry", "games", games, { type = "list" })
  opts = check("cai.stats.bradley_terry", opts, { prior = { type = "number", min = 0 },
    iterations = { type = "integer", min = 1 }, tolerance = { type = "number", gt = 0 } })
  local index = {}
  for i, name in ipairs(names) do
    if index[name] then error("cai.stats.bradley_terry: names[" .. i .. "] '" .. name .. "' is repeated", 2) end
    index[name] = i
  end
  local m = #names
  local prior = opts.prior or 0.5
  -- w[i] = wins of i (ties half); n[i][j] = games between i and j.
  local w, n = {}, {}
  for i = 1, m do
    w[i], n[i] = 0, {}
    for j = 1, m do n[i][j] = (i ~= j) and 2 * prior or 0 end
    w[i] = prior * (m - 1)
  end
  for k, g in ipairs(games) do
    local i, j = type(g) == "table" and index[g.a], type(g) == "table" and index[g.b]
    if not i or not j or i == j then
      error(string.format("cai.stats.bradley_terry: games[%d] must be { a=, b=, winner= } with two different names "
        .. "from names", k), 2)
    end
    n[i][j], n[j][i] = n[i][j] + 1, n[j][i] + 1
    if g.winner == g.a then w[i] = w[i] + 1
    elseif g.winner == g.b then w[j] = w[j] + 1
    elseif g.winner == "tie" then w[i], w[j] = w[i] + 0.5, w[j] + 0.5
    else
      error(string.format("cai.stats.bradley_terry: games[%d].winner must be a, b or \"tie\", got %s", k,
        tostring(g.winner)), 2)
    end
  end
  local s = {}
  for i = 1, m do s[i] = 1 / m end
  local iterations, tolerance = 0, opts.tolerance or 1e-10
  for it = 1, opts.iterations or 1000 do
    iterations = it
    local next_s, total = {}, 0
    for i = 1, m do
      local denom = 0
      for j = 1, m do
        if j ~= i and n[i][j] > 0 then denom = denom + n[i][j] / (s[i] + s[j]) end
      end
      next_s[i] = denom > 0 and w[i] / denom or s[i]
      total = total + next_s[i]
    end
    local change = 0
    for i = 1, m do
      next_s[i] = total > 0 and next_s[i] / total or 1 / m
      change = math.max(change, math.abs(next_s[i] - s[i]))
    end
    s = next_s
    if change < tolerance then break end
  end
  local strengths = {}
  for i, name in ipairs(names) do strengths[name] = s[i] end
  return { strengths = strengths, iterations = iterations, games = #games }
end

return stats

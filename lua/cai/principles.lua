-- cai.principles: choosing which principles to apply, and counting usage.
--
--   local picked = cai.principles.sample(c.principles, 2, { rng = rng, strategy = "weighted" })
--
-- Strategies (opts.strategy):
--   "weighted"    (default) weighted random without replacement; weight 0 is never drawn
--   "uniform"     random without replacement, ignoring weights
--   "tag"         weighted among principles carrying any of opts.tags (required)
--   "relevance"   the principles whose keywords/tags occur in opts.prompt, best
--                 first (ties: higher weight, then file order); if fewer than n
--                 match, the rest is drawn weighted from the non-matching ones
--   "round_robin" the next n in file order, cycling; the cursor lives in opts.state
-- opts.tags also filters the pool for every other strategy. Random strategies
-- need opts.rng (a cai.rng) or opts.seed. At most n are returned (fewer when
-- the pool is smaller). opts.usage (id -> count) is incremented.
local principles = {}

local check = require "cai.check"

local SAMPLE_SPEC = {
  strategy = { type = "string", enum = { "weighted", "uniform", "tag", "relevance", "round_robin" } },
  rng = "table|userdata", seed = "integer", tags = { type = "list", items = "string" }, prompt = "string",
  state = "table", usage = "table",
}

local function has_any_tag(p, tags)
  for _, want in ipairs(tags) do
    for _, t in ipairs(p.tags or {}) do
      if t == want then return true end
    end
  end
  return false
end

local function escape_pattern(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

---How many of the principle's keywords and tags occur as words in the prompt.
---@param p table a principle
---@param prompt string
function principles.relevance(p, prompt)
  check.value("cai.principles.relevance", "principle", p, "table")
  check.value("cai.principles.relevance", "prompt", prompt, "string")
  local text = " " .. prompt:lower() .. " "
  local score = 0
  local seen = {}
  local function count(words)
    for _, w in ipairs(words or {}) do
      local kw = w:lower():gsub("[_-]", " ")
      if kw ~= "" and not seen[kw] then
        seen[kw] = true
        if text:find("%f[%w]" .. escape_pattern(kw) .. "%f[%W]") then score = score + 1 end
      end
    end
  end
  count(p.keywords)
  count(p.tags)
  return score
end

local function draw_weighted(pool, n, rng, use_weights, out)
  local weights = {}
  local total = 0
  for i, p in ipairs(pool) do
    weights[i] = use_weights and (p.weight or 1) or 1
    total = total + weights[i]
  end
  while #out < n and total > 0 do
    local i = rng:weighted(weights)
    out[#out + 1] = pool[i]
    total = total - weights[i]
    weights[i] = 0
  end
  return out
end

local function get_rng(opts, strategy)
  if opts.rng then return opts.rng end
  if opts.seed then return require("cai").rng(opts.seed) end
  error("cai.principles.sample: strategy '" .. strategy .. "' needs opts.rng (a cai.rng) or opts.seed", 3)
end

---Picks up to n principles from list (see header for strategies).
---@param list table principles (each with id, weight, tags, keywords)
---@param n integer
---@param opts table|nil { strategy=, rng=, seed=, tags=, prompt=, state=, usage= }
function principles.sample(list, n, opts)
  check.value("cai.principles.sample", "list", list, { type = "table", expect = "a table of principles" })
  check.value("cai.principles.sample", "n", n, { type = "integer", min = 1 })
  opts = check("cai.principles.sample", opts, SAMPLE_SPEC)
  local strategy = opts.strategy or "weighted"
  if strategy == "tag" and (not opts.tags or #opts.tags == 0) then
    error("cai.principles.sample: strategy 'tag' needs opts.tags", 2)
  end
  if strategy == "relevance" and type(opts.prompt) ~= "string" then
    error("cai.principles.sample: strategy 'relevance' needs opts.prompt (a string)", 2)
  end
  if strategy == "round_robin" and type(opts.state) ~= "table" then
    error("cai.principles.sample: strategy 'round_robin' needs opts.state (a table kept between calls)", 2)
  end

  local pool = {}
  for _, p in ipairs(list) do
    if not opts.tags or #opts.tags == 0 or has_any_tag(p, opts.tags) then pool[#pool + 1] = p end
  end

  local out = {}
  if strategy == "weighted" or strategy == "tag" then
    draw_weighted(pool, n, get_rng(opts, strategy), true, out)
  elseif strategy == "uniform" then
    draw_weighted(pool, n, get_rng(opts, strategy), false, out)
  elseif strategy == "relevance" then
    local scored, rest = {}, {}
    for i, p in ipairs(pool) do
      local s = principles.relevance(p, opts.prompt)
      if s > 0 then scored[#scored + 1] = { p = p, s = s, i = i } else rest[#rest + 1] = p end
    end
    table.sort(scored, function(a, b)
      if a.s ~= b.s then return a.s > b.s end
      if (a.p.weight or 1) ~= (b.p.weight or 1) then return (a.p.weight or 1) > (b.p.weight or 1) end
      return a.i < b.i
    end)
    for i = 1, math.min(n, #scored) do out[#out + 1] = scored[i].p end
    if #out < n and #rest > 0 then draw_weighted(rest, n, get_rng(opts, strategy), true, out) end
  else -- round_robin
    local state = opts.state
    local cursor = state.cursor or 0
    for _ = 1, math.min(n, #pool) do
      out[#out + 1] = pool[cursor % #pool + 1]
      cursor = cursor + 1
    end
    state.cursor = cursor
  end

  if opts.usage then
    for _, p in ipairs(out) do opts.usage[p.id] = (opts.usage[p.id] or 0) + 1 end
  end
  return out
end

---Ids of a list of principles.
function principles.ids(list)
  require("cai.check").value("cai.principles.ids", "list", list, "list")
  local ids = {}
  for i, p in ipairs(list) do ids[i] = p.id end
  return ids
end

---Usage counts as a sorted list { { id=, count=, share= } } (most used first,
---then by id) from an id -> count table.
---@param usage table
function principles.usage_report(usage)
  check.value("cai.principles.usage_report", "usage", usage, { type = "table", expect = "a table id -> count" })
  local rows, total = {}, 0
  for id, count in pairs(usage) do
    rows[#rows + 1] = { id = id, count = count }
    total = total + count
  end
  table.sort(rows, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.id < b.id
  end)
  for _, r in ipairs(rows) do r.share = total > 0 and r.count / total or 0 end
  return rows, total
end

return principles

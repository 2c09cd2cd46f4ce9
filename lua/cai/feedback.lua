-- cai.feedback: RL-CAI preference labels from a feedback model, as in the
-- Constitutional AI paper: the model reads a principle-conditioned question
-- "Which answer is more <principle>?" with two answers as (A) and (B), and
-- the normalised probabilities of its next words " (A)" and " (B)" are the
-- label.
--
--   local labels = cai.feedback.label(model, {
--     { instruction = "...", a = "...", b = "...", principle = p }, ... },
--     { templates = constitution.templates })
--   --> { { p_a = 0.93, p_ab = 0.95, p_ba = 0.91, confidence = 0.93, chosen = "a" }, ... }
--
-- Each pair is asked twice, in both orders, and the two probabilities that
-- `a` is better are averaged: a model that prefers whatever comes first
-- gets p_a = 0.5 (no information) instead of a confident label.
-- The question is cai.template's "feedback_comparison" (a constitution's
-- templates: section may override it); {principle} is the principle's title.
local template = require "cai.template"

local feedback = {}

---The feedback question for one ordering of two answers.
---@param principle table a principle (its title, else its id, names the quality)
---@param instruction string
---@param first string the answer shown as (A)
---@param second string the answer shown as (B)
---@param templates table|nil named template overrides
function feedback.prompt(principle, instruction, first, second, templates)
  if type(principle) ~= "table" then error("cai.feedback.prompt: principle must be a table", 2) end
  for name, v in pairs({ instruction = instruction, first = first, second = second }) do
    if type(v) ~= "string" then error("cai.feedback.prompt: " .. name .. " must be a string", 2) end
  end
  return template.render(template.get("feedback_comparison", templates), {
    principle = principle.title or principle.id, instruction = instruction, response_a = first,
    response_b = second })
end

local function softmax2(x, y)
  local m = math.max(x, y)
  local ex, ey = math.exp(x - m), math.exp(y - m)
  return ex / (ex + ey)
end

---Labels pairs with the feedback model (see header).
---@param model table anything with :logprobs(prompts, completions, opts)
---@param items table list of { instruction=, a=, b=, principle= }
---@param opts table|nil { templates=, use_lora = nil, batch_size = 8 }
---@return table list of { p_a, p_ab, p_ba, confidence, chosen = "a"|"b" }
function feedback.label(model, items, opts)
  if type(model) ~= "table" and type(model) ~= "userdata" then error("cai.feedback.label: model is required", 2) end
  if type(items) ~= "table" then error("cai.feedback.label: items must be a list", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("cai.feedback.label: opts must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "templates" and k ~= "use_lora" and k ~= "batch_size" then
      error("cai.feedback.label: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  local prompts, completions = {}, {}
  for i, it in ipairs(items) do
    if type(it) ~= "table" or type(it.instruction) ~= "string" or type(it.a) ~= "string" or type(it.b) ~= "string"
      or type(it.principle) ~= "table" then
      error("cai.feedback.label: items[" .. i .. "] must be { instruction=, a=, b=, principle= }", 2)
    end
    local ab = feedback.prompt(it.principle, it.instruction, it.a, it.b, opts.templates)
    local ba = feedback.prompt(it.principle, it.instruction, it.b, it.a, opts.templates)
    for _, p in ipairs({ ab, ab, ba, ba }) do prompts[#prompts + 1] = p end
    for _, c in ipairs({ " (A)", " (B)", " (A)", " (B)" }) do completions[#completions + 1] = c end
  end
  local out = {}
  if #items == 0 then return out end
  local lp = model:logprobs(prompts, completions, { use_lora = opts.use_lora, batch_size = opts.batch_size })
  for i = 1, #items do
    local k = 4 * (i - 1)
    local p_ab = softmax2(lp[k + 1].sum, lp[k + 2].sum)        -- P(a is better | a shown first)
    local p_ba = 1 - softmax2(lp[k + 3].sum, lp[k + 4].sum)    -- P(a is better | a shown second)
    local p_a = (p_ab + p_ba) / 2
    out[i] = { p_a = p_a, p_ab = p_ab, p_ba = p_ba, confidence = math.max(p_a, 1 - p_a),
      chosen = p_a >= 0.5 and "a" or "b" }
  end
  return out
end

return feedback

-- cai.negatives: rejected responses of five kinds, drawn to an exact mix.
--
--   local pairs, stats = cai.negatives.generate(items, { constitution = c, seed = 1 })
--
-- items: { instruction=, response= } with a good response (no END marker);
-- should_refuse = true marks a request the good response refuses: it never
-- gets an unwarranted_refusal negative (another type takes its slot).
-- The five Stage 1 types and default shares (30/25/20/15/10):
--   unwarranted_refusal  a refusal of a harmless request
--   format_violation     echoed instruction, stray labels, or running on into a new instruction without END
--   incorrect_factual    the response with a number, an antonym or a negation changed
--   off_topic            another item's response, or an unrelated paragraph
--   verbose_vague        filler and hedging around a vague version of the answer
-- The mix comes from opts.mix ({ { type=, weight= }, ... }), else the
-- constitution's `negatives:`, else the defaults. Counts are exact: n * share
-- rounded by largest remainder (ties go to the type listed first).
-- With opts.model, a share of each type (opts.model_share, default 1) is
-- written by the model in one batched generate call; a model output that is
-- empty or equal to the good response is replaced by the programmatic
-- transform and counted in stats.model_rejected (with a warning).
local check = require "cai.check"
local template = require "cai.template"

local negatives = {}

negatives.TYPES = { "unwarranted_refusal", "format_violation", "incorrect_factual", "off_topic", "verbose_vague" }
negatives.DEFAULT_MIX = {
  { type = "unwarranted_refusal", weight = 30 }, { type = "format_violation", weight = 25 },
  { type = "incorrect_factual", weight = 20 }, { type = "off_topic", weight = 15 },
  { type = "verbose_vague", weight = 10 },
}
local KNOWN = {}
for _, t in ipairs(negatives.TYPES) do KNOWN[t] = true end

local REFUSALS = {
  "I'm sorry, but I can't help with that request.",
  "I'm not able to provide an answer to that. Is there something else I can help you with?",
  "Unfortunately, I cannot assist with this request.",
  "As an AI language model, I am unable to help with \"{instruction}\".",
  "I apologize, but I must decline to answer this question.",
}
local OFF_TOPIC = {
  "The bicycle was developed in Europe in the nineteenth century, and early designs had no pedals at all. "
    .. "Riders pushed themselves along with their feet.",
  "Honeybees communicate the location of flowers to each other with a movement known as the waggle dance.",
  "Many people enjoy gardening in the spring, when the soil warms up and seeds germinate quickly.",
  "The Pacific Ocean is the largest and deepest of the world's oceans, covering about a third of the planet's surface.",
}
local OPENERS = {
  "That's a really interesting question, and there are many different ways to think about it.",
  "There are a lot of factors to consider here, and it really depends on a variety of things.",
  "This is something that people have many different opinions about, and it can be quite complex.",
  "Generally speaking, it's important to keep in mind that every situation is a little bit different.",
}
local CLOSERS = {
  "Ultimately, it depends on your particular circumstances and what you are looking for.",
  "In the end, there is no single answer that works for everyone, so it's worth considering all the options.",
  "Of course, there are many other aspects to take into account as well, and things can change over time.",
  "It's always a good idea to think carefully about it and look at it from different perspectives.",
}
local ANTONYMS = {
  { "true", "false" }, { "always", "never" }, { "increase", "decrease" }, { "increases", "decreases" },
  { "more", "less" }, { "larger", "smaller" }, { "largest", "smallest" }, { "higher", "lower" },
  { "highest", "lowest" }, { "before", "after" }, { "north", "south" }, { "east", "west" }, { "hot", "cold" },
  { "first", "last" }, { "above", "below" }, { "positive", "negative" }, { "faster", "slower" },
}
local COPULAS = { "is", "are", "was", "were", "can", "will" }

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- ------------------------------------------------------------------- mixing

local function check_mix(mix, fname)
  if type(mix) ~= "table" or #mix == 0 then error(fname .. ": mix must be a non-empty list of { type=, weight= }", 3) end
  local total = 0
  for i, m in ipairs(mix) do
    if type(m) ~= "table" or type(m.type) ~= "string" or type(m.weight) ~= "number" or m.weight < 0 then
      error(string.format("%s: mix[%d] must be { type = string, weight = number >= 0 }", fname, i), 3)
    end
    total = total + m.weight
  end
  if total <= 0 then error(fname .. ": the weights of the mix sum to 0", 3) end
  return total
end

---Exact counts per type for n items: floor(n * share), the remainder going
---to the largest fractional parts (ties: the type listed first).
---@param n integer
---@param mix table|nil list of { type=, weight= } (default: the Stage 1 mix)
---@return table type -> count
function negatives.counts(n, mix)
  if type(n) ~= "number" or n < 0 or n ~= math.floor(n) then
    error("cai.negatives.counts: n must be a non-negative integer", 2)
  end
  mix = mix or negatives.DEFAULT_MIX
  local total = check_mix(mix, "cai.negatives.counts")
  local counts, fracs, used = {}, {}, 0
  for i, m in ipairs(mix) do
    local exact = n * m.weight / total
    counts[m.type] = math.floor(exact + 1e-9)
    fracs[i] = { i = i, f = exact - counts[m.type] }
    used = used + counts[m.type]
  end
  table.sort(fracs, function(a, b)
    if math.abs(a.f - b.f) > 1e-9 then return a.f > b.f end
    return a.i < b.i
  end)
  for k = 1, n - used do
    local m = mix[fracs[k].i]
    counts[m.type] = counts[m.type] + 1
  end
  return counts
end

---A list of n type names with exact counts, in an order shuffled by rng.
function negatives.plan(n, mix, rng)
  mix = mix or negatives.DEFAULT_MIX
  local counts = negatives.counts(n, mix)
  local out = {}
  for _, m in ipairs(mix) do
    for _ = 1, counts[m.type] do out[#out + 1] = m.type end
  end
  if rng then rng:shuffle(out) end
  return out
end

-- --------------------------------------------------------------- transforms

local function render_refusal(t, item)
  return template.render(t, { instruction = item.instruction, response = item.response })
end

local function change_number(text, rng)
  local spans = {}
  for s, num, e in text:gmatch("()(%d+)()") do spans[#spans + 1] = { s = s, e = e, num = num } end
  if #spans == 0 then return nil end
  local sp = spans[rng:int(1, #spans)]
  local v = tonumber(sp.num)
  local new
  if #sp.num == 4 and v >= 1000 and v <= 2100 then new = v + (rng:int(0, 1) == 0 and -1 or 1) * rng:int(3, 40)
  elseif v <= 10 then new = v + rng:int(1, 5)
  else new = v + (rng:int(0, 1) == 0 and -1 or 1) * math.max(1, math.floor(v * (0.2 + 0.5 * rng:random()))) end
  if new < 0 then new = v + rng:int(1, 9) end
  if new == v then new = v + 1 end
  return text:sub(1, sp.s - 1) .. tostring(new) .. text:sub(sp.e)
end

local function swap_word(text, from, to)
  local pattern = "%f[%a]" .. from .. "%f[%A]"
  local s, e = text:lower():find(pattern)
  if not s then return nil end
  local word = text:sub(s, e)
  if word:sub(1, 1):match("%u") then to = to:sub(1, 1):upper() .. to:sub(2) end
  return text:sub(1, s - 1) .. to .. text:sub(e + 1)
end

local function change_fact(text, rng)
  local changed = change_number(text, rng)
  if changed then return changed, "number" end
  local candidates = {}
  for _, pair in ipairs(ANTONYMS) do
    if text:lower():find("%f[%a]" .. pair[1] .. "%f[%A]") then candidates[#candidates + 1] = { pair[1], pair[2] } end
    if text:lower():find("%f[%a]" .. pair[2] .. "%f[%A]") then candidates[#candidates + 1] = { pair[2], pair[1] } end
  end
  if #candidates > 0 then
    local c = candidates[rng:int(1, #candidates)]
    return swap_word(text, c[1], c[2]), "antonym"
  end
  for _, cop in ipairs(COPULAS) do
    local out = swap_word(text, cop, cop .. " not")
    if out then return out, "negation" end
  end
  return nil
end

---Whether a negative of this type fits this item: a refusal is no negative
---for an item that should be refused (item.should_refuse), and the
---programmatic transform must be able to change the item (opts.model_made:
---a model writes it, so only the first rule applies).
---@param opts table|nil { model_made = false }
function negatives.applicable(kind, item, opts)
  if kind == "unwarranted_refusal" and item.should_refuse == true then return false end
  if opts and opts.model_made then return true end
  if kind ~= "incorrect_factual" then return true end
  local text = item.response or ""
  if text:find("%d") then return true end
  local lower = text:lower()
  for _, pair in ipairs(ANTONYMS) do
    if lower:find("%f[%a]" .. pair[1] .. "%f[%A]") or lower:find("%f[%a]" .. pair[2] .. "%f[%A]") then return true end
  end
  for _, cop in ipairs(COPULAS) do
    if lower:find("%f[%a]" .. cop .. "%f[%A]") then return true end
  end
  return false
end

---Programmatic negative of one type.
---@param kind string one of negatives.TYPES
---@param item table { instruction=, response=, others = {responses of other items}, other_instructions = {...} }
---@param rng table a cai.rng
---@param opts table|nil { templates = list of refusal/off-topic templates, format = "instruction"|"raw" }
---@return table|nil { text=, variant=, keep_end=bool } or nil, reason
function negatives.transform(kind, item, rng, opts)
  if not KNOWN[kind] then error("cai.negatives.transform: unknown negative type '" .. tostring(kind) .. "'", 2) end
  if type(item) ~= "table" or type(item.instruction) ~= "string" or type(item.response) ~= "string" then
    error("cai.negatives.transform: item must be { instruction = string, response = string }", 2)
  end
  if not rng then error("cai.negatives.transform: rng is required", 2) end
  opts = opts or {}
  local response = trim(item.response)
  if kind == "unwarranted_refusal" then
    local pool = (opts.templates and #opts.templates > 0) and opts.templates or REFUSALS
    return { text = render_refusal(pool[rng:int(1, #pool)], item), variant = "template", keep_end = true }
  elseif kind == "format_violation" then
    local variants = { "echo_instruction", "run_on", "artifacts" }
    if opts.format ~= "raw" then variants[#variants + 1] = "missing_end" end
    local v = variants[rng:int(1, #variants)]
    if v == "echo_instruction" then
      return { text = "Instruction: " .. item.instruction .. "\nResponse: " .. response, variant = v, keep_end = true }
    elseif v == "run_on" then
      local others = item.other_instructions or {}
      local next_instruction = #others > 0 and others[rng:int(1, #others)] or "Tell me more."
      return { text = response .. "\n\nInstruction: " .. next_instruction .. "\nResponse:", variant = v, keep_end = false }
    elseif v == "artifacts" then
      return { text = "### Response:\n" .. response .. "\n\n### End of response\n<|endoftext|>", variant = v, keep_end = false }
    else
      return { text = response, variant = v, keep_end = false }
    end
  elseif kind == "incorrect_factual" then
    local text, variant = change_fact(response, rng)
    if not text then return nil, "nothing to change (no number, antonym or verb to negate)" end
    return { text = text, variant = variant, keep_end = true }
  elseif kind == "off_topic" then
    local others = {}
    for _, o in ipairs(item.others or {}) do
      if trim(o) ~= response and trim(o) ~= "" then others[#others + 1] = o end
    end
    if #others > 0 then
      return { text = trim(others[rng:int(1, #others)]), variant = "other_response", keep_end = true }
    end
    local pool = (opts.templates and #opts.templates > 0) and opts.templates or OFF_TOPIC
    return { text = render_refusal(pool[rng:int(1, #pool)], item), variant = "canned", keep_end = true }
  else -- verbose_vague
    local first = response:match("^(.-[%.!%?])%s") or response
    local vague = first:gsub("%d+", "some"):gsub("%f[%a]exactly%f[%A]", "roughly")
    local parts = { OPENERS[rng:int(1, #OPENERS)], OPENERS[rng:int(1, #OPENERS)],
      "In some ways, " .. vague:sub(1, 1):lower() .. vague:sub(2), CLOSERS[rng:int(1, #CLOSERS)],
      CLOSERS[rng:int(1, #CLOSERS)] }
    local out, seen = {}, {}
    for _, p in ipairs(parts) do
      if not seen[p] then seen[p] = true; out[#out + 1] = p end
    end
    return { text = table.concat(out, " "), variant = "padded", keep_end = true }
  end
end

---The prompt asking a model for a negative of this type.
function negatives.model_prompt(kind, item, templates)
  if not KNOWN[kind] then error("cai.negatives.model_prompt: unknown negative type '" .. tostring(kind) .. "'", 2) end
  return template.render(template.get("negative_" .. kind, templates),
    { instruction = item.instruction, response = item.response })
end

-- ------------------------------------------------------------------ generate

local GENERATE_SPEC = { mix = "table", constitution = "table", seed = "integer", rng = "table|userdata",
  model = "table|userdata", model_share = { type = "number", min = 0, max = 1 }, generate = "table",
  format = { type = "string", enum = { "instruction", "raw" } }, end_marker = "string", templates = "table" }

---Makes one preference pair per item, with the rejected side drawn to the
---exact mix (see header).
---@param items table list of { instruction=, response= }
---@param opts table|nil { mix=, constitution=, seed=0, rng=, model=, model_share=1, generate=,
---  format="instruction"|"raw", end_marker="\nEND", templates= }
---@return table pairs { prompt, chosen, rejected, instruction, negative_type, negative_variant, source }, table stats
function negatives.generate(items, opts)
  check.value("cai.negatives.generate", "items", items, "table")
  opts = check("cai.negatives.generate", opts, GENERATE_SPEC)
  for i, it in ipairs(items) do
    if type(it) ~= "table" or type(it.instruction) ~= "string" or type(it.response) ~= "string" then
      error("cai.negatives.generate: items[" .. i .. "] must be { instruction = string, response = string }", 2)
    end
  end
  local c = opts.constitution
  local mix = opts.mix
  if not mix and c and c.negative_order and #c.negative_order > 0 then mix = c:negative_mix() end
  mix = mix or negatives.DEFAULT_MIX
  check_mix(mix, "cai.negatives.generate")
  local type_templates = {}
  for _, m in ipairs(mix) do
    local entry = c and c.negatives and c.negatives[m.type]
    type_templates[m.type] = entry and entry.templates or nil
    if not KNOWN[m.type] and not (entry and ((entry.templates and #entry.templates > 0) or entry.prompt)) then
      error("cai.negatives.generate: negative type '" .. m.type .. "' is not built in; give it templates or a prompt "
        .. "in the constitution", 2)
    end
  end
  local templates = opts.templates or (c and c.templates) or {}
  local format = opts.format or "instruction"
  local end_marker = opts.end_marker or ("\n" .. template.END)
  local rng = opts.rng or require("cai").rng(opts.seed or 0)

  local n = #items
  local plan = negatives.plan(n, mix, rng)

  -- Model-made share per type: the first round(share * count) slots of each type.
  local model_slot = {}
  if opts.model then
    local share = opts.model_share or 1
    local counts = negatives.counts(n, mix)
    local taken = {}
    for i, kind in ipairs(plan) do
      taken[kind] = (taken[kind] or 0) + 1
      if taken[kind] <= math.floor(share * counts[kind] + 0.5) then model_slot[i] = true end
    end
  end

  -- Keep the mix exact: an item a type does not fit (a refusal for an item
  -- that should be refused, a transform with nothing to change) swaps its
  -- type with an item that can take it, among slots of the same source (so
  -- each type's model-made share stays as planned).
  local function fits(kind, i)
    return not KNOWN[kind] or negatives.applicable(kind, items[i], { model_made = model_slot[i] })
  end
  for i, kind in ipairs(plan) do
    if not fits(kind, i) then
      local swapped = false
      for j = 1, n do
        if j ~= i and plan[j] ~= kind and not model_slot[j] == not model_slot[i] and fits(kind, j)
          and fits(plan[j], i) then
          plan[i], plan[j] = plan[j], plan[i]
          swapped = true
          break
        end
      end
      if not swapped then
        local why = kind == "unwarranted_refusal" and items[i].should_refuse == true
          and "should be refused, so a refusal is no negative for it,"
          or "has nothing a programmatic " .. kind .. " transform can change"
        error(string.format("cai.negatives.generate: items[%d] %s and no other item can swap with it; pass model= "
          .. "for model-prompted negatives or change the mix", i, why), 2)
      end
    end
  end

  local instructions, responses = {}, {}
  for i, it in ipairs(items) do instructions[i], responses[i] = it.instruction, it.response end
  local function context(i)
    local others, other_instr = {}, {}
    for j = 1, n do
      if j ~= i then others[#others + 1] = responses[j]; other_instr[#other_instr + 1] = instructions[j] end
    end
    return { instruction = instructions[i], response = responses[i], others = others, other_instructions = other_instr }
  end

  local results = {}
  local stats = { total = n, by_type = {}, by_source = { programmatic = 0, model = 0 }, model_rejected = 0 }
  local model_idx, model_prompts = {}, {}
  for i = 1, n do
    if model_slot[i] then
      model_idx[#model_idx + 1] = i
      local entry = c and c.negatives and c.negatives[plan[i]]
      local prompt_t = entry and entry.prompt
      model_prompts[#model_prompts + 1] = prompt_t
        and template.render(prompt_t, { instruction = instructions[i], response = responses[i] })
        or negatives.model_prompt(plan[i], items[i], templates)
    end
  end
  if #model_idx > 0 then
    local gen = { temperature = 0.9, max_new_tokens = 300, seed = opts.seed or 0, stop = template.stop }
    for k, v in pairs(opts.generate or {}) do gen[k] = v end
    if gen.progress == nil or gen.progress == true then gen.progress = "negatives" end
    local out = opts.model:generate(model_prompts, gen)
    if type(out) ~= "table" or #out ~= #model_prompts then
      error("cai.negatives.generate: model:generate returned the wrong number of results", 2)
    end
    for k, i in ipairs(model_idx) do
      local text = type(out[k]) == "table" and type(out[k].text) == "string" and (template.strip_end(out[k].text)) or ""
      if text ~= "" and trim(text) ~= trim(responses[i]) then
        results[i] = { text = text, variant = "model", keep_end = plan[i] ~= "format_violation", source = "model" }
      else
        stats.model_rejected = stats.model_rejected + 1
      end
    end
    if stats.model_rejected > 0 then
      require("cai").log.warn(string.format("negatives: %d model-written negatives were empty or equal to the good "
        .. "response; used the programmatic transform for them", stats.model_rejected))
    end
  end

  local pairs_out = {}
  for i = 1, n do
    local kind = plan[i]
    local r = results[i]
    if not r then
      if KNOWN[kind] then
        local err
        r, err = negatives.transform(kind, context(i), rng, { templates = type_templates[kind], format = format })
        if not r then
          error(string.format("cai.negatives.generate: items[%d]: %s: %s", i, kind, err), 2)
        end
      else
        local pool = type_templates[kind]
        r = { text = render_refusal(pool[rng:int(1, #pool)], items[i]), variant = "template", keep_end = true }
      end
      r.source = "programmatic"
    end
    local prompt, chosen, rejected
    if format == "instruction" then
      prompt = template.render(template.get("instruction", templates), { instruction = instructions[i] })
      chosen = " " .. trim(responses[i]) .. end_marker
      rejected = " " .. trim(r.text) .. (r.keep_end and end_marker or "")
    else
      prompt, chosen, rejected = instructions[i], trim(responses[i]), trim(r.text)
    end
    pairs_out[i] = { prompt = prompt, chosen = chosen, rejected = rejected, instruction = instructions[i],
      negative_type = kind, negative_variant = r.variant, source = r.source }
    stats.by_type[kind] = (stats.by_type[kind] or 0) + 1
    stats.by_source[r.source] = (stats.by_source[r.source] or 0) + 1
  end
  return pairs_out, stats
end

return negatives

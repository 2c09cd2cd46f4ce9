-- cai.critique: answer -> critique -> revision, for N rounds, in batches.
--
--   local records, stats = cai.critique.run(model, items, {
--     constitution = c, rounds = 1, per_round = 1, seed = 42, mode = "combined" })
--
-- items are instruction strings or { instruction=, answer= }; items without
-- an answer get one first (one batched generate). Each round picks principles per item, builds every prompt, and
-- calls model:generate once for all items ("combined": one call that writes
-- "Critique: ... Revision: ..."; "two_step": a critique call then a revision
-- call, in the style of the Constitutional AI paper).
--
-- A revision is not used (the answer stays as it was) when it says
-- KEEP_ORIGINAL, is meta-commentary ("I could...", "Here is a revised
-- response"), is shorter than min_words words, or cannot be parsed; the
-- outcome of every round is recorded.
--
-- opts.format: "auto" (the default) talks to a model whose tokenizer has a
-- chat template in that template: answers are generated for the
-- instruction as a user turn, and each critique/revision prompt is sent as
-- one user turn with the generation prompt after it; the turn ends at EOS.
-- Otherwise (or with format = "instruction") answers use the
-- Instruction/Response format and prompts are sent as plain text. A
-- cai.format object is taken as it is (with its chat_template_kwargs).
--
-- Records follow the CAI format:
--   { instruction, initial_answer, principle, principle_ids, critique,
--     revised_answer, rounds, changed, outcomes, history, preference_pair }
local check = require "cai.check"
local template = require "cai.template"
local principles_mod = require "cai.principles"

local critique = {}

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- ------------------------------------------------------------------ parsing

-- Markers after which a model has left the revision and gone on to imitate
-- the prompt (a new example, a new question, the END of the format).
local CUT_MARKERS = {
  "\noriginal question:", "\noriginal response:", "\ncritique:", "\ncritique request:", "\nrevision request:",
  "\nhuman:", "\nassistant:", "\ninstruction:", "\nexample ", "\n---", "\nend\n",
}

local function cut_continuation(text)
  local lower = text:lower()
  local cut = #text + 1
  for _, m in ipairs(CUT_MARKERS) do
    local s = lower:find(m, 1, true)
    if s and s < cut then cut = s end
  end
  local body = text:sub(1, cut - 1)
  if body:lower():match("\nend%s*$") then body = body:gsub("\n[Ee][Nn][Dd]%s*$", "") end
  return body
end

-- Finds a label ("critique", "revision") at the start of the text or of a
-- line, allowing markdown bold; returns start and the position after ':'.
local function find_label(lower, names, from)
  local best_s, best_e
  for _, name in ipairs(names) do
    local init = from or 1
    while true do
      local s, e = lower:find("%**" .. name .. "%**%s*:%**", init)
      if not s then break end
      local before = s == 1 and "\n" or lower:sub(s - 1, s - 1)
      if before == "\n" or (s <= (from or 1) + 1) then
        if not best_s or s < best_s then best_s, best_e = s, e end
        break
      end
      init = e + 1
    end
  end
  return best_s, best_e
end

---Parses "Critique: ... Revision: ..." output (labels in any case, with or
---without markdown bold, the leading "Critique:" optional).
---@param text string
---@return table { critique=, revision= (nil when absent), keep_original=bool }
function critique.parse(text)
  check.value("cai.critique.parse", "text", text, "string")
  local t = text:gsub("\r\n", "\n")
  local lower = t:lower()
  local rs, re = find_label(lower, { "revision", "revised response", "revised answer" })
  local cs, ce = find_label(lower, { "critique" })
  local crit, rev
  if rs then
    if cs and cs < rs then crit = t:sub(ce + 1, rs - 1) else crit = t:sub(1, rs - 1) end
    rev = t:sub(re + 1)
  else
    crit = cs and t:sub(ce + 1) or t
  end
  crit = trim(cut_continuation(crit)):gsub("^%**[Cc]ritique%**%s*:%**%s*", "")
  local out = { critique = crit, keep_original = false }
  if rev then
    rev = trim(cut_continuation(rev))
    rev = rev:gsub('^"(.*)"$', "%1")
    local up = rev:upper()
    if up:find("KEEP_ORIGINAL", 1, true) or up:find("^KEEP ORIGINAL") then
      out.keep_original = true
    else
      out.revision = rev
    end
  end
  return out
end

---Cleans a revision written by a separate call (two_step mode).
function critique.clean(text)
  check.value("cai.critique.clean", "text", text, "string")
  return trim(cut_continuation(text:gsub("\r\n", "\n")))
end

-- Lower-case Lua patterns matched at the start of a revision.
local META_START = {
  "^i could ", "^i would ", "^i should ", "^i might ", "^i will revise", "^i have revised", "^i've revised",
  "^i revised", "^i rewrote", "^i have rewritten", "^i've rewritten", "^i changed", "^i removed", "^i added",
  "^the response should", "^the response could", "^the response would", "^the answer should",
  "^the answer could", "^the answer would", "^the assistant should", "^the assistant's response",
  "^this response", "^this answer", "^this revision", "^instead of ", "^rather than ",
  "^a better response would", "^a better answer would", "^here is a revised", "^here's a revised",
  "^here is the revised", "^here's the revised", "^here is an improved", "^here's an improved",
  "^here is a better", "^here's a better", "^here is a rewritten", "^revised response", "^the revised response",
  "^in this revision", "^to improve the response", "^the original response", "^my revision",
}
-- Helpful openings that look like "I would ..." but answer the question.
local META_EXCEPTIONS = {
  "^i would recommend", "^i would suggest", "^i would advise", "^i would be happy", "^i would love",
  "^i would be glad", "^i would start", "^i would like to help", "^i could help you", "^i could suggest",
  "^i should mention", "^i should note",
}
-- Phrases that mark meta-commentary anywhere in the first 200 characters.
local META_ANYWHERE = { "the original response", "the revised response", "this revised response", "revised version:" }

---Whether a revision describes changes instead of being the answer.
---Returns the matched phrase, or nil.
---@param text string
function critique.meta_commentary(text)
  check.value("cai.critique.meta_commentary", "text", text, "string")
  local head = trim(text):sub(1, 200):lower():gsub('^[%*"\'%s]+', "")
  for _, p in ipairs(META_EXCEPTIONS) do
    if head:find(p) then return nil end
  end
  for _, p in ipairs(META_START) do
    if head:find(p) then return (p:gsub("^%^", ""):gsub("%s+$", "")) end
  end
  for _, p in ipairs(META_ANYWHERE) do
    if head:find(p, 1, true) then return p end
  end
  return nil
end

local function word_count(s)
  local n = 0
  for _ in s:gmatch("%S+") do n = n + 1 end
  return n
end

---Decides what a parsed round does to the answer.
---@return string outcome, string|nil new_answer
---  outcome: "revised", "keep_original", "meta_commentary", "too_short", "unparsed", "unchanged"
function critique.judge_revision(parsed, answer, min_words)
  if parsed.keep_original then return "keep_original", nil end
  local rev = parsed.revision
  if not rev or rev == "" then return "unparsed", nil end
  if critique.meta_commentary(rev) then return "meta_commentary", nil end
  if word_count(rev) < (min_words or 5) then return "too_short", nil end
  if trim(rev) == trim(answer) then return "unchanged", nil end
  return "revised", rev
end

-- ------------------------------------------------------------------ prompts

local function bullet_principles(list)
  local lines = {}
  for _, p in ipairs(list) do lines[#lines + 1] = "- " .. (p.title or p.id) .. ": " .. trim(p.critique) end
  return table.concat(lines, "\n")
end

local function join_field(list, field)
  local parts = {}
  for _, p in ipairs(list) do parts[#parts + 1] = trim(p[field]) end
  return table.concat(parts, " ")
end

local function examples_text(list, name, templates, max_examples, extra)
  local parts = {}
  for _, p in ipairs(list) do
    for _, ex in ipairs(p.examples or {}) do
      if #parts >= max_examples then break end
      local vars = { prompt = ex.prompt, response = ex.response, critique = ex.critique, revision = ex.revision,
        critique_request = trim(p.critique), revision_request = trim(p.revision) }
      for k, v in pairs(extra or {}) do vars[k] = v end
      parts[#parts + 1] = template.render(template.get(name, templates), vars)
    end
  end
  if #parts > 0 and name == "example_combined" then return "Examples:\n\n" .. table.concat(parts) end
  return table.concat(parts)
end

---The prompt for one combined critique+revision call.
---@param instruction string
---@param answer string
---@param picked table list of principles
---@param opts table|nil { templates=, few_shot = 3 }
function critique.combined_prompt(instruction, answer, picked, opts)
  opts = opts or {}
  return template.render(template.get("critique_combined", opts.templates), {
    principles = bullet_principles(picked),
    revision_request = join_field(picked, "revision"),
    examples = examples_text(picked, "example_combined", opts.templates, opts.few_shot or 3),
    instruction = instruction,
    response = answer,
  })
end

---The critique prompt of the two-step mode.
function critique.critique_prompt(instruction, answer, picked, opts)
  opts = opts or {}
  return template.render(template.get("critique_step", opts.templates), {
    examples = examples_text(picked, "example_step", opts.templates, opts.few_shot or 3),
    instruction = instruction, response = answer,
    critique_request = join_field(picked, "critique"),
  })
end

---The revision prompt of the two-step mode.
function critique.revision_prompt(instruction, answer, picked, critique_text, opts)
  opts = opts or {}
  return template.render(template.get("revision_step", opts.templates), {
    examples = examples_text(picked, "example_step", opts.templates, opts.few_shot or 3),
    instruction = instruction, response = answer, critique = critique_text,
    critique_request = join_field(picked, "critique"),
    revision_request = join_field(picked, "revision"),
  })
end

-- --------------------------------------------------------------------- run

-- The outcomes a retry asks again for: the critic wrote no usable revision.
local RETRIED = { unparsed = true, too_short = true, meta_commentary = true }

local RUN_SPEC = {
  constitution = "table", principles = "table", rounds = { type = "integer", min = 1 },
  per_round = { type = "integer", min = 1 }, strategy = "string", tags = "table",
  seed = "integer", rng = "table|userdata", mode = { type = "string", enum = { "combined", "two_step" } },
  generate = "table", answer_generate = "table", min_words = "number",
  few_shot = "integer", templates = "table", first_index = { type = "integer", min = 0 },
  retries = { type = "integer", min = 0 },
  answer_model = { type = "table|userdata", expect = "a model" },
  format = { type = "string|table", expect = '"auto", "chat", "instruction" or a cai.format',
    check = function(v)
      if type(v) == "string" and v ~= "auto" and v ~= "chat" and v ~= "instruction" then
        return 'must be "auto", "chat", "instruction" or a cai.format, got ' .. string.format("%q", v)
      end
    end },
}

-- The cai.format to talk to the model in, or nil for plain text prompts.
local function chat_format_of(model, f)
  if type(f) == "table" then return f.name == "chat" and f or nil end
  if f == "instruction" then return nil end
  local ok, tok = pcall(function() return model.tokenizer end)
  if not ok then tok = nil end
  if f == nil or f == "auto" then
    if tok == nil or not require("cai.data").has_chat_template(tok) then return nil end
  end
  local made, fmt = pcall(require("cai.format").new, tok, "chat")
  if not made then error("cai.critique.run: " .. tostring(fmt), 3) end
  return fmt
end

local function merged(defaults, overrides)
  local out = {}
  for k, v in pairs(defaults) do out[k] = v end
  for k, v in pairs(overrides or {}) do out[k] = v end
  return out
end

-- The options with the progress bar named after what is generated ("generate: critiques 40/100"),
-- unless the caller turned it off or named it.
local function labelled(gen_opts, label)
  if gen_opts.progress ~= nil and gen_opts.progress ~= true then return gen_opts end
  local out = {}
  for k, v in pairs(gen_opts) do out[k] = v end
  out.progress = label
  return out
end

local function call_generate(model, prompts, gen_opts, label)
  local results = model:generate(prompts, label and labelled(gen_opts, label) or gen_opts)
  if type(results) ~= "table" or #results ~= #prompts then
    error(string.format("cai.critique.run: model:generate returned %s results for %d prompts",
      type(results) == "table" and tostring(#results) or type(results), #prompts), 3)
  end
  local texts = {}
  for i, r in ipairs(results) do
    if type(r) ~= "table" or type(r.text) ~= "string" then
      error("cai.critique.run: model:generate result " .. i .. " has no text", 3)
    end
    texts[i] = r.text
  end
  return texts
end

---Runs the critique/revision loop over items (see header).
---@param model table with :generate(prompts, opts)
---@param items table list of strings or { instruction=, answer= }
---@param opts table { constitution= or principles=, rounds=1, per_round=1, strategy="weighted", tags=,
---  seed=0, rng=, mode="combined"|"two_step", generate={...}, answer_generate={...}, min_words=5,
---  few_shot=3, templates=, first_index=, format="auto"|"chat"|"instruction"|cai.format, retries=0,
---  answer_model= }
--- answer_model (default: model) answers the items that come without an
--- answer; model critiques and revises (a separate critic, as in the paper's
--- feedback model, or the policy itself).
--- retries: a round whose revision is refused as unparsed, too short or
--- meta-commentary asks the same question again, up to this many times, each
--- attempt a fresh draw from the item's own stream, 0.2 hotter than the one
--- before (up to temperature 1; a peaked critic repeats itself at a low
--- temperature) (history[round].retries counts them; stats.retries sums them).
--- first_index (0-based position of items[1] in a longer list) gives every item
--- its own principle draws and sampling streams, so a list done in chunks
--- (cai.stage) gives the same records as done at once.
---@return table records, table stats
function critique.run(model, items, opts)
  check.value("cai.critique.run", "model", model, { type = "table|userdata", expect = "a model" })
  check.value("cai.critique.run", "items", items, "table")
  opts = check("cai.critique.run", opts, RUN_SPEC)
  local c = opts.constitution
  local list = opts.principles or (c and c.principles)
  if type(list) ~= "table" or #list == 0 then
    error("cai.critique.run: needs opts.constitution or a non-empty opts.principles list", 2)
  end
  local mode = opts.mode or "combined"
  local rounds = opts.rounds or 1
  local per_round = opts.per_round or 1
  local seed = opts.seed or 0
  local rng = opts.rng or require("cai").rng(seed)
  local first_index = opts.first_index
  local item_rngs = {}  -- with first_index: one stream per item, from its position in the whole list
  if first_index then
    for i = 1, #items do item_rngs[i] = rng:derive(first_index + i) end
  end
  local templates = opts.templates or (c and c.templates) or {}
  local prompt_opts = { templates = templates, few_shot = opts.few_shot }
  local chat = chat_format_of(model, opts.format)
  -- A critique/revision prompt as sent: one user turn in chat format.
  local function as_sent(prompts)
    if not chat then return prompts end
    return chat:prompts(prompts)
  end
  local gen = merged({ temperature = 0.3, max_new_tokens = 300 }, opts.generate)
  local usage = {}
  local state = {}

  -- Normalise items; answer those without an answer in one batch.
  local work = {}
  local need, need_prompts = {}, {}
  for i, it in ipairs(items) do
    local w
    if type(it) == "string" then w = { instruction = it }
    elseif type(it) == "table" and type(it.instruction) == "string" then
      w = { instruction = it.instruction, answer = it.answer or it.initial_answer, source = it }
    else
      error("cai.critique.run: items[" .. i .. "] must be a string or { instruction=, answer= }", 2)
    end
    if w.answer ~= nil and type(w.answer) ~= "string" then error("cai.critique.run: items[" .. i .. "].answer must be a string", 2) end
    work[i] = w
    if not w.answer then
      need[#need + 1] = i
      need_prompts[#need_prompts + 1] = chat and chat:prompt(w.instruction)
        or template.render(template.get("instruction", templates), { instruction = w.instruction })
    end
  end
  if #need > 0 then
    local answer_gen = merged({ temperature = 0.7, max_new_tokens = 500, stop = (not chat) and template.stop or nil,
      seed = seed }, opts.answer_generate)
    if first_index then
      if #need ~= #work then
        error("cai.critique.run: with first_index, give every item an answer or none (streams follow item positions)", 2)
      end
      answer_gen.first_index = first_index
    end
    local texts = call_generate(opts.answer_model or model, need_prompts, answer_gen, "answers")
    for k, i in ipairs(need) do
      work[i].answer = chat and chat:response(texts[k]) or (template.strip_end(texts[k]))
    end
  end
  for _, w in ipairs(work) do
    w.initial = w.answer
    w.current = w.answer
    w.history, w.ids, w.seen_ids, w.outcomes = {}, {}, {}, {}
  end

  local counts = { revised = 0, keep_original = 0, meta_commentary = 0, too_short = 0, unparsed = 0, unchanged = 0 }
  local retried = 0
  for round = 1, rounds do
    local picked = {}
    for i, w in ipairs(work) do
      picked[i] = principles_mod.sample(list, per_round, { strategy = opts.strategy or "weighted", rng = item_rngs[i] or rng,
        tags = opts.tags, prompt = w.instruction, state = state, usage = usage })
      if #picked[i] == 0 then error("cai.critique.run: no principle could be selected (all weights 0 or no tag match?)", 2) end
    end
    -- The critique (and revision) of the items at positions idx, sampled with
    -- gen_opts from each item's own stream: critiques and parsed, by position.
    local function ask(idx, gen_opts)
      local critiques, parsed = {}, {}
      local g
      if #idx == #work then
        g = merged(gen_opts, { first_index = first_index })
      else  -- a subset keeps each item's stream of the whole list
        local streams = {}
        for k, i in ipairs(idx) do streams[k] = (first_index or 0) + i - 1 end
        g = merged(gen_opts, { streams = streams })
      end
      if mode == "combined" then
        local prompts = {}
        for k, i in ipairs(idx) do
          prompts[k] = critique.combined_prompt(work[i].instruction, work[i].current, picked[i], prompt_opts)
        end
        g.stop = g.stop or { "\nOriginal Question:", "\nExample" }
        local texts = call_generate(model, as_sent(prompts), g, "critiques")
        for k, i in ipairs(idx) do
          -- The prompt ends with "Critique:"; a chat reply may repeat the label.
          local text = texts[k]
          if not (chat and text:match("^%s*%**[Cc]ritique%**%s*:")) then text = "Critique: " .. text end
          parsed[i] = critique.parse(text)
          critiques[i] = parsed[i].critique
        end
      else
        local prompts = {}
        for k, i in ipairs(idx) do
          prompts[k] = critique.critique_prompt(work[i].instruction, work[i].current, picked[i], prompt_opts)
        end
        local cgen = merged(g, { stop = g.stop or { "\nRevision Request:", "\nHuman:", "\n---" } })
        local texts = call_generate(model, as_sent(prompts), cgen, "critiques")
        local rprompts = {}
        for k, i in ipairs(idx) do
          critiques[i] = critique.clean(texts[k])
          rprompts[k] = critique.revision_prompt(work[i].instruction, work[i].current, picked[i], critiques[i],
            prompt_opts)
        end
        local rgen = merged(g, { stop = g.stop or { "\nHuman:", "\nCritique Request:", "\n---" } })
        local rtexts = call_generate(model, as_sent(rprompts), rgen, "revisions")
        for k, i in ipairs(idx) do
          local rev = critique.clean(rtexts[k])
          local up = rev:upper()
          parsed[i] = { critique = critiques[i], revision = rev,
            keep_original = up:find("KEEP_ORIGINAL", 1, true) ~= nil }
        end
      end
      return critiques, parsed
    end
    local all = {}
    for i = 1, #work do all[i] = i end
    local critiques, parsed = ask(all, merged(gen, { seed = seed + round }))
    local tries = {}
    for attempt = 1, opts.retries or 0 do
      local again = {}
      for i, w in ipairs(work) do
        if RETRIED[(critique.judge_revision(parsed[i], w.current, opts.min_words))] then again[#again + 1] = i end
      end
      if #again == 0 then break end
      -- A peaked critic repeats itself at a low temperature: each attempt samples hotter.
      local hotter = math.min(1.0, math.max(gen.temperature or 0, 0) + 0.2 * attempt)
      local c2, p2 = ask(again, merged(gen, { seed = seed + round + 1000 * attempt, temperature = hotter }))
      for _, i in ipairs(again) do
        critiques[i], parsed[i], tries[i] = c2[i], p2[i], attempt
        retried = retried + 1
      end
    end
    for i, w in ipairs(work) do
      local outcome, new = critique.judge_revision(parsed[i], w.current, opts.min_words)
      counts[outcome] = counts[outcome] + 1
      local ids = principles_mod.ids(picked[i])
      for _, id in ipairs(ids) do
        if not w.seen_ids[id] then w.seen_ids[id] = true; w.ids[#w.ids + 1] = id end
      end
      w.history[round] = { round = round, principle_ids = ids, critique = critiques[i],
        revision = parsed[i].revision, outcome = outcome, retries = tries[i] }
      w.outcomes[round] = outcome
      w.last_critique = critiques[i]
      w.titles = w.titles or {}
      for _, p in ipairs(picked[i]) do w.titles[#w.titles + 1] = p.title or p.id end
      if new then w.current = new end
    end
  end

  local records = {}
  local changed = 0
  for i, w in ipairs(work) do
    local is_changed = trim(w.current) ~= trim(w.initial)
    if is_changed then changed = changed + 1 end
    records[i] = {
      instruction = w.instruction,
      initial_answer = w.initial,
      principle = table.concat(w.titles or {}, "; "),
      principle_ids = w.ids,
      critique = w.last_critique,
      revised_answer = w.current,
      rounds = rounds,
      changed = is_changed,
      outcomes = w.outcomes,
      history = w.history,
      preference_pair = { prompt = w.instruction, chosen = w.current, rejected = w.initial },
    }
  end
  return records, { items = #work, rounds = rounds, outcomes = counts, changed = changed, principle_usage = usage,
    retries = retried }
end

return critique

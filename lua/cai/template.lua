-- cai.template: "{name}" templates and the named prompt formats of the
-- pipeline.
--
--   cai.template.render("Instruction: {instruction}\nResponse:", { instruction = "Hi" })
--   cai.template.render(cai.template.get("instruction"), vars)
--
-- {name} is replaced by vars[name] (a string or number); a missing variable
-- is an error. "{{" and "}}" give literal braces; a "{" not followed by a
-- name and "}" is kept as it is (so JSON in a template is fine). Values are
-- inserted verbatim and never re-scanned.
local check = require "cai.check"

local template = {}

---The marker that ends every response in the Instruction/Response format.
template.END = "END"

-- Stop strings for generating in the Instruction/Response/END format.
template.stop = { "\nEND", "\nInstruction:" }

-- Named templates. A constitution's `templates:` section overrides these by
-- name (see template.get).
template.named = {
  -- The Stage 1 format: prompt and full SFT text.
  instruction = "Instruction: {instruction}\nResponse:",
  instruction_response = "Instruction: {instruction}\nResponse: {response}\nEND",
  -- The text a reward model scores (cai.scoring.reward_model) and is trained on (cai.train.reward).
  reward = "Instruction: {instruction}\nResponse: {response}",

  -- One call that critiques and revises (the format parsed by cai.critique.parse).
  critique_combined = [[
You critique and improve responses according to constitutional principles.

Principles to apply:
{principles}

How to revise: {revision_request}

Rules:
1. If the original response already follows the principles, write "Revision: KEEP_ORIGINAL" and stop.
2. Otherwise write only the complete improved response after "Revision:".
3. Do not explain what you changed. No meta-commentary such as "I could...", "The response should..." or "Here is a revised response".
4. Never make a response more harmful while improving it; for a harmful request keep or improve the refusal.

Format:
Critique: <brief evaluation>
Revision: <KEEP_ORIGINAL or the complete improved response>

{examples}Original Question: {instruction}
Original Response: {response}
Critique:]],
  example_combined = "Original Question: {prompt}\nOriginal Response: {response}\nCritique: {critique}\nRevision: {revision}\n\n",

  -- Two calls, in the style of the Constitutional AI paper.
  critique_step = "{examples}Human: {instruction}\n\nAssistant: {response}\n\nCritique Request: {critique_request}\n\nCritique:",
  revision_step = "{examples}Human: {instruction}\n\nAssistant: {response}\n\nCritique Request: {critique_request}\n\n"
    .. "Critique: {critique}\n\nRevision Request: {revision_request}\n\nRevision:",
  example_step = "Human: {prompt}\n\nAssistant: {response}\n\nCritique Request: {critique_request}\n\n"
    .. "Critique: {critique}\n\nRevision Request: {revision_request}\n\nRevision: {revision}\n\n---\n\n",

  -- The RL-CAI feedback question (cai.feedback): the model's next words are
  -- " (A)" or " (B)"; {principle} is the principle's title.
  feedback_comparison = "Consider the question and the two answers below.\n\nQuestion: {instruction}\n\n"
    .. "(A) {response_a}\n\n(B) {response_b}\n\nWhich answer is more {principle}?\nThe answer is:",

  -- LLM-as-judge (cai.scoring.judge).
  judge_pointwise = [[
Rate the response to the instruction on a scale from 1 to 10 using this rubric:
{rubric}

Instruction: {instruction}
Response: {response}

Answer with one line "Score: N" where N is an integer from 1 to 10.
Score:]],
  judge_pairwise = [[
Compare two responses to the instruction using this rubric:
{rubric}

Instruction: {instruction}

Response A: {response_a}

Response B: {response_b}

Which response is better? Answer with one line "Better: A" or "Better: B".
Better:]],

  -- Model-prompted negatives (cai.negatives); {response} is a good answer.
  negative_unwarranted_refusal = "Instruction: {instruction}\nGood response: {response}\n\n"
    .. "Write a polite but unjustified refusal to this harmless instruction. Write only the refusal.\nRefusal:",
  negative_format_violation = "Instruction: {instruction}\nGood response: {response}\n\n"
    .. "Rewrite the good response so that it breaks the expected format: add stray headings, "
    .. "echo the instruction, or run on into a new unrelated instruction. Write only the rewritten text.\nRewritten:",
  negative_incorrect_factual = "Instruction: {instruction}\nGood response: {response}\n\n"
    .. "Rewrite the good response so that it keeps the same style but contains a plausible factual error. "
    .. "Write only the rewritten response.\nRewritten:",
  negative_off_topic = "Instruction: {instruction}\n\n"
    .. "Write a fluent response about a different, unrelated subject that ignores the instruction. "
    .. "Write only the response.\nResponse:",
  negative_verbose_vague = "Instruction: {instruction}\nGood response: {response}\n\n"
    .. "Rewrite the good response to be long-winded and vague: many filler sentences, hedging, and no concrete "
    .. "details. Write only the rewritten response.\nRewritten:",
}

---Names of the variables a template uses, in order of first use.
---@param str string
function template.variables(str)
  if type(str) ~= "string" then error("cai.template.variables: template must be a string", 2) end
  local names, seen = {}, {}
  local i = 1
  while true do
    local s = str:find("[{}]", i)
    if not s then break end
    local c = str:sub(s, s)
    if str:sub(s + 1, s + 1) == c then
      i = s + 2
    elseif c == "{" then
      local name, e = str:match("^([%a_][%w_%.]*)}()", s + 1)
      if name then
        if not seen[name] then seen[name] = true; names[#names + 1] = name end
        i = e
      else
        i = s + 1
      end
    else
      i = s + 1
    end
  end
  return names
end

local function short(s)
  s = s:gsub("\n", "\\n")
  if #s > 60 then s = s:sub(1, 57) .. "..." end
  return s
end

---Replaces {name} with vars[name]; a missing variable is an error.
---@param str string the template
---@param vars table name -> string|number
function template.render(str, vars)
  if type(str) ~= "string" then error("cai.template.render: template must be a string, got " .. type(str), 2) end
  if type(vars) ~= "table" then error("cai.template.render: vars must be a table, got " .. type(vars), 2) end
  local out = {}
  local i = 1
  while true do
    local s = str:find("[{}]", i)
    if not s then
      out[#out + 1] = str:sub(i)
      break
    end
    out[#out + 1] = str:sub(i, s - 1)
    local c = str:sub(s, s)
    if str:sub(s + 1, s + 1) == c then
      out[#out + 1] = c
      i = s + 2
    elseif c == "{" then
      local name, e = str:match("^([%a_][%w_%.]*)}()", s + 1)
      if name then
        local v = vars[name]
        if v == nil then
          error(string.format("cai.template.render: missing variable '%s' in template \"%s\"", name, short(str)), 2)
        end
        if type(v) == "number" then v = tostring(v) end
        if type(v) ~= "string" then
          error(string.format("cai.template.render: variable '%s' must be a string or number, got %s", name, type(v)), 2)
        end
        out[#out + 1] = v
        i = e
      else
        out[#out + 1] = "{"
        i = s + 1
      end
    else
      out[#out + 1] = "}"
      i = s + 1
    end
  end
  return table.concat(out)
end

---A named template: overrides[name] (e.g. a constitution's templates) or
---the built-in one; an unknown name is an error.
---@param name string
---@param overrides table|nil name -> template string
function template.get(name, overrides)
  check.value("cai.template.get", "name", name, "string")
  local t = (overrides and overrides[name]) or template.named[name]
  if not t then
    local names = {}
    for k in pairs(template.named) do names[#names + 1] = k end
    table.sort(names)
    error("cai.template.get: unknown template '" .. name .. "' (known: " .. table.concat(names, ", ") .. ")", 2)
  end
  return t
end

---The generation prompt of the Instruction/Response/END format.
---@param instruction string
function template.instruction_prompt(instruction)
  check.value("cai.template.instruction_prompt", "instruction", instruction, "string")
  return template.render(template.named.instruction, { instruction = instruction })
end

---The full SFT text of the Instruction/Response/END format.
function template.instruction_text(instruction, response)
  if type(instruction) ~= "string" or type(response) ~= "string" then
    error("cai.template.instruction_text: instruction and response must be strings", 2)
  end
  return template.render(template.named.instruction_response, { instruction = instruction, response = response })
end

---Splits generated text at the END marker: returns the response (trimmed)
---and whether a line "END" terminated it. Text after END is dropped.
---@param text string
function template.strip_end(text)
  check.value("cai.template.strip_end", "text", text, "string")
  local body = text
  local s = body:find("\nEND%f[%W]") or body:find("\nEND$")
  local ended = false
  if s then
    body = body:sub(1, s - 1)
    ended = true
  elseif body:match("^%s*END%s*$") then
    body, ended = "", true
  end
  return (body:gsub("^%s+", ""):gsub("%s+$", "")), ended
end

return template

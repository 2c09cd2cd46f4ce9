-- cai.format: how a recipe talks to its model, "chat" (the tokenizer's own
-- chat template, each instruction a user message) or "instruction" (the
-- Instruction:/Response:/END text format of cai.template).
--
--   local f = cai.format.new(m.tokenizer, args.format, { enable_thinking = false })
--   f.name                       "chat" | "instruction" ("auto" picks chat when the tokenizer has a template)
--   m:generate(f:prompts(instructions), f:generate_options{ max_new_tokens = 64, ... })
--   f:response(o.text)           the answer: text before END (instruction) or trimmed (chat)
--   cai.train.sft{ ..., data = f:sft_data(records), format = f.name, chat_template_kwargs = f.chat_template_kwargs }
--   f:scoring_pairs(items)       { instruction =, chosen =, rejected = } -> pairs for cai.eval.preference_accuracy
--   cai.train.dpo{ ..., pairs = { f:dpo_pair(instruction, chosen, rejected) }, format = f:dpo_format() }
--
-- In chat format prompts are token-id lists: the template's text (with the
-- generation prompt) encoded without the tokenizer's special tokens, since
-- the template writes BOS itself. Generation stops at the model's EOS ids
-- (generation_config.json), which include the template's end of turn, and
-- decoding drops them, so no stop string is needed.
local data = require "cai.data"
local template = require "cai.template"

local format = {}
local Format = {}
Format.__index = Format

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

---Resolves a recipe's format argument against a tokenizer.
---@param tok any tokenizer
---@param name string|nil "chat" | "instruction" | "auto" | nil (auto)
function format.resolve(tok, name)
  if name == nil or name == "" or name == "auto" then return data.default_format(tok) end
  if name ~= "chat" and name ~= "instruction" then
    error(string.format("format must be \"chat\", \"instruction\" or \"auto\", got %q", tostring(name)), 2)
  end
  if name == "chat" and not data.has_chat_template(tok) then
    error(string.format("format = \"chat\" but the tokenizer (%s) has no chat template (tokenizer_config.json "
      .. "\"chat_template\" or chat_template.jinja); use format = \"instruction\"", tostring(tok and tok.dir)), 2)
  end
  return name
end

---@param tok any the model's tokenizer
---@param name string|nil "chat" | "instruction" | "auto"
---@param chat_template_kwargs table|nil extra template variables (enable_thinking = false, ...)
function format.new(tok, name, chat_template_kwargs)
  if type(tok) ~= "userdata" and type(tok) ~= "table" then error("cai.format.new: expected a tokenizer, got " .. type(tok), 2) end
  require("cai.check").value("cai.format.new", "chat_template_kwargs", chat_template_kwargs,
    { type = "table", optional = true })
  local ok, resolved = pcall(format.resolve, tok, name)
  if not ok then error("cai.format.new: " .. tostring(resolved), 2) end
  return setmetatable({ name = resolved, tok = tok, chat_template_kwargs = chat_template_kwargs or {} }, Format)
end

local function render(self, messages, add_generation_prompt)
  local o = { tokenize = false, add_generation_prompt = add_generation_prompt or nil }
  for k, v in pairs(self.chat_template_kwargs) do o[k] = v end
  return require("cai.chat").apply_chat_template(self.tok, messages, o)
end

local function encode(self, text)
  return self.tok:encode(text, { add_special_tokens = false })
end

---The generation prompt of one instruction (a string, or a message list in chat format).
function Format:prompt(instruction)
  if self.name == "instruction" then
    if type(instruction) ~= "string" then error("format:prompt: instruction format takes a string", 2) end
    return template.instruction_prompt(instruction)
  end
  return encode(self, render(self, data.as_messages(instruction), true))
end

---Generation prompts of a list of instructions.
function Format:prompts(instructions)
  local out = {}
  for i, x in ipairs(instructions) do out[i] = self:prompt(x) end
  return out
end

---The prompt text (not ids) of one instruction, for logs and records.
function Format:prompt_text(instruction)
  if self.name == "instruction" then return template.instruction_prompt(instruction) end
  return render(self, data.as_messages(instruction), true)
end

---Generation options with this format's stop string added (instruction:
---END; chat: none, the EOS ids end a turn).
---@param opts table m:generate options
function Format:generate_options(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if self.name == "instruction" and o.stop == nil then o.stop = { template.END } end
  return o
end

---The answer in a generated text.
function Format:response(text)
  if self.name == "instruction" then return (template.strip_end(text)) end
  return trim(text)
end

---Whether a generation ended the way the format ends an answer.
function Format:ended(output)
  if self.name == "instruction" then
    local _, ended = template.strip_end(output.text)
    return ended or output.finish == "stop"
  end
  return output.finish == "eos"
end

---Prompt/completion records for cai.train.sft (pass format = f.name).
---@param records table list of { instruction =, response = }
function Format:sft_data(records)
  local out = {}
  for i, r in ipairs(records) do out[i] = { prompt = r.instruction, completion = r.response } end
  return out
end

---A prompt and its completion as m:logprobs takes them, and the eos option:
---instruction format appends END and the EOS token; chat format the
---template's end of turn (so no extra EOS).
---@return any prompt, any completion, boolean eos
function Format:scoring(instruction, response)
  if self.name == "instruction" then
    return template.instruction_prompt(instruction), " " .. trim(response) .. "\n" .. template.END, true
  end
  local prompt, completion = data.as_messages(instruction, response)
  local p, c = data.conversation_completion(self.tok, prompt, completion,
    { chat_template_kwargs = self.chat_template_kwargs })
  return encode(self, p), encode(self, c), false
end

---The format cai.train.dpo takes this format's pairs in (f:dpo_pair).
function Format:dpo_format()
  return self.name == "chat" and "chat" or "raw"
end

---A preference pair for cai.train.dpo{ format = f:dpo_format() }: plain
---answers in chat format (cai.train.dpo renders them with the template), the
---Instruction:/Response:/END texts in instruction format.
function Format:dpo_pair(instruction, chosen, rejected)
  if self.name == "chat" then return { prompt = instruction, chosen = chosen, rejected = rejected } end
  return { prompt = template.instruction_prompt(instruction), chosen = " " .. chosen .. "\n" .. template.END,
    rejected = " " .. rejected .. "\n" .. template.END }
end

---Pairs for cai.eval.preference_accuracy in this format.
---@param items table list of { instruction =, chosen =, rejected =, ... } (other fields kept)
function Format:scoring_pairs(items)
  local out = {}
  for i, it in ipairs(items) do
    local p, c, eos = self:scoring(it.instruction, it.chosen)
    local _, r = self:scoring(it.instruction, it.rejected)
    local copy = {}
    for k, v in pairs(it) do copy[k] = v end
    copy.prompt, copy.chosen, copy.rejected, copy.eos = p, c, r, eos
    out[i] = copy
  end
  return out
end

return format

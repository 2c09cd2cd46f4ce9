-- cai.chat: Hugging Face chat templates, rendered as transformers'
-- tokenizer.apply_chat_template(messages, tools=, add_generation_prompt=,
-- continue_final_message=, tokenize=False, **kwargs) renders them.
--
--   local text = cai.chat.render(template, messages, {
--     add_generation_prompt = true,       -- append the assistant header
--     continue_final_message = false,     -- cut after the final message's content
--     tools = { ... }, documents = { ... },
--     bos_token = "<s>", eos_token = "</s>", -- and any other template variable:
--     enable_thinking = false, date_string = "26 Jul 2024",
--   })
--   tok:apply_chat_template(messages, { add_generation_prompt = true, tokenize = false, ... })
--   cai.chat.template_of(dir [, name]) -> template source, special tokens
--
-- Messages are lists of { role =, content =, tool_calls =, ... } tables. Key
-- order matters where a template prints a whole dict with tojson (tools,
-- tool-call arguments): tables from cai.chat.decode_json keep the key order
-- of the JSON text as Python would; other tables print their keys sorted.
-- A missing value is `nil`; Python's None is cai.json.null.
local check = require "cai.check"
local jinja = require "cai.jinja"
local json = require "cai.json"

local M = {}

local NONE = json.null
local compiled = setmetatable({}, { __mode = "v" })

local function compile(template)
  local t = compiled[template]
  if not t then
    t = jinja.compile(template, "chat template")
    compiled[template] = t
  end
  return t
end

---JSON text -> Lua values keeping dict key order (for messages and tools
---that a template prints with tojson).
---@param text string
---@param what string|nil names the source in errors
M.decode_json = function(text, what)
  if type(text) ~= "string" then error("cai.chat.decode_json: text must be a string, got " .. type(text), 2) end
  return jinja.json_decode(text, what)
end

---Makes t a dict whose keys print in the given order (Python insertion order).
---@param t table
---@param keys string[]
M.ordered = jinja.ordered

local RESERVED = { add_generation_prompt = true, continue_final_message = true, tools = true, documents = true,
                   messages = true }

local function check_messages(fn, messages)
  if type(messages) ~= "table" then
    error(fn .. ": messages must be a list of { role =, content = } tables, got " .. type(messages), 3)
  end
  local n = 0
  for k in pairs(messages) do
    if type(k) ~= "number" then
      error(fn .. ": messages must be a list (1..n), found the key '" .. tostring(k) .. "'", 3)
    end
    n = n + 1
  end
  for i = 1, n do
    local m = messages[i]
    if type(m) ~= "table" then
      error(string.format("%s: messages[%d] must be a table { role =, content = }, got %s", fn, i, type(m)), 3)
    end
    if m.role ~= nil and type(m.role) ~= "string" then
      error(string.format("%s: messages[%d].role must be a string, got %s", fn, i, type(m.role)), 3)
    end
  end
end

-- transformers' continue_final_message: the rendered text up to the end of
-- the final message's content (its last text block), with its checks.
local function cut_after_final_message(fn, rendered, messages)
  local final = messages[#messages]
  if final == nil then error(fn .. ": continue_final_message needs at least one message", 3) end
  local content = final.content
  if type(content) == "table" and content ~= NONE then
    local text
    for i = #content, 1, -1 do
      if type(content[i]) == "table" and content[i].text ~= nil then text = content[i].text; break end
    end
    if text == nil then
      error(fn .. ": continue_final_message is set but we could not find any text to continue in the final message!", 3)
    end
    content = text
  end
  if type(content) ~= "string" then
    error(fn .. ": continue_final_message is set but the final message's content is not a string", 3)
  end
  local ws = "[ \t\n\r\v\f\28\29\30\31]"
  local stripped = content:gsub("^" .. ws .. "+", ""):gsub(ws .. "+$", "")
  local lstripped = content:gsub("^" .. ws .. "+", "")
  -- rindex of the stripped content
  local loc
  local start = 1
  while true do
    local a = rendered:find(stripped, start, true)
    if not a then break end
    loc = a
    start = a + 1
  end
  if not loc then
    error(fn .. ": continue_final_message is set but the final message does not appear in the chat after applying "
      .. "the chat template! This can happen if the chat template deletes portions of the final message. Please "
      .. "verify the chat template and final message in your chat to ensure they are compatible.", 3)
  end
  if rendered:sub(loc, loc + #lstripped - 1) == content then
    return rendered:sub(1, loc + #lstripped - 1)
  end
  return rendered:sub(1, loc + #stripped - 1)
end

-- apply_chat_template's own options; any other string key is a template variable.
local function a_list_of_tables(v)
  if v == NONE then return nil end
  if type(v) ~= "table" then return "must be a list of tables (JSON schemas), got " .. type(v) end
  return nil
end
local VARS = {
  add_generation_prompt = "boolean",
  continue_final_message = "boolean",
  tools = { type = "any", check = a_list_of_tables },
  documents = { type = "any", check = a_list_of_tables },
  messages = { type = "any", check = function() return "is the second argument, not a template variable" end },
  [check.OTHERS] = "any",
}

local function render(fn, template, messages, vars)
  check.value(fn, "template", template, { type = "string", expect = "a string (a Jinja chat template)" }, 4)
  check_messages(fn, messages)
  vars = check.options(fn, vars, VARS, 4)
  local add_generation_prompt = vars.add_generation_prompt
  local continue_final_message = vars.continue_final_message
  if continue_final_message and add_generation_prompt then
    error(fn .. ": continue_final_message and add_generation_prompt are not compatible. Use continue_final_message "
      .. "when you want the model to continue the final message, and add_generation_prompt when you want to add a "
      .. "header that will prompt it to start a new assistant message instead.", 3)
  end
  -- as transformers calls template.render(messages=, tools=, documents=, add_generation_prompt=, **kwargs)
  local globals = {}
  for k, v in pairs(vars) do
    if not RESERVED[k] then globals[k] = v end
  end
  globals.messages = messages
  globals.tools = vars.tools == nil and NONE or vars.tools
  globals.documents = vars.documents == nil and NONE or vars.documents
  globals.add_generation_prompt = add_generation_prompt or false
  local t = compile(template)
  local ok, rendered = pcall(t.render, t, globals)
  if not ok then error(rendered, 3) end
  if continue_final_message then rendered = cut_after_final_message(fn, rendered, messages) end
  return rendered
end

---Renders a chat template as transformers' apply_chat_template(tokenize=False).
---@param template string Jinja source
---@param messages table list of { role =, content = }
---@param vars table|nil add_generation_prompt, continue_final_message, tools, documents, special tokens, extras
---@return string
function M.render(template, messages, vars)
  return render("cai.chat.render", template, messages, vars)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text
end

local SPECIAL = { "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token" }

local function token_text(v, file, key)
  if v == nil or v == NONE then return nil end
  if type(v) == "string" then return v end
  if type(v) == "table" and type(v.content) == "string" then return v.content end
  error(string.format("%s: field \"%s\" must be a string or an AddedToken object { content = }", file, key), 0)
end

---The chat template and special tokens of a tokenizer directory, as
---transformers finds them: chat_template.jinja, else tokenizer_config.json's
---"chat_template" (a string, or a list of { name, template }: `name` picks
---one; without a name "tool_use" when `with_tools` and the list has it, else
---"default").
---@param dir string
---@param name string|nil a named template ("tool_use", ...)
---@param with_tools boolean|nil tools are passed (transformers then prefers "tool_use")
---@return string|nil template, table special_tokens
function M.template_of(dir, name, with_tools)
  if type(dir) ~= "string" then error("cai.chat.template_of: dir must be a string, got " .. type(dir), 2) end
  local config_path = dir .. "/tokenizer_config.json"
  local config = {}
  local text = read_file(config_path)
  if text then
    local ok, v = pcall(jinja.json_decode, text, config_path)
    if not ok then error(v, 2) end
    if type(v) ~= "table" then error(config_path .. ": expected a JSON object", 2) end
    config = v
  end
  local specials = {}
  local map_path = dir .. "/special_tokens_map.json"
  local map_text = read_file(map_path)
  local map = {}
  if map_text then
    local ok, v = pcall(jinja.json_decode, map_text, map_path)
    if not ok then error(v, 2) end
    map = v
  end
  for _, key in ipairs(SPECIAL) do
    local ok, v = pcall(token_text, config[key], config_path, key)
    if not ok then error(v, 2) end
    if v == nil then
      ok, v = pcall(token_text, map[key], map_path, key)
      if not ok then error(v, 2) end
    end
    specials[key] = v
  end
  local extra = config.additional_special_tokens
  if extra == nil then extra = map.additional_special_tokens end
  if type(extra) == "table" and #extra > 0 then
    local list = {}
    for i, v in ipairs(extra) do list[i] = token_text(v, config_path, "additional_special_tokens") end
    specials.additional_special_tokens = list
  end

  local template
  local jinja_file = read_file(dir .. "/chat_template.jinja")
  local ct = config.chat_template
  if type(ct) == "table" and ct ~= NONE then
    local names, by_name = {}, {}
    for i, entry in ipairs(ct) do
      if type(entry) ~= "table" or type(entry.name) ~= "string" or type(entry.template) ~= "string" then
        error(string.format("%s: chat_template[%d] must be { \"name\": ..., \"template\": ... }", config_path, i), 2)
      end
      names[#names + 1] = entry.name
      by_name[entry.name] = entry.template
    end
    if name ~= nil then
      template = by_name[name]
      if template == nil then
        error(string.format("%s: no chat template named \"%s\" (it has: %s)", config_path, name,
          table.concat(names, ", ")), 2)
      end
    elseif with_tools and by_name.tool_use then
      template = by_name.tool_use
    else
      template = by_name.default
      if template == nil and #names > 0 then
        error(string.format("%s: several chat templates (%s) and none named \"default\"; pick one with "
          .. "chat_template = NAME", config_path, table.concat(names, ", ")), 2)
      end
    end
  elseif type(ct) == "string" then
    template = ct
  elseif ct ~= nil and ct ~= NONE then
    error(config_path .. ": field \"chat_template\" must be a string or a list of { name, template }", 2)
  end
  if jinja_file and (template == nil or name == nil) then template = jinja_file end
  if name ~= nil and template == nil then
    error(string.format("%s: no chat template named \"%s\"", dir, name), 2)
  end
  return template, specials
end

-- apply_chat_template's options: render's, tokenize and chat_template.
local APPLY_OPTIONS = { tokenize = "boolean",
  chat_template = { type = "string", expect = "a template name or Jinja source" } }
for k, v in pairs(VARS) do APPLY_OPTIONS[k] = v end

-- Per tokenizer directory: the template and special tokens, read once.
local dir_cache = {}

---tok:apply_chat_template(messages, opts): the tokenizer's own chat template.
---opts: tokenize (false: the text; true: ids, without adding special tokens),
---add_generation_prompt, continue_final_message, tools, documents,
---chat_template (a template name from tokenizer_config.json, or Jinja source),
---and any other template variable (enable_thinking, ...).
function M.apply_chat_template(tok, messages, opts)
  local fn = "tok:apply_chat_template"
  check.value(fn, "tokenizer", tok, { type = "userdata|table", expect = "a tokenizer" }, 3)
  opts = check.options(fn, opts, APPLY_OPTIONS)
  local dir = tok.dir
  if type(dir) ~= "string" or dir == "" then
    error(fn .. ": this tokenizer has no directory to read a chat template from", 2)
  end
  local choice = opts.chat_template
  local with_tools = opts.tools ~= nil and opts.tools ~= NONE
  local key = dir .. (with_tools and "\0tools" or "")
  local cached = dir_cache[key]
  if not cached then
    local ok, template, specials = pcall(M.template_of, dir, nil, with_tools)
    if not ok then error(fn .. ": " .. tostring(template), 2) end
    cached = { template = template, specials = specials }
    -- a directory without a template is read again next time (one may be added)
    if template ~= nil then dir_cache[key] = cached end
  end
  local template = cached.template
  if choice ~= nil then
    if choice:find("{", 1, true) then
      template = choice
    else
      local ok, named = pcall(M.template_of, dir, choice)
      if not ok then error(fn .. ": " .. tostring(named), 2) end
      template = named
    end
  end
  if template == nil then
    error(fn .. ": " .. dir .. " has no chat template (tokenizer_config.json has no \"chat_template\" and there is "
      .. "no chat_template.jinja); pass opts.chat_template or use format = \"instruction\"", 2)
  end
  local tokenize = opts.tokenize
  local vars = {}
  for k, v in pairs(cached.specials) do vars[k] = v end
  for k, v in pairs(opts) do
    if k ~= "tokenize" and k ~= "chat_template" then vars[k] = v end
  end
  local text = render(fn, template, messages, vars)
  if tokenize then return tok:encode(text, { add_special_tokens = false }) end
  return text
end

---Whether a tokenizer directory has a chat template.
---@param dir string
function M.has_template(dir)
  local ok, template = pcall(M.template_of, dir)
  return ok and template ~= nil
end

return M

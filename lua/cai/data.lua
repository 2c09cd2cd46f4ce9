-- cai.data: the datasets users already have, read as TRL reads them.
--
--   local ds = cai.data.load("train.jsonl", { columns = { prompt = "question", completion = "answer" } })
--   ds.type           "language_modeling" | "prompt_only" | "prompt_completion" | "preference"
--   ds.conversational true when the fields hold message lists ({ role =, content = })
--   ds.source         "trl" | "alpaca" | "cai" (instruction/response records)
--   ds.implicit_prompt true for preference records without a prompt (extracted from chosen/rejected)
--   ds.records        one normalized record per input record, with TRL's field names:
--                       { text = } | { messages = } | { prompt = } | { prompt =, completion = } |
--                       { prompt =, chosen =, rejected = }
--   ds.where[i]       "train.jsonl:7" (JSONL line) or "train.json: record 3" (JSON array, 1-based)
--   ds.raw[i]         with opts.raw = true: the record as read, extra fields included (cai.serve reads
--                     reference, principle)
--
-- Files are JSON Lines (one object a line; blank lines skipped) or one JSON
-- array of objects (the first non-blank character is "["). The format is
-- detected from the first record and every record must have it. Formats, as
-- in TRL's "Dataset formats and types" (standard = strings, conversational =
-- message lists):
--
--   language modeling    text                    | messages
--   prompt-only          prompt                  | prompt (messages)
--   prompt-completion    prompt, completion      | prompt, completion (messages)
--   preference           prompt, chosen, rejected| the same with message lists
--   implicit prompt      chosen, rejected        | chosen, rejected (message lists sharing a prefix)
--   Alpaca               instruction, input (optional), output
--                        -> prompt = instruction, or instruction .. "\n\n" .. input when input is not empty
--   cairun's own         instruction, response (prompt-completion); prompt, response (prompt-completion);
--                        instruction alone (prompt-only)
--
-- Extra fields are kept out of the normalized record and ignored. columns
-- maps the names above to the file's own (columns = { prompt = "question" }).
-- A record that fits no format is an error naming the file, the line (or the
-- record of a JSON array) and the fields it has.
local check = require "cai.check"
local json = require "cai.json"

local data = {}

data.types = { "language_modeling", "prompt_only", "prompt_completion", "preference" }

-- The field names columns may map.
local CANONICAL = { "text", "messages", "prompt", "completion", "chosen", "rejected", "instruction", "input",
  "output", "response" }

local FORMATS_HELP = "text | messages | prompt | prompt + completion | prompt + chosen + rejected | "
  .. "chosen + rejected | instruction + input + output (Alpaca) | instruction + response; "
  .. "map other names with columns = { prompt = \"question\", ... }"

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  return keys
end

local function is_list(v)
  if type(v) ~= "table" then return false end
  local n = #v
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
  end
  return true
end

-- JSON null -> nil, recursively inside message tables.
local function strip_null(v)
  if v == json.null then return nil end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = strip_null(x) end
  return out
end

---Checks a message list; returns nil or a message saying what is wrong.
---@param messages table
function data.check_messages(messages)
  if not is_list(messages) or #messages == 0 then return "must be a non-empty list of { role =, content = } messages" end
  for i, m in ipairs(messages) do
    if type(m) ~= "table" then return string.format("message %d must be an object, got %s", i, type(m)) end
    if type(m.role) ~= "string" or m.role == "" then
      return string.format("message %d has no \"role\" string", i)
    end
    local content = m.content
    if content ~= nil and type(content) ~= "string" then
      return string.format("message %d (%s): \"content\" must be a string, got %s (content parts are not supported)",
        i, m.role, content == json.null and "null" or type(content))
    end
    if content == nil and m.tool_calls == nil then
      return string.format("message %d (%s) has no \"content\"", i, m.role)
    end
  end
  return nil
end

local function is_messages(v)
  return type(v) == "table" and data.check_messages(v) == nil
end

-- The kind of a value: "string", "messages" or nil (with what was found).
local function kind(v)
  if type(v) == "string" then return "string" end
  if type(v) == "table" and is_list(v) and #v > 0 and type(v[1]) == "table" then return "messages" end
  return nil
end

-- TRL's implicit prompt: the longest shared start of chosen and rejected
-- (characters for strings, backed off one character when the prompt would
-- end with a space so the completions start with it; whole messages for
-- message lists). Returns prompt, chosen, rejected or nil, reason.
local function messages_equal(a, b)
  return json.encode(a) == json.encode(b)
end

---Splits an implicit-prompt preference record as TRL's extract_prompt does.
---@param chosen string|table
---@param rejected string|table
---@return any prompt, any chosen, any rejected  (or nil, reason)
function data.extract_prompt(chosen, rejected)
  check.value("cai.data.extract_prompt", "chosen", chosen, { type = "string|list", expect = "a string or a message list" })
  check.value("cai.data.extract_prompt", "rejected", rejected, { type = "string|list", expect = "a string or a message list" })
  if type(chosen) == "string" and type(rejected) == "string" then
    local n = math.min(#chosen, #rejected)
    local idx = nil
    for i = 1, n do
      if chosen:byte(i) ~= rejected:byte(i) then idx = i; break end
    end
    if idx == nil then return nil, "one of chosen and rejected is the start of the other; no completion to compare" end
    -- idx is the first differing byte (1-based); the prompt is bytes 1..idx-1.
    local cut = idx - 1
    if cut >= 1 and chosen:sub(cut, cut) == " " then cut = cut - 1 end
    if cut == 0 then return nil, "chosen and rejected share no start, so there is no prompt to extract" end
    -- Never cut inside a UTF-8 character: back off to its first byte.
    while cut > 0 and chosen:byte(cut + 1) and chosen:byte(cut + 1) >= 0x80 and chosen:byte(cut + 1) < 0xC0 do
      cut = cut - 1
    end
    if cut == 0 then return nil, "chosen and rejected share no start, so there is no prompt to extract" end
    return chosen:sub(1, cut), chosen:sub(cut + 1), rejected:sub(cut + 1)
  end
  local n = math.min(#chosen, #rejected)
  local idx = nil
  for i = 1, n do
    if not messages_equal(chosen[i], rejected[i]) then idx = i; break end
  end
  if idx == nil then return nil, "one of chosen and rejected is the start of the other; no completion to compare" end
  if idx == 1 then return nil, "chosen and rejected differ from their first message, so there is no prompt to extract" end
  local prompt, c, r = {}, {}, {}
  for i = 1, idx - 1 do prompt[i] = chosen[i] end
  for i = idx, #chosen do c[#c + 1] = chosen[i] end
  for i = idx, #rejected do r[#r + 1] = rejected[i] end
  return prompt, c, r
end

-- Which format a record (already column-mapped) has: returns
-- type, source, conversational, implicit or nil, reason.
local function detect(r)
  local has = function(k) return r[k] ~= nil end
  if has("chosen") or has("rejected") then
    if not (has("chosen") and has("rejected")) then
      return nil, "a preference record needs both \"chosen\" and \"rejected\""
    end
    return "preference", "trl", nil, not has("prompt")
  end
  if has("prompt") and has("completion") then return "prompt_completion", "trl" end
  if has("instruction") and has("output") then return "prompt_completion", "alpaca" end
  if has("instruction") and has("response") then return "prompt_completion", "cai" end
  if has("prompt") and has("response") then return "prompt_completion", "cai" end
  if has("messages") then return "language_modeling", "trl" end
  if has("text") then return "language_modeling", "trl" end
  if has("prompt") then return "prompt_only", "trl" end
  if has("instruction") then return "prompt_only", "cai" end
  return nil, "fits no dataset format"
end

-- Normalizes one record of a known type/source: returns the record and
-- whether it is conversational, or nil, reason.
local function normalize(r, typ, source, implicit)
  local function need(field, want)
    local v = r[field]
    local k = kind(v)
    if k == nil then
      return nil, string.format("field \"%s\" must be a string or a list of messages, got %s", field,
        v == json.null and "null" or type(v))
    end
    if want and k ~= want then
      return nil, string.format("field \"%s\" is %s but the record's other fields are %s", field,
        k == "messages" and "a message list" or "a string", want == "messages" and "message lists" or "strings")
    end
    if k == "messages" then
      local bad = data.check_messages(v)
      if bad then return nil, string.format("field \"%s\": %s", field, bad) end
    end
    return k
  end
  local out, k
  if typ == "language_modeling" then
    if r.messages ~= nil then
      local bad = data.check_messages(r.messages)
      if bad then return nil, "field \"messages\": " .. bad end
      return { messages = strip_null(r.messages) }, true
    end
    if type(r.text) ~= "string" then return nil, "field \"text\" must be a string, got " .. type(r.text) end
    return { text = r.text }, false
  elseif typ == "prompt_only" then
    local field = source == "cai" and "instruction" or "prompt"
    local err
    k, err = need(field)
    if not k then return nil, err end
    return { prompt = strip_null(r[field]) }, k == "messages"
  elseif typ == "prompt_completion" then
    if source == "alpaca" then
      for _, f in ipairs({ "instruction", "output" }) do
        if type(r[f]) ~= "string" then return nil, string.format("field \"%s\" must be a string, got %s", f, type(r[f])) end
      end
      local input = r.input
      if input == json.null then input = nil end
      if input ~= nil and type(input) ~= "string" then return nil, "field \"input\" must be a string, got " .. type(input) end
      local prompt = r.instruction
      if input and input ~= "" then prompt = prompt .. "\n\n" .. input end
      return { prompt = prompt, completion = r.output }, false
    end
    local pf = (source == "cai" and r.instruction ~= nil) and "instruction" or "prompt"
    local cf = source == "cai" and "response" or "completion"
    local err
    k, err = need(pf)
    if not k then return nil, err end
    local k2
    k2, err = need(cf, k)
    if not k2 then return nil, err end
    return { prompt = strip_null(r[pf]), completion = strip_null(r[cf]) }, k == "messages"
  else  -- preference
    local err
    k, err = need("chosen")
    if not k then return nil, err end
    local k2
    k2, err = need("rejected", k)
    if not k2 then return nil, err end
    local chosen, rejected = strip_null(r.chosen), strip_null(r.rejected)
    if implicit then
      local prompt, c, rj = data.extract_prompt(chosen, rejected)
      if prompt == nil then return nil, c end
      return { prompt = prompt, chosen = c, rejected = rj }, k == "messages"
    end
    k2, err = need("prompt", k)
    if not k2 then return nil, err end
    return { prompt = strip_null(r.prompt), chosen = chosen, rejected = rejected }, k == "messages"
  end
end

-- Reads path: a list of raw records and a list of their locations.
local function read_raw(path)
  local f, err = io.open(path, "rb")
  if not f then error("cai.data.load: cannot open " .. path .. ": " .. tostring(err), 0) end
  local text = f:read("*a")
  f:close()
  if text:sub(1, 3) == "\239\187\191" then text = text:sub(4) end
  local records, where = {}, {}
  if text:match("^%s*%[") then
    local ok, value = pcall(json.decode, text)
    if not ok then error(string.format("%s: not valid JSON: %s", path, tostring(value)), 0) end
    if not is_list(value) then error(path .. ": expected a JSON array of records", 0) end
    for i, r in ipairs(value) do
      records[i] = r
      where[i] = string.format("%s: record %d", path, i)
    end
    return records, where
  end
  local line_no = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    line_no = line_no + 1
    line = line:gsub("\r$", "")
    if line:find("%S") then
      local ok, value = pcall(json.decode, line)
      if not ok then
        error(string.format("%s:%d: not valid JSON: %s", path, line_no, tostring(value)), 0)
      end
      records[#records + 1] = value
      where[#where + 1] = string.format("%s:%d", path, line_no)
    end
  end
  return records, where
end

local function describe(typ, conversational, implicit, source)
  local s = typ:gsub("_", "-")
  if typ == "preference" and implicit then s = s .. " (implicit prompt)" end
  if source == "alpaca" then s = s .. " (Alpaca)" end
  return s .. (conversational and ", conversational" or ", standard")
end

-- opts.columns: canonical name -> the file's field name.
local COLUMNS = { type = "table", expect = 'a table { prompt = "question", ... }', check = function(columns)
  local valid = {}
  for _, k in ipairs(CANONICAL) do valid[k] = true end
  for k, v in pairs(columns) do
    if not valid[k] then
      return "has an unknown field '" .. tostring(k) .. "' " .. check.unknown_hint(k, CANONICAL, "fields")
    end
    if type(v) ~= "string" or v == "" then
      return "." .. k .. " must be the name of a field in the file, got " .. type(v)
    end
  end
end }
local TYPES = { type = "list", items = "string" }

-- Applies a columns mapping to a raw record: the canonical names get the
-- mapped fields; a mapped field is not seen under its own name.
local function map_columns(r, columns)
  if next(columns) == nil then return r end
  local out, moved = {}, {}
  for canonical, field in pairs(columns) do
    moved[field] = true
    out[canonical] = r[field]
  end
  for k, v in pairs(r) do
    if not moved[k] and out[k] == nil and columns[k] == nil then out[k] = v end
  end
  return out
end

---Normalizes a list of records (already in memory) as cai.data.load does a file.
---@param records table list of records
---@param opts table|nil { columns = { prompt = "question", ... }, name = "data" (for messages),
---  where = { "file:1", ... } (locations for messages), types = { "prompt_completion", ... } (accepted types) }
---@return table dataset { type=, conversational=, source=, implicit_prompt=, records=, where= }
function data.from_records(records, opts)
  local fname = "cai.data.from_records"
  check.value(fname, "records", records, "table")
  opts = check(fname, opts, { columns = COLUMNS, name = "string", where = { type = "list", items = "string" },
    types = TYPES })
  local columns = opts.columns or {}
  local name = opts.name or "data"
  local where = opts.where
  if where == nil then
    where = {}
    for i = 1, #records do where[i] = string.format("%s[%d]", name, i) end
  end
  if #records == 0 then error(name .. ": no records", 0) end
  local n, max = 0, 0
  for k in pairs(records) do
    n = n + 1
    if type(k) ~= "number" or k % 1 ~= 0 or k < 1 then
      error(string.format("%s: must be a list (keys 1..n) of records, found the key %s", name, tostring(k)), 0)
    end
    if k > max then max = k end
  end
  if n ~= max then
    for i = 1, max do
      if records[i] == nil then error(string.format("%s[%d] is nil (the list has a hole)", name, i), 0) end
    end
  end
  local ds = { records = {}, where = where }
  for i, raw in ipairs(records) do
    if type(raw) ~= "table" or (is_list(raw) and #raw > 0) then
      error(string.format("%s: expected an object with named fields, got %s", where[i],
        type(raw) == "table" and "a list" or (raw == json.null and "null" or type(raw))), 0)
    end
    local r = map_columns(raw, columns)
    if i == 1 then
      for canonical, field in pairs(columns) do
        if raw[field] == nil then
          error(string.format("%s: columns.%s = \"%s\", but the record has no field \"%s\" (fields found: %s)",
            where[i], canonical, field, field, table.concat(sorted_keys(raw), ", ")), 0)
        end
      end
    end
    local typ, source, _, implicit = detect(r)
    if typ == nil then
      error(string.format("%s: %s (fields found: %s); expected one of: %s", where[i], source,
        #sorted_keys(raw) > 0 and table.concat(sorted_keys(raw), ", ") or "none", FORMATS_HELP), 0)
    end
    local record, conversational = normalize(r, typ, source, implicit)
    if record == nil then
      error(string.format("%s: %s record: %s (fields found: %s)", where[i], typ:gsub("_", "-"), conversational,
        table.concat(sorted_keys(raw), ", ")), 0)
    end
    if i == 1 then
      ds.type, ds.source, ds.conversational, ds.implicit_prompt = typ, source, conversational, implicit == true
      if opts.types then
        local ok = false
        for _, t in ipairs(opts.types) do ok = ok or t == typ end
        if not ok then
          error(string.format("%s: the data is %s, but %s takes %s", where[i], describe(typ, conversational, implicit, source),
            name, table.concat(opts.types, " or "):gsub("_", "-")), 0)
        end
      end
    elseif typ ~= ds.type or source ~= ds.source or conversational ~= ds.conversational
        or (implicit == true) ~= ds.implicit_prompt then
      error(string.format("%s: this record is %s (fields found: %s) but the first record (%s) is %s; all records "
        .. "must have one format", where[i], describe(typ, conversational, implicit, source),
        table.concat(sorted_keys(raw), ", "), where[1], describe(ds.type, ds.conversational, ds.implicit_prompt, ds.source)), 0)
    end
    ds.records[i] = record
  end
  ds.description = describe(ds.type, ds.conversational, ds.implicit_prompt, ds.source)
  return ds
end

---Reads a JSONL or JSON-array dataset file and normalizes its records.
---@param path string
---@param opts table|nil { columns = { prompt = "question", ... }, types = { ... } (accepted types),
---  raw = false (true: ds.raw keeps the records as read) }
---@return table dataset { path=, type=, conversational=, source=, implicit_prompt=, description=, records=, where= }
function data.load(path, opts)
  check.value("cai.data.load", "path", path, { type = "string", nonempty = true })
  opts = check("cai.data.load", opts, { columns = COLUMNS, types = TYPES, raw = "boolean" })
  local records, where = read_raw(path)
  if #records == 0 then error(path .. ": no records", 0) end
  local ds = data.from_records(records, { columns = opts.columns, where = where, name = path, types = opts.types })
  ds.path = path
  if opts.raw then ds.raw = records end
  return ds
end

---True when v is a dataset made by cai.data.load / from_records.
function data.is_dataset(v)
  return type(v) == "table" and type(v.records) == "table" and type(v.type) == "string" and type(v.where) == "table"
end

-- ---- Records as training text -------------------------------------------
--
-- Conversations are rendered with the tokenizer's chat template
-- (tok:apply_chat_template, cai.chat). The text each assistant turn adds is
-- found by rendering prefixes, as TRL does: the turn starts where the
-- rendering of the messages before it with the generation prompt ends, and
-- ends where the rendering that includes it ends. Every such rendering must
-- be a prefix of the longer ones; a template that renders a turn differently
-- depending on what follows it breaks that, and is reported instead of
-- training on tokens that do not line up (TRL issues 1820 and 2054).

local function render(tok, messages, add_generation_prompt, kwargs)
  local o = {}
  for k, v in pairs(kwargs or {}) do o[k] = v end
  o.add_generation_prompt = add_generation_prompt or nil
  o.tokenize = false
  return require("cai.chat").apply_chat_template(tok, messages, o)
end

---Whether tok (a tokenizer) has a chat template in its directory.
function data.has_chat_template(tok)
  local dir = tok and tok.dir
  if type(dir) ~= "string" or dir == "" then return false end
  local ok, chat = pcall(require, "cai.chat")
  if not ok then
    if tostring(chat):find("module 'cai.chat' not found", 1, true) then return false end
    error(chat, 0)
  end
  return chat.has_template(dir)
end

---The recipe default: "chat" when the tokenizer has a chat template, else "instruction".
function data.default_format(tok)
  return data.has_chat_template(tok) and "chat" or "instruction"
end

local function show_at(text, at)
  local s = text:sub(math.max(1, at - 20), at + 20):gsub("\n", "\\n")
  return s
end

-- Checks that short (a rendering of fewer messages) is a prefix of long.
local function check_prefix(where, short, long, what_short, what_long)
  if long:sub(1, #short) == short then return end
  local at = 1
  while at <= #short and short:byte(at) == long:byte(at) do at = at + 1 end
  error(string.format("%s: the chat template renders %s as a text that is not a prefix of its rendering of %s "
    .. "(they differ at character %d: \"...%s...\" against \"...%s...\"); the template renders a turn "
    .. "differently depending on what follows it, so the trained tokens cannot be found by rendering prefixes "
    .. "(TRL issues 1820, 2054). Train on prompt/completion records (one assistant reply each) or use a template "
    .. "that renders earlier turns unchanged", where, what_short, what_long, at, show_at(short, at), show_at(long, at)), 0)
end

local function concat(a, b)
  local out = {}
  for _, m in ipairs(a) do out[#out + 1] = m end
  for _, m in ipairs(b) do out[#out + 1] = m end
  return out
end

---The pieces of a conversation for SFT: { { text =, trained = }, ... } whose
---concatenation is the template's rendering of messages; the trained pieces
---are the assistant turns (through their end-of-turn text), or the whole
---text when assistant_only_loss is false.
---@param tok any a tokenizer with a chat template
---@param messages table
---@param opts table|nil { assistant_only_loss = true, chat_template_kwargs = {}, where = "data[1]" }
function data.conversation_segments(tok, messages, opts)
  opts = opts or {}
  local where = opts.where or "conversation"
  local kwargs = opts.chat_template_kwargs
  local full = render(tok, messages, false, kwargs)
  if opts.assistant_only_loss == false then return { { text = full, trained = true } } end
  local segments, pos = {}, 0  -- pos: characters of full already in segments
  for k, m in ipairs(messages) do
    if m.role == "assistant" then
      if k == 1 then
        error(where .. ": the conversation starts with an assistant message; there is no prompt before it to "
          .. "condition on", 0)
      end
      local before = {}
      for i = 1, k - 1 do before[i] = messages[i] end
      local upto = {}
      for i = 1, k do upto[i] = messages[i] end
      local a = render(tok, before, true, kwargs)
      local b = k == #messages and full or render(tok, upto, false, kwargs)
      check_prefix(where, a, b, string.format("messages 1..%d with the generation prompt", k - 1),
        string.format("messages 1..%d", k))
      check_prefix(where, b, full, string.format("messages 1..%d", k), string.format("all %d messages", #messages))
      if #a < pos then
        error(string.format("%s: the chat template's generation prompt before message %d ends inside the previous "
          .. "assistant turn; the turns cannot be separated by rendering prefixes", where, k), 0)
      end
      if #a > pos then segments[#segments + 1] = { text = full:sub(pos + 1, #a), trained = false } end
      if #b > #a then segments[#segments + 1] = { text = full:sub(#a + 1, #b), trained = true } end
      pos = #b
    end
  end
  if #segments == 0 or pos == 0 then
    error(where .. ": the conversation has no assistant message to train on (assistant_only_loss = true)", 0)
  end
  if pos < #full then segments[#segments + 1] = { text = full:sub(pos + 1), trained = false } end
  return segments
end

---Prompt and completion texts of a conversational prompt/completion: the
---prompt rendered with the generation prompt, and what rendering the
---completion after it adds (its end-of-turn text included), as TRL's
---maybe_apply_chat_template splits them.
---@return string prompt_text, string completion_text
function data.conversation_completion(tok, prompt, completion, opts)
  opts = opts or {}
  local where = opts.where or "record"
  local p = render(tok, prompt, true, opts.chat_template_kwargs)
  local full = render(tok, concat(prompt, completion), false, opts.chat_template_kwargs)
  check_prefix(where, p, full, "the prompt messages with the generation prompt", "the prompt and the completion")
  return p, full:sub(#p + 1)
end

---A standard string prompt/completion as a one-turn conversation.
function data.as_messages(prompt, completion)
  local p = type(prompt) == "table" and prompt or { { role = "user", content = prompt } }
  if completion == nil then return p end
  local c = type(completion) == "table" and completion or { { role = "assistant", content = completion } }
  return p, c
end

return data

-- cai.chat and cai.jinja: real chat templates rendered byte for byte as
-- transformers renders them (tests/data/chat/golden.json, made by
-- tests/data/chat/make_golden.py with python3-jinja2), Jinja features one by
-- one, errors, and tok:apply_chat_template.
local cai = require "cai"
local spec = require "spec"

local DATA = "tests/data/chat"
local MODELS = { "qwen3", "gemma3", "llama3_1", "llama3_2", "qwen2_5", "mistral_nemo", "deepseek_v3" }

local read = spec.read

local write = spec.write

local conversations = cai.chat.decode_json(read(DATA .. "/conversations.json"), "conversations.json")
local golden = cai.chat.decode_json(read(DATA .. "/golden.json"), "golden.json")

local function check_result(want, ok, got, what)
  if want.text ~= nil then
    if not ok then error(what .. ": expected a render, got the error " .. tostring(got), 2) end
    spec.eq(got, want.text, what)
  else
    if ok then error(what .. ": expected an error (" .. want.error .. "), got a render", 2) end
    if want.raised then
      -- raise_exception(msg): the Lua error carries msg
      spec.truthy(tostring(got):find(want.error, 1, true), what .. ": error should carry '" .. want.error
        .. "', got " .. tostring(got))
    end
  end
end

spec.describe("cai.chat.render", function()
  for _, model in ipairs(MODELS) do
    spec.it("renders " .. model .. "'s template over " .. #conversations .. " conversations as transformers", function()
      local template, specials = cai.chat.template_of(DATA .. "/models/" .. model)
      spec.truthy(type(template) == "string" and #template > 100, "a real template")
      local n = 0
      for _, conv in ipairs(conversations) do
        local vars = {}
        for k, v in pairs(specials) do vars[k] = v end
        for k, v in pairs(conv.vars) do vars[k] = v end
        local ok, got = pcall(cai.chat.render, template, conv.messages, vars)
        check_result(golden.renders[model][conv.name], ok, got, model .. "/" .. conv.name)
        n = n + 1
      end
      spec.eq(n, 15)
    end)
  end

  spec.it("passes add_generation_prompt, tools and documents as transformers does (None when absent)", function()
    local t = "{{ add_generation_prompt }}|{{ tools }}|{{ documents }}|{{ tools is defined }}|{{ eos_token }}"
    spec.eq(cai.chat.render(t, {}, {}), "False|None|None|True|")
    spec.eq(cai.chat.render(t, {}, { add_generation_prompt = true, eos_token = "</s>" }), "True|None|None|True|</s>")
  end)

  spec.it("continue_final_message cuts after the final message's content", function()
    local t = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
    local msgs = { { role = "user", content = "hi" }, { role = "assistant", content = "Hello, " } }
    spec.eq(cai.chat.render(t, msgs, { continue_final_message = true }), "<user>hi</user><assistant>Hello, ")
    local trimmed = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>{% endfor %}"
    spec.eq(cai.chat.render(trimmed, msgs, { continue_final_message = true }), "<user>hi</user><assistant>Hello,")
    spec.raises(function()
      cai.chat.render(t, msgs, { continue_final_message = true, add_generation_prompt = true })
    end, "continue_final_message and add_generation_prompt are not compatible", true)
    spec.raises(function()
      cai.chat.render("{% for m in messages %}{{ m.role }}{% endfor %}", msgs, { continue_final_message = true })
    end, "the final message does not appear in the chat", true)
    local blocks = { { role = "user", content = { { type = "text", text = "go on" } } } }
    spec.eq(cai.chat.render("[{{ messages[0].content[0].text }}] end", blocks, { continue_final_message = true }),
      "[go on")
  end)

  spec.it("raise_exception(msg) becomes a Lua error carrying msg", function()
    local err = spec.raises(function()
      cai.chat.render("{{ raise_exception('Roles must alternate ' ~ messages|length) }}", { { role = "user" } })
    end, "Roles must alternate 1", true)
    spec.truthy(not err:find("chat template:", 1, true), "no template position on a raised message: " .. err)
  end)

  spec.it("strftime_now formats the current time", function()
    spec.eq(cai.chat.render("{{ strftime_now('%Y') }}", {}), os.date("%Y"))
  end)

  spec.it("checks its arguments", function()
    spec.raises(function() cai.chat.render(nil, {}) end, "cai.chat.render: argument 'template' must be a string", true)
    spec.raises(function() cai.chat.render("x", "hi") end, "messages must be a list", true)
    spec.raises(function() cai.chat.render("x", { "hi" }) end, "messages[1] must be a table", true)
    spec.raises(function() cai.chat.render("x", { { role = 3 } }) end, "messages[1].role must be a string", true)
    spec.raises(function() cai.chat.render("x", {}, { add_generation_prompt = "yes" }) end,
      "option 'add_generation_prompt' must be a boolean, got string", true)
    spec.raises(function() cai.chat.render("x", {}, { tools = "none" }) end, "option 'tools' must be a list", true)
    spec.raises(function() cai.chat.render("x", {}, "vars") end, "options must be a table, got string", true)
    spec.raises(function() cai.chat.render("x", {}, { [1] = true }) end, "option names must be strings", true)
    spec.raises(function() cai.chat.render("x", {}, { messages = {} }) end,
      "option 'messages' is the second argument, not a template variable", true)
    -- any other string key is a template variable
    spec.eq(cai.chat.render("{{ enable_thinking }}", {}, { enable_thinking = false }), "False")
  end)

  spec.it("keeps the key order of decoded JSON (cai.json, cai.jsonl, cai.chat) in tojson; others print sorted",
    function()
    local tools = cai.chat.decode_json('[{"type": "function", "function": {"name": "f", "parameters": {}}}]')
    spec.eq(cai.chat.render("{{ tools | tojson }}", {}, { tools = tools }),
      '[{"type": "function", "function": {"name": "f", "parameters": {}}}]')
    spec.eq(cai.chat.render("{{ tools | tojson }}", {}, { tools = { { type = "function", ["function"] = {
      name = "f" } } } }), '[{"function": {"name": "f"}, "type": "function"}]')
    local decoded = cai.json.decode('[{"type": "function", "function": {"name": "f", "description": "d"}}]')
    spec.eq(cai.json.key_order(decoded[1]), { "type", "function" })
    spec.eq(cai.chat.render("{{ tools | tojson }}", {}, { tools = decoded }),
      '[{"type": "function", "function": {"name": "f", "description": "d"}}]')
    local path = spec.tmpdir() .. "/calls.jsonl"
    write(path, '{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"z": 1, "a": 2}}}]}\n')
    local record = cai.jsonl.read(path)[1]
    spec.eq(cai.chat.render("{{ messages[0].tool_calls[0].function.arguments | tojson }}", { record }),
      '{"z": 1, "a": 2}')
    local ordered = cai.chat.ordered({ type = "function", name = "g" }, { "type", "name" })
    spec.eq(cai.chat.render("{{ t | tojson }}", {}, { t = ordered }), '{"type": "function", "name": "g"}')
  end)
end)

spec.describe("cai.jinja", function()
  local features = cai.chat.decode_json(read(DATA .. "/features.json"), "features.json")
  spec.it("renders " .. #features .. " feature templates as python3-jinja2 does", function()
    for _, case in ipairs(features) do
      local ok, got = pcall(function() return cai.jinja.compile(case.template, case.name):render(case.vars) end)
      check_result(golden.features[case.name], ok, got, case.name)
    end
  end)

  spec.it("names the template line and the feature it does not support", function()
    spec.raises(function() cai.jinja.compile("a\nb\n{% include 'x.j2' %}", "t") end,
      "t:3: unsupported Jinja feature: the 'include' statement", true)
    spec.raises(function() cai.jinja.compile("{% for x in y recursive %}{% endfor %}", "t") end,
      "t:1: unsupported Jinja feature: recursive for loops", true)
    spec.raises(function() cai.jinja.render("\n\n{{ x | frobnicate }}", { x = 1 }, "t") end,
      "t:3: unsupported Jinja feature: the 'frobnicate' filter", true)
    spec.raises(function() cai.jinja.render("{{ x is frob }}", {}, "t") end,
      "t:1: unsupported Jinja feature: the 'frob' test", true)
    spec.raises(function() cai.jinja.compile("{% do x.append(1) %}", "t") end,
      "unsupported Jinja feature: the 'do' statement", true)
  end)

  spec.it("reports syntax errors with the line", function()
    spec.raises(function() cai.jinja.compile("ok\n{% if x %}never closed", "t") end, "t:2: 'if' without 'endif'", true)
    spec.raises(function() cai.jinja.compile("{{ 1 + }}", "t") end, "t:1: expected an expression", true)
    spec.raises(function() cai.jinja.compile("{{ 'open }}", "t") end, "unterminated string", true)
    spec.raises(function() cai.jinja.compile("x\n\n{% endfor %}", "t") end, "t:3: unexpected 'endfor'", true)
    spec.raises(function() cai.jinja.compile("{{ x", "t") end, "not closed", true)
  end)

  spec.it("errors at render time name the line", function()
    spec.raises(function() cai.jinja.render("\n{{ missing.attr }}", {}, "t") end, "t:2: 'missing' is undefined", true)
    spec.raises(function() cai.jinja.render("{{ 'a' + 1 }}", {}, "t") end, "can only concatenate str", true)
    spec.raises(function() cai.jinja.render("{% for x in none %}{% endfor %}", {}, "t") end, "not iterable", true)
    spec.raises(function() cai.jinja.render("{{ l.append(1) }}", { l = { 1 } }, "t") end, "unsafe", true)
    spec.raises(function() cai.jinja.render("{% set x.a = 1 %}", { x = { a = 1 } }, "t") end,
      "only namespace() objects take attributes", true)
  end)
end)

spec.describe("tok:apply_chat_template", function()
  local dir = spec.tmpdir()
  local corpus = dir .. "/corpus.txt"
  local lines = {}
  for i = 1, 200 do
    lines[i] = "user assistant system hello world number " .. i .. " <|im_start|> <|im_end|> the quick brown fox"
  end
  write(corpus, table.concat(lines, "\n") .. "\n")
  local tokdir = dir .. "/tok"
  cai.tokenizer.train({ input = corpus, dir = tokdir, vocab_size = 400, model_type = "bpe",
                        user_defined_symbols = { "<|im_start|>", "<|im_end|>" } })
  local template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    .. "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}{{ eos_token if extra is defined }}"
  local msgs = { { role = "user", content = "hello world" }, { role = "assistant", content = "the fox" } }

  spec.it("refuses a tokenizer without a template, saying how to fix it", function()
    local tok = cai.tokenizer.load(tokdir)
    spec.raises(function() tok:apply_chat_template(msgs) end, "has no chat template", true)
  end)

  spec.it("reads chat_template.jinja beside the tokenizer and its special tokens", function()
    write(tokdir .. "/chat_template.jinja", template)
    local tok = cai.tokenizer.load(tokdir)
    spec.eq(tok.dir, tokdir)
    local text = tok:apply_chat_template(msgs, { add_generation_prompt = true })
    spec.eq(text, "<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\nthe fox<|im_end|>\n"
      .. "<|im_start|>assistant\n")
    local with_eos = tok:apply_chat_template(msgs, { extra = 1 })
    local config = cai.json.decode(read(tokdir .. "/tokenizer_config.json"))
    local eos = type(config.eos_token) == "table" and config.eos_token.content or config.eos_token
    spec.eq(with_eos:sub(-#eos), eos)
    local ids = tok:apply_chat_template(msgs, { add_generation_prompt = true, tokenize = true })
    spec.eq(ids, tok:encode(text, { add_special_tokens = false }))
    spec.raises(function() tok:apply_chat_template(msgs, { tokenize = "yes" }) end, "option 'tokenize' must be a boolean", true)
    spec.raises(function() tok:apply_chat_template(msgs, 5) end, "options must be a table", true)
  end)

  spec.it("takes a named template from tokenizer_config.json's list", function()
    local cfg_dir = dir .. "/named"
    os.execute("mkdir -p " .. cfg_dir)
    write(cfg_dir .. "/tokenizer_config.json", cai.json.encode({
      eos_token = "</s>",
      chat_template = { { name = "default", template = "D:{{ messages[0].content }}{{ eos_token }}" },
                        { name = "tool_use", template = "T:{{ tools | length }}" } } }))
    local template_text, specials = cai.chat.template_of(cfg_dir)
    spec.eq(template_text, "D:{{ messages[0].content }}{{ eos_token }}")
    spec.eq(specials.eos_token, "</s>")
    spec.eq(cai.chat.template_of(cfg_dir, "tool_use"), "T:{{ tools | length }}")
    spec.raises(function() cai.chat.template_of(cfg_dir, "nope") end, 'no chat template named "nope"', true)
    spec.eq(cai.chat.template_of(cfg_dir, nil, true), "T:{{ tools | length }}", "tools pick tool_use")
    write(cfg_dir .. "/tokenizer_config.json", cai.json.encode({
      chat_template = { { name = "a", template = "A" }, { name = "b", template = "B" } } }))
    spec.raises(function() cai.chat.template_of(cfg_dir) end, 'none named "default"', true)
    spec.eq(cai.chat.template_of(cfg_dir, "b"), "B")
  end)
end)

spec.run()

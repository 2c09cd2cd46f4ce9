-- Chat format through training: conversations are split into trained
-- assistant turns by rendering prefixes with the chat template, a template
-- whose prefix renderings are not prefixes is reported, and cai.train.sft /
-- cai.train.dpo take conversational data, files and TRL's formats.
--
-- The templates here are small Lua stand-ins for two real behaviours (ChatML,
-- and Qwen3's empty think block only on the final assistant turn), installed
-- as cai.chat, so the splitting logic is tested on its own.
local cai = require "cai"
local spec = require "spec"

local function chatml(messages, o)
  local out = {}
  for _, m in ipairs(messages) do out[#out + 1] = "<|im_start|>" .. m.role .. "\n" .. m.content .. "<|im_end|>\n" end
  if o.add_generation_prompt then out[#out + 1] = "<|im_start|>assistant\n" end
  return table.concat(out)
end

-- Like Qwen3: the assistant turn after the last user message gets "<think>\n\n</think>\n\n".
local function qwen3_like(messages, o)
  local last_user = 0
  for i, m in ipairs(messages) do if m.role == "user" then last_user = i end end
  local out = {}
  for i, m in ipairs(messages) do
    local content = m.content
    if m.role == "assistant" and i > last_user then content = "<think>\n\n</think>\n\n" .. content end
    out[#out + 1] = "<|im_start|>" .. m.role .. "\n" .. content .. "<|im_end|>\n"
  end
  if o.add_generation_prompt then out[#out + 1] = "<|im_start|>assistant\n" end
  return table.concat(out)
end

local active = chatml
local calls = {}
package.loaded["cai.chat"] = {
  apply_chat_template = function(tok, messages, o)
    calls[#calls + 1] = o
    return active(messages, o)
  end,
  has_template = function(dir) return true end,
}

local user = function(s) return { role = "user", content = s } end
local assistant = function(s) return { role = "assistant", content = s } end

local function texts(segments)
  local all, trained = {}, {}
  for _, s in ipairs(segments) do
    all[#all + 1] = s.text
    if s.trained then trained[#trained + 1] = s.text end
  end
  return table.concat(all), trained
end

spec.describe("cai.data.conversation_segments", function()
  spec.it("trains the assistant turns through their end-of-turn text, found by rendering prefixes", function()
    active = chatml
    local messages = { { role = "system", content = "Be brief." }, user("Hi"), assistant("Hello."), user("Sky?"),
      assistant("Blue.") }
    local segs = cai.data.conversation_segments({}, messages)
    local all, trained = texts(segs)
    spec.eq(all, chatml(messages, {}))
    spec.eq(trained, { "Hello.<|im_end|>\n", "Blue.<|im_end|>\n" })
    spec.eq(segs[1], { text = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
      .. "<|im_start|>assistant\n", trained = false })
    -- assistant_only_loss = false: the whole text.
    segs = cai.data.conversation_segments({}, messages, { assistant_only_loss = false })
    spec.eq(segs, { { text = chatml(messages, {}), trained = true } })
  end)

  spec.it("passes chat_template_kwargs to the template", function()
    active = chatml
    calls = {}
    cai.data.conversation_segments({}, { user("a"), assistant("b") }, { chat_template_kwargs = { enable_thinking = false } })
    spec.truthy(#calls > 0)
    for _, o in ipairs(calls) do spec.eq(o.enable_thinking, false) end
  end)

  spec.it("reports a template whose rendering of a prefix is not a prefix of the whole", function()
    active = qwen3_like
    -- One turn is fine: the think block is part of the trained text.
    local _, trained = texts(cai.data.conversation_segments({}, { user("Hi"), assistant("Hello.") }))
    spec.eq(trained, { "<think>\n\n</think>\n\nHello.<|im_end|>\n" })
    -- Two turns: the first assistant turn renders differently once a user message follows it.
    spec.raises(function()
      cai.data.conversation_segments({}, { user("Hi"), assistant("Hello."), user("Sky?"), assistant("Blue.") },
        { where = "chat.jsonl:4" })
    end, "chat.jsonl:4: the chat template renders messages 1..2 as a text that is not a prefix of its rendering of "
      .. "all 4 messages", true)
    active = chatml
    spec.raises(function() cai.data.conversation_segments({}, { assistant("x"), user("y") }) end,
      "starts with an assistant message", true)
    spec.raises(function() cai.data.conversation_segments({}, { user("y") }) end, "no assistant message", true)
  end)

  spec.it("splits a conversational prompt/completion as TRL does", function()
    active = chatml
    local p, c = cai.data.conversation_completion({}, { user("Sky?") }, { assistant("Blue.") })
    spec.eq(p, "<|im_start|>user\nSky?<|im_end|>\n<|im_start|>assistant\n")
    spec.eq(c, "Blue.<|im_end|>\n")
  end)
end)

-- Training on a tiny random model with a real byte-level BPE tokenizer.
local root = spec.tmpdir()
local dir = root .. "/tiny"
spec.random_model(dir, { seed = 5, config = { rms_norm_eps = 1e-5 } })

local function fresh()
  local m = cai.model.load(dir)
  m:add_lora{ r = 4, alpha = 8, seed = 3, targets = "all-linear" }
  return m
end

local function write(name, records)
  local path = root .. "/" .. name
  cai.jsonl.write(path, records)
  return path
end

spec.describe("cai.train.sft with conversations", function()
  spec.it("trains on a conversational JSONL file and the assistant turns become likely", function()
    active = chatml
    local convs = {
      { messages = { user("Say cat."), assistant("cat cat"), user("Again."), assistant("cat cat") } },
      { messages = { user("Say dog."), assistant("dog dog") } },
    }
    local path = write("conv.jsonl", convs)
    local m = fresh()
    local tok = m.tokenizer
    -- log p of the second turn's answer given the rendered history, as ids (no BOS: the template's own text).
    local prompt_text = chatml({ user("Say cat."), assistant("cat cat"), user("Again.") }, { add_generation_prompt = true })
    local function score()
      return m:logprobs({ tok:encode(prompt_text, { add_special_tokens = false }) },
        { tok:encode("cat cat<|im_end|>\n", { add_special_tokens = false }) })[1].mean
    end
    local before = score()
    local r = cai.train.sft{ model = m, data = path, out = root .. "/sft_conv", seed = 1, max_steps = 30,
      learning_rate = 2e-2, batch_size = 2, logging_steps = 10, progress = false }
    spec.eq(r.steps, 30)
    local after = score()
    spec.truthy(after > before + 0.5, string.format("assistant turn mean log-prob %.3f -> %.3f", before, after))
    m:release()
  end)

  spec.it("wraps standard prompt/completion records in the template with format = \"chat\"", function()
    active = chatml
    local m = fresh()
    calls = {}
    local r = cai.train.sft{ model = m, data = { { prompt = "Say cat.", completion = "cat" } }, format = "chat",
      out = root .. "/sft_wrap", max_steps = 2, progress = false, learning_rate = 1e-3 }
    spec.eq(r.steps, 2)
    spec.truthy(#calls >= 2, "the template rendered prompt and prompt + completion")
    m:release()
  end)

  spec.it("trains Alpaca and language-modeling files", function()
    local m = fresh()
    local path = root .. "/alpaca.json"
    cai.write_file(path, cai.json.encode({ { instruction = "Name a pet.", input = "", output = "A cat." } }))
    local r = cai.train.sft{ model = m, data = path, format = "instruction", out = root .. "/sft_alpaca",
      max_steps = 1, progress = false }
    spec.eq(r.steps, 1)
    r = cai.train.sft{ model = m, data = { { text = "The sky is blue." } }, out = root .. "/sft_text", max_steps = 1,
      progress = false }
    spec.eq(r.steps, 1)
    spec.raises(function()
      cai.train.sft{ model = m, data = { { prompt = "only a prompt" } }, out = root .. "/sft_bad" }
    end, "data[1]: the data is prompt-only, standard, but data takes prompt-completion or language-modeling", true)
    spec.raises(function()
      cai.train.sft{ model = m, data = { { messages = { user("a"), assistant("b") } } }, format = "instruction",
        out = root .. "/sft_bad2" }
    end, "is conversational; format = \"instruction\" takes standard (string) records", true)
    spec.raises(function()
      cai.train.sft{ model = m, data = { { q = "a", a = "b" } }, columns = { prompt = "q", completion = "a" },
        format = "jinja", out = root .. "/sft_bad3" }
    end, "option 'format' must be one of chat, instruction, raw; got \"jinja\"", true)
    r = cai.train.sft{ model = m, data = { { q = "a", a = "b" } }, columns = { prompt = "q", completion = "a" },
      out = root .. "/sft_cols", max_steps = 1, progress = false }
    spec.eq(r.steps, 1)
    m:release()
  end)
end)

spec.describe("cai.train.dpo with conversations", function()
  spec.it("trains on conversational pairs with an implicit prompt and the chosen answer gains", function()
    active = chatml
    local pairs_ = {}
    for i, w in ipairs({ "cat", "dog", "owl", "bee" }) do
      pairs_[i] = { chosen = { user("Say " .. w .. "."), assistant(w) }, rejected = { user("Say " .. w .. "."), assistant("no") } }
    end
    local m = fresh()
    local r = cai.train.dpo{ model = m, pairs = write("pairs.jsonl", pairs_), out = root .. "/dpo_conv", seed = 2,
      max_steps = 12, learning_rate = 2e-2, batch_size = 4, logging_steps = 12, progress = false, beta = 0.5 }
    spec.eq(r.steps, 12)
    spec.truthy(r["rewards/margins"] > 0, "margin " .. tostring(r["rewards/margins"]))
    m:release()
  end)
end)

spec.run()

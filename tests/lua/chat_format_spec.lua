-- cai.format: one prompt format for a recipe, chat or instruction.
-- cai.critique talks to a model with a chat template in that template:
-- answers are generated for the instruction as a user turn, critique and
-- revision prompts are sent as one user turn each (token ids of the rendered
-- text, no stop strings: the end of turn ends the reply), and a reply that
-- repeats the "Critique:" label parses the same. A model without a template
-- keeps the plain Instruction/Response text. The template is a small ChatML
-- stand-in installed as cai.chat; the tokenizer "encodes" a text as { text }.
local spec = require "spec"
local cai = require "cai"

package.loaded["cai.chat"] = {
  apply_chat_template = function(tok, messages, o)
    local out = {}
    for _, m in ipairs(messages) do out[#out + 1] = "<|im_start|>" .. m.role .. "\n" .. m.content .. "<|im_end|>\n" end
    if o.add_generation_prompt then out[#out + 1] = "<|im_start|>assistant\n" end
    return table.concat(out)
  end,
  has_template = function(dir) return dir == "chat-dir" end,
}

local tok = { dir = "chat-dir" }
function tok:encode(text, opts)
  assert(opts and opts.add_special_tokens == false, "chat prompts are encoded without special tokens")
  return { text }
end

local function fake_model(tokenizer, respond)
  local m = { calls = {}, tokenizer = tokenizer }
  function m:generate(prompts, opts)
    self.calls[#self.calls + 1] = { prompts = prompts, opts = opts }
    local out = {}
    for i, p in ipairs(prompts) do out[i] = { text = respond(p, #self.calls), finish = "eos", tokens = {} } end
    return out
  end
  return m
end

local principles = {
  { id = "helpful", title = "Helpful", critique = "Find unhelpful parts.", revision = "Make it helpful.", weight = 1,
    tags = {}, examples = {} },
}

spec.describe("cai.format", function()
  spec.it("chat: prompts are the rendered user turn as ids, no stop strings, trimmed answers", function()
    local f = cai.format.new(tok, "auto", { enable_thinking = false })
    spec.eq(f.name, "chat")
    spec.eq(f:prompts({ "Hi" }), { { "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" } })
    spec.eq(f:generate_options({ max_new_tokens = 5 }), { max_new_tokens = 5 })
    spec.eq(f:response("  Hello.\n"), "Hello.")
    spec.eq(f:ended({ text = "Hello.", finish = "eos" }), true)
    spec.eq(f:ended({ text = "Hello.", finish = "length" }), false)
    local p, c, eos = f:scoring("Hi", "Hello.")
    spec.eq({ p, c, eos }, { { "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" }, { "Hello.<|im_end|>\n" }, false })
    spec.eq(f:sft_data({ { instruction = "Hi", response = "Hello." } }), { { prompt = "Hi", completion = "Hello." } })
    local pairs_ = f:scoring_pairs({ { instruction = "Hi", chosen = "Hello.", rejected = "Go.", negative_type = "x" } })
    spec.eq(pairs_[1].rejected, { "Go.<|im_end|>\n" })
    spec.eq(pairs_[1].negative_type, "x")
  end)

  spec.it("instruction: the Instruction/Response/END text", function()
    local f = cai.format.new({ dir = "plain-dir" }, "auto")
    spec.eq(f.name, "instruction")
    spec.eq(f:prompt("Hi"), "Instruction: Hi\nResponse:")
    spec.eq(f:generate_options({}).stop, { "END" })
    spec.eq(f:response(" Hello.\nEND\nInstruction: more"), "Hello.")
    local p, c, eos = f:scoring("Hi", "Hello.")
    spec.eq({ p, c, eos }, { "Instruction: Hi\nResponse:", " Hello.\nEND", true })
    spec.raises(function() cai.format.new({ dir = "plain-dir" }, "chat") end, "has no chat template", true)
    spec.raises(function() cai.format.new(tok, "jinja") end, "format must be \"chat\", \"instruction\" or \"auto\"", true)
  end)
end)

spec.describe("cai.critique in chat format", function()
  spec.it("sends answers and critiques as user turns of the chat template", function()
    local m = fake_model(tok, function(p, call)
      if call == 1 then return "  Paris.  " end
      return "Critique: Too short.\nRevision: The capital of France is Paris, a city on the Seine."
    end)
    local records = cai.critique.run(m, { "What is the capital of France?" }, { principles = principles, seed = 1 })
    spec.eq(#m.calls, 2)
    local answer_prompt = m.calls[1].prompts[1]
    spec.eq(answer_prompt, { "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" })
    spec.eq(m.calls[1].opts.stop, nil)
    local critique_prompt = m.calls[2].prompts[1][1]
    spec.truthy(critique_prompt:match("^<|im_start|>user\nYou critique and improve responses"), critique_prompt)
    spec.truthy(critique_prompt:match("Original Response: Paris%.\nCritique:<|im_end|>\n<|im_start|>assistant\n$"),
      critique_prompt)
    spec.eq(records[1].initial_answer, "Paris.")
    spec.eq(records[1].critique, "Too short.")
    spec.eq(records[1].revised_answer, "The capital of France is Paris, a city on the Seine.")
  end)

  spec.it("parses a reply without the Critique label too", function()
    local m = fake_model(tok, function() return "Too short.\nRevision: The capital of France is Paris, on the Seine river." end)
    local records = cai.critique.run(m, { { instruction = "Capital of France?", answer = "Paris." } },
      { principles = principles, seed = 1 })
    spec.eq(records[1].critique, "Too short.")
    spec.eq(records[1].revised_answer, "The capital of France is Paris, on the Seine river.")
  end)

  spec.it("keeps plain text prompts without a template, or with format = \"instruction\"", function()
    for _, case in ipairs({ { { dir = "plain-dir" }, nil }, { tok, "instruction" } }) do
      local m = fake_model(case[1], function(p, call)
        if call == 1 then return " Paris.\nEND" end
        return " Fine.\nRevision: KEEP_ORIGINAL"
      end)
      cai.critique.run(m, { "Capital of France?" }, { principles = principles, seed = 1, format = case[2] })
      spec.eq(m.calls[1].prompts[1], "Instruction: Capital of France?\nResponse:")
      spec.eq(type(m.calls[2].prompts[1]), "string")
    end
  end)

  spec.it("refuses format = \"chat\" for a tokenizer without a template", function()
    local m = fake_model({ dir = "plain-dir" }, function() return "x" end)
    spec.raises(function() cai.critique.run(m, { "Q?" }, { principles = principles, format = "chat" }) end,
      "has no chat template", true)
  end)
end)

spec.run()

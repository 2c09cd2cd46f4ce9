local spec = require "spec"
local write = spec.write
local cai = require "cai"
local S = cai.scoring

spec.describe("scoring.reward_model", function()
  spec.it("fails loudly without a config.json", function()
    local dir = spec.tmpdir()
    spec.raises(function() S.reward_model(dir) end, "has no config%.json")
    os.remove(dir)
  end)
  spec.it("refuses a causal LM", function()
    local dir = spec.tmpdir()
    write(dir .. "/config.json", '{"architectures": ["LlamaForCausalLM"]}')
    spec.raises(function() S.reward_model(dir) end, "expected a %*ForSequenceClassification")
    os.remove(dir .. "/config.json"); os.remove(dir)
  end)
  spec.it("refuses more than one label", function()
    local dir = spec.tmpdir()
    write(dir .. "/config.json", '{"architectures": ["LlamaForSequenceClassification"], "num_labels": 2}')
    spec.raises(function() S.reward_model(dir) end, "num_labels is 2")
    os.remove(dir .. "/config.json"); os.remove(dir)
  end)
  spec.it("never falls back to a heuristic when the loader is missing or fails", function()
    local dir = spec.tmpdir()
    write(dir .. "/config.json", '{"architectures": ["LlamaForSequenceClassification"], "num_labels": 1}')
    local ok, model = pcall(function() return cai.model end)
    if not ok or type(model) ~= "table" or not model.load_reward then
      spec.raises(function() S.reward_model(dir) end, "Refusing to fall back to a heuristic")
    else
      -- the directory has no weights: the real loader must fail, loudly
      spec.raises(function() S.reward_model(dir) end, "failed to load reward model")
    end
    os.remove(dir .. "/config.json"); os.remove(dir)
  end)
  spec.it("scores in one batch through a loader (fake cai.model.load_reward)", function()
    local dir = spec.tmpdir()
    write(dir .. "/config.json", '{"architectures": ["LlamaForSequenceClassification"], "num_labels": 1}')
    local calls = {}
    local fake = { load_reward = function(d, o)
      return { score = function(self, texts)
        calls[#calls + 1] = texts
        local out = {}
        for i, t in ipairs(texts) do out[i] = #t / 10 end
        return out
      end }
    end }
    local saved = rawget(cai, "model")
    rawset(cai, "model", fake)
    local ok, err = pcall(function()
      local rm = S.reward_model(dir)
      spec.eq(#calls, 1)          -- the pre-flight check
      local scores = rm:score({ "Q", "Q" }, { "a", "abc" })
      spec.eq(#calls, 2)
      spec.eq(calls[2][1], "Instruction: Q\nResponse: a")
      spec.near(scores[2] - scores[1], 0.2, 1e-12)
      local records = S.score_records(rm, { { instruction = "Q", initial_answer = "long base answer", revised_answer = "r" } })
      spec.eq(records[1].chosen, "base")
      spec.truthy(records[1].score_delta < 0)
      spec.eq(#calls, 3)          -- both sides in one call
      -- a broken scorer is an error, not a fallback
      fake.load_reward = function() return { score = function() return { 0 / 0 } end } end
      spec.raises(function() S.reward_model(dir) end, "non%-finite score")
    end)
    rawset(cai, "model", saved)
    os.remove(dir .. "/config.json"); os.remove(dir)
    if not ok then error(err, 0) end
  end)
  spec.it("cai.reward.load is the same loader", function()
    spec.eq(S.reward.load, S.reward_model)
  end)
end)

spec.describe("scoring.logprob", function()
  local model = { calls = {} }
  function model:logprobs(prompts, completions, opts)
    self.calls[#self.calls + 1] = { prompts = prompts, completions = completions, opts = opts }
    local out = {}
    for i = 1, #prompts do
      local base = -#completions[i]
      out[i] = { sum = opts.use_lora and base + 2 or base, mean = opts.use_lora and -1 or -2, n = #completions[i] }
    end
    return out
  end
  spec.it("uses the policy log-prob, or beta * (policy - reference)", function()
    local lp = S.logprob(model)
    spec.eq(lp:score({ "Q" }, { "abc" }), { -2 })
    spec.eq(model.calls[1].opts.use_lora, nil)
    spec.eq(model.calls[1].prompts[1], "Instruction: Q\nResponse:")
    spec.eq(model.calls[1].completions[1], " abc")
    local imp = S.logprob(model, { reference = "base", beta = 0.1, normalize = "sum" })
    local s = imp:score({ "Q", "Q" }, { "a", "bb" })
    spec.near(s[1], 0.2, 1e-12)
    spec.eq(#model.calls, 3)
    spec.eq(model.calls[3].opts.use_lora, false)
  end)
end)

spec.describe("scoring.judge", function()
  spec.it("parses scores and choices", function()
    spec.eq(S.parse_score("Score: 7"), 7)
    spec.eq(S.parse_score(" 8\nbecause"), 8)
    spec.eq(S.parse_score("Score: 42"), nil)
    spec.eq(S.parse_score("no idea"), nil)
    spec.eq(S.parse_choice("Better: B"), "B")
    spec.eq(S.parse_choice(" a, clearly"), "A")
    spec.eq(S.parse_choice("Both"), nil)
  end)
  spec.it("rates in one batch and never guesses unparseable ratings", function()
    local calls = 0
    local m = { generate = function(self, prompts)
      calls = calls + 1
      return { { text = " 9" }, { text = " dunno" } }
    end }
    local j = S.judge(m, { rubric = { "helpful" } })
    local s = j:score({ "q1", "q2" }, { "r1", "r2" })
    spec.eq(calls, 1)
    spec.eq(s[1], 9)
    spec.eq(s[2], nil)
    spec.eq(j.unparsed, 1)
  end)
  spec.it("compares in both orders", function()
    local m = { generate = function(self, prompts)
      local out = {}
      for i, p in ipairs(prompts) do
        -- prefers the response containing "good", wherever it is
        local a = p:match("Response A: ([^\n]*)")
        out[i] = { text = a:find("good") and " A" or " B" }
      end
      return out
    end }
    local j = S.judge(m)
    spec.eq(j:compare({ "q", "q" }, { "good one", "bad" }, { "bad", "good two" }), { "a", "b" })
    local biased = S.judge({ generate = function(self, prompts)
      local out = {}
      for i = 1, #prompts do out[i] = { text = " A" } end
      return out
    end })
    spec.eq(biased:compare({ "q" }, { "x" }, { "y" }), { "tie" })
  end)
end)

spec.describe("scoring.heuristic", function()
  spec.it("only by name", function()
    local h = S.heuristic("length", { target_words = 4 })
    spec.eq(h:score({ "q", "q" }, { "one two three four", "one two" }), { 0, -0.5 })
    spec.raises(function() S.heuristic("magic") end, "unknown heuristic 'magic' %(known: eval, length%)")
    local e = S.heuristic("eval")
    local s = e:score({ "What is the capital of France?" }, { "The capital of France is Paris.\nEND" })
    spec.eq(s[1], 1)
  end)
end)
spec.run()

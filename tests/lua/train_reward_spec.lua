-- cai.train.reward on a tiny random model: the logged loss is TRL's
-- Bradley-Terry loss of the scores the saved out/model gives; on a separable
-- toy set the chosen side comes to score higher; bad options are refused.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()
local dir = root .. "/tiny"
spec.random_model(dir, { seed = 5, config = { rms_norm_eps = 1e-5 } })

local pairs_ = {
  { prompt = "Is ice cold?", chosen = "Yes, thank you.", rejected = "No." },
  { prompt = "Is fire cold?", chosen = "No, thank you.", rejected = "Yes." },
  { prompt = "Is snow white?", chosen = "Yes, thank you.", rejected = "No." },
  { prompt = "Is coal white?", chosen = "No, thank you.", rejected = "Yes." },
}

local function log_sigmoid(x)
  if x < 0 then return x - math.log(1 + math.exp(x)) end
  return -math.log(1 + math.exp(-x))
end

-- Scores of the pairs' sides under a saved reward model.
local function scores_of(model_dir)
  local rm = cai.scoring.reward_model(model_dir, { preflight = false })
  local prompts, chosen, rejected = {}, {}, {}
  for i, p in ipairs(pairs_) do prompts[i], chosen[i], rejected[i] = p.prompt, p.chosen, p.rejected end
  local c, r = rm:score(prompts, chosen), rm:score(prompts, rejected)
  rm:release()
  return c, r
end

spec.describe("cai.train.reward", function()
  spec.it("logs the Bradley-Terry loss of the scores its saved model gives (learning rate 0)", function()
    local m = cai.model.load(dir)
    local r = cai.train.reward{ model = m, pairs = pairs_, out = root .. "/bt", full = true, max_steps = 1,
      learning_rate = 0, batch_size = 4, progress = false, seed = 7 }
    spec.eq(r.model_dir, root .. "/bt/model")
    local config = cai.json.decode(spec.read(r.model_dir .. "/config.json"))
    spec.eq(config.architectures, { "LlamaForSequenceClassification" })
    spec.eq(config.num_labels, 1)
    local c, rj = scores_of(r.model_dir)
    local loss, correct, margin = 0, 0, 0
    for i = 1, #pairs_ do
      loss = loss - log_sigmoid(c[i] - rj[i]) / #pairs_
      if c[i] > rj[i] then correct = correct + 1 end
      margin = margin + (c[i] - rj[i]) / #pairs_
    end
    spec.near(r.loss, loss, 1e-4)
    spec.near(r.accuracy, correct / #pairs_, 1e-9)
    spec.near(r.margin, margin, 1e-4)
    m:release()
  end)

  spec.it("makes the chosen side score higher on a separable toy set, with LoRA or all weights", function()
    for _, full in ipairs({ false, true }) do
      local m = cai.model.load(dir)
      if not full then m:add_lora{ r = 4, alpha = 8, seed = 3, targets = "all-linear" } end
      local logged = {}
      local out = root .. "/sep_" .. tostring(full)
      local r = cai.train.reward{ model = m, pairs = pairs_, eval_pairs = pairs_, out = out, full = full,
        epochs = 20, learning_rate = 1e-2, batch_size = 2, logging_steps = 5, eval_steps = 40, schedule = "constant",
        progress = false, seed = 3, on_log = function(metrics) logged[#logged + 1] = metrics end }
      spec.eq(r.steps, 40)
      for _, key in ipairs({ "loss", "accuracy", "margin", "mean_reward", "grad_norm", "learning_rate" }) do
        spec.eq(type(logged[1][key]), "number", key)
      end
      spec.truthy(r.loss < logged[1].loss, "loss falls")
      local eval_line = logged[#logged]
      spec.eq(eval_line.eval_accuracy, 1)
      spec.eq(type(eval_line.eval_margin), "number")
      local c, rj = scores_of(r.model_dir)
      for i = 1, #pairs_ do spec.truthy(c[i] > rj[i], "pair " .. i .. " chosen scores higher") end
      m:release()
    end
  end)

  spec.it("resumes a finished run and writes the same reward model", function()
    local function run()
      local m = cai.model.load(dir)
      local r = cai.train.reward{ model = m, pairs = pairs_, out = root .. "/again", full = true, max_steps = 4,
        learning_rate = 1e-2, batch_size = 2, save_steps = 2, progress = false }
      m:release()
      return r, spec.read(r.model_dir .. "/model.safetensors")
    end
    local _, first = run()
    local r2, second = run()
    spec.eq(r2.resumed_from, root .. "/again/checkpoints/step-4")
    spec.truthy(first == second, "same bytes")
  end)

  spec.it("refuses what it cannot train", function()
    local m = cai.model.load(dir)
    spec.raises(function() cai.train.reward{ model = m, pairs = pairs_, out = root .. "/e1", progress = false } end,
      "no LoRA adapters; call m:add_lora{...} first, or pass full = true", true)
    spec.raises(function() cai.train.reward{ model = m, pairs = {}, out = root .. "/e2", full = true } end,
      "cai.train.reward: option 'pairs'", true)
    spec.raises(function() cai.train.reward{ model = m, pairs = pairs_, out = root .. "/e3", full = true,
      center_rewards_coefficient = -1 } end, "center_rewards_coefficient", true)
    spec.raises(function() cai.train.reward{ model = m, pairs = { { prompt = { { role = "user", content = "hi" } },
      chosen = { { role = "assistant", content = "a" } }, rejected = { { role = "assistant", content = "b" } } } },
      out = root .. "/e4", full = true } end, "conversational", true)
    m:add_lora{ r = 4, alpha = 8, seed = 3 }
    spec.raises(function() cai.train.reward{ model = m, pairs = pairs_, out = root .. "/e5", full = true } end,
      "full = true trains every weight, but the model has LoRA adapters", true)
    spec.raises(function() cai.train.reward{ model = m, pairs = pairs_, out = root .. "/e6", keep_best = "eval_loss",
      eval_pairs = pairs_, eval_steps = 1 } end, "keep_best needs full = true", true)
    m:release()
  end)
end)

spec.run()

-- cai.train.dpo on a tiny random model: on a separable toy set the chosen
-- rewards rise above the rejected ones; bad records and options are refused.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()
local dir = root .. "/tiny"

local _, vocab = spec.random_model(dir, { seed = 5, config = { rms_norm_eps = 1e-5 } })

-- Separable: the chosen answer is always the polite one.
local pairs_ = {
  { prompt = "Is ice cold?", chosen = " Yes, thank you.", rejected = " No." },
  { prompt = "Is fire cold?", chosen = " No, thank you.", rejected = " Yes." },
  { prompt = "Is snow white?", chosen = " Yes, thank you.", rejected = " No." },
  { prompt = "Is coal white?", chosen = " No, thank you.", rejected = " Yes." },
}

local function fresh()
  local m = cai.model.load(dir)
  m:add_lora{ r = 4, alpha = 8, seed = 3, targets = "all-linear" }
  return m
end

spec.describe("cai.train.dpo", function()
  spec.it("makes chosen completions win on a separable toy set, logging TRL's metric names", function()
    local m = fresh()
    local logged = {}
    local r = cai.train.dpo{ model = m, pairs = pairs_, out = root .. "/dpo1", seed = 3, epochs = 15, beta = 0.5,
                             learning_rate = 1e-2, batch_size = 2, logging_steps = 5, schedule = "constant",
                             progress = false, on_log = function(metrics) logged[#logged + 1] = metrics end }
    spec.eq(r.steps, 30)
    spec.eq(#logged, 6)
    for _, key in ipairs({ "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                           "logps/chosen", "logps/rejected", "loss", "grad_norm", "learning_rate", "epoch" }) do
      spec.eq(type(logged[1][key]), "number", key)
    end
    spec.eq(r["rewards/accuracies"], 1)
    spec.truthy(r["rewards/margins"] > logged[1]["rewards/margins"], "margins grow")
    spec.truthy(r.loss < logged[1].loss, "loss falls")
    -- The reference is the model with its adapters off: m:logprobs with use_lora = false is unchanged.
    local prompts, chosen = {}, {}
    for i, p in ipairs(pairs_) do prompts[i], chosen[i] = p.prompt, p.chosen end
    local base = cai.model.load(dir):logprobs(prompts, chosen)
    local off = m:logprobs(prompts, chosen, { use_lora = false })
    for i = 1, #pairs_ do spec.near(off[i].sum, base[i].sum, 1e-4) end
  end)

  spec.it("refuses bad records and options, naming them", function()
    local m = fresh()
    local out = root .. "/dpo_bad"
    spec.raises(function() cai.train.dpo{ model = m, pairs = { { prompt = "a", chosen = "b" } }, out = out } end,
      "pairs%[1%]: a preference record needs both \"chosen\" and \"rejected\"")
    spec.raises(function() cai.train.dpo{ model = m, pairs = { { prompt = "a", chosen = "b", rejected = 1 } }, out = out } end,
      "pairs%[1%]: preference record: field \"rejected\" must be a string")
    spec.raises(function() cai.train.dpo{ model = m, pairs = pairs_, out = out, loss = "sigmoidal" } end,
      "option 'loss' must be one of sigmoid, .*ipo.*; got \"sigmoidal\" %(did you mean sigmoid%?%)")
    spec.raises(function() cai.train.dpo{ model = m, pairs = pairs_, out = out, bta = 0.1 } end,
      "unknown option 'bta' %(did you mean beta%?%)")
    spec.raises(function() cai.train.dpo{ model = m, pairs = pairs_, out = out, reference = "copy" } end,
      "adapter_off")
    spec.raises(function() cai.train.dpo{ model = m, pairs = pairs_, out = out, reference = 3 } end,
      "'reference' must be \"adapter_off\" or a model")
    spec.raises(function() cai.train.dpo{ model = m, pairs = pairs_, out = out, reference_cache = "yes" } end,
      "'reference_cache' must be a boolean")
  end)

  spec.it("takes a separate reference model, and a reference cache on disk, with the same metrics", function()
    local function run(out, extra)
      local opts = { model = fresh(), pairs = pairs_, out = root .. "/" .. out, seed = 3, epochs = 2, beta = 0.5,
                     learning_rate = 1e-2, batch_size = 2, logging_steps = 1, progress = false }
      for k, v in pairs(extra) do opts[k] = v end
      return cai.train.dpo(opts)
    end
    local plain = run("ref_plain", {})
    local separate = run("ref_model", { reference = cai.model.load(dir) })
    local cached = run("ref_cache", { reference_cache = true })
    local rpo = run("rpo", { rpo_alpha = 0.5 })
    spec.eq(type(rpo.nll_loss), "number", "nll_loss logged")
    spec.eq(plain.nll_loss, nil)
    local evals = {}
    local ev = run("eval", { eval_pairs = { pairs_[1], pairs_[2] }, eval_steps = 1, keep_best = "eval_loss",
                             on_log = function(t) if t.eval_loss then evals[#evals + 1] = t end end })
    spec.eq(#evals, ev.steps)
    spec.eq(type(evals[1]["eval_rewards/accuracies"]), "number")
    spec.eq(ev.best.dir, root .. "/eval/best")
    spec.raises(function() run("eval_bad", { eval_pairs = { { prompt = "a" } }, eval_steps = 1 }) end,
      "eval_pairs%[1%]: the data is prompt%-only, standard, but eval_pairs takes preference")
    local f = io.open(root .. "/ref_cache/reference_logps.json")
    spec.truthy(f ~= nil, "reference_logps.json written")
    if f then f:close() end
    for _, key in ipairs({ "loss", "rewards/chosen", "rewards/rejected", "logps/chosen" }) do
      spec.near(separate[key], plain[key], 1e-4, key)
      spec.near(cached[key], plain[key], 1e-4, key)
    end
  end)
end)

spec.run()

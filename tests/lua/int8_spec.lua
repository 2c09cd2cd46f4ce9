-- cai.model.load(dir, { weights = "int8" }): logits close to the float model,
-- generation whose samples do not depend on the batch size, LoRA training on
-- the frozen int8 base, and the operations that need float weights refused.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()
local dir = root .. "/m"
spec.random_model(dir, { seed = 5, config = { rms_norm_eps = 1e-5, hidden_size = 64, intermediate_size = 128 } })

local prompts = { "the cat sat on the mat", "hello", "a longer prompt with several words in it", "one more" }

-- Mean KL(float || int8) of the next-token distributions over every position of ids.
local function mean_kl(a, b, ids)
  local la, lb = a:logits({ ids }), b:logits({ ids })
  local shape = la:shape()
  local total = 0
  for t = 1, shape[2] do
    local ma, mb = -math.huge, -math.huge
    for v = 1, shape[3] do ma = math.max(ma, la:at(1, t, v)); mb = math.max(mb, lb:at(1, t, v)) end
    local za, zb = 0, 0
    for v = 1, shape[3] do za = za + math.exp(la:at(1, t, v) - ma); zb = zb + math.exp(lb:at(1, t, v) - mb) end
    for v = 1, shape[3] do
      local lpa = la:at(1, t, v) - ma - math.log(za)
      local lpb = lb:at(1, t, v) - mb - math.log(zb)
      total = total + math.exp(lpa) * (lpa - lpb)
    end
  end
  return total / shape[2]
end

spec.describe("int8 weights", function()
  spec.it("give logits within a small KL of the float model, in fp32 and bf16 compute", function()
    for _, dtype in ipairs({ "fp32", "bf16" }) do
      local f = cai.model.load(dir, { dtype = dtype })
      local q = cai.model.load(dir, { dtype = dtype, weights = "int8" })
      spec.eq(q:info().weights, "int8")
      spec.eq(f:info().weights, dtype)
      spec.eq(q:info().parameters, f:info().parameters)
      local ids = f.tokenizer:encode(prompts[3])
      local kl = mean_kl(f, q, ids)
      spec.truthy(kl < 2e-3, dtype .. ": mean KL " .. kl)
      f:release()
      q:release()
    end
  end)

  spec.it("generate the same samples whatever the batch size, greedy and seeded", function()
    local q = cai.model.load(dir, { weights = "int8" })
    for _, opts in ipairs({ { temperature = 0 }, { temperature = 1.0, top_k = 20, seed = 3 } }) do
      local runs = {}
      for _, batch in ipairs({ 1, 3, 16 }) do
        runs[batch] = q:generate(prompts, { max_new_tokens = 12, temperature = opts.temperature, top_k = opts.top_k,
          seed = opts.seed, batch_size = batch, progress = false })
      end
      for i = 1, #prompts do
        spec.eq(runs[3][i].tokens, runs[1][i].tokens, "prompt " .. i .. " batch 3")
        spec.eq(runs[16][i].tokens, runs[1][i].tokens, "prompt " .. i .. " batch 16")
      end
    end
    q:release()
  end)

  spec.it("train LoRA adapters on the frozen int8 base, and refuse what needs float weights", function()
    local q = cai.model.load(dir, { weights = "int8" })
    q:add_lora{ r = 4, alpha = 8, seed = 3, targets = "all-linear" }
    local logged = {}
    local r = cai.train.sft{ model = q, data = spec.sft_examples(), out = root .. "/sft", max_steps = 12,
      learning_rate = 1e-2, batch_size = 2, logging_steps = 1, progress = false,
      on_log = function(m) logged[#logged + 1] = m end }
    spec.eq(r.steps, 12)
    spec.truthy(logged[#logged].loss < logged[1].loss, "loss falls")
    q:save_lora(root .. "/adapter")
    spec.truthy(spec.exists(root .. "/adapter/adapter_model.safetensors"))
    -- The adapter loads onto the float model too.
    local f = cai.model.load(dir)
    f:load_lora(root .. "/adapter")
    f:release()
    spec.raises(function() q:merge_lora() end, "the model's weights are int8", true)
    q:remove_lora()
    spec.raises(function() q:save(root .. "/saved") end, "the model's weights are int8", true)
    spec.truthy(not spec.exists(root .. "/saved"), "nothing half-written")
    spec.raises(function() cai.train.sft{ model = q, data = spec.sft_examples(), out = root .. "/full", full = true,
      max_steps = 1, progress = false } end, "full = true but the model's weights are int8", true)
    q:release()
    spec.raises(function() cai.model.load(dir, { weights = "int4" }) end, "option 'weights'", true)
  end)
end)

spec.run()

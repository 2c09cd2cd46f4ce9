-- Resuming a trainer: only from a checkpoint made with the same data and
-- settings (each difference named; resume = "force" overrides), a fresh
-- metrics.jsonl when no checkpoint is there, and no temporaries of a killed
-- save left behind.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()
local dir = root .. "/tiny"

spec.random_model(dir, { seed = 5, config = { rms_norm_eps = 1e-5 } })

local data = spec.sft_examples()
local pairs_ = {
  { prompt = "The cat", chosen = " sat.", rejected = " flew." },
  { prompt = "A dog", chosen = " ran.", rejected = " swam." },
}

local function fresh()
  local m = cai.model.load(dir)
  m:add_lora{ r = 4, alpha = 8, seed = 3, targets = "all-linear" }
  return m
end

local function sft(out, extra)
  local opts = { model = fresh(), data = data, out = out, max_steps = 4, batch_size = 2, save_steps = 2,
    logging_steps = 1, learning_rate = 1e-2, progress = false }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return cai.train.sft(opts)
end

local function steps_logged(path)
  local steps = {}
  for _, line in ipairs(cai.jsonl.read(path)) do steps[#steps + 1] = line.step end
  return steps
end

spec.describe("resuming cai.train.sft", function()
  local out = root .. "/sft"
  spec.it("continues from its checkpoint with the same data and settings", function()
    spec.eq(sft(out).steps, 4)
    local again = sft(out)
    spec.eq(again.steps, 4)
    spec.truthy(again.resumed_from:find("step-4", 1, true), again.resumed_from)
  end)
  spec.it("refuses a larger max_steps, naming the learning-rate schedule", function()
    spec.raises(function() sft(out, { max_steps = 6 }) end,
      "max_steps (was 4, now 6; the learning-rate schedule would change)", true)
  end)
  spec.it("refuses other data and other settings, naming each", function()
    local err = spec.raises(function()
      sft(out, { data = { data[2], data[1], data[3], data[4] }, learning_rate = 2e-2, seed = 9 })
    end, "it was made with other data or settings", true)
    spec.truthy(err:find("data (other training records)", 1, true), err)
    spec.truthy(err:find("learning_rate (was 0.01, now 0.02", 1, true), err)
    spec.truthy(err:find("seed (was 42, now 9)", 1, true), err)
    spec.truthy(err:find('resume = "force"', 1, true), err)
  end)
  spec.it("refuses a checkpoint of another starting model", function()
    local opts = { model = cai.model.load(dir), data = data, out = out, max_steps = 4, batch_size = 2,
      save_steps = 2, logging_steps = 1, learning_rate = 1e-2, progress = false }
    opts.model:add_lora{ r = 4, alpha = 8, seed = 4, targets = "all-linear" }
    spec.raises(function() cai.train.sft(opts) end, "model (it started from another model or adapter)", true)
  end)
  spec.it("continues anyway with resume = \"force\"", function()
    local r = sft(out, { max_steps = 6, resume = "force" })
    spec.eq(r.steps, 6)
    spec.raises(function() sft(out, { resume = "maybe" }) end, "cai.train.sft: option 'resume' must be true, false or \"force\", got \"maybe\"", true)
  end)
  spec.it("starts a fresh metrics.jsonl when no checkpoint is there, and cleans a killed save", function()
    local o = root .. "/restart"
    cai.write_file(o .. "/metrics.jsonl", '{"step":1,"loss":9}\n{"step":2,"loss":9}\n')
    cai.write_file(o .. "/checkpoints/step-2.tmp.999999999/tensors.safetensors", "partial")
    sft(o, { save_steps = 0 })
    spec.eq(steps_logged(o .. "/metrics.jsonl"), { 1, 2, 3, 4 })
    spec.truthy(not cai.exists(o .. "/checkpoints/step-2.tmp.999999999"), "the temporary is gone")
  end)
end)

spec.describe("resuming cai.train.dpo", function()
  local out = root .. "/dpo"
  local function dpo(extra)
    local opts = { model = fresh(), pairs = pairs_, out = out, max_steps = 2, batch_size = 2, save_steps = 1,
      logging_steps = 1, learning_rate = 1e-2, progress = false }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return cai.train.dpo(opts)
  end
  spec.it("refuses another beta and other pairs", function()
    spec.eq(dpo().steps, 2)
    spec.eq(dpo().steps, 2)
    spec.raises(function() dpo({ beta = 0.2 }) end, "beta (was 0.1, now 0.2)", true)
    spec.raises(function() dpo({ pairs = { pairs_[2], pairs_[1] } }) end, "data (other training records)", true)
  end)
end)

spec.run()
os.execute("rm -rf " .. root)

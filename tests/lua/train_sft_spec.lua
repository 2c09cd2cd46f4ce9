-- cai.train.sft on a tiny random model: loss falls, metrics.jsonl and
-- checkpoints are written, resume continues the run, bad records and
-- options are refused naming the record or field.
local cai = require "cai"
local spec = require "spec"
local read_lines = spec.read_lines

local root = spec.tmpdir()
local dir = root .. "/tiny"

local _, vocab = spec.random_model(dir, { seed = 5, config = { rms_norm_eps = 1e-5 } })

local data = spec.sft_examples()

local function fresh()
  local m = cai.model.load(dir)
  m:add_lora{ r = 4, alpha = 8, seed = 3, dropout = 0.1, targets = "all-linear" }
  return m
end

local function mean_logprob(m)
  local prompts, responses = {}, {}
  for i, r in ipairs(data) do prompts[i], responses[i] = r.prompt, r.response end
  local total = 0
  for _, s in ipairs(m:logprobs(prompts, responses)) do total = total + s.mean end
  return total / #data
end

spec.describe("cai.train.sft", function()
  spec.it("trains all weights (full = true) so the responses become likely, logging metrics", function()
    local m = cai.model.load(dir)
    local before = mean_logprob(m)
    local logged = {}
    local out = root .. "/run1"
    local r = cai.train.sft{ model = m, data = data, out = out, seed = 7, epochs = 20, learning_rate = 1e-2,
                             batch_size = 2, full = true, logging_steps = 5, warmup_steps = 2, progress = false,
                             on_log = function(metrics) logged[#logged + 1] = metrics end }
    spec.eq(r.steps, 40)
    spec.eq(r.interrupted, false)
    spec.eq(#logged, 8)
    spec.eq(logged[1].step, 5)
    spec.truthy(type(logged[1].loss) == "number" and type(logged[1].grad_norm) == "number", "loss and grad_norm")
    spec.truthy(logged[#logged].loss < 0.5 * logged[1].loss, "loss falls: " .. logged[1].loss .. " -> " .. logged[#logged].loss)
    spec.eq(r.loss, logged[#logged].loss)
    spec.eq(#read_lines(out .. "/metrics.jsonl"), 8)
    spec.truthy(r.checkpoint:match("step%-40$"), r.checkpoint)
    local after = mean_logprob(m)
    spec.truthy(after > before + 1, string.format("mean logprob %.3f -> %.3f", before, after))
  end)

  spec.it("resumes from the latest checkpoint with the same metrics as an uninterrupted run", function()
    local opts = function(m, out, steps)
      return { model = m, data = data, out = out, seed = 9, max_steps = steps, learning_rate = 1e-2,
               batch_size = 2, logging_steps = 1, save_steps = 3, progress = false }
    end
    local straight = root .. "/straight"
    local m1 = fresh()
    cai.train.sft(opts(m1, straight, 6))
    -- A run stopped after its step-3 checkpoint: the same run with step 6 removed.
    local split = root .. "/split"
    cai.train.sft(opts(fresh(), split, 6))
    local status = os.execute("rm -rf '" .. split .. "/checkpoints/step-6'")
    assert(status == 0 or status == true, "rm failed")
    local m2 = fresh()
    local r = cai.train.sft(opts(m2, split, 6))
    spec.truthy(r.resumed_from and r.resumed_from:match("step%-3$"), tostring(r.resumed_from))
    spec.eq(r.steps, 6)
    local want = read_lines(straight .. "/metrics.jsonl")
    spec.eq(#want, 6)
    spec.eq(table.concat(read_lines(split .. "/metrics.jsonl"), "\n"), table.concat(want, "\n"))
    spec.eq(mean_logprob(m2), mean_logprob(m1))
    local o = opts(fresh(), split, 6)
    o.resume = false
    spec.raises(function() cai.train.sft(o) end, "already holds checkpoints")
  end)

  spec.it("refuses bad records and options, naming them", function()
    local m = fresh()
    local out = root .. "/bad"
    spec.raises(function() cai.train.sft{ model = m, data = { { prompt = "a", response = "b" }, { prompt = "x" } }, out = out } end,
      "data%[2%]: this record is prompt%-only")
    spec.raises(function() cai.train.sft{ model = m, data = { { prompt = 3, response = "b" } }, out = out } end,
      "data%[1%]: prompt%-completion record: field \"prompt\" must be a string")
    spec.raises(function() cai.train.sft{ model = m, data = { { prompt = "a", response = "b" }, { prompt = "a", response = "" } },
      out = out, eos = false } end, "data%[2%]")
    spec.raises(function() cai.train.sft{ model = m, data = data, out = out, learning_rat = 1 } end,
      "unknown option 'learning_rat' %(did you mean learning_rate%?%)")
    spec.raises(function() cai.train.sft{ model = m, data = data, out = out, epochs = "2" } end,
      "option 'epochs' must be an integer, got string")
    spec.raises(function() cai.train.sft{ model = m, data = {}, out = out } end, "non%-empty list")
    spec.raises(function() cai.train.sft{ model = m, data = { data[1], nil, data[3] }, out = out } end,
      "data%[2%] is nil")
    spec.raises(function() cai.train.sft{ model = m, data = data, out = out, progress = false, max_steps = 1,
      on_log = function() error("boom") end, logging_steps = 1 } end, "boom")
    spec.raises(function() cai.train.sft{ model = m, data = data, out = out, eval_data = { { prompt = "a" } }, eval_steps = 1 } end,
      "eval_data%[1%]: the data is prompt%-only, standard, but eval_data takes")
    spec.raises(function() cai.train.sft{ model = m, data = data, out = out, eval_data = data, eval_steps = 1, keep_best = "eval_acc" } end,
      "keep_best \"eval_acc\" is not an eval metric; valid: eval_loss")
  end)

  spec.it("logs eval_loss every eval_steps and keeps the best adapter in out/best", function()
    local m = fresh()
    local out = root .. "/sft_eval"
    local evals = {}
    local r = cai.train.sft{ model = m, data = data, out = out, seed = 7, epochs = 4, learning_rate = 1e-2,
      batch_size = 2, logging_steps = 1, progress = false, eval_data = { data[1], data[2] }, eval_steps = 2,
      keep_best = "eval_loss", on_log = function(t) if t.eval_loss then evals[#evals + 1] = t end end }
    spec.truthy(#evals >= 2, "evaluations logged")
    spec.eq(r.eval_loss, nil, "the result is the last training line")
    local best = evals[1]
    for _, e in ipairs(evals) do if e.eval_loss < best.eval_loss then best = e end end
    spec.eq(r.best.dir, out .. "/best")
    spec.eq(r.best.step, best.step)
    spec.near(r.best.value, best.eval_loss, 1e-9)
    local f = io.open(out .. "/best/adapter_config.json")
    spec.truthy(f ~= nil, "PEFT adapter in out/best")
    if f then f:close() end
  end)
end)

spec.run()

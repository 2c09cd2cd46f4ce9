-- A small job for tests/recipes/interrupt_test.sh: SFT, DPO or a cai.stage
-- generation stage on a tiny random model, in a run directory, ending with a
-- summary.json that records the result (the trained adapter's fingerprint
-- and the last metrics, or the generated records' fingerprint). A run
-- stopped anywhere and run again must give the same summary.json bytes.
--
--   cairun tests/recipes/interrupt_job.lua kind=sft out=DIR
local cai = require "cai"

local args = cai.args{
  kind = "sft",     -- sft, dpo or stage
  out = "",         -- run directory
  model = "",       -- a model directory made by the test (built here when absent)
  steps = 40,       -- optimizer steps (sft, dpo)
  items = 48,       -- prompts (stage)
  pause_at = 0,     -- at this step (sft, dpo) or item (stage): write out/paused, then wait on pause=
  pause = "",       -- a FIFO nobody writes: the job waits there until the test stops it
}
if args.out == "" or args.model == "" then error("interrupt_job: out= and model= are required", 0) end
local run = cai.run.open(args.out, { may_change = { "pause_at", "pause" } })

if not cai.exists(args.model .. "/config.json") then
  local tok_dir = "tests/data/tokenizers/gpt2"
  cai.model.random(args.model, {
    model_type = "llama", vocab_size = cai.tokenizer.load(tok_dir):vocab_size(), hidden_size = 32,
    intermediate_size = 48, num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2,
    rms_norm_eps = 1e-5,
  }, { seed = 5 })
  for _, name in ipairs({ "tokenizer.json", "tokenizer_config.json" }) do
    local f = assert(io.open(tok_dir .. "/" .. name, "rb"))
    cai.write_file(args.model .. "/" .. name, f:read("*a"))
    f:close()
  end
end

local words = { "cat", "dog", "bird", "fish", "tree", "river", "stone", "cloud" }
local records = {}
for i = 1, 32 do
  local a, b = words[(i - 1) % 8 + 1], words[(i * 3) % 8 + 1]
  records[i] = { prompt = "The " .. a .. " and the " .. b, chosen = " are friends.", rejected = " " .. b .. " " .. a .. "!" }
end

-- The kill point: the test sees out/paused and stops the job while it waits
-- (opening a FIFO without a writer blocks; Ctrl-C interrupts the wait).
local function maybe_pause(at)
  if args.pause_at > 0 and at == args.pause_at and args.pause ~= "" then
    cai.write_file(args.out .. "/paused", tostring(at) .. "\n")
    local f = io.open(args.pause, "r")
    if f then f:close() end
  end
end

local m = cai.model.load(args.model)
local summary = { kind = args.kind }
if args.kind == "sft" or args.kind == "dpo" then
  m:add_lora{ r = 4, alpha = 8, seed = 3, dropout = 0.1, targets = "all-linear" }
  local st = run:stage(args.kind, { inputs = { model = m, records = records, steps = args.steps },
    outputs = { args.out .. "/" .. args.kind } })
  local common = { model = m, out = args.out .. "/" .. args.kind, seed = 7, max_steps = args.steps, batch_size = 4,
    learning_rate = 1e-2, schedule = "cosine", warmup_ratio = 0.1, logging_steps = 1, save_steps = 5,
    progress = false, on_log = function(line) maybe_pause(line.step) end }
  local result
  if args.kind == "sft" then
    local data = {}
    for i, r in ipairs(records) do data[i] = { prompt = r.prompt, response = r.chosen } end
    common.data = data
    result = cai.train.sft(common)
  else
    common.pairs = records
    common.beta = 0.1
    result = cai.train.dpo(common)
  end
  m:save_lora(args.out .. "/adapter")
  summary.adapter = cai.run.path_fingerprint(args.out .. "/adapter")
  summary.steps = result.steps
  summary.metrics = cai.jsonl.read(args.out .. "/" .. args.kind .. "/metrics.jsonl")
  st:finish{ steps = result.steps }
elseif args.kind == "stage" then
  local prompts = {}
  for i = 1, args.items do prompts[i] = records[(i - 1) % #records + 1].prompt .. " " .. i end
  local st = run:stage("generate", { inputs = { model = m, prompts = prompts }, outputs = { args.out .. "/answers.jsonl" } })
  local s = cai.stage.open(args.out .. "/answers.jsonl", { name = "answers" })
  local got = s:run(prompts, function(batch, first_index)
    for i = 1, #batch do maybe_pause(first_index + i) end
    local outs = m:generate(batch, { max_new_tokens = 24, temperature = 0.8, seed = 11, first_index = first_index,
      progress = false })
    local out = {}
    for i, o in ipairs(outs) do out[i] = { prompt = batch[i], text = o.text } end
    return out
  end, { batch_size = 2, key = function(p) return p end })
  summary.records = cai.run.fingerprint(got)
  summary.answers = cai.run.path_fingerprint(args.out .. "/answers.jsonl")
  st:finish{ items = #got }
else
  error("interrupt_job: kind must be sft, dpo or stage", 0)
end
run:write_summary(summary)
run:finish()
print("interrupt_job: done")

-- sft_helpful.lua: helpful-response fine-tuning with LoRA on a JSONL dataset,
-- with a held-out split and base-vs-tuned comparison.
--
--   data=: prompt/completion records as JSONL or one JSON array: TRL's
--          { "prompt", "completion" }, Alpaca { "instruction", "input", "output" }
--          or { "instruction", "response" } (cai.data.load)
--   format=chat|instruction|auto: the model's chat template, or the
--          Instruction:/Response:/END format (auto: chat when the tokenizer has a template)
--   -> seeded train / held-out split (eval_fraction)
--   -> LoRA SFT, loss on the response only, eval_loss on the held-out split
--      every eval_steps, the best adapter kept in sft/best
--   -> held-out: response NLL / perplexity of base and tuned, the nine criteria
--      on their generations, paired tests
--   -> side_by_side.jsonl and side_by_side.md: base and tuned answers next to
--      the reference; report.html
--
--   build/cairun recipes/sft_helpful.lua data=helpful.jsonl model=/models/gemma-2b out=runs/helpful
local cai = require "cai"
local template = cai.template

local args = cai.args{
  model = "tiny",
  dtype = "",                  -- compute dtype: "fp32" or "bf16"; "" = the loader's default
  data = "",                 -- prompt/completion JSONL or JSON array; "" = the synthetic world's
  format = "auto",           -- "chat" | "instruction" | "auto"
  enable_thinking = false,   -- chat templates that read it (Qwen3): no reasoning block
  examples = 300,            -- with data = "": how many to draw
  out = "runs/sft_helpful",
  seed = 42,
  eval_fraction = 0.15,
  max_eval = 100,            -- held-out examples generated for the comparison
  steps = 300,
  lr = 2e-3,                 -- LoRA learning rate (1e-4..5e-4 is usual for large models)
  warmup_ratio = 0.05,
  eval_steps = 50,
  lora_r = 16,
  lora_alpha = 32,
  lora_dropout = 0.05,
  batch_size = 16,
  max_new_tokens = 64,
  side_by_side = 20,         -- examples in side_by_side.md
}
local out = args.out
local run = cai.run.open(out)

-- 1. Data and split ---------------------------------------------------------
local records, items_by_text = {}, {}
if args.data ~= "" then
  local ds = cai.data.load(args.data, { types = { "prompt_completion" } })
  if ds.conversational then
    error(string.format("%s: sft_helpful.lua takes standard (string) prompt/completion records; the file is %s",
      args.data, ds.description), 0)
  end
  for i, r in ipairs(ds.records) do
    records[i] = { instruction = r.prompt, response = template.strip_end(r.completion) }
  end
else
  local world = cai.world.new{ seed = args.seed }
  for i, r in ipairs(world:instructions(args.examples, { split = "train" })) do
    records[i] = { instruction = r.instruction, response = r.reference }
    items_by_text[r.instruction] = world:eval_items({ r })[1]
  end
end
if #records < 4 then error(string.format("sft_helpful.lua: %s has %d records; need at least 4", args.data, #records), 0) end
local order = {}
for i = 1, #records do order[i] = i end
cai.rng(args.seed):shuffle(order)
local n_eval = math.max(1, math.floor(#records * args.eval_fraction + 0.5))
local train, heldout = {}, {}
for k, i in ipairs(order) do
  if k <= n_eval then heldout[#heldout + 1] = records[i] else train[#train + 1] = records[i] end
end
cai.log.info(string.format("sft_helpful: %d train, %d held-out examples", #train, #heldout))

-- 2. LoRA SFT with held-out eval_loss and the best adapter kept.
local m = cai.model.load(args.model, args.dtype ~= "" and { dtype = args.dtype } or nil)
local f = cai.format.new(m.tokenizer, args.format, { enable_thinking = args.enable_thinking })
m:add_lora{ r = args.lora_r, alpha = args.lora_alpha, dropout = args.lora_dropout, targets = "all-linear",
  seed = args.seed }
local result = cai.train.sft{ model = m, data = f:sft_data(train), eval_data = f:sft_data(heldout), format = f.name,
  chat_template_kwargs = f.chat_template_kwargs, out = out .. "/sft",
  seed = args.seed, max_steps = args.steps, learning_rate = args.lr, batch_size = args.batch_size,
  warmup_ratio = args.warmup_ratio, schedule = "cosine", logging_steps = 10, eval_steps = args.eval_steps,
  save_steps = args.eval_steps, save_total_limit = 2, keep_best = "eval_loss" }
m:save_lora(out .. "/sft/adapter")

-- 3. Held-out comparison: base = the same model with its adapter off.
local eval_rows = {}
for i = 1, math.min(args.max_eval, #heldout) do eval_rows[i] = heldout[i] end
-- Response NLL: the response through END (instruction) or through the end of turn (chat).
local prompts, scored_prompts, responses = {}, {}, {}
for i, r in ipairs(eval_rows) do
  prompts[i] = f:prompt(r.instruction)
  scored_prompts[i], responses[i] = f:scoring(r.instruction, r.response)
end
local gen = f:generate_options{ max_new_tokens = args.max_new_tokens, temperature = 0, seed = args.seed }
local outputs, nll = {}, {}
for _, side in ipairs({ { "base", false }, { "tuned", true } }) do
  local name, use_lora = side[1], side[2]
  local g = { use_lora = use_lora }
  for k, v in pairs(gen) do g[k] = v end
  outputs[name] = m:generate(prompts, g)
  local lp = m:logprobs(scored_prompts, responses, { use_lora = use_lora })
  local total, tokens = 0, 0
  for _, x in ipairs(lp) do total, tokens = total - x.sum, tokens + x.n end
  nll[name] = { nll_per_token = total / tokens, perplexity = math.exp(total / tokens), tokens = tokens }
end
local eval_items = {}
for i, r in ipairs(eval_rows) do eval_items[i] = items_by_text[r.instruction] or { instruction = r.instruction, reference = r.response } end
local report = cai.eval.run(eval_items, outputs, { stop_means_end = true, eos_means_end = f.name == "chat" })
local summary = { train = #train, heldout = #heldout, sft = result, heldout_nll = nll, models = {},
  comparison = cai.eval.compare(report, "base", "tuned") }
for _, name in ipairs({ "base", "tuned" }) do summary.models[name] = report.models[name].rates end
run:write_summary(summary)  -- summary.json, status "finished"
run:finish()

-- 4. Side by side.
local rows, md = {}, { "# Base vs tuned on held-out instructions", "" }
for i = 1, math.min(args.side_by_side, #eval_rows) do
  rows[i] = { instruction = eval_rows[i].instruction, reference = eval_rows[i].response,
    base = outputs.base[i].text, tuned = outputs.tuned[i].text }
  md[#md + 1] = string.format("## %d. %s\n\n**reference:** %s\n\n**base:** %s\n\n**tuned:** %s\n", i,
    rows[i].instruction, rows[i].reference, rows[i].base, rows[i].tuned)
end
cai.jsonl.write(out .. "/side_by_side.jsonl", rows)
cai.write_file(out .. "/side_by_side.md", table.concat(md, "\n"))
cai.jsonl.write(out .. "/samples.jsonl", rows)  -- the report's side-by-side section
cai.report.collect_metrics(out, { "sft" })
cai.report.build(out)

print(cai.eval.format(report))
print(cai.eval.format_comparison(summary.comparison))
print(string.format("held-out response perplexity: base %.2f, tuned %.2f", nll.base.perplexity, nll.tuned.perplexity))
print("sft_helpful: done, side-by-side in " .. out .. "/side_by_side.md")

-- evaluate.lua: compares any set of models and adapters on one JSONL set.
--
--   models=  comma-separated name=dir or name=dir+adapter_dir
--            ("tiny" is the embedded model; an adapter is a PEFT directory)
--   data=    JSONL; records with "instruction" (and optional "reference",
--            "facts", "should_refuse", "min_words", "max_words") are answered
--            and checked on the nine criteria; records with "prompt",
--            "chosen" and "rejected" give preference accuracy. "" = the
--            synthetic world's held-out instructions and pairs.
--   format=  how each model is prompted: "chat" (its tokenizer's chat template,
--            each instruction a user turn, answers end at the end of turn),
--            "instruction" (Instruction:/Response:/END) or "auto" (chat for a
--            model whose tokenizer has a template, per model). Preference pairs
--            are scored in the same format.
--   safety_classifier=, unsafe_labels=  a BERT-family safety classifier and
--            its unsafe labels: a "safety" criterion (P(safe) >= 0.5) beside
--            the nine, compared with paired tests and intervals.
--
--   build/cairun recipes/evaluate.lua \
--     models=base=tiny,sft=runs/quickstart/sft/merged,dpo=runs/quickstart/sft/merged+runs/quickstart/dpo/adapter
--
-- Writes out/outputs/<name>.jsonl (resumable), summary.json (rates with 95%
-- intervals, each model against the first with paired tests) and report.html.
local cai = require "cai"

local args = cai.args{
  dtype = "",                  -- compute dtype: "fp32" or "bf16"; "" = the loader's default
  format = "auto",             -- "chat" | "instruction" | "auto" (chat when a model's tokenizer has a chat template)
  enable_thinking = false,     -- chat templates that read it (Qwen3): no reasoning block
  models = "base=tiny",
  data = "",
  out = "runs/evaluate",
  seed = 42,
  n = 100,                   -- with data = "": held-out instructions drawn
  max_new_tokens = 64,
  gen_batch = 32,
  safety_classifier = "",    -- a *ForSequenceClassification safety classifier dir: adds a "safety" criterion
  unsafe_labels = "",        -- comma-separated labels of safety_classifier that mean unsafe
}
local out = args.out
local run = cai.run.open(out, { may_change = { "gen_batch" } })

-- Models: name=dir[+adapter], in the order given.
local specs = {}
for entry in args.models:gmatch("[^,]+") do
  local name, dir = entry:match("^%s*([%w_%-]+)%s*=%s*(.-)%s*$")
  if not name or dir == "" then
    error("evaluate.lua: models= entries must be name=dir or name=dir+adapter, got \"" .. entry .. "\"", 0)
  end
  local base, adapter = dir:match("^(.-)%+(.+)$")
  specs[#specs + 1] = { name = name, dir = base or dir, adapter = adapter }
end
if #specs == 0 then error("evaluate.lua: models= names no model", 0) end

-- Data. Preference pairs are kept as plain { instruction, chosen, rejected }
-- answers for chat-format models and as Instruction:/Response:/END text for
-- instruction-format ones (a data= record with prompt/chosen/rejected is used
-- as written in instruction format; in chat format its prompt is the user turn).
local items, pref, judge = {}, {}, nil
local pref_plain = {}
if args.data ~= "" then
  for i, r in ipairs(cai.jsonl.read(args.data)) do
    if type(r) ~= "table" then error(string.format("%s:%d: expected a JSON object", args.data, i), 0) end
    if type(r.prompt) == "string" and type(r.chosen) == "string" and type(r.rejected) == "string" then
      pref[#pref + 1] = { prompt = r.prompt, chosen = r.chosen, rejected = r.rejected,
        negative_type = r.negative_type or r.type }
      pref_plain[#pref] = { instruction = r.prompt, chosen = r.chosen, rejected = r.rejected,
        negative_type = r.negative_type or r.type }
    elseif type(r.instruction) == "string" then
      items[#items + 1] = r
    else
      error(string.format("%s:%d: expected \"instruction\" or \"prompt\"/\"chosen\"/\"rejected\" string fields",
        args.data, i), 0)
    end
  end
else
  local world = cai.world.new{ seed = args.seed }
  local heldout = world:instructions(args.n, { split = "heldout" })
  items = world:eval_items(heldout)
  judge = world:factual_judge()
  local with_ref = {}
  for i, r in ipairs(heldout) do
    with_ref[i] = { instruction = r.instruction, response = r.reference, should_refuse = r.should_refuse }
  end
  for i, p in ipairs(cai.negatives.generate(with_ref, { seed = args.seed + 1 })) do
    pref[i] = { prompt = p.prompt, chosen = p.chosen, rejected = p.rejected, negative_type = p.negative_type }
  end
  for i, p in ipairs(cai.negatives.generate(with_ref, { seed = args.seed + 1, format = "raw" })) do
    pref_plain[i] = { instruction = p.instruction, chosen = p.chosen, rejected = p.rejected,
      negative_type = p.negative_type }
  end
end
if #items == 0 and #pref == 0 then error("evaluate.lua: " .. args.data .. " holds no records", 0) end
local instructions = {}
for i, it in ipairs(items) do instructions[i] = it.instruction end

-- Each model in turn, in its format: answers (a resumable stage), preference accuracy.
local outputs, accuracy, wins, formats = {}, {}, {}, {}
for _, s in ipairs(specs) do
  local m = cai.model.load(s.dir, args.dtype ~= "" and { dtype = args.dtype } or nil)
  if s.adapter then m:load_lora(s.adapter) end
  local f = cai.format.new(m.tokenizer, args.format, { enable_thinking = args.enable_thinking })
  formats[s.name] = f.name
  cai.log.info("evaluate: " .. s.name .. " in " .. f.name .. " format")
  if #items > 0 then
    local st = cai.stage.open(out .. "/outputs/" .. s.name .. ".jsonl", { name = "answers " .. s.name })
    local answers = st:run(instructions, function(batch, first_index)
      local outs = m:generate(f:prompts(batch), f:generate_options{ max_new_tokens = args.max_new_tokens,
        temperature = 0, seed = args.seed, first_index = first_index, progress = false })
      local records = {}
      for i, o in ipairs(outs) do
        records[i] = { instruction = batch[i], text = o.text, finish = o.finish, ended = f:ended(o) }
      end
      return records
    end, { batch_size = args.gen_batch })
    -- "ended": the answer ended as its format ends one (END, or the chat end of turn).
    outputs[s.name] = {}
    for i, a in ipairs(answers) do outputs[s.name][i] = { text = a.text, finish = a.ended and "stop" or a.finish } end
  end
  if #pref > 0 then
    local scored = f.name == "chat" and f:scoring_pairs(pref_plain) or pref
    accuracy[s.name], wins[s.name] = cai.eval.preference_accuracy(m, scored, { eos = f.name ~= "chat" })
  end
  m:release()
end

-- Summary: rates per model, each model against the first.
local summary = { models = {}, comparisons = {}, preference_tests = {}, formats = formats }
local report
if #items > 0 then
  local safety
  if args.safety_classifier ~= "" then
    local unsafe = {}
    for l in args.unsafe_labels:gmatch("[^,]+") do unsafe[#unsafe + 1] = l:match("^%s*(.-)%s*$") end
    safety = cai.scoring.classifier(args.safety_classifier, { unsafe_labels = unsafe })
  end
  report = cai.eval.run(items, outputs, { stop_means_end = true, factual_judge = judge, safety = safety })
  if safety then safety:release() end
end
local first = specs[1].name
for _, s in ipairs(specs) do
  local entry = {}
  if report then for criterion, r in pairs(report.models[s.name].rates) do entry[criterion] = r end end
  -- BLEU, chrF and ROUGE-L with intervals when the records carry a reference
  if report then entry.text_metrics = report.models[s.name].text_metrics end
  entry.preference_accuracy = accuracy[s.name]
  summary.models[s.name] = entry
  if s.name ~= first then
    local key = first .. "_" .. s.name
    if report then summary.comparisons[key] = cai.eval.compare(report, first, s.name) end
    if wins[s.name] then summary.preference_tests[key] = cai.stats.mcnemar_paired(wins[first], wins[s.name]) end
  end
end
run:write_summary(summary)  -- summary.json, status "finished"
run:finish()
if #items > 0 then
  local samples = {}
  for i = 1, math.min(12, #items) do
    samples[i] = { instruction = items[i].instruction, reference = items[i].reference,
      checks = cai.eval.item_checks(report, i) }
    for _, s in ipairs(specs) do samples[i][s.name] = outputs[s.name][i].text end
  end
  cai.jsonl.write(out .. "/samples.jsonl", samples)
end
cai.report.build(out)

if report then print(cai.eval.format(report)) end
for _, s in ipairs(specs) do
  local a = accuracy[s.name]
  if a then print(string.format("%-10s preference_accuracy %.2f [%.2f, %.2f] (n=%d)", s.name, a.rate, a.lo, a.hi, a.n)) end
end
print("evaluate: done, summary in " .. out .. "/summary.json")

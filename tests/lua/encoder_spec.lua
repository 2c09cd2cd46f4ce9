-- cai.model.load_classifier, encoder reward models and the encoder scorers:
-- token-id batches match the golden logits of tests/data/encoders; texts,
-- pairs and ids agree; a row's logits do not depend on its batch;
-- classify follows id2label and problem_type; cai.model.load_reward,
-- cai.scoring.reward_model (pairs), cai.scoring.classifier and the label
-- judge compute what they say.
local cai = require "cai"
local spec = require "spec"

local data = "tests/data/encoders"
local root = spec.tmpdir()

local read = spec.read

local function copy_tokenizer(from, to, files)
  for _, f in ipairs(files or { "tokenizer.json", "tokenizer_config.json" }) do
    local out = assert(io.open(to .. "/" .. f, "wb"))
    out:write(read(from .. "/" .. f))
    out:close()
  end
end

local function near(a, b, tol, what)
  if math.abs(a - b) > tol then error(string.format("%s: %.8f vs %.8f", what or "value", a, b), 2) end
end

-- A random classifier over one of the test tokenizers.
local function make(name, config, tok)
  local dir = root .. "/" .. name
  config.vocab_size = cai.tokenizer.load(data .. "/" .. tok):vocab_size()
  cai.model.random(dir, config, { seed = 11 })
  copy_tokenizer(data .. "/" .. tok, dir)
  return dir
end

local bert_dir = make("bert_safety", {
  architectures = { "BertForSequenceClassification" }, model_type = "bert", hidden_size = 32, num_hidden_layers = 2,
  num_attention_heads = 4, intermediate_size = 48, max_position_embeddings = 128, type_vocab_size = 2,
  id2label = { ["0"] = "safe", ["1"] = "unsafe" }, label2id = { safe = 0, unsafe = 1 },
}, "bert_tok")
local deberta_rm = make("deberta_rm", {
  architectures = { "DebertaV2ForSequenceClassification" }, model_type = "deberta-v2", hidden_size = 32,
  num_hidden_layers = 2, num_attention_heads = 4, intermediate_size = 48, max_position_embeddings = 128,
  type_vocab_size = 0, relative_attention = true, position_buckets = 16, pos_att_type = { "p2c", "c2p" },
  share_att_key = true, norm_rel_ebd = "layer_norm", position_biased_input = false, layer_norm_eps = 1e-7,
  id2label = { ["0"] = "LABEL_0" },
}, "deberta_tok")
-- RoBERTa numbers positions from pad_token_id + 1: the table covers the test tokenizer's pad id plus 128.
local roberta_pad = cai.tokenizer.load(data .. "/roberta_tok"):encode("<pad>", { add_special_tokens = false })[1]
local roberta_rm = make("roberta_rm", {
  architectures = { "RobertaForSequenceClassification" }, model_type = "roberta", hidden_size = 32,
  num_hidden_layers = 1, num_attention_heads = 4, intermediate_size = 48, max_position_embeddings = roberta_pad + 130,
  type_vocab_size = 1, pad_token_id = roberta_pad, num_labels = 1,
}, "roberta_tok")

local texts = { "The cat sat on the mat.", "Hello", "A much longer text that needs more tokens than the others do, "
  .. "so it is padded against them in a batch.", "Short one" }
local prompts = { "What is the capital of France?", "How do I pick a lock?", "Hi", "Tell me a story." }
local responses = { "Paris.", "I cannot help with that.", "Hello! How can I help you today?", "Once upon a time." }

-- DeBERTa-v3 as microsoft/deberta-v3-* ship it: spm.model, tokenizer_config.json and added_tokens.json only.
local deberta_spm_rm = root .. "/deberta_spm_rm"
cai.model.random(deberta_spm_rm, {
  architectures = { "DebertaV2ForSequenceClassification" }, model_type = "deberta-v2", hidden_size = 32,
  num_hidden_layers = 1, num_attention_heads = 4, intermediate_size = 48, max_position_embeddings = 128,
  type_vocab_size = 0, relative_attention = true, position_buckets = 16, pos_att_type = { "p2c", "c2p" },
  share_att_key = true, norm_rel_ebd = "layer_norm", position_biased_input = false, layer_norm_eps = 1e-7,
  vocab_size = cai.json.decode(read(data .. "/deberta_spm/golden.json")).vocab_size, num_labels = 1,
}, { seed = 12 })
copy_tokenizer(data .. "/deberta_spm", deberta_spm_rm, { "spm.model", "tokenizer_config.json", "added_tokens.json" })

spec.describe("cai.model.load_classifier", function()
  spec.it("loads a DeBERTa-v3 directory with spm.model and no tokenizer.json", function()
    local golden = cai.json.decode(read(data .. "/deberta_spm/golden.json"))
    local clf = cai.model.load_classifier(deberta_spm_rm)
    spec.eq(clf.config.has_tokenizer, true)
    local singles, pairs, firsts, seconds = {}, {}, {}, {}
    for i, c in ipairs(golden.single) do singles[i] = c.text end
    for i, c in ipairs(golden.pairs) do
      pairs[i], firsts[i], seconds[i] = { c.text, c.text_pair }, c.text, c.text_pair
    end
    local enc = clf:encode(singles)
    for i, c in ipairs(golden.single) do spec.eq(enc.input_ids[i], c.ids) end
    local penc = clf:encode(firsts, seconds)
    for i, c in ipairs(golden.pairs) do
      spec.eq(penc.input_ids[i], c.ids)
      spec.eq(penc.token_type_ids[i], c.token_type_ids)
    end
    -- texts and their ids give the same logits
    local by_text = clf:logits(pairs)
    local by_ids = clf:logits({ input_ids = penc.input_ids })
    for i = 1, #pairs do near(by_text[i][1], by_ids[i][1], 1e-5, "spm.model pair logits") end
    clf:release()
    local rm = cai.model.load_reward(deberta_spm_rm)
    local scores = rm:score(prompts, responses)
    spec.eq(#scores, #prompts)
    rm:release()
  end)

  spec.it("matches the golden logits for token-id batches with a padded row", function()
    for _, name in ipairs { "bert", "roberta", "distilbert", "deberta_v3", "deberta_v2" } do
      local golden = cai.json.decode(read(data .. "/" .. name .. "/golden.json"))
      local clf = cai.model.load_classifier(data .. "/" .. name)
      local logits = clf:logits({ input_ids = golden.input_ids, attention_mask = golden.attention_mask,
        token_type_ids = golden.token_type_ids })
      spec.eq(#logits, #golden.logits)
      for i, row in ipairs(golden.logits) do
        for l, v in ipairs(row) do near(logits[i][l], v, 1e-4, name .. " logit") end
      end
      spec.eq(clf.config.has_tokenizer, false)
      spec.raises(function() clf:logits({ "text" }) end, "without a tokenizer")
      clf:release()
    end
  end)

  spec.it("reads id2label and label2id", function()
    local clf = cai.model.load_classifier(data .. "/bert")
    spec.eq(clf.config.num_labels, 3)
    spec.eq(clf.config.id2label[0], "negative")
    spec.eq(clf.config.label2id.positive, 2)
    spec.eq(clf.config.problem_type, "single_label_classification")
    spec.eq(clf.config.model_type, "bert")
    clf:release()
  end)

  spec.it("gives the same logits for texts, their token ids and any batch", function()
    local clf = cai.model.load_classifier(bert_dir)
    local enc = clf:encode(texts)
    local by_text = clf:logits(texts, { batch_size = 3 })
    local by_ids = clf:logits({ input_ids = enc.input_ids, token_type_ids = enc.token_type_ids })
    for i = 1, #texts do
      local alone = clf:logits({ texts[i] })[1]
      for l = 1, 2 do
        near(by_text[i][l], by_ids[i][l], 1e-5, "ids vs text")
        near(by_text[i][l], alone[l], 1e-5, "alone vs batch")
      end
    end
    -- right-padded token batch
    local padded, mask, width = {}, {}, 0
    for _, row in ipairs(enc.input_ids) do width = math.max(width, #row + 3) end
    for i, row in ipairs(enc.input_ids) do
      padded[i], mask[i] = {}, {}
      for k = 1, width do
        padded[i][k] = row[k] or 0
        mask[i][k] = row[k] and 1 or 0
      end
    end
    local by_padded = clf:logits({ input_ids = padded, attention_mask = mask })
    for i = 1, #texts do near(by_padded[i][1], by_text[i][1], 1e-5, "padded") end
    spec.raises(function() clf:logits({ input_ids = { { 2, 5 } }, attention_mask = { { 0, 1 } } }) end, "pad on the right")
    clf:release()
  end)

  spec.it("encodes pairs as [CLS] a [SEP] b [SEP] with segments", function()
    local clf = cai.model.load_classifier(bert_dir)
    local enc = clf:encode({ "a question" }, { "an answer" })
    local types = enc.token_type_ids[1]
    spec.eq(types[1], 0)
    spec.eq(types[#types], 1)
    local pair = clf:logits({ { "a question", "an answer" } })[1]
    local same = clf:logits({ input_ids = enc.input_ids, token_type_ids = enc.token_type_ids })[1]
    near(pair[1], same[1], 1e-6, "pair")
    spec.raises(function() clf:logits({ "text", { "a", "b" } }) end, "one kind")
    clf:release()
  end)

  spec.it("classifies with softmax over id2label", function()
    local clf = cai.model.load_classifier(bert_dir)
    local out = clf:classify(texts)
    for i, r in ipairs(out) do
      near(r.probs.safe + r.probs.unsafe, 1, 1e-9, "sum")
      local best = r.probs.safe >= r.probs.unsafe and "safe" or "unsafe"
      spec.eq(r.label, best)
      near(r.score, r.probs[best], 1e-12, "score")
      local l = r.logits
      near(r.probs.unsafe, 1 / (1 + math.exp(l[1] - l[2])), 1e-9, "softmax " .. i)
    end
    clf:release()
  end)

  spec.it("loads in bf16 near float32", function()
    local a, b = cai.model.load_classifier(bert_dir), cai.model.load_classifier(bert_dir, { dtype = "bf16" })
    local la, lb = a:logits(texts), b:logits(texts)
    for i = 1, #texts do near(la[i][1], lb[i][1], 0.15, "bf16") end
    spec.eq(b.config.dtype, "bf16")
    a:release()
    b:release()
  end)

  spec.it("takes a tokenizer from another directory", function()
    local clf = cai.model.load_classifier(data .. "/bert", { tokenizer = bert_dir })
    spec.eq(clf.config.has_tokenizer, true)
    clf:release()
    spec.raises(function() cai.model.load_classifier(bert_dir, { tokenizer = root .. "/nowhere" }) end, "nowhere")
    spec.raises(function() cai.model.load_classifier(bert_dir, { device = "x" }) end, "unknown option")
  end)
end)

spec.describe("encoder reward models", function()
  spec.it("load_reward scores texts and (prompt, response) pairs", function()
    for _, dir in ipairs { deberta_rm, roberta_rm } do
      local rm = cai.model.load_reward(dir)
      local clf = cai.model.load_classifier(dir)
      local single = rm:score(texts, { batch_size = 2 })
      local pairs = rm:score(prompts, responses)
      local batch = {}
      for i = 1, #prompts do batch[i] = { prompts[i], responses[i] } end
      local expect_pairs, expect_single = clf:logits(batch), clf:logits(texts)
      for i = 1, #texts do near(single[i], expect_single[i][1], 1e-5, "text") end
      for i = 1, #prompts do near(pairs[i], expect_pairs[i][1], 1e-5, "pair") end
      spec.eq(rm:info().model_type, clf.config.model_type)
      rm:release()
      clf:release()
    end
    spec.raises(function() cai.model.load_reward(bert_dir) end, "num_labels is 2")
  end)

  spec.it("cai.scoring.reward_model feeds pairs to an encoder", function()
    local scorer = cai.scoring.reward_model(deberta_rm)
    local rm = cai.model.load_reward(deberta_rm)
    local got, want = scorer:score(prompts, responses), rm:score(prompts, responses)
    for i = 1, #prompts do near(got[i], want[i], 1e-6, "scorer") end
    local templated = cai.scoring.reward_model(deberta_rm, { template = "Q: {instruction} A: {response}" })
    local t = templated:score(prompts, responses)
    local single = rm:score({ "Q: " .. prompts[1] .. " A: " .. responses[1] })
    near(t[1], single[1], 1e-6, "template")
    rm:release()
  end)
end)

spec.describe("cai.scoring.classifier", function()
  spec.it("scores the safe side and names bad labels", function()
    local safety = cai.scoring.classifier(bert_dir, { unsafe_labels = { "unsafe" } })
    local clf = cai.model.load_classifier(bert_dir)
    local s = safety:score(prompts, responses)
    local u = safety:unsafe(prompts, responses)
    local c = clf:classify(responses)
    for i = 1, #prompts do
      near(u[i], c[i].probs.unsafe, 1e-6, "unsafe")
      near(s[i], 1 - u[i], 1e-12, "safe")
    end
    local paired = cai.scoring.classifier(bert_dir, { unsafe_labels = { "unsafe" }, pair = true })
    local p = paired:unsafe(prompts, responses)
    local cp = clf:classify({ { prompts[1], responses[1] } })
    near(p[1], cp[1].probs.unsafe, 1e-6, "pair")
    spec.raises(function() cai.scoring.classifier(bert_dir, { unsafe_labels = { "toxic" } }) end, "safe, unsafe")
    spec.raises(function() cai.scoring.classifier(bert_dir) end, "unsafe_labels")
    safety:release()
    paired:release()
    clf:release()
  end)
end)

spec.describe("cai.filters with a safety classifier", function()
  spec.it("drops pairs whose chosen response the classifier rates unsafe, scored in one batch", function()
    local safety = cai.scoring.classifier(bert_dir, { unsafe_labels = { "unsafe" } })
    local s = safety:score(prompts, responses)
    local threshold = 0
    for _, x in ipairs(s) do threshold = threshold + x / #s end  -- between the scores, so some fall under it
    local in_pairs, calls = {}, 0
    for i = 1, #prompts do
      in_pairs[i] = { prompt = prompts[i], chosen = responses[i], rejected = "a different reply number " .. i }
    end
    local counting = { score = function(_, p, r) calls = calls + 1; return safety:score(p, r) end }
    local kept, stats, dropped = cai.filters.apply(in_pairs, { safety = counting, min_safety = threshold, quiet = true,
      min_score_delta = false, near_duplicate = false })
    spec.eq(calls, 1)
    local want_kept, want_unsafe = 0, 0
    for _, x in ipairs(s) do
      if x < threshold then want_unsafe = want_unsafe + 1 else want_kept = want_kept + 1 end
    end
    spec.truthy(want_unsafe > 0 and want_kept > 0, "the threshold splits the responses")
    spec.eq({ #kept, stats.filtered_unsafe }, { want_kept, want_unsafe })
    for _, d in ipairs(dropped) do
      spec.eq(d.reason, "unsafe")
      near(d.safety, s[d.index], 1e-12, "dropped pair's safety score")
    end
    spec.raises(function() cai.filters.apply(in_pairs, { safety = 1 }) end, "option 'safety' must be a scorer")
    spec.raises(function() cai.filters.apply(in_pairs, { safety = counting, min_safety = 2 }) end, "min_safety")
    safety:release()
  end)
end)

spec.describe("cai.eval with a safety classifier", function()
  spec.it("adds a safety criterion and compares it with intervals", function()
    local safety = cai.scoring.classifier(bert_dir, { unsafe_labels = { "unsafe" } })
    local items = {}
    for i, p in ipairs(prompts) do items[i] = { instruction = p } end
    local a, b = {}, {}
    for i, r in ipairs(responses) do a[i] = r .. " END"; b[i] = texts[i] .. " END" end
    local report = cai.eval.run(items, { a = a, b = b }, { safety = safety, safety_threshold = 0.5 })
    spec.eq(report.criteria[#report.criteria], "safety")
    local safe = safety:score(prompts, responses)
    local pass = 0
    for i = 1, #safe do if safe[i] >= 0.5 then pass = pass + 1 end end
    spec.eq(report.models.a.rates.safety.pass, pass)
    spec.eq(report.models.a.rates.safety.n, #items)
    local cmp = cai.eval.compare(report, "a", "b")
    spec.eq(cmp.rows[#cmp.rows].criterion, "safety")
    spec.truthy(cmp.rows[#cmp.rows].lo ~= nil)
    spec.truthy(cai.eval.format(report):find("safety", 1, true))
    safety:release()
  end)
end)

spec.describe("cai.scoring.judge with labels", function()
  spec.it("scores by the labels' log-probs", function()
    -- a small random causal model with a test tokenizer (no chat template)
    local mdir = spec.random_model(root .. "/judge",
      { seed = 3, tokenizer = "llama_json", config = { rms_norm_eps = 1e-5, tie_word_embeddings = true } })
    local m = cai.model.load(mdir)
    local judge = cai.scoring.judge(m, { labels = { "safe", "unsafe" }, template = "{instruction} -> {response}. {labels}?",
      chat_template = false })
    local out = judge:classify({ prompts[1] }, { responses[1] })
    local text = prompts[1] .. " -> " .. responses[1] .. ". safe or unsafe?"
    local a = m:logprobs({ text }, { " safe" })[1].sum
    local b = m:logprobs({ text }, { " unsafe" })[1].sum
    near(out[1].probs.safe, 1 / (1 + math.exp(b - a)), 1e-9, "label prob")
    near(judge:score({ prompts[1] }, { responses[1] })[1], out[1].probs.safe, 1e-12, "score")
    spec.eq(out[1].label, a >= b and "safe" or "unsafe")
    spec.raises(function() cai.scoring.judge(m, { labels = { "only" } }) end, "at least two")
    spec.raises(function()
      cai.scoring.judge(m, { labels = { "safe", "unsafe" }, chat_template = true }):classify({ "a" }, { "b" })
    end, "has no chat template")
    m:release()
  end)

  spec.it("asks through the model's chat template when it has one (one BOS, the label as the reply)", function()
    local mdir = root .. "/judge"
    local f = assert(io.open(mdir .. "/chat_template.jinja", "w"))
    f:write("{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
      .. "{% if add_generation_prompt %}[assistant] {% endif %}")
    f:close()
    local m = cai.model.load(mdir)
    local tok = m.tokenizer
    local judge = cai.scoring.judge(m, { labels = { "safe", "unsafe" }, template = "{instruction} -> {response}. {labels}?" })
    local out = judge:classify({ prompts[1] }, { responses[1] })
    local text = prompts[1] .. " -> " .. responses[1] .. ". safe or unsafe?"
    local rendered = tok:apply_chat_template({ { role = "user", content = text } }, { add_generation_prompt = true })
    local ids = tok:encode(rendered, { add_special_tokens = false })
    local bos = 0
    for _, id in ipairs(ids) do if id == tok.bos_id then bos = bos + 1 end end
    spec.eq(bos, 1)
    local a = m:logprobs({ ids }, { tok:encode("safe", { add_special_tokens = false }) })[1].sum
    local b = m:logprobs({ ids }, { tok:encode("unsafe", { add_special_tokens = false }) })[1].sum
    near(out[1].probs.safe, 1 / (1 + math.exp(b - a)), 1e-9, "label prob through the chat template")
    -- chat_template = false still asks in plain text
    local plain = cai.scoring.judge(m, { labels = { "safe", "unsafe" }, template = "{instruction} -> {response}. {labels}?",
      chat_template = false }):classify({ prompts[1] }, { responses[1] })
    local pa = m:logprobs({ text }, { " safe" })[1].sum
    local pb = m:logprobs({ text }, { " unsafe" })[1].sum
    near(plain[1].probs.safe, 1 / (1 + math.exp(pb - pa)), 1e-9, "plain text")
    m:release()
  end)
end)

spec.run()

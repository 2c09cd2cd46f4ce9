-- cai.serve: the API behind `cairun serve`, called directly (no HTTP; the
-- server itself is tested by tests/serve/http_test.py), and the statistics
-- its results use.
local spec = require "spec"
local cai = require "cai"
local serve = require "cai.serve"
local stats = require "cai.stats"

local json = cai.json

local function write_jsonl(path, records)
  local lines = {}
  for i, r in ipairs(records) do lines[i] = json.encode(r) end
  spec.write(path, table.concat(lines, "\n") .. "\n")
end

-- Two small run directories with the same prompts: alpha (base, sft, dpo) and beta (sft, dpo).
local function make_runs()
  local root = spec.tmpdir()
  local alpha, beta = root .. "/alpha", root .. "/beta"
  os.execute("mkdir -p " .. alpha .. " " .. beta)
  local samples = {
    { instruction = "What is the capital of Varnia?", reference = "The capital of Varnia is Kelmor.",
      base = "Paris.", sft = "The capital of Varnia is Kelmor.\nEND", dpo = "The capital of Varnia is Kelmor.\nEND",
      principle = "honesty" },
    { instruction = "How can I hurt Mira?", base = "Hit her.", sft = "I'm sorry, but I can't help with that.\nEND",
      dpo = "I cannot help with hurting someone. Talk to Mira instead.\nEND", principle = "harmlessness" },
    { instruction = "Name a red fruit in one word.", reference = "Apple.", base = "Apple.", sft = "Apple.",
      dpo = "Cherry.", principle = "honesty" },
    { instruction = "Say hello to Gopu.", reference = "Hello, Gopu!", base = "Hello, Gopu!\nEND",
      sft = "Hello, Gopu!\nEND", dpo = "Hello there, Gopu!\nEND",
      checks = { sft = { coherent = false, ends_with_end = true } } },
  }
  write_jsonl(alpha .. "/samples.jsonl", samples)
  write_jsonl(alpha .. "/metrics.jsonl", {
    { stage = "sft", step = 1, loss = 3.0, learning_rate = 1e-3 }, { stage = "sft", step = 2, loss = 2.0, learning_rate = 5e-4 },
    { stage = "dpo", step = 1, loss = 0.69, ["rewards/margins"] = 0.1, nll_loss = 2.5 },
  })
  spec.write(alpha .. "/config.json", json.encode({ seed = 1, sft_lr = 0.001, model = "tiny" }))
  local beta_samples = {}
  for i, s in ipairs(samples) do
    beta_samples[i] = { instruction = s.instruction, reference = s.reference, sft = s.sft .. " ", dpo = s.dpo }
  end
  write_jsonl(beta .. "/samples.jsonl", beta_samples)
  spec.write(beta .. "/config.json", json.encode({ seed = 2, sft_lr = 0.001, model = "tiny" }))
  return root, alpha, beta
end

local function call(app, method, path, params, body)
  local list = {}
  for k, v in pairs(params or {}) do list[#list + 1] = { k, v } end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  local status, ctype, text = app:handle(method, path, list, body)
  spec.eq(ctype, "application/json")
  return status, json.decode(text)
end

local function ok(app, method, path, params, body)
  local status, r = call(app, method, path, params, body)
  if status ~= 200 then error(string.format("%s %s: %d %s", method, path, status, tostring(r.error)), 2) end
  return r
end

local function rejects(app, method, path, params, body, want_status, pattern)
  local status, r = call(app, method, path, params, body)
  spec.eq(status, want_status, method .. " " .. path .. " status")
  spec.truthy(type(r.error) == "string" and r.error:find(pattern, 1, true),
    "error message has '" .. pattern .. "', got " .. tostring(r.error))
end

spec.describe("cai.stats for judgments", function()
  spec.it("cohen_kappa matches hand-worked values", function()
    -- po = 3/4; pe = .5*.25 + .5*.75 = .5; kappa = (.75 - .5) / .5
    local k = stats.cohen_kappa({ "x", "x", "y", "y" }, { "x", "y", "y", "y" })
    spec.near(k.kappa, 0.5, 1e-12)
    spec.near(k.observed, 0.75, 1e-12)
    spec.near(k.expected, 0.5, 1e-12)
    spec.eq(k.n, 4)
    -- total disagreement on a balanced split: kappa = -1
    spec.near(stats.cohen_kappa({ "x", "y" }, { "y", "x" }).kappa, -1, 1e-12)
    spec.eq(stats.cohen_kappa({ "x", "x" }, { "x", "x" }).kappa, 1)
    spec.raises(function() stats.cohen_kappa({ "x" }, {}) end, "same length", true)
  end)

  spec.it("bradley_terry: two players give the win share, three satisfy the likelihood equations", function()
    local games = {}
    for _ = 1, 3 do games[#games + 1] = { a = "p", b = "q", winner = "p" } end
    games[#games + 1] = { a = "p", b = "q", winner = "q" }
    local bt = stats.bradley_terry({ "p", "q" }, games, { prior = 0 })
    spec.near(bt.strengths.p, 0.75, 1e-8)
    spec.near(bt.strengths.q, 0.25, 1e-8)
    -- three players: at the maximum, wins_i = sum_j n_ij * s_i / (s_i + s_j)
    local g3 = {}
    local function add(a, b, winner, n) for _ = 1, n do g3[#g3 + 1] = { a = a, b = b, winner = winner } end end
    add("x", "y", "x", 5); add("x", "y", "y", 2); add("y", "z", "y", 4); add("y", "z", "z", 3)
    add("x", "z", "x", 3); add("x", "z", "tie", 2)
    local s = stats.bradley_terry({ "x", "y", "z" }, g3, { prior = 0 }).strengths
    local wins = { x = 5 + 3 + 1, y = 2 + 4, z = 3 + 1 }
    local n = { x = { y = 7, z = 5 }, y = { x = 7, z = 7 }, z = { x = 5, y = 7 } }
    for i, row in pairs(n) do
      local expected = 0
      for j, nij in pairs(row) do expected = expected + nij * s[i] / (s[i] + s[j]) end
      spec.near(expected, wins[i], 1e-6, "likelihood equation for " .. i)
    end
    spec.near(s.x + s.y + s.z, 1, 1e-12)
    spec.truthy(s.x > s.y and s.y > s.z)
    spec.raises(function() stats.bradley_terry({ "x" }, { { a = "x", b = "w", winner = "x" } }) end, "games[1]", true)
  end)
end)

spec.describe("cai.serve", function()
  spec.it("loads runs: prompts merged across runs, models named by run, checks recorded or computed", function()
    local _, alpha, beta = make_runs()
    local one = serve.app({ alpha })
    spec.eq(one.models, { "base", "sft", "dpo" })
    local two = serve.app({ alpha, beta })
    spec.eq(#two.items, 4, "the same prompts in both runs are one item each")
    spec.eq(two.models, { "alpha/base", "alpha/sft", "alpha/dpo", "beta/sft", "beta/dpo" })
    local ov = ok(two, "GET", "/api/overview")
    spec.eq(ov.items, 4)
    spec.eq(ov.principles, { "harmlessness", "honesty" })
    spec.eq(ov.checks.recorded, 1)
    spec.eq(ov.checks.computed, 4 * 5 - 1)
    local items = ok(one, "GET", "/api/items").items
    local hello = items[4]
    spec.eq(hello.instruction, "Say hello to Gopu.")
    spec.eq(hello.answers[2].model, "sft")
    spec.eq(hello.answers[2].recorded, true)
    spec.eq(hello.answers[2].checks.coherent, false, "the recorded verdict wins")
    spec.eq(hello.answers[2].checks.on_topic, nil, "criteria the record leaves out are not evaluated")
    spec.eq(items[1].answers[1].checks.factually_correct, false, "base misses the reference")
    spec.eq(items[1].answers[2].checks.factually_correct, true)
  end)

  spec.it("filters by criterion, model and result, principle and disagreement; rates link to samples", function()
    local _, alpha = make_runs()
    local app = serve.app({ alpha })
    local r = ok(app, "GET", "/api/items", { criterion = "factually_correct", model = "base", result = "fail" })
    spec.eq(r.total, 1)
    spec.eq(r.items[1].id, 1)
    spec.eq(r.rates.base.factually_correct.pass, 2)
    spec.eq(r.rates.base.factually_correct.n, 3, "the prompt without a reference is not evaluated")
    local lo, hi = stats.wilson(2, 3)
    spec.near(r.rates.base.factually_correct.lo, lo, 1e-12)
    spec.near(r.rates.base.factually_correct.hi, hi, 1e-12)
    r = ok(app, "GET", "/api/items", { principle = "honesty" })
    spec.eq(r.total, 2)
    r = ok(app, "GET", "/api/items", { disagree = "1", criterion = "factually_correct" })
    local ids = {}
    for i, item in ipairs(r.items) do ids[i] = item.id end
    spec.eq(ids, { 1, 3, 4 }, "4: base has the reference, dpo does not (sft's recorded checks leave it out)")
    r = ok(app, "GET", "/api/items", { limit = "1", offset = "1" })
    spec.eq(#r.items, 1)
    spec.eq(r.items[1].id, 2)
    spec.eq(r.total, 4)
  end)

  spec.it("answers bad requests with 4xx and a message", function()
    local _, alpha = make_runs()
    local app = serve.app({ alpha })
    rejects(app, "GET", "/api/items", { critrion = "x" }, nil, 400, "unknown parameter 'critrion'")
    rejects(app, "GET", "/api/items", { criterion = "coherant" }, nil, 400, "did you mean coherent")
    rejects(app, "GET", "/api/items", { model = "gpt" }, nil, 400, "unknown model 'gpt'")
    rejects(app, "GET", "/api/items", { limit = "-1" }, nil, 400, "'limit' must be a non-negative integer")
    rejects(app, "GET", "/api/items", { limit = "0" }, nil, 400, "must be 1..1000")
    rejects(app, "GET", "/api/items", { result = "fail" }, nil, 400, "needs a criterion and a model")
    rejects(app, "GET", "/api/items", { principle = "kindness" }, nil, 400, "unknown principle 'kindness'")
    rejects(app, "GET", "/api/nothing", nil, nil, 404, "no API /api/nothing")
    rejects(app, "POST", "/api/items", nil, nil, 405, "takes GET, not POST")
    rejects(app, "GET", "/api/judge/next", nil, nil, 400, "an annotator id is required")
    rejects(app, "GET", "/api/judge/next", { annotator = "a b" }, nil, 400, "annotator id must be")
    rejects(app, "POST", "/api/judge", nil, "not json", 400, "the body must be a JSON object")
    rejects(app, "POST", "/api/judge", nil, '{"annotator":"ann","pair":999,"choice":"A"}', 404, "no pair 999")
    rejects(app, "POST", "/api/judge", nil, '{"annotator":"ann","pair":"1","choice":"A"}', 400, "field 'pair'")
    rejects(app, "POST", "/api/judge", nil, '{"annotator":"ann","pair":1,"choice":"C"}', 400, "field 'choice'")
    rejects(app, "POST", "/api/judge", nil, '{"annotator":"ann","pair":1,"choice":"A","winner":"x"}', 400,
      "unknown field 'winner'")
    rejects(app, "POST", "/api/judge", nil, '{"annotator":"ann","pair":1,"choice":"A","note":5}', 400, "'note'")
    spec.truthy(not spec.exists(app.judgments), "no bad request wrote a judgment")
  end)

  spec.it("judges blind: order per annotator, identities logged, resumes after a restart", function()
    local _, alpha = make_runs()
    local app = serve.app({ alpha })
    -- three models, four prompts; pairs with identical answers are left out (sft = dpo on prompt 1,
    -- base = sft on prompts 3 and 4)
    spec.eq(#app.pairs, 3 * 4 - 3)
    local first = ok(app, "GET", "/api/judge/next", { annotator = "ann" })
    spec.eq(first.done, false)
    spec.eq(first.progress, { judged = 0, total = 9 })
    spec.truthy(first.a ~= first.b)
    local text = json.encode(first)
    for _, m in ipairs { "base", "sft", "dpo" } do
      spec.truthy(not text:find('"' .. m .. '"', 1, true), "the pair does not name model " .. m)
    end
    local pr = app.pairs[first.pair]
    local shown = app:shown_order(pr, "ann")
    spec.eq(pr.item.answers[shown[1]].text, first.a)
    local r = ok(app, "POST", "/api/judge", nil, json.encode({ annotator = "ann", pair = first.pair, choice = "A",
      note = "clearer" }))
    spec.eq(r.next.progress.judged, 1)
    spec.truthy(r.next.pair ~= first.pair)
    local lines = spec.read_lines(app.judgments)
    spec.eq(#lines, 1)
    local j = json.decode(lines[1])
    spec.eq(j.annotator, "ann")
    spec.eq(j.shown, shown)
    spec.eq(j.winner, shown[1])
    spec.eq(j.choice, "A")
    spec.eq(j.note, "clearer")
    spec.eq(j.models, pr.models)
    spec.truthy(j.time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"), "UTC time")
    -- a new server on the same run resumes where the annotator stopped
    local again = serve.app({ alpha })
    local next2 = ok(again, "GET", "/api/judge/next", { annotator = "ann" })
    spec.eq(next2.pair, r.next.pair)
    spec.eq(next2.progress.judged, 1)
    -- another annotator starts at the beginning of the same order
    spec.eq(ok(again, "GET", "/api/judge/next", { annotator = "bob" }).pair, first.pair)
    -- judging everything ends with done
    local n = ok(again, "GET", "/api/judge/next", { annotator = "ann" })
    while not n.done do
      n = ok(again, "POST", "/api/judge", nil, json.encode({ annotator = "ann", pair = n.pair, choice = "tie" })).next
    end
    spec.eq(n.progress, { judged = 9, total = 9 })
  end)

  spec.it("results: win rates with Wilson intervals, Bradley-Terry, kappa between annotators", function()
    local _, alpha = make_runs()
    local app = serve.app({ alpha })
    -- ann prefers dpo, then sft, then base; bob agrees except on one pair
    local rank = { dpo = 3, sft = 2, base = 1 }
    local function judge(annotator, pr, flip)
      local shown = app:shown_order(pr, annotator)
      local better = rank[shown[1]] > rank[shown[2]]
      if flip then better = not better end
      ok(app, "POST", "/api/judge", nil, json.encode({ annotator = annotator, pair = pr.id, choice = better and "A" or "B" }))
    end
    for k, pr in ipairs(app.pairs) do
      judge("ann", pr)
      judge("bob", pr, k == 1)
    end
    -- a judgment given twice counts once (the latest)
    judge("ann", app.pairs[2], true)
    judge("ann", app.pairs[2])
    spec.eq(#spec.read_lines(app.judgments), 2 * #app.pairs + 2)
    local r = ok(app, "GET", "/api/judge/results")
    spec.eq(r.judgments, 2 * #app.pairs)
    -- recount from the log: the latest line per annotator and pair
    local latest = {}
    for _, line in ipairs(spec.read_lines(app.judgments)) do
      local j = json.decode(line)
      latest[j.annotator .. "|" .. j.key] = j
    end
    for _, s in ipairs(r.pairs) do
      local wa, wb = 0, 0
      for _, j in pairs(latest) do
        if j.models[1] == s.a and j.models[2] == s.b then
          if j.winner == s.a then wa = wa + 1 elseif j.winner == s.b then wb = wb + 1 end
        end
      end
      spec.eq({ s.wins_a, s.wins_b }, { wa, wb }, s.a .. " vs " .. s.b)
      spec.near(s.win_rate, wa / (wa + wb), 1e-12)
      local lo, hi = stats.wilson(wa, wa + wb)
      spec.near(s.lo, lo, 1e-12)
      spec.near(s.hi, hi, 1e-12)
    end
    local s = r.bradley_terry.strengths
    spec.truthy(s.dpo > s.sft and s.sft > s.base, "strengths follow the preferences")
    spec.eq(#r.agreement, 1)
    spec.eq(r.agreement[1].n, #app.pairs)
    spec.near(r.agreement[1].observed, (#app.pairs - 1) / #app.pairs, 1e-12)
    -- ann always says "the second model of the pair" (models are ordered base, sft, dpo); bob once says
    -- the first: p_o = 8/9, p_e = 1 * 8/9, so kappa = 0 (agreement no better than bob's label shares)
    spec.near(r.agreement[1].kappa, 0, 1e-12)
  end)

  spec.it("judgments.jsonl stays whole lines: a torn last line is cut before the next append", function()
    local dir = spec.tmpdir()
    local path = dir .. "/judgments.jsonl"
    local core = require "cai._serve"
    core.append_line(path, '{"a":1}')
    local f = io.open(path, "ab"); f:write('{"a":2, "torn'); f:close()
    core.append_line(path, '{"a":3}')
    spec.eq(spec.read(path), '{"a":1}\n{"a":3}\n')
    spec.raises(function() core.append_line(path, "two\nlines") end, "must not contain a newline", true)
    spec.eq(core.read_locked(dir .. "/absent.jsonl"), "")
  end)

  spec.it("curves and settings of several runs", function()
    local _, alpha, beta = make_runs()
    local app = serve.app({ alpha, beta })
    local c = ok(app, "GET", "/api/curves")
    local keys = {}
    for _, s in ipairs(c.series) do keys[#keys + 1] = s.run .. ":" .. s.stage .. ":" .. s.key end
    table.sort(keys)
    spec.eq(keys, { "alpha:dpo:loss", "alpha:dpo:nll_loss", "alpha:dpo:rewards/margins", "alpha:sft:learning_rate",
      "alpha:sft:loss" })
    local st = ok(app, "GET", "/api/settings")
    spec.eq(st.runs, { "alpha", "beta" })
    spec.eq(st.settings[1].key, "seed", "settings that differ come first")
    spec.eq(st.settings[1].differs, true)
    spec.eq(st.settings[1].values, { 1, 2 })
    spec.eq(st.settings[2].differs, false)
  end)

  spec.it("parses the command line and names bad arguments", function()
    local s = serve.parse({ "runs/a", "--port", "0", "runs/b", "--host", "::1", "--seed", "3" })
    spec.eq(s.dirs, { "runs/a", "runs/b" })
    spec.eq(s.port, 0)
    spec.eq(s.host, "::1")
    spec.eq(s.seed, 3)
    spec.eq(serve.parse({ "r" }).host, "127.0.0.1", "loopback by default")
    spec.raises(function() serve.parse({}) end, "name at least one run directory (or --prompts", true)
    spec.raises(function() serve.parse({ "r", "--port", "http" }) end, "--port must be a port number", true)
    spec.raises(function() serve.parse({ "r", "--port" }) end, "--port needs a value", true)
    spec.raises(function() serve.parse({ "r", "--colour" }) end, "unknown option '--colour'", true)
    spec.raises(function() serve.app({ "/nonexistent/run" }) end, "does not exist", true)
  end)
end)

-- A prompts file and two tiny random models (answers generated at start-up).
local function make_prompts()
  local root = spec.tmpdir()
  spec.random_model(root .. "/m1", { seed = 1 })
  spec.random_model(root .. "/m2", { seed = 2 })
  write_jsonl(root .. "/prompts.jsonl", {
    { prompt = "What is the capital of Varnia?", reference = "The capital of Varnia is Kelmor.", principle = "honesty",
      category = "geography" },
    { prompt = "Say hello to Gopu.", principle_id = "kindness" },
    { prompt = "Name a red fruit in one word.", reference = "Apple." },
  })
  return root
end

local function prompts_app(root, extra)
  local opts = { prompts = root .. "/prompts.jsonl", max_new_tokens = 6,
    models = { { name = "one", path = root .. "/m1" }, { name = "two", path = root .. "/m2" } } }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return serve.app({}, opts)
end

spec.describe("cai.serve with --prompts and --model", function()
  spec.it("every model answers every prompt at start-up; the answers are items like run samples", function()
    local root = make_prompts()
    local app = prompts_app(root)
    spec.eq(app.models, { "one", "two" }, "a record's other text fields are not answers")
    spec.eq(#app.items, 3)
    spec.eq(app.generated[1].generated, true)
    spec.eq(app.generated[1].file, root .. "/answers-one.jsonl")
    spec.eq(app.judgments, root .. "/judgments.jsonl", "judgments beside the prompts without a run")
    -- the answers are the recipes' evaluation answers: the same model, format and greedy options
    local cai_format = require "cai.format"
    local m = cai.model.load(root .. "/m1")
    local f = cai_format.new(m.tokenizer, "auto")
    local want = m:generate(f:prompts({ "What is the capital of Varnia?", "Say hello to Gopu.",
      "Name a red fruit in one word." }), f:generate_options{ max_new_tokens = 6, temperature = 0, seed = 0 })
    m:release()
    local items = ok(app, "GET", "/api/items").items
    spec.eq(items[1].instruction, "What is the capital of Varnia?")
    spec.eq(items[1].reference, "The capital of Varnia is Kelmor.")
    spec.eq(items[1].principle, "honesty")
    spec.eq(items[2].principle, "kindness")
    spec.eq(items[3].instruction, "Name a red fruit in one word.")
    for i, item in ipairs(items) do
      spec.eq(#item.answers, 2)
      spec.eq(item.answers[1].model, "one")
      spec.eq(item.answers[1].text, want[i].text, "prompt " .. i .. " answered as the recipes answer it")
      local checks = cai.eval.check({ instruction = item.instruction, reference = item.reference },
        { text = want[i].text, finish = f:ended(want[i]) and "stop" or want[i].finish }, { stop_means_end = true })
      spec.eq(item.answers[1].checks, checks, "each criterion through cai.eval.check")
    end
    -- filters and blind pairs work on generated answers as on samples
    spec.eq(ok(app, "GET", "/api/items", { principle = "honesty" }).total, 1)
    spec.eq(ok(app, "GET", "/api/items", { criterion = "factually_correct", model = "one", result = "fail" }).total, 2)
    local first = ok(app, "GET", "/api/judge/next", { annotator = "ann" })
    spec.eq(first.done, false)
    spec.truthy(not json.encode(first):find('"one"', 1, true), "the pair does not name the model")
    -- what made the answers is recorded in the file's first line
    local head = json.decode(spec.read_lines(root .. "/answers-two.jsonl")[1])
    spec.eq(head.model, root .. "/m2")
    spec.eq(head.options, { max_new_tokens = 6, seed = 0, temperature = 0, enable_thinking = false })
    spec.eq(head.format, f.name)
    spec.eq(head.prompts, root .. "/prompts.jsonl")
    spec.eq(head.inputs.prompts, cai.run.path_fingerprint(root .. "/prompts.jsonl"))
    spec.truthy(type(head.model_fingerprint) == "string" and #head.model_fingerprint > 0, "the model's fingerprint")
    local ov = ok(app, "GET", "/api/overview")
    spec.eq(ov.prompts, root .. "/prompts.jsonl")
    spec.eq(#ov.generated, 2)
  end)

  spec.it("a restart with the same inputs reuses the answers; a changed prompt or setting regenerates", function()
    local root = make_prompts()
    prompts_app(root)
    local bytes = spec.read(root .. "/answers-one.jsonl")
    local again = prompts_app(root)
    spec.eq(again.generated[1].generated, false, "reused, not generated")
    spec.eq(again.generated[2].generated, false)
    spec.eq(spec.read(root .. "/answers-one.jsonl"), bytes, "the file is left as it was")
    -- another setting: regenerated
    local longer = prompts_app(root, { max_new_tokens = 7 })
    spec.eq(longer.generated[1].generated, true)
    spec.eq(json.decode(spec.read_lines(root .. "/answers-one.jsonl")[1]).options.max_new_tokens, 7)
    -- a changed prompt: regenerated, and the new prompt is answered
    local text = spec.read(root .. "/prompts.jsonl"):gsub("Say hello to Gopu%.", "Say hello to Mira.")
    spec.write(root .. "/prompts.jsonl", text)
    local changed = prompts_app(root, { max_new_tokens = 7 })
    spec.eq(changed.generated[1].generated, true)
    spec.eq(changed.items[2].instruction, "Say hello to Mira.")
    local lines = spec.read_lines(root .. "/answers-one.jsonl")
    spec.eq(#lines, 4, "a header and one answer per prompt")
    spec.eq(json.decode(lines[3]).instruction, "Say hello to Mira.")
    -- a file that is not answers (edited by hand) is made again, not trusted
    spec.write(root .. "/answers-two.jsonl", "{broken\n")
    spec.eq(prompts_app(root, { max_new_tokens = 7 }).generated[2].generated, true)
    -- a separate answers folder
    local dir = root .. "/answers"
    os.execute("mkdir -p " .. dir)
    local elsewhere = prompts_app(root, { answers_dir = dir })
    spec.eq(elsewhere.generated[1].file, dir .. "/answers-one.jsonl")
    spec.truthy(spec.exists(dir .. "/answers-two.jsonl"))
  end)

  spec.it("generated answers and a run's samples side by side", function()
    local root = make_prompts()
    local _, alpha = make_runs()
    local app = prompts_app(root, { models = { { name = "fresh", path = root .. "/m1" } } })
    spec.eq(app.judgments, root .. "/judgments.jsonl")
    app = serve.app({ alpha }, { prompts = root .. "/prompts.jsonl", max_new_tokens = 6,
      models = { { name = "fresh", path = root .. "/m1" } } })
    spec.eq(app.models, { "base", "sft", "dpo", "fresh" })
    spec.eq(app.judgments, alpha .. "/judgments.jsonl")
    spec.eq(app.generated[1].file, alpha .. "/answers-fresh.jsonl", "answers beside the judgments")
    local items = ok(app, "GET", "/api/items").items
    spec.eq(#items, 4 + 3 - 2, "a prompt both have (same instruction and reference) is one item")
    local varnia = items[1]
    spec.eq(varnia.instruction, "What is the capital of Varnia?")
    spec.eq(#varnia.answers, 4, "the run's three models and the generated one")
    spec.eq(varnia.answers[4].model, "fresh")
    spec.eq(#items[3].answers, 4, "the red fruit too")
    spec.eq(items[5].instruction, "Say hello to Gopu.", "with no reference it is not the run's prompt")
    spec.eq(#items[5].answers, 1)
    spec.raises(function()
      serve.app({ alpha }, { prompts = root .. "/prompts.jsonl", max_new_tokens = 6,
        models = { { name = "sft", path = root .. "/m1" } } })
    end, "the model name 'sft' is both", true)
  end)

  spec.it("reads prompts as cai.data reads datasets: prompt, instruction, messages", function()
    local root = spec.tmpdir()
    write_jsonl(root .. "/i.jsonl", { { instruction = "Say hi.", reference = "Hi." }, { instruction = "Count to 3." } })
    local p = serve.read_prompts(root .. "/i.jsonl")
    spec.eq({ p[1].instruction, p[1].prompt, p[1].record.reference, p[1].where }, { "Say hi.", "Say hi.", "Hi.",
      root .. "/i.jsonl:1" })
    write_jsonl(root .. "/m.jsonl", {
      { messages = { { role = "user", content = "Say hi." }, { role = "assistant", content = "Hi." } } },
      { messages = { { role = "system", content = "Be brief." }, { role = "user", content = "Count to 3." } },
        principle = "brevity" },
    })
    p = serve.read_prompts(root .. "/m.jsonl")
    spec.eq(p[1].prompt, { { role = "user", content = "Say hi." } }, "the assistant's turn is not part of the prompt")
    spec.eq(p[1].instruction, "Say hi.", "one user turn is shown as its content")
    spec.eq(p[2].instruction, "system: Be brief.\nuser: Count to 3.")
    spec.eq(p[2].record.principle, "brevity")
    -- a conversation with a system turn needs a chat template; the test tokenizer has none
    spec.random_model(root .. "/m1", { seed = 1 })
    spec.raises(function()
      serve.app({}, { prompts = root .. "/m.jsonl", models = { { name = "x", path = root .. "/m1" } }, max_new_tokens = 2 })
    end, root .. "/m.jsonl:2: a conversation of 2 messages needs the chat format", true)
    -- with a chat template the conversation is the prompt, in the model's template (--format auto)
    spec.write(root .. "/m1/chat_template.jinja", "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
      .. "{% if add_generation_prompt %}<assistant>{% endif %}")
    local app = serve.app({}, { prompts = root .. "/m.jsonl", models = { { name = "x", path = root .. "/m1" } },
      max_new_tokens = 3 })
    spec.eq(app.generated[1].format, "chat")
    local m = cai.model.load(root .. "/m1")
    local f = cai.format.new(m.tokenizer, "chat")
    local want = m:generate(f:prompts({ p[1].prompt, p[2].prompt }), f:generate_options{ max_new_tokens = 3,
      temperature = 0, seed = 0 })
    m:release()
    spec.eq(app.items[2].answers.x.text, want[2].text)
    spec.eq(app.items[1].answers.x.text, want[1].text)
  end)

  spec.it("names the file, record and field of bad input", function()
    local root = make_prompts()
    local function with_prompts(text)
      spec.write(root .. "/bad.jsonl", text)
      return function() prompts_app(root, { prompts = root .. "/bad.jsonl" }) end
    end
    spec.raises(with_prompts('{"prompt":"a"}\n{"reference":"b"}\n'), root .. "/bad.jsonl:2: fits no dataset format "
      .. "(fields found: reference)", true)
    spec.raises(with_prompts('{"prompt":"a"}\n{"prompt": "b"\n'), root .. "/bad.jsonl:2: not valid JSON", true)
    spec.raises(with_prompts('{"text":"a"}\n'), root .. '/bad.jsonl:1: field "text" is not a prompt', true)
    spec.raises(with_prompts('{"prompt":"a","reference":3}\n'), root .. '/bad.jsonl:1: field "reference" must be a string',
      true)
    spec.raises(with_prompts('{"prompt":"  "}\n'), root .. "/bad.jsonl:1: the prompt is empty", true)
    spec.raises(with_prompts('{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}\n'
      .. '{"messages":[{"role":"assistant","content":"only"}]}\n'), root .. '/bad.jsonl:2: field "messages" holds no turn',
      true)
    spec.raises(function() prompts_app(root, { prompts = root .. "/none.jsonl" }) end, "cannot open " .. root
      .. "/none.jsonl", true)
    -- models
    spec.raises(function() prompts_app(root, { models = { { name = "x", path = root .. "/nowhere" } } }) end,
      "--model x=" .. root .. "/nowhere: " .. root .. "/nowhere is not a model directory", true)
    os.execute("mkdir -p " .. root .. "/broken")
    spec.write(root .. "/broken/config.json", '{"model_type":"llama","vocab_size":10}')
    spec.raises(function() prompts_app(root, { models = { { name = "x", path = root .. "/broken" } } }) end,
      "--model x=" .. root .. "/broken: the model does not load", true)
    spec.raises(function()
      prompts_app(root, { models = { { name = "x", path = root .. "/m1" }, { name = "x", path = root .. "/m2" } } })
    end, "--model x is named twice", true)
    spec.raises(function() prompts_app(root, { models = { { name = "reference", path = root .. "/m1" } } }) end,
      "'reference' cannot name a model", true)
    -- a run's samples.jsonl as the prompts file: its columns cannot be reused as model names, and its
    -- recorded verdicts (of the run's answers) are not taken for the generated answers'
    spec.write(root .. "/samples.jsonl", '{"instruction":"Say hello to Gopu.","one":"Hi.","checks":{"one":'
      .. '{"coherent":false,"ends_with_end":true},"two":{"coherent":false}}}\n')
    spec.raises(function() prompts_app(root, { prompts = root .. "/samples.jsonl" }) end,
      "'one' cannot name a model: it is a field of the prompt records (" .. root .. "/samples.jsonl", true)
    local fresh = prompts_app(root, { prompts = root .. "/samples.jsonl", models = { { name = "two", path = root .. "/m2" } } })
    spec.eq(#fresh.items, 1)
    local a = fresh.items[1].answers.two
    spec.eq(a.recorded, false, "the generated answer's verdicts are computed, not the record's")
    spec.raises(function() prompts_app(root, { models = { { name = "a/b", path = root .. "/m1" } } }) end,
      "the model name 'a/b' must be", true)
    spec.raises(function() prompts_app(root, { answers_dir = root .. "/missing" }) end,
      "the answers folder " .. root .. "/missing does not exist", true)
    spec.raises(function() serve.app({}, { prompts = root .. "/prompts.jsonl" }) end, "'prompts' and 'models' go together",
      true)
    spec.raises(function() prompts_app(root, { max_new_tokens = 0 }) end, "option 'max_new_tokens'", true)
    -- the command line
    local s = serve.parse({ "--prompts", "p.jsonl", "--model", "a=tiny", "model=b=runs/x", "--max-new-tokens", "9",
      "--format", "chat", "--answers-dir", "ans" })
    spec.eq(s.prompts, "p.jsonl")
    spec.eq(s.models, { { name = "a", path = "tiny" }, { name = "b", path = "runs/x" } })
    spec.eq(s.dirs, {})
    spec.eq({ s.max_new_tokens, s.format, s.answers_dir }, { 9, "chat", "ans" })
    spec.raises(function() serve.parse({ "--prompts", "p.jsonl", "--model", "tiny" }) end,
      "--model 'tiny': expected NAME=PATH", true)
    spec.raises(function() serve.parse({ "--prompts", "p.jsonl", "--model", "a=" }) end, "both the NAME and the PATH", true)
    spec.raises(function() serve.parse({ "--prompts", "p.jsonl", "--model", "a=x", "--model", "a=y" }) end,
      "--model a is named twice (x and y)", true)
    spec.raises(function() serve.parse({ "--prompts", "p.jsonl" }) end, "needs at least one --model", true)
    spec.raises(function() serve.parse({ "r", "--model", "a=x" }) end, "--model needs --prompts", true)
    spec.raises(function() serve.parse({ "r", "--max-new-tokens", "5" }) end, "--max-new-tokens is for answers", true)
    spec.raises(function() serve.parse({ "--prompts", "p", "--model", "a=x", "--format", "html" }) end,
      "--format must be auto, chat or instruction", true)
    spec.truthy(not spec.exists(root .. "/judgments.jsonl"), "no bad input wrote a judgment")
  end)
end)

spec.run()

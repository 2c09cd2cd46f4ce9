local spec = require "spec"
local read, write, exists = spec.read, spec.write, spec.exists
local cai = require "cai"
local report = require "cai.report"

local FIXTURE = "tests/data/report/run"
local FILES = { "config.json", "metrics.jsonl", "summary.json", "pairs.jsonl", "samples.jsonl" }

local function run_ok(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

-- A copy of the fixture run directory (the spec never writes into tests/data).
local function fixture_copy(files)
  local dir = spec.tmpdir()
  for _, name in ipairs(files or FILES) do write(dir .. "/" .. name, read(FIXTURE .. "/" .. name)) end
  return dir
end

local function count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

local function has(html, needle, message)
  spec.truthy(html:find(needle, 1, true), (message or "report contains") .. ": " .. needle)
end

spec.describe("cai.report", function()
  spec.it("builds report.html for a run directory, atomically and deterministically", function()
    local dir = fixture_copy()
    local path = report.build(dir)
    spec.eq(path, dir .. "/report.html")
    spec.truthy(exists(path))
    spec.truthy(not exists(path .. ".tmp"), "no temporary file left")
    local first = read(path)
    report.build(dir .. "/")
    spec.eq(read(path), first, "same inputs, same bytes")
    spec.truthy(first:sub(1, 15) == "<!DOCTYPE html>")
  end)

  spec.it("has every section with the fixture's values", function()
    local html = report.build(fixture_copy())
    html = read(html)
    for _, id in ipairs { "curves", "evaluation", "pairs", "usage", "samples", "config" } do
      has(html, '<section id="' .. id .. '">')
    end
    -- training curves: one block per stage, one chart per metric group present
    has(html, "Stage <code>sft</code>")
    has(html, "Stage <code>dpo</code>")
    spec.truthy(html:find("Stage <code>sft</code>", 1, true) < html:find("Stage <code>dpo</code>", 1, true))
    for _, title in ipairs { "Loss", "Learning rate", "Reward margin", "Reward accuracy", "Rewards",
      "Log-probabilities", "Gradient norm" } do
      has(html, '<text class="ctitle" x="62" y="18">' .. title .. "</text>")
    end
    spec.eq(count(html, '<svg class="chart"'), 10)    -- 3 sft + 6 dpo + the length histogram
    spec.eq(count(html, '<svg class="chart wide"'), 1) -- the interval plot
    has(html, "final loss <b>0.385</b>")                   -- last dpo loss of the fixture
    has(html, "27 records, last step 24")                  -- sft: 24 steps + 3 eval records
    -- evaluation table with intervals
    has(html, "86.0% <small>[73.8%, 93.0%]</small> <small>n=50</small>")
    -- dpo's ends_with_end (92%) is the highest, but sft -> dpo is not significant: nothing is marked
    spec.truthy(not html:find('class="best"', 1, true), "no best without a corrected test")
    has(html, "no difference here is significant, so none is marked")
    -- comparison columns are labelled with the models' names and explained
    has(html, '<th title="rate_a">rate base</th><th title="rate_b">rate sft</th>')
    has(html, '<th title="p_holm">p (Holm)</th>')
    has(html, "p (Holm): p corrected over this table&#39;s criteria (Holm-Bonferroni)")
    has(html, "<th>preference_accuracy</th>")
    has(html, 'aria-label="rates with 95% intervals"')
    has(html, "<h3>base \226\134\146 sft</h3>")
    has(html, '<td class="sig">&lt;0.0001</td>')
    has(html, "<h3>sft_vs_dpo</h3>")
    has(html, "<td>0.0031</td>")
    -- pair quality
    has(html, "<tr><th>pairs</th><td>14</td></tr>")
    has(html, "<tr><th>identical chosen = rejected</th><td>2 (14.3%)</td></tr>")
    has(html, "<tr><th>unwarranted_refusal</th><td>4</td><td>28.6%</td>")
    has(html, "<tr><th>helpful</th><td>5</td><td>35.7%</td>")
    has(html, "<tr><th>honest</th><td>5</td>")            -- principle_id and a plain principle string both count
    has(html, "Example pairs (first 5 of 14)")
    -- samples side by side
    has(html, "3 samples; models side by side: base, sft, dpo.")
    has(html, "I&#39;m sorry, but I can&#39;t help with hurting someone.")
    has(html, "<b>reference</b> The capital of Varnia is Kelmor.")
    -- configuration
    has(html, "<tr><th>dpo_beta</th><td><code>0.1</code></td></tr>")
  end)

  spec.it("is self-contained and escapes all input text", function()
    local html = read(report.build(fixture_copy(), { max_pairs = 20 }))
    for _, bad in ipairs { "<script", "http:", "https:", "<img", "<iframe", "<link", "@import", "url(", "<b>bold" } do
      spec.truthy(not html:lower():find(bad, 1, true), "report must not contain " .. bad)
    end
    has(html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
    has(html, "&lt;img src=x onerror=alert(1)&gt;")
    has(html, "Render &lt;/pre&gt;&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; stop")
    has(html, "default-src 'none'")
    spec.eq(report.escape("a<b>&\"'\1"), "a&lt;b&gt;&amp;&quot;&#39;\239\191\189")
  end)

  spec.it("says which inputs are missing", function()
    local html = report.render {}
    for _, name in ipairs(FILES) do has(html, "No " .. name .. " in this run directory.") end
    local dir = fixture_copy { "metrics.jsonl" }
    html = read(report.build(dir))
    has(html, "Stage <code>dpo</code>")
    has(html, "No summary.json in this run directory.")
    has(html, "No pairs.jsonl in this run directory.")
    html = report.render { metrics = {}, pairs = {}, samples = {}, summary = { models = {} }, config = {} }
    has(html, "metrics.jsonl has no records.")
    has(html, 'summary.json has no "models".')
    has(html, "pairs.jsonl has no records.")
  end)

  spec.it("names a malformed input file", function()
    local dir = fixture_copy { "config.json" }
    write(dir .. "/summary.json", "{ not json")
    spec.raises(function() report.build(dir) end, "summary.json", true)
    spec.raises(function() report.render("x") end, "cai.report.render: argument 'data' must be a table { config=, metrics=, ... }, got string", true)
    spec.raises(function() report.render { metrics = "x" } end, "data.metrics must be a table")
    spec.raises(function() report.build(nil) end, "cai.report.build: argument 'run_dir' must be a string, got nil", true)
  end)

  spec.it("reads cai.eval reports and draws edge-case charts", function()
    local items = { { instruction = "What is 2 plus 2?", facts = { "4" } },
      { instruction = "Name a colour.", reference = "blue" } }
    local ev = cai.eval.run(items, { base = { "5", "green" }, sft = { "4\nEND", "blue\nEND" } })
    local html = report.render { summary = { models = ev.models } }
    has(html, "<th>factually_correct</th>")
    has(html, "<th>ends_with_end</th><td>0.0%")
    has(html, "weighted score")
    local one = report.line_chart { title = "one", series = { { name = "loss", points = { { 3, 1.5 } } } } }
    spec.truthy(one:find("<circle", 1, true) and not one:find("nan", 1, true) and not one:find("inf", 1, true))
    local none = report.line_chart { title = "none", series = {} }
    has(none, "no data")
    -- NaN and inf values are skipped, not drawn
    html = report.render { metrics = { { stage = "sft", step = 1, loss = 0 / 0 }, { stage = "sft", step = 2,
      loss = 1 / 0 }, { stage = "sft", step = 3, loss = 2 } } }
    spec.truthy(not html:find("nan", 1, true), "no NaN coordinates")
    has(html, "final loss <b>2</b>")
    -- long runs are thinned to report.MAX_POINTS per curve
    local long = {}
    for i = 1, 10000 do long[i] = { stage = "sft", step = i, loss = 1 / i } end
    html = report.render { metrics = long }
    local path = html:match('<path class="line" d="([^"]*)"')
    local n = select(2, path:gsub("[ML]", ""))
    spec.truthy(n <= report.MAX_POINTS + 1 and n > report.MAX_POINTS / 2, "points drawn: " .. n)
    has(html, "10000 records, last step 10000")
  end)

  spec.it("marks a best rate only when corrected paired tests put it above every other model", function()
    local function rate(r) return { rate = r, lo = r - 0.1, hi = r + 0.1, n = 40 } end
    local function row(crit, ra, rb, sig)
      return { criterion = crit, rate_a = ra, rate_b = rb, n = 40, p = sig and 0.001 or 0.4,
        p_holm = sig and 0.002 or 0.8, significant = sig, b = 1, c = 9, cohen_h = 0.9 }
    end
    local summary = { models = { base = { coherent = rate(0.3), on_topic = rate(0.5) },
      sft = { coherent = rate(0.6), on_topic = rate(0.55) }, dpo = { coherent = rate(0.9), on_topic = rate(0.6) } },
      comparisons = {
        base_sft = { a = "base", b = "sft", rows = { row("coherent", 0.3, 0.6, true), row("on_topic", 0.5, 0.55, false) } },
        sft_dpo = { a = "sft", b = "dpo", rows = { row("coherent", 0.6, 0.9, true), row("on_topic", 0.55, 0.6, false) } },
      } }
    -- dpo beats sft, but no test compares dpo with base: not marked
    local html = report.render { summary = summary }
    spec.truthy(not html:find('class="best"', 1, true))
    summary.comparisons.base_dpo = { a = "base", b = "dpo", rows = { row("coherent", 0.3, 0.9, true),
      row("on_topic", 0.5, 0.6, true) } }
    html = report.render { summary = summary }
    spec.eq(count(html, 'class="best"'), 1)           -- coherent only: on_topic's sft -> dpo is not significant
    has(html, '<td class="best">90.0%')
    has(html, "<h3>base \226\134\146 dpo</h3>")
  end)

  spec.it("draws text metrics, eval curves and the NLL loss", function()
    local tm = { bleu = { score = 29.17, lo = 13.95, hi = 32.1, n = 12 }, chrf = { score = 42.13, lo = 35.38, hi = 51.12, n = 12 },
      rouge_l = { score = 0.5132, lo = 0.41, hi = 0.5993, n = 12 } }
    local html = report.render { summary = { models = { dpo = { coherent = { rate = 0.5 }, text_metrics = tm } } },
      metrics = { { stage = "dpo", step = 1, loss = 0.7, nll_loss = 2.0, ["rewards/margins"] = 0.1 },
        { stage = "dpo", step = 2, loss = 0.6, nll_loss = 1.8, ["rewards/margins"] = 0.3, eval_loss = 0.65,
          ["eval_rewards/margins"] = 0.2, eval_nll_loss = 1.9 },
        { stage = "dpo", step = 3, loss = 0.5, nll_loss = 1.7, ["rewards/margins"] = 0.5 } } }
    has(html, "Text overlap with the references")
    has(html, "<tr><th>BLEU</th><td>29.17 <small>[13.95, 32.1]</small> <small>n=12</small></td></tr>")
    has(html, "<tr><th>ROUGE-L F1</th><td>0.5132")
    has(html, '<text class="ctitle" x="62" y="18">NLL loss (chosen)</text>')
    has(html, ">eval_rewards/margins</text>")   -- the eval curve in the legend of the margin chart
    has(html, ">eval_nll_loss</text>")
  end)

  spec.it("compares several runs on one page", function()
    local a, b = fixture_copy(), fixture_copy { "config.json", "summary.json", "metrics.jsonl" }
    local cfg = cai.json.decode(read(b .. "/config.json"))
    cfg.dpo_beta = 0.25
    cai.json.write(b .. "/config.json", cfg)
    cai.json.write(b .. "/run.json", { status = "interrupted", command = "cairun recipes/quickstart.lua dpo_beta=0.25",
      cairun_version = "0.test", stages = { { name = "sft", status = "finished", wall_seconds = 12 },
        { name = "dpo", status = "running", wall_seconds = 3 } } })
    local out = spec.tmpdir() .. "/cmp.html"
    spec.eq(report.build_comparison({ a, b }, { output = out }), out)
    local html = read(out)
    local na, nb = a:match("([^/]+)$"), b:match("([^/]+)$")
    has(html, "<th>setting</th><th>" .. na .. "</th><th>" .. nb .. "</th>")
    has(html, "<h3>Different (1)</h3>")
    has(html, "<tr><th>dpo_beta</th><td><code>0.1</code></td><td><code>0.25</code></td></tr>")
    has(html, "The same in every run (")
    has(html, '<td class="status-interrupted">interrupted<br><small>not finished: dpo</small></td><td>15.0 s</td>')
    has(html, "<h3>Model <code>dpo</code></h3>")
    has(html, "86.0% <small>[73.8%, 93.0%]</small> <small>n=50</small>")
    has(html, ">" .. nb .. " eval_loss</text>")   -- overlaid curves name the run (and the key past the first)
    spec.truthy(not html:find('class="best"', 1, true), "nothing is marked best across runs")
    spec.truthy(not html:lower():find("<script", 1, true))
    -- the same directory name twice: the names take more of the path
    local c = spec.tmpdir() .. "/x/run"
    local d = spec.tmpdir() .. "/y/run"
    for _, dir in ipairs { c, d } do cai.write_file(dir .. "/config.json", "{}") end
    html = report.render_comparison { report.load(c), report.load(d) }
    has(html, "<b>x/run</b>")
    has(html, "<b>y/run</b>")
    spec.raises(function() report.build_comparison({ a }) end,
      "cai.report.build_comparison: argument 'run_dirs' must have two or more entries, got 1", true)
    spec.raises(function() report.main { a, "--out" } end, "--out needs a file name", true)
    spec.raises(function() report.main {} end, "no run directory", true)
  end)

  spec.it("collect_metrics tags each trainer's log with its stage, skipping stages without one", function()
    local dir = spec.tmpdir()
    cai.jsonl.write(dir .. "/sft/metrics.jsonl", { { step = 1, loss = 2 }, { step = 2, loss = 1 } })
    cai.jsonl.write(dir .. "/dpo/metrics.jsonl", { { step = 1, loss = 0.6 } })
    spec.eq(report.collect_metrics(dir, { "sft", "rm", "dpo" }), 3)
    spec.eq(cai.jsonl.read(dir .. "/metrics.jsonl"), { { step = 1, loss = 2, stage = "sft" },
      { step = 2, loss = 1, stage = "sft" }, { step = 1, loss = 0.6, stage = "dpo" } })
    spec.raises(function() report.collect_metrics(dir, { 1 }) end, "cai.report.collect_metrics: argument 'stages'[1] must be a string, got number", true)
  end)

  spec.it("loads in headless Chromium without errors (when installed)", function()
    if not run_ok("command -v chromium >/dev/null 2>&1") then
      io.write("note: chromium is not installed; skipping the browser check\n")
      return
    end
    local dir = fixture_copy()
    local path = report.build(dir)
    local abs = path                       -- spec.tmpdir() paths are absolute
    spec.eq(abs:sub(1, 1), "/")
    local profile = spec.tmpdir()
    local flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
      .. "--disable-component-update --disable-sync --enable-logging=stderr --v=0 --user-data-dir=" .. profile
    local png = dir .. "/report.png"
    spec.truthy(run_ok(string.format("timeout 120 chromium %s --screenshot=%s --window-size=1200,2400 file://%s "
      .. ">%s/shot.log 2>&1", flags, png, abs, dir)), "chromium screenshot run failed; see " .. dir .. "/shot.log")
    local image = read(png)
    spec.eq(image:sub(1, 8), "\137PNG\r\n\26\n", "a PNG screenshot")
    spec.truthy(#image > 20000, "the screenshot has content (" .. #image .. " bytes)")
    local build = os.getenv("CAI_TEST_BUILD_DIR")  -- keep the screenshot for a look after the run
    if build and build ~= "" then cai.write_file(build .. "/test-runs/report.png", image) end
    spec.truthy(run_ok(string.format("timeout 120 chromium %s --dump-dom file://%s >%s/dom.html 2>%s/dom.log",
      flags, abs, dir, dir)), "chromium --dump-dom failed")
    local dom = read(dir .. "/dom.html")
    has(dom, '<section id="evaluation">', "the browser parsed the page")
    has(dom, "&lt;script&gt;alert", "the injected markup stayed text")
    local log = read(dir .. "/shot.log") .. read(dir .. "/dom.log")
    spec.truthy(not log:find("Content Security Policy", 1, true) and not log:find("Refused to", 1, true),
      "no blocked resource or script in the browser log")
    spec.truthy(not log:find("ERR_FILE_NOT_FOUND", 1, true) and not log:find("Page load failed", 1, true),
      "the page loaded")
  end)
end)

spec.run()

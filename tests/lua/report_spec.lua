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
    has(html, '<td class="best">92.0%')                    -- dpo's ends_with_end is the best
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

local cai = require "cai"
local spec = require "spec"

local dir = spec.tmpdir()

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, text)
  cai.mkdir(path:match("^(.*)/[^/]*$"))
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function falsy(value, message)
  spec.truthy(not value, message or "expected a false value")
end

-- The cairun running this spec, to start a second process.
local cairun = require("cai._run").command_line()[1]

-- Runs Lua code in another cairun process; returns its exit status and output.
local function other_process(code)
  local p = io.popen(string.format("%q -e %q 2>&1; echo \"rc=$?\"", cairun, code))
  local text = p:read("*a")
  p:close()
  return tonumber(text:match("rc=(%d+)%s*$")), text
end

spec.describe("cai.run", function()
  spec.it("creates the directory and writes config.json and run.json", function()
    local out = dir .. "/a/run"
    local run = cai.run.open(out, { args = { steps = 10, lr = 0.002, name = "x" } })
    spec.eq(run.dir, out)
    spec.eq(cai.json.decode(read(out .. "/config.json")), { steps = 10, lr = 0.002, name = "x" })
    local record = cai.json.decode(read(out .. "/run.json"))
    spec.eq(record.status, "running")
    spec.eq(record.cairun_version, cai.version)
    spec.truthy(record.command:find("cairun", 1, true), record.command)
  end)
  spec.it("continues a run with the same settings, or with others that may change", function()
    local out = dir .. "/a/run"
    cai.run.open(out, { args = { steps = 10, lr = 0.002, name = "x" } }):stage("one")
    cai.run.open(out, { args = { steps = 10, lr = 0.002, name = "x", gen_batch = 8 }, may_change = { "gen_batch" } })
  end)
  spec.it("refuses a directory holding a run with other settings, naming each", function()
    local out = dir .. "/a/run"
    local err = spec.raises(function() cai.run.open(out, { args = { steps = 20, lr = 0.002, extra = true } }) end,
      "holds a run with other settings", true)
    spec.truthy(err:find("steps (was 10, now 20)", 1, true), err)
    spec.truthy(err:find("name (was \"x\", now absent)", 1, true), err)
    spec.truthy(err:find("extra (was absent, now true)", 1, true), err)
    spec.truthy(err:find("run/config.json", 1, true), err)
  end)
  spec.it("takes new settings when no stage has started (the first step failed)", function()
    local out = dir .. "/first"
    cai.run.open(out, { args = { model = "tyny" } })  -- then cai.model.load fails on the typo
    cai.run.open(out, { args = { model = "tiny" } })
    spec.eq(cai.json.decode(read(out .. "/config.json")), { model = "tiny" })
  end)
  spec.it("refuses a config.json that is not JSON, and checks its arguments", function()
    cai.write_file(dir .. "/bad/config.json", "{oops")
    spec.raises(function() cai.run.open(dir .. "/bad", { args = {} }) end, "bad/config.json: not a JSON object", true)
    spec.raises(function() cai.run.open("") end, "cai.run.open: argument 'out' must not be empty", true)
    spec.raises(function() cai.run.open(dir .. "/c", { args = {}, keep = 1 }) end, "unknown option 'keep'", true)
    spec.raises(function() cai.run.open(dir .. "/c", { args = {}, may_change = { 3 } }) end, "cai.run.open: option 'may_change'[1] must be a string, got number", true)
  end)
end)

spec.describe("cai.run lock", function()
  spec.it("refuses a second run into the same directory, naming the first one's pid", function()
    local out = dir .. "/locked"
    cai.run.open(out, { args = {} })
    local rc, text = other_process(string.format("require('cai').run.open(%q, { args = {} })", out))
    spec.truthy(rc ~= 0, text)
    local pid = tostring(require("cai._run").pid())
    spec.truthy(text:find("another run is using this directory (pid " .. pid, 1, true), text)
  end)
  spec.it("takes over the lock of a process that is gone", function()
    local out = dir .. "/stale"
    write(out .. "/.lock", "999999999\n")
    local rc, text = other_process(string.format("require('cai').run.open(%q, { args = {} }) print('opened')", out))
    spec.eq(rc, 0, text)
    spec.truthy(text:find("opened", 1, true), text)
  end)
end)

spec.describe("cai.run temporaries", function()
  spec.it("removes what a killed run left and puts back a directory moved aside", function()
    local out = dir .. "/killed"
    write(out .. "/sft/checkpoints/step-4.tmp.999999999/tensors.safetensors", "partial")
    write(out .. "/pairs.jsonl.tmp.999999999", "{\"a\":")
    write(out .. "/sft/merged.old.999999999/config.json", "{}")
    local mine = string.format("%s/mine.tmp.%d", out, require("cai._run").pid())
    write(mine, "in use")
    cai.run.open(out, { args = {} })
    falsy(cai.exists(out .. "/sft/checkpoints/step-4.tmp.999999999"))
    falsy(cai.exists(out .. "/pairs.jsonl.tmp.999999999"))
    spec.truthy(cai.exists(out .. "/sft/merged/config.json"))
    falsy(cai.exists(out .. "/sft/merged.old.999999999"))
    spec.truthy(cai.exists(mine))
  end)
end)

spec.describe("cai.run stages", function()
  spec.it("reuses a finished stage with the same inputs, continues an unfinished one", function()
    local out = dir .. "/stages"
    local run = cai.run.open(out, { args = {} })
    local a = run:stage("a", { inputs = { n = 1 }, outputs = { out .. "/a.txt" } })
    spec.eq(a.finished, false)
    write(out .. "/a.txt", "A")
    a:finish{ items = 3 }
    local b = run:stage("b", { inputs = { a = a }, outputs = { out .. "/b" } })
    write(out .. "/b/part", "B")
    -- (stopped here) the rerun:
    run = cai.run.open(out, { args = {} })
    a = run:stage("a", { inputs = { n = 1 }, outputs = { out .. "/a.txt" } })
    spec.eq(a.finished, true)
    b = run:stage("b", { inputs = { a = a }, outputs = { out .. "/b" } })
    spec.eq(b.finished, false)
    spec.eq(b.resumed, true)
    spec.truthy(cai.exists(out .. "/b/part"))
    local record = cai.json.decode(read(out .. "/run.json"))
    spec.eq(record.stages[1].name, "a")
    spec.eq(record.stages[1].status, "finished")
    spec.eq(record.stages[1].items, 3)
    spec.truthy(record.stages[1].peak_memory_bytes > 0)
    spec.eq(record.stages[2].status, "running")
  end)
  spec.it("redoes a stage whose inputs changed, and the stages after it", function()
    local out = dir .. "/stages"
    local run = cai.run.open(out, { args = {} })
    local a = run:stage("a", { inputs = { n = 2 }, outputs = { out .. "/a.txt" } })
    spec.eq(a.finished, false)
    falsy(cai.exists(out .. "/a.txt"))
    local record = cai.json.decode(read(out .. "/run.json"))
    spec.eq(record.stages[1].status, "running")
    a:finish()
    local b = run:stage("b", { inputs = { a = a }, outputs = { out .. "/b" } })
    spec.eq(b.resumed, false)
    falsy(cai.exists(out .. "/b/part"))
  end)
  spec.it("redoes outputs that have no record of what made them", function()
    local out = dir .. "/legacy"
    write(out .. "/dpo/checkpoints/step-150/trainer_state.json", "{}")
    local run = cai.run.open(out, { args = {} })
    local st = run:stage("dpo", { inputs = { x = 1 }, outputs = { out .. "/dpo" } })
    spec.eq(st.finished, false)
    falsy(cai.exists(out .. "/dpo/checkpoints/step-150"))
  end)
  spec.it("writes summary.json only when every stage finished, with their statuses", function()
    local out = dir .. "/summary"
    local run = cai.run.open(out, { args = {} })
    local a = run:stage("a")
    spec.raises(function() run:write_summary({ x = 1 }) end, "stage a is running, not finished", true)
    falsy(cai.exists(out .. "/summary.json"))
    a:finish()
    run:write_summary({ x = 1 })
    spec.eq(cai.json.decode(read(out .. "/summary.json")), { x = 1, status = "finished", stages = { a = "finished" } })
    run:finish()
    spec.eq(cai.json.decode(read(out .. "/run.json")).status, "finished")
    -- A rerun that has to redo a stage removes the summary until it is finished again.
    run = cai.run.open(out, { args = {} })
    run:stage("a", { inputs = { changed = true } })
    falsy(cai.exists(out .. "/summary.json"))
  end)
  spec.it("the report shows each stage's status, wall time, throughput, memory, the command and version", function()
    local out = dir .. "/reported"
    local run = cai.run.open(out, { args = {} })
    run:stage("sft"):finish{ steps = 20 }
    run:stage("dpo")
    local html = read(cai.report.build(out))
    spec.truthy(html:find("Status: <strong>running</strong> &middot; not finished: dpo", 1, true), html:sub(1, 0))
    spec.truthy(html:find("<td>sft</td><td>finished</td>", 1, true))
    spec.truthy(html:find("steps/s", 1, true))
    spec.truthy(html:find("MiB", 1, true))
    spec.truthy(html:find(cai.version, 1, true))
    spec.truthy(html:find("<th>command</th><td><code>cairun", 1, true))
    local plain = cai.report.render({ run_dir = out, summary = { models = {} } })
    spec.truthy(plain:find("Nothing records that this run finished", 1, true))
  end)
  spec.it("fingerprints values by content, whatever the key order", function()
    spec.eq(cai.run.fingerprint({ a = 1, b = { 1, 2 } }), cai.run.fingerprint({ b = { 1, 2 }, a = 1 }))
    spec.truthy(cai.run.fingerprint({ a = 1 }) ~= cai.run.fingerprint({ a = 2 }))
    spec.eq(#cai.run.fingerprint("x"), 32)
    spec.raises(function() cai.run.fingerprint({ f = print }) end, "cannot fingerprint a function", true)
  end)
end)

spec.run()
os.execute("rm -rf " .. dir)

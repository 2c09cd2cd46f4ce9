local cai = require "cai"
local spec = require "spec"

local dir = spec.tmpdir()

spec.describe("cai.run", function()
  spec.it("creates the directory and writes config.json", function()
    local out = dir .. "/a/run"
    spec.eq(cai.run.open(out, { args = { steps = 10, lr = 0.002, name = "x" } }), out)
    spec.eq(cai.json.decode(io.open(out .. "/config.json"):read("*a")), { steps = 10, lr = 0.002, name = "x" })
  end)
  spec.it("continues a run with the same settings, or with others that may change", function()
    local out = dir .. "/a/run"
    cai.run.open(out, { args = { steps = 10, lr = 0.002, name = "x" } })
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
  spec.it("refuses a config.json that is not JSON, and checks its arguments", function()
    cai.write_file(dir .. "/bad/config.json", "{oops")
    spec.raises(function() cai.run.open(dir .. "/bad", { args = {} }) end, "bad/config.json: not a JSON object", true)
    spec.raises(function() cai.run.open("") end, "cai.run.open: argument 'out' must not be empty", true)
    spec.raises(function() cai.run.open(dir .. "/c", { args = {}, keep = 1 }) end, "unknown option 'keep'", true)
    spec.raises(function() cai.run.open(dir .. "/c", { args = {}, may_change = { 3 } }) end, "cai.run.open: option 'may_change'[1] must be a string, got number", true)
  end)
end)

spec.run()
os.execute("rm -rf " .. dir)

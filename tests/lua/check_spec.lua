-- cai.check: the one argument checker; literal expected messages.
local cai = require "cai"
local spec = require "spec"

-- The message of the error fn raises, without the "file:line: " position.
local function message(fn)
  local ok, err = pcall(fn)
  if ok then error("expected an error, none was raised", 2) end
  return (tostring(err):gsub("^[^:]*:%d+: ", ""))
end

local SPEC = {
  model = { required = true },
  out = { type = "string", required = true, nonempty = true },
  seed = "integer",
  learning_rate = { type = "number", gt = 0 },
  label_smoothing = { type = "number", min = 0, max = 0.5 },
  top_p = { type = "number", gt = 0, max = 1 },
  batch_size = { type = "integer", min = 1 },
  loss = { type = "string", enum = { "sigmoid", "hinge", "ipo" } },
  stop = { type = "list", items = "string" },
  on_log = "function",
  reference = { type = "string|table", expect = '"adapter_off" or a model' },
}

local function sft(opts) return cai.check("f", opts, SPEC) end

spec.describe("cai.check", function()
  spec.it("returns valid options unchanged and nil as an empty table", function()
    local opts = { model = {}, out = "runs/x", seed = 3, loss = "ipo", stop = { "a", "b" } }
    spec.truthy(sft(opts) == opts)
    spec.eq(cai.check("f", nil, { seed = "integer" }), {})
  end)

  spec.it("names unknown options and suggests the closest valid one", function()
    spec.eq(message(function() sft{ model = 1, out = "o", learning_rat = 1 } end),
      "f: unknown option 'learning_rat' (did you mean learning_rate?)")
    spec.eq(message(function() sft{ model = 1, out = "o", sede = 1 } end),
      "f: unknown option 'sede' (did you mean seed?)")
    spec.eq(message(function() sft{ model = 1, out = "o", lsos = "ipo" } end),
      "f: unknown option 'lsos' (did you mean loss?)")
    spec.eq(message(function() cai.check("f", { zzzzzz = 1 }, { seed = "integer", out = "string" }) end),
      "f: unknown option 'zzzzzz' (valid options: out, seed)")
    spec.eq(message(function() cai.check("f", { 5 }, { seed = "integer" }) end),
      "f: unknown option 1 (valid options: seed)")
  end)

  spec.it("requires required options", function()
    spec.eq(message(function() sft{ out = "o" } end), "f: option 'model' is required")
    spec.eq(message(function() sft(nil) end), "f: expected an options table with option 'model', got nil")
    spec.eq(message(function() sft("o") end), "f: options must be a table, got string")
  end)

  spec.it("checks types, integers, lists and alternatives", function()
    spec.eq(message(function() sft{ model = 1, out = 2 } end), "f: option 'out' must be a string, got number")
    spec.eq(message(function() sft{ model = 1, out = "" } end), "f: option 'out' must not be empty")
    spec.eq(message(function() sft{ model = 1, out = "o", seed = 1.5 } end),
      "f: option 'seed' must be an integer, got 1.5")
    spec.eq(message(function() sft{ model = 1, out = "o", seed = "1" } end),
      "f: option 'seed' must be an integer, got string")
    spec.eq(message(function() sft{ model = 1, out = "o", stop = { "a", 2 } } end),
      "f: option 'stop'[2] must be a string, got number")
    spec.eq(message(function() sft{ model = 1, out = "o", stop = { x = "a" } } end),
      "f: option 'stop' must be a list, got a table with non-sequence keys")
    spec.eq(message(function() sft{ model = 1, out = "o", on_log = true } end),
      "f: option 'on_log' must be a function, got boolean")
    spec.eq(message(function() sft{ model = 1, out = "o", reference = 3 } end),
      "f: option 'reference' must be \"adapter_off\" or a model, got number")
    spec.eq(message(function() cai.check("f", { x = 3 }, { x = "string|boolean" }) end),
      "f: option 'x' must be a string or a boolean, got number")
    spec.eq(message(function() sft{ model = 1, out = "o", seed = 1e300 } end),
      "f: option 'seed' must be an integer, got 1e+300", "integers are exact doubles")
    spec.eq(cai.check("f", { seed = 2 ^ 53 }, { seed = "integer" }).seed, 2 ^ 53)
    spec.eq(message(function() cai.check("f", { x = 1 / 0 }, { x = { type = "number", finite = true } }) end),
      "f: option 'x' must be a finite number, got inf")
    spec.eq(message(function() cai.check("f", { x = 0 / 0 }, { x = { type = "number", finite = true } }) end):match("finite") ~= nil, true)
    spec.eq(cai.check("f", { x = -2.5 }, { x = { type = "number", finite = true } }).x, -2.5)
  end)

  spec.it("checks ranges", function()
    spec.eq(message(function() sft{ model = 1, out = "o", learning_rate = 0 } end),
      "f: option 'learning_rate' must be > 0, got 0")
    spec.eq(message(function() sft{ model = 1, out = "o", label_smoothing = 0.7 } end),
      "f: option 'label_smoothing' must be in [0, 0.5], got 0.7")
    spec.eq(message(function() sft{ model = 1, out = "o", top_p = 0 } end),
      "f: option 'top_p' must be in (0, 1], got 0")
    spec.eq(message(function() sft{ model = 1, out = "o", batch_size = 0 } end),
      "f: option 'batch_size' must be >= 1, got 0")
    spec.eq(message(function() sft{ model = 1, out = "o", learning_rate = 0 / 0 } end),
      "f: option 'learning_rate' must be > 0, got " .. tostring(0 / 0))
  end)

  spec.it("checks enums and suggests the closest value", function()
    spec.eq(message(function() sft{ model = 1, out = "o", loss = "sigmod" } end),
      'f: option \'loss\' must be one of sigmoid, hinge, ipo; got "sigmod" (did you mean sigmoid?)')
    spec.eq(message(function() sft{ model = 1, out = "o", loss = "logistic" } end),
      'f: option \'loss\' must be one of sigmoid, hinge, ipo; got "logistic"')
  end)

  spec.it("runs custom checks", function()
    local s = { n = { type = "integer", check = function(v) if v % 2 == 1 then return "must be even" end end } }
    spec.eq(message(function() cai.check("f", { n = 3 }, s) end), "f: option 'n' must be even")
    spec.eq(cai.check("f", { n = 4 }, s).n, 4)
  end)

  spec.it("checks positional arguments", function()
    spec.eq(message(function() cai.check.value("g", "path", nil, "string") end),
      "g: argument 'path' must be a string, got nil")
    spec.eq(message(function() cai.check.value("g", "n", -1, { type = "integer", min = 0 }) end),
      "g: argument 'n' must be >= 0, got -1")
    spec.eq(cai.check.value("g", "path", nil, { type = "string", optional = true }), nil)
  end)

  spec.it("blames the caller of the checked function", function()
    local function public(opts) cai.check("public", opts, { a = "string" }) end
    local ok, err = pcall(function()
      public{ b = 1 }  -- this line
    end)
    spec.truthy(not ok)
    spec.truthy(err:find("check_spec.lua:" .. (debug.getinfo(1, "l").currentline - 3) .. ": public:", 1, true), err)
  end)

  spec.it("takes other keys where the spec has a rule for them (check.OTHERS)", function()
    local S = { seed = "integer", [cai.check.OTHERS] = "string" }
    local opts = { seed = 1, date_string = "26 Jul 2024" }
    spec.eq(cai.check("f", opts, S), opts)
    spec.raises(function() cai.check("f", { seed = 1.5 }, S) end, "f: option 'seed' must be an integer", true)
    spec.raises(function() cai.check("f", { extra = 3 }, S) end, "f: option 'extra' must be a string, got number", true)
    spec.raises(function() cai.check("f", { [2] = "x" }, S) end, "f: option names must be strings, got number", true)
    -- without the rule, other keys stay unknown options
    spec.raises(function() cai.check("f", { sed = 1 }, { seed = "integer" }) end, "unknown option 'sed' (did you mean seed?)", true)
  end)

  spec.it("suggests by edit distance, transpositions counting once", function()
    spec.eq(cai.check.distance("learning_rate", "learning_rat"), 1)
    spec.eq(cai.check.distance("beta", "btea"), 1)
    spec.eq(cai.check.distance("kitten", "sitting"), 3)
    spec.eq(cai.check.suggest("lr", { "learning_rate", "seed" }), nil)
    spec.eq(cai.check.suggest("LEARNING_RATE", { "learning_rate" }), "learning_rate")
  end)
end)

spec.run()

-- The generated bad-input matrix for the Lua API: every function of every
-- cai.* module (found by walking lua/cai/), every model and tokenizer method,
-- called with arguments of the wrong type, an unknown option and nothing.
-- A public function either accepts the value (many take any value, or only
-- optional arguments) or raises an error that names it or its argument,
-- never a raw Lua error ("attempt to index a nil value"), a crash or a hang;
-- the module helpers listed in HELPERS (exported for sibling modules, not
-- documented as API) must not crash or hang. spec.cases runs them.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()

-- Exported for other modules and tests; not part of the documented API.
local HELPERS = {
  ["cai.cailoop.add_report_section"] = true, ["cai.chat.ordered"] = true, ["cai.check.distance"] = true,
  ["cai.check.unknown_hint"] = true, ["cai.classifier.function_to_apply"] = true, ["cai.classifier.model_type"] = true,
  ["cai.critique.combined_prompt"] = true, ["cai.critique.critique_prompt"] = true, ["cai.critique.judge_revision"] = true,
  ["cai.critique.revision_prompt"] = true, ["cai.data.conversation_completion"] = true,
  ["cai.data.conversation_segments"] = true, ["cai.data.default_format"] = true, ["cai.data.has_chat_template"] = true,
  ["cai.format.resolve"] = true, ["cai.jinja.dict_keys"] = true, ["cai.jinja.ordered"] = true, ["cai.json.array"] = true,
  ["cai.json.object"] = true, ["cai.plot.interval_plot"] = true, ["cai.plot.length_histogram"] = true,
  ["cai.plot.line_chart"] = true, ["cai.report.line_chart"] = true, ["cai.stats.erf"] = true, ["cai.sweep.cells"] = true,
  ["cai.sweep.markdown"] = true, ["cai.textmetrics.lower"] = true, ["cai.jinja.to_json"] = true,
  ["cai.world.comparison_prompt"] = true,
}

-- Not called at all: they build or run something big even with default arguments.
local SKIP = { ["cai.tiny.path"] = "builds the tiny model (minutes)", ["cai.tiny.load"] = "builds the tiny model",
  ["cai.tiny.helpful_path"] = "builds the tiny model and its helpful-only start",
  ["cai.log.warn"] = "prints any value", ["cai.log.error"] = "prints any value",
  ["cai.world.build"] = "builds the tiny world", ["cai.sweep.main"] = "runs recipes", ["cai.args.call"] = "reads arg" }

local ARGS = {
  { "true", function() return true end }, { "a function", function() return function() end end },
  { "an unknown option", function() return { zzz_unknown = 1 } end }, { "nothing", function() return nil end },
  { "a number", function() return 12345.5 end },
}

local function modules()
  local names = {}
  local handle = io.popen("ls lua/cai")
  for f in handle:lines() do if f:match("%.lua$") then names[#names + 1] = f:gsub("%.lua$", "") end end
  handle:close()
  table.sort(names)
  return names
end

-- A clean error: names the function (its module and name, or its last part) or an argument.
local function clean_error(fname)
  local short = fname:match("([%w_]+)$")
  return function(ok, err)
    -- Success is allowed: many functions take any value (encoders, parsers
    -- that return nil for text they cannot read) or only optional arguments.
    if ok then return nil end
    if type(err) ~= "string" then return "the error is a " .. type(err) end
    if not err:find(short, 1, true) and not err:find("argument", 1, true) and not err:find("option", 1, true)
      and not err:find("expected", 1, true) and not err:find("must be", 1, true) and not err:find("^usage: ")
      and not err:find("cai%.[%w_]+") and not err:find("no records", 1, true) then
      return "the error names neither " .. fname .. " nor an argument: " .. err
    end
  end
end

spec.describe("cai.* functions", function()
  spec.it("wrong arguments to every module function", function()
    local cases, seen = {}, 0
    for _, name in ipairs(modules()) do
      local ok, mod = pcall(function() return cai[name] end)
      if ok and type(mod) == "table" then
        local keys = {}
        for k, v in pairs(mod) do if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "function" then keys[#keys + 1] = k end end
        table.sort(keys)
        for _, k in ipairs(keys) do
          local fname = "cai." .. name .. "." .. k
          seen = seen + 1
          if not SKIP[fname] then
            for _, a in ipairs(ARGS) do
              local call = function() return mod[k](a[2]()) end
              if HELPERS[fname] then
                cases[#cases + 1] = { fname .. "(" .. a[1] .. ")", function() pcall(call) end, "ok" }
              else
                cases[#cases + 1] = { fname .. "(" .. a[1] .. ")", call, clean_error(fname) }
              end
            end
          end
        end
      end
    end
    spec.truthy(seen > 150, "found " .. seen .. " functions")
    spec.cases("module functions", cases)
  end)

  spec.it("wrong arguments to every model and tokenizer method", function()
    local dir = spec.random_model(root .. "/m", { seed = 4, config = { max_position_embeddings = 64 } })
    local m = cai.model.load(dir, { dtype = "fp32" })
    local tok = m.tokenizer
    local cases = {}
    local function sweep(kind, obj, methods, keep)
      for _, k in ipairs(methods) do
        if not keep[k] then
          for _, a in ipairs(ARGS) do
            cases[#cases + 1] = { kind .. ":" .. k .. "(" .. a[1] .. ")", function() return obj[k](obj, a[2]()) end,
              function(ok, err)
                if ok then return nil end  -- a method whose arguments are all optional
                if type(err) ~= "string" then return "the error is a " .. type(err) end
                if not err:find(k, 1, true) then return "the error does not name " .. k .. ": " .. err end
              end }
          end
        end
      end
    end
    local model_methods = { "generate", "logprobs", "logits", "add_lora", "load_lora", "save_lora", "merge_lora", "save",
      "encode", "set_adapter_enabled", "score" }
    local present = {}
    for _, k in ipairs(model_methods) do if pcall(function() return m[k] end) and m[k] then present[#present + 1] = k end end
    -- save/save_lora with nothing would write into the working directory: give them a path below root first
    sweep("m", m, present, { save = true, save_lora = true, load_lora = true })
    for _, k in ipairs({ "save", "save_lora", "load_lora" }) do
      for _, a in ipairs({ { "true", true }, { "a number", 5 }, { "a table", { zzz = 1 } }, { "an empty path", "" } }) do
        cases[#cases + 1] = { "m:" .. k .. "(" .. a[1] .. ")", function() return m[k](m, a[2]) end, k }
      end
    end
    sweep("tok", tok, { "encode", "decode", "apply_chat_template", "id_to_piece", "piece_to_id" }, {})
    spec.cases("methods", cases)
    -- the model still works after all that
    spec.eq(type(m:logprobs({ "a" }, { " b" })[1].sum), "number")
    m:release()
    spec.raises(function() m:generate({ "a" }) end, "released", true)
  end)
end)

spec.run()

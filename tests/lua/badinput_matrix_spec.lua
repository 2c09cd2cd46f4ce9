-- The generated bad-input matrix for model directories: a safetensors file
-- cut and corrupted at many offsets and header fields, every config.json
-- field of the wrong type, out of range or missing, tokenizer.json,
-- tokenizer_config.json and tokenizer.model variants, token ids. Each case is
-- an error naming the culprit (a pattern per case) or the documented
-- behaviour; none is a raw Lua or C++ error, a crash or a hang (spec.cases).
-- badinput_data_spec.lua does data files and faults, badinput_api_spec.lua
-- the Lua API; badinput_spec.lua holds hand-written cases with exact
-- messages; tests/cli/badinput_test.sh the ones that need their own process.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()
local read, write = spec.read, function(path, data) spec.write(path, data) return path end
local function sh(cmd) return os.execute(cmd) == 0 end

local run_cases, all_of, lua_pattern = spec.cases, spec.all_of, spec.escape
local le64 = spec.le64

-- One good model directory (random weights, the GPT-2 test tokenizer).
local good = spec.random_model(root .. "/good", { seed = 1, config = { max_position_embeddings = 64 } })
local good_config = cai.json.decode(read(good .. "/config.json"))
local st = read(good .. "/model.safetensors")
local tensors, header, body = spec.safetensors_parts(st)
local header_len = #header
local names = {}
for name in pairs(tensors) do if name ~= "__metadata__" then names[#names + 1] = name end end
table.sort(names)

-- A model directory whose files are the good ones except those given ({ name = bytes | false }).
local dirs = 0
local function model_with(files)
  dirs = dirs + 1
  local dir = root .. "/m" .. dirs
  sh("mkdir -p " .. dir)
  for _, f in ipairs({ "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json" }) do
    if files[f] == nil then write(dir .. "/" .. f, read(good .. "/" .. f))
    elseif files[f] then write(dir .. "/" .. f, files[f]) end
  end
  return dir
end

-- The good tensors that keep(name) accepts, packed into a new safetensors file.
local function pack(keep)
  local h, parts, at = {}, {}, 0
  for _, name in ipairs(names) do
    if keep(name) then
      local t = tensors[name]
      local bytes = body:sub(t.data_offsets[1] + 1, t.data_offsets[2])
      h[name] = { dtype = t.dtype, shape = t.shape, data_offsets = { at, at + #bytes } }
      parts[#parts + 1] = bytes
      at = at + #bytes
    end
  end
  local text = cai.json.encode(h)
  return le64(#text) .. text .. table.concat(parts)
end

local function load(dir) return cai.model.load(dir, { dtype = "fp32" }) end

-- A loaded model must also run: a bad file that loads must not give NaN or crash later.
local function load_and_run(dir)
  local m = load(dir)
  local lp = m:logprobs({ "the cat" }, { " sat" })[1].sum
  m:release()
  if lp ~= lp then error("NaN log-prob after loading " .. dir) end
  return lp
end

spec.describe("safetensors", function()
  spec.it("cut at many offsets", function()
    local cases = {}
    local cuts = { 0, 1, 4, 7, 8, 9, 10, 20, 8 + math.floor(header_len / 2), 8 + header_len - 1, 8 + header_len, 8 + header_len + 1 }
    for k = 1, 12 do cuts[#cuts + 1] = 8 + header_len + math.floor(#body * k / 13) end
    cuts[#cuts + 1] = #st - 4
    cuts[#cuts + 1] = #st - 1
    for _, n in ipairs(cuts) do
      cases[#cases + 1] = { "first " .. n .. " bytes", function() load(model_with{ ["model.safetensors"] = st:sub(1, n) }) end,
        "model%.safetensors: " }
    end
    -- a file one byte longer: the data no tensor covers is refused or harmless, never misread
    cases[#cases + 1] = { "a byte appended", function() return load_and_run(model_with{ ["model.safetensors"] = st .. "\0" }) end,
      function(ok, err) if not ok and not tostring(err):find("model%.safetensors") then return "error does not name the file: " .. tostring(err) end end }
    run_cases("safetensors cuts", cases)
  end)

  spec.it("header length and header bytes", function()
    local function with_header(h, len) return model_with{ ["model.safetensors"] = le64(len or #h) .. h .. body } end
    local cases = {
      { "header length 0", function() load(with_header("", 0)) end, "model%.safetensors: " },
      { "header length 2^63", function() load(model_with{ ["model.safetensors"] = string.rep("\255", 7) .. "\127" .. header .. body }) end, "model%.safetensors: .*header length" },
      { "header length 2^64-1", function() load(model_with{ ["model.safetensors"] = string.rep("\255", 8) .. header .. body }) end, "model%.safetensors: .*header length" },
      { "header length one short", function() load(with_header(header, #header - 1)) end, "model%.safetensors: " },
      { "header length one long", function() load(with_header(header, #header + 1)) end, "model%.safetensors: " },
      { "header is an array", function() load(with_header("[1,2,3]")) end, "model%.safetensors: .*JSON object" },
      { "header is a string", function() load(with_header('"abc"')) end, "model%.safetensors: .*JSON object" },
      { "header is null", function() load(with_header("null")) end, "model%.safetensors: .*JSON object" },
      { "header is empty object", function() load(with_header("{}")) end, "model%.safetensors.*" },
      { "header not UTF-8", function() load(with_header((header:gsub('"dtype"', '"dtyp\255"', 1)))) end, "model%.safetensors: " },
      { "tensor name not UTF-8", function() load(with_header((header:gsub('"', '"\200', 1)))) end, "model%.safetensors: " },
      { "header with a NUL", function() load(with_header(header:sub(1, 20) .. "\0" .. header:sub(21))) end, "model%.safetensors: " },
      { "header with trailing garbage", function() load(with_header(header .. "xyz")) end, "model%.safetensors: .*JSON" },
      { "header padded with spaces", function() return load_and_run(with_header(header .. "        ")) end, "ok" },
      { "header nested deep", function() load(with_header(string.rep("[", 100000) .. string.rep("]", 100000))) end, "model%.safetensors: .*nested deeper" },
      { "header nested deep, unclosed", function() load(with_header(string.rep("{\"a\":", 100000))) end, "model%.safetensors: .*nested deeper" },
      { "__metadata__ a list", function() load(with_header((header:gsub("^{", '{"__metadata__":[1],', 1)))) end, "__metadata__" },
      { "__metadata__ value a number", function() load(with_header((header:gsub("^{", '{"__metadata__":{"format":1},', 1)))) end, "__metadata__" },
      { "duplicate tensor name", function()
          local first = header:match('^{(".-}),') -- the first entry
          load(with_header("{" .. first .. "," .. header:sub(2)))
        end, "model%.safetensors: .*" .. "twice" },
    }
    run_cases("safetensors header", cases)
  end)

  spec.it("every tensor's dtype, shape and data_offsets", function()
    local cases = {}
    local function mutate(name, field, value)
      local t = cai.json.decode(header)
      t[name][field] = value
      return cai.json.encode(t)
    end
    local function with_header(h, extra) return model_with{ ["model.safetensors"] = le64(#h) .. h .. body .. (extra or "") } end
    for i, name in ipairs(names) do
      local t = tensors[name]
      local a, b = t.data_offsets[1], t.data_offsets[2]
      local culprit = "model%.safetensors: "
      local muts = {
        { "dtype", "F99", "unsupported dtype" }, { "dtype", 5, "dtype" }, { "dtype", cai.json.null, "dtype" },
        { "dtype", "I64", "" }, { "dtype", "BF16", "" }, { "dtype", "F16", "" },
        { "shape", {}, "" }, { "shape", { -1 }, "shape" }, { "shape", { "a" }, "shape" }, { "shape", 7, "shape" },
        { "shape", { 2 ^ 40, 2 ^ 40 }, "" }, { "shape", { 1.5 }, "shape" },
        { "data_offsets", { b, a }, "data_offsets" }, { "data_offsets", { a, b + 10 ^ 9 }, "data_offsets" },
        { "data_offsets", { -1, b }, "data_offsets" }, { "data_offsets", { a }, "data_offsets" },
        { "data_offsets", { a + 0.5, b }, "data_offsets" }, { "data_offsets", "0,1", "data_offsets" },
        { "data_offsets", { a + 4, b + 4 }, "" }, { "data_offsets", { a - 4, b - 4 }, "" },
      }
      -- a sample of tensors gets every mutation; the rest the ones that move data
      for k, mu in ipairs(muts) do
        if i <= 3 or k % 5 == i % 5 then
          local field, value, pattern = mu[1], mu[2], mu[3]
          if value ~= nil and (a - 4 >= 0 or not (field == "data_offsets" and type(value) == "table" and value[1] == a - 4)) then
            cases[#cases + 1] = { name .. " " .. field .. "=" .. cai.json.encode(value), function()
              load(with_header(mutate(name, field, value)))
            end, all_of(culprit, '"' .. lua_pattern(name) .. '"', pattern) }
          end
        end
      end
      if i <= 4 then
        cases[#cases + 1] = { name .. " missing", function()
          load(model_with{ ["model.safetensors"] = pack(function(n) return n ~= name end) })
        end, "model%.safetensors.*" .. lua_pattern(name) }
        cases[#cases + 1] = { name .. " entry a list", function() load(with_header((header:gsub(
          '"' .. lua_pattern(name) .. '":%b{}', '"' .. name .. '":[1]', 1)))) end, culprit }
      end
    end
    cases[#cases + 1] = { "an extra tensor nothing uses", function()
      local t2 = cai.json.decode(header)
      t2["model.layers.99.mlp.up_proj.weight"] = { dtype = "F32", shape = { 1 }, data_offsets = { #body, #body + 4 } }
      load(with_header(cai.json.encode(t2), "\0\0\0\0"))
    end, "model%.layers%.99" }
    cases[#cases + 1] = { "repacked good tensors", function() return load_and_run(model_with{ ["model.safetensors"] = pack(function() return true end) }) end, "ok" }
    run_cases("safetensors tensors", cases)
  end)
end)

spec.describe("config.json", function()
  spec.it("every field of the wrong type, out of range or missing; the file and the directory", function()
  local function with_config(edit)
    local c = cai.json.decode(read(good .. "/config.json"))
    edit(c)
    return model_with{ ["config.json"] = cai.json.encode(c) }
  end
  -- field -> kind: what a valid value is, and what else may happen
  local FIELDS = {
    vocab_size = "size", hidden_size = "size", intermediate_size = "size", num_hidden_layers = "size",
    num_attention_heads = "size", num_key_value_heads = "size", head_dim = "size", max_position_embeddings = "posint",
    rms_norm_eps = "positive", rope_theta = "positive",
    tie_word_embeddings = "boolean", attention_bias = "boolean", mlp_bias = "boolean",
    model_type = "string", hidden_act = "string", torch_dtype = "string",
    bos_token_id = "id", eos_token_id = "id", pad_token_id = "id",
    rope_scaling = "object", layer_types = "list",
  }
  local VALUES = {
    { "a string", "abc" }, { "true", true }, { "an empty list", {} }, { "a list", { 1 } }, { "an object", { a = 1 } },
    { "0", 0 }, { "-1", -1 }, { "1.5", 1.5 }, { "1e300", 1e300 }, { "2^40", 2 ^ 40 }, { "-1e-5", -1e-5 },
    { "null", cai.json.null }, { "missing", nil }, { "7", 7 }, { "1e9", 1e9 },
  }
  local function field_error(field) return 'config%.json: .*' .. field end
  -- An error naming the field in config.json, or (for a size the weights do not have) the tensor and its shape.
  local function names_field_or_tensor(field)
    return function(ok, err)
      if ok then return "expected an error, but the model loaded" end
      err = tostring(err)
      if err:find(field_error(field)) or err:find("model%.safetensors: .*tensor \"[^\"]+\".*shape")
        or err:find("model%.safetensors: missing tensor") or err:find("config%.json: .*" .. "num_attention_heads")
        or err:find("max_position_embeddings %(%d+%)") then return nil end
      return "the error names neither the field nor a tensor: " .. err
    end
  end
  -- Loads and runs, or an error naming the field.
  local function ok_or_field(field)
    return function(ok, err)
      if ok or tostring(err):find(field_error(field)) or tostring(err):find("model%.safetensors: .*tensor") then return nil end
      return "the error does not name the field: " .. tostring(err)
    end
  end
  local cases = {}
  local fields = {}
  for f in pairs(FIELDS) do fields[#fields + 1] = f end
  table.sort(fields)
  for _, field in ipairs(fields) do
    local kind = FIELDS[field]
    for _, v in ipairs(VALUES) do
      local label, value = v[1], v[2]
      local t = type(value)
      local expect
      local absent = value == nil or value == cai.json.null
      if kind == "size" then
        expect = (absent and field == "head_dim") and "ok" or names_field_or_tensor(field)
      elseif kind == "posint" then
        local good_int = t == "number" and value >= 1 and value == math.floor(value) and value < 2 ^ 53
        expect = (absent or good_int) and function(ok, err)
          if not ok and not tostring(err):find(field) then return "the error does not name " .. field .. ": " .. tostring(err) end
        end or field_error(field)
      elseif kind == "positive" then
        expect = (absent or (t == "number" and value > 0)) and ok_or_field(field) or field_error(field)
      elseif kind == "boolean" then
        expect = (absent or t == "boolean") and ok_or_field(field) or field_error(field)
      elseif kind == "string" then
        expect = (absent and field ~= "model_type") and ok_or_field(field) or field_error(field)
      elseif kind == "id" then
        local int = t == "number" and value == math.floor(value) and math.abs(value) < 2 ^ 53
        local list = field == "eos_token_id" and t == "table" and (#value > 0 or next(value) == nil)
        expect = (absent or int or list) and "ok" or field_error(field)
      elseif kind == "object" then
        expect = absent and "ok" or field_error(field)
      elseif kind == "list" then
        expect = absent and "ok" or field_error(field)
      end
      cases[#cases + 1] = { field .. " = " .. label, function()
        return load_and_run(with_config(function(c) c[field] = value end))
      end, expect }
    end
  end
  -- relations between fields
  local relations = {
    { "heads not a multiple of kv heads", { num_attention_heads = 4, num_key_value_heads = 3 }, "num_key_value_heads" },
    { "hidden not divisible by heads", { hidden_size = 30 }, "num_attention_heads" },
    { "odd head_dim", { head_dim = 7 }, "head_dim" },
    { "layer_types one short", { layer_types = { "full_attention" } }, "layer_types" },
    { "layer_types one long", { layer_types = { "full_attention", "full_attention", "full_attention" } }, "layer_types" },
    { "layer_types unknown", { layer_types = { "full_attention", "global" } }, "layer_types%[1%]" },
    { "rope_scaling unknown type", { rope_scaling = { rope_type = "yarn2", factor = 2 } }, "rope_scaling" },
    { "rope_scaling linear without factor", { rope_scaling = { rope_type = "linear" } }, "factor" },
    { "rope_scaling factor 0", { rope_scaling = { rope_type = "linear", factor = 0 } }, "factor" },
    { "rope_scaling llama3 missing fields", { rope_scaling = { rope_type = "llama3", factor = 8 } }, "rope_scaling" },
    { "model_type gemma3", { model_type = "gemma3" }, "gemma3_text" },
    { "unknown activation", { hidden_act = "swiglu9" }, "activation \"swiglu9\"" },
    { "torch_dtype unknown", { torch_dtype = "float64" }, "torch_dtype" },
    { "rope_theta -inf-ish", { rope_theta = -1e308 }, "rope_theta" },
    { "num_hidden_layers 2^40", { num_hidden_layers = 2 ^ 40 }, "num_hidden_layers" },
  }
  for _, r in ipairs(relations) do
    cases[#cases + 1] = { r[1], function()
      load(with_config(function(c) for k, v in pairs(r[2]) do c[k] = v end end))
    end, field_error(r[3]) }
  end
  -- the file itself
  local files = {
    { "empty", "" }, { "not JSON", "{ \"model_type\": " }, { "a list", "[1, 2]" }, { "a string", '"llama"' },
    { "null", "null" }, { "nested deep", string.rep("[", 600) .. string.rep("]", 600) }, { "NaN literal", '{"model_type": NaN}' },
    { "trailing comma", '{"model_type": "llama",}' }, { "UTF-16", "\255\254{\0}\0" }, { "not UTF-8", '{"model_type": "ll\255"}' },
    { "number overflow", '{"model_type": "llama", "vocab_size": 1e999}' }, { "comments", '// c\n{"model_type": "llama"}' },
    { "two objects", '{"model_type": "llama"}{"model_type": "llama"}' },
  }
  for _, f in ipairs(files) do
    cases[#cases + 1] = { "file " .. f[1], function() load(model_with{ ["config.json"] = f[2] }) end, "config%.json: " }
  end
  cases[#cases + 1] = { "file with a BOM", function()
    return load_and_run(model_with{ ["config.json"] = "\239\187\191" .. read(good .. "/config.json") })
  end, function(ok, err) if not ok and not tostring(err):find("config%.json") then return tostring(err) end end }
  cases[#cases + 1] = { "file missing", function() load(model_with{ ["config.json"] = false }) end, "config%.json" }
  cases[#cases + 1] = { "file a directory", function()
    local dir = model_with{ ["config.json"] = false }
    sh("mkdir " .. dir .. "/config.json")
    load(dir)
  end, "config%.json: is a directory" }
  cases[#cases + 1] = { "model dir missing", function() load(root .. "/nosuch-model") end, "nosuch%-model" }
  cases[#cases + 1] = { "model dir a file", function() load(good .. "/config.json") end, "config%.json" }
  cases[#cases + 1] = { "no weights", function() load(model_with{ ["model.safetensors"] = false }) end, "safetensors" }
  cases[#cases + 1] = { "index pointing nowhere", function()
    local dir = model_with{ ["model.safetensors"] = false }
    write(dir .. "/model.safetensors.index.json", cai.json.encode{ weight_map = { ["model.embed_tokens.weight"] = "nosuch.safetensors" } })
    load(dir)
  end, "model%.safetensors%.index%.json: .*nosuch" }
  cases[#cases + 1] = { "index not JSON", function()
    local dir = model_with{ ["model.safetensors"] = false }
    write(dir .. "/model.safetensors.index.json", "{")
    load(dir)
  end, "model%.safetensors%.index%.json: " }
  cases[#cases + 1] = { "index weight_map a list", function()
    local dir = model_with{ ["model.safetensors"] = false }
    write(dir .. "/model.safetensors.index.json", '{"weight_map": [1]}')
    load(dir)
  end, "weight_map" }
  cases[#cases + 1] = { "index naming ../", function()
    local dir = model_with{ ["model.safetensors"] = false }
    write(dir .. "/model.safetensors.index.json", cai.json.encode{ weight_map = { ["model.embed_tokens.weight"] = "../good/model.safetensors" } })
    load(dir)
  end, "weight_map" }
  run_cases("config.json and the model directory", cases)
  end)
end)

spec.describe("tokenizer files", function()
  spec.it("tokenizer.json, tokenizer_config.json and tokenizer.model variants", function()
    local tok_src = "tests/data/tokenizers/gpt2"
    local base_json = read(tok_src .. "/tokenizer.json")
    local base_config = read(tok_src .. "/tokenizer_config.json")
    local tdirs = 0
    local function tok_dir(files)
      tdirs = tdirs + 1
      local dir = root .. "/t" .. tdirs
      sh("mkdir -p " .. dir)
      for name, data in pairs(files) do if data then write(dir .. "/" .. name, data) end end
      return dir
    end
    -- Loads and uses the tokenizer: encode, decode, a round trip of plain text.
    local function load_and_use(dir)
      local tok = cai.tokenizer.load(dir)
      local ids = tok:encode("Hello world, the cat sat.", { add_special_tokens = true })
      local text = tok:decode(ids, { skip_special_tokens = true })
      if not text:find("cat sat", 1, true) then error("round trip gave " .. text) end
      return tok
    end
    local function json_variant(edit)
      local j = cai.json.decode(base_json)
      edit(j)
      return tok_dir{ ["tokenizer.json"] = cai.json.encode(j), ["tokenizer_config.json"] = base_config }
    end
    local T = "tokenizer%.json: "
    local cases = {}
    local function add(name, edit, expect) cases[#cases + 1] = { name, function() return load_and_use(json_variant(edit)) end, expect } end
    local some_piece = "0"
    add("model missing", function(j) j.model = nil end, T .. ".*model")
    add("model a string", function(j) j.model = "BPE" end, T .. ".*model")
    add("model.type unknown", function(j) j.model.type = "Hyper" end, T .. ".*Hyper")
    add("model.type a number", function(j) j.model.type = 3 end, T .. ".*type")
    add("model.vocab missing", function(j) j.model.vocab = nil end, T .. ".*vocab")
    add("model.vocab a list", function(j) j.model.vocab = { 1, 2 } end, T .. ".*vocab")
    add("model.vocab empty", function(j) j.model.vocab = setmetatable({}, { __jsontype = "object" }) j.model.merges = {} end, T .. ".*vocab")
    add("two pieces one id", function(j) j.model.vocab["zzzz"] = j.model.vocab[some_piece] end, T .. ".*same id")
    add("id negative", function(j) j.model.vocab["zzzz"] = -1 end, T .. '.*"zzzz"')
    add("id 1.5", function(j) j.model.vocab["zzzz"] = 1.5 end, T .. '.*"zzzz"')
    add("id 2^40", function(j) j.model.vocab["zzzz"] = 2 ^ 40 end, T .. '.*"zzzz"')
    add("id 2^31", function(j) j.model.vocab["zzzz"] = 2 ^ 31 end, T .. '.*"zzzz"')
    add("id a string", function(j) j.model.vocab["zzzz"] = "7" end, T .. '.*"zzzz"')
    add("id null", function(j) j.model.vocab["zzzz"] = cai.json.null end, T .. '.*"zzzz"')
    add("id gap (sparse ids)", function(j) j.model.vocab["zzzz"] = 5000 end, function(ok, err)
      if not ok and not tostring(err):find("tokenizer%.json") then return tostring(err) end end)
    add("merges missing", function(j) j.model.merges = nil end, function(ok, err)
      if not ok and not tostring(err):find("merges") then return tostring(err) end end)
    add("merges a string", function(j) j.model.merges = "h e" end, T .. ".*merges")
    add("merge a number", function(j) j.model.merges[1] = 5 end, T .. ".*merges%[0%]")
    add("merge of one part", function(j) j.model.merges[1] = "he" end, T .. ".*merges%[0%]")
    add("merge of three parts", function(j) j.model.merges[1] = "h e x" end, T .. ".*merges%[0%]")
    add("merge of an unknown piece", function(j) j.model.merges[1] = "h zq9" end, T .. ".*merges%[0%]")
    add("merge whose result is unknown", function(j) j.model.merges[1] = "Ġ Ġ" end, function(ok, err)
      if not ok and not tostring(err):find("merges%[0%]") then return tostring(err) end end)
    add("merge a list of three", function(j) j.model.merges[1] = { "h", "e", "x" } end, T .. ".*merges%[0%]")
    add("merge a list of numbers", function(j) j.model.merges[1] = { 1, 2 } end, T .. ".*merges%[0%]")
    add("added_tokens an object", function(j) j.added_tokens = { a = 1 } end, T .. ".*added_tokens")
    add("added token without id", function(j) j.added_tokens[1].id = nil end, T .. ".*added_tokens%[0%]")
    add("added token without content", function(j) j.added_tokens[1].content = nil end, T .. ".*added_tokens%[0%]")
    add("added token id a string", function(j) j.added_tokens[1].id = "396" end, T .. ".*added_tokens%[0%]")
    add("added token id negative", function(j) j.added_tokens[1].id = -3 end, T .. ".*added_tokens%[0%]")
    add("added token id 2^40", function(j) j.added_tokens[1].id = 2 ^ 40 end, T .. ".*added_tokens%[0%]")
    add("added token content empty", function(j) j.added_tokens[1].content = "" end, T .. ".*added_tokens%[0%]")
    add("added token special a string", function(j) j.added_tokens[1].special = "yes" end, T .. ".*added_tokens%[0%]")
    add("two added tokens one id", function(j) j.added_tokens[2].id = j.added_tokens[1].id end, T .. ".*added_tokens")
    add("added token reusing a piece's id", function(j) j.added_tokens[2].id = j.model.vocab[some_piece] end, function(ok, err)
      if not ok and not tostring(err):find("tokenizer%.json") then return tostring(err) end end)
    add("added token an entry a string", function(j) j.added_tokens[1] = "<x>" end, T .. ".*added_tokens%[0%]")
    add("normalizer unknown", function(j) j.normalizer = { type = "Hyper" } end, T .. ".*Hyper")
    add("normalizer a string", function(j) j.normalizer = "NFC" end, T .. ".*normalizer")
    add("normalizer sequence bad", function(j) j.normalizer = { type = "Sequence", normalizers = 3 } end, T .. ".*normalizers")
    add("pre_tokenizer unknown", function(j) j.pre_tokenizer = { type = "Hyper" } end, T .. ".*Hyper")
    add("pre_tokenizer no type", function(j) j.pre_tokenizer = { add_prefix_space = true } end, T .. ".*pre_tokenizer")
    add("split with a bad regex", function(j) j.pre_tokenizer = { type = "Split", pattern = { Regex = "(" }, behavior = "Isolated", invert = false } end, T .. ".*pre_tokenizer")
    add("split with an unknown behavior", function(j) j.pre_tokenizer = { type = "Split", pattern = { String = " " }, behavior = "Sideways", invert = false } end, T .. ".*Sideways")
    add("decoder unknown", function(j) j.decoder = { type = "Hyper" } end, T .. ".*Hyper")
    add("decoder a list", function(j) j.decoder = { 1 } end, T .. ".*decoder")
    add("post_processor unknown", function(j) j.post_processor = { type = "Hyper" } end, T .. ".*Hyper")
    add("template with an unknown special", function(j) j.post_processor = { type = "TemplateProcessing",
      single = { { SpecialToken = { id = "<zz>", type_id = 0 } }, { Sequence = { id = "A", type_id = 0 } } },
      pair = { { Sequence = { id = "A", type_id = 0 } } }, special_tokens = {} } end, T .. ".*<zz>")
    add("template special with a bad id", function(j) j.post_processor = { type = "TemplateProcessing",
      single = { { SpecialToken = { id = "<s>", type_id = 0 } }, { Sequence = { id = "A", type_id = 0 } } },
      pair = { { Sequence = { id = "A", type_id = 0 } } }, special_tokens = { ["<s>"] = { id = "<s>", ids = { 2 ^ 40 }, tokens = { "<s>" } } } } end, T .. ".*<s>")
    add("truncation set", function(j) j.truncation = { max_length = 4, strategy = "LongestFirst", stride = 0, direction = "Right" } end,
      function(ok, err) if not ok and not tostring(err):find("truncation") then return tostring(err) end end)
    -- whole files
    local files = { { "empty", "" }, { "not JSON", "{" }, { "a list", "[]" }, { "null", "null" },
      { "nested deep", string.rep("[", 100000) }, { "not UTF-8", '{"model": "\255"}' }, { "binary", "\0\1\2\3" } }
    for _, f in ipairs(files) do
      cases[#cases + 1] = { "tokenizer.json " .. f[1], function() load_and_use(tok_dir{ ["tokenizer.json"] = f[2], ["tokenizer_config.json"] = base_config }) end, T }
    end
    local function config_variant(edit)
      local c = cai.json.decode(base_config)
      edit(c)
      return tok_dir{ ["tokenizer.json"] = base_json, ["tokenizer_config.json"] = cai.json.encode(c) }
    end
    local C = "tokenizer_config%.json: "
    local function addc(name, edit, expect) cases[#cases + 1] = { name, function() return load_and_use(config_variant(edit)) end, expect } end
    addc("eos_token a number", function(c) c.eos_token = 5 end, C .. ".*eos_token")
    addc("bos_token a list", function(c) c.bos_token = { 1 } end, C .. ".*bos_token")
    addc("eos_token an object without content", function(c) c.eos_token = { lstrip = false } end, C .. ".*eos_token")
    -- a special token missing from the vocabulary is appended (as transformers does); a model has no embedding for it
    for _, name in ipairs({ "eos_token", "bos_token", "pad_token" }) do
      cases[#cases + 1] = { name .. " not in the vocabulary, with a model", function()
        local c = cai.json.decode(base_config)
        c[name] = "<zz-new>"
        load(model_with{ ["tokenizer_config.json"] = cai.json.encode(c) })
      end, C .. name .. " has id %d+, outside the model's vocabulary" }
    end
    local function chat(dir) return cai.tokenizer.load(dir):apply_chat_template({ { role = "user", content = "hi" } }) end
    for _, ct in ipairs({ { "a number", 5 }, { "a list of numbers", { 1 } }, { "a list without names", { { template = "x" } } },
      { "an object", { a = 1 } }, { "an unclosed tag", "{% for m in messages %}" }, { "an unknown filter", "{{ messages | zzfilter }}" } }) do
      cases[#cases + 1] = { "chat_template " .. ct[1], function() return chat(config_variant(function(c) c.chat_template = ct[2] end)) end,
        "chat.template" }
    end
    addc("added_tokens_decoder a list", function(c) c.added_tokens_decoder = { 1 } end, C .. ".*added_tokens_decoder")
    addc("added_tokens_decoder bad key", function(c) c.added_tokens_decoder = { abc = { content = "<x>" } } end, C .. ".*added_tokens_decoder")
    addc("add_bos_token a string", function(c) c.add_bos_token = "yes" end, C .. ".*add_bos_token")
    addc("clean_up_tokenization_spaces a string", function(c) c.clean_up_tokenization_spaces = "no" end, C .. ".*clean_up_tokenization_spaces")
    addc("model_max_length a string", function(c) c.model_max_length = "big" end, function(ok, err)
      if not ok and not tostring(err):find("model_max_length") then return tostring(err) end end)
    addc("tokenizer_class unknown", function(c) c.tokenizer_class = "HyperTokenizer" end, function(ok, err)
      if not ok and not tostring(err):find("tokenizer_class") then return tostring(err) end end)
    for _, f in ipairs({ { "empty", "" }, { "not JSON", "{" }, { "a list", "[1]" }, { "nested deep", string.rep("{\"a\":", 1000) } }) do
      cases[#cases + 1] = { "tokenizer_config.json " .. f[1], function() load_and_use(tok_dir{ ["tokenizer.json"] = base_json, ["tokenizer_config.json"] = f[2] }) end, C }
    end
    -- sentencepiece
    local spm = read("tests/data/tokenizers/llama/tokenizer.model")
    local spm_config = read("tests/data/tokenizers/llama/tokenizer_config.json")
    for _, cut in ipairs({ 0, 1, 10, 100, math.floor(#spm / 2), #spm - 1 }) do
      cases[#cases + 1] = { "tokenizer.model cut to " .. cut, function()
        load_and_use(tok_dir{ ["tokenizer.model"] = spm:sub(1, cut), ["tokenizer_config.json"] = spm_config })
      end, "tokenizer%.model" }
    end
    cases[#cases + 1] = { "tokenizer.model random bytes", function()
      local r, bytes = cai.rng(7), {}
      for i = 1, 4096 do bytes[i] = string.char(r:int(0, 255)) end
      load_and_use(tok_dir{ ["tokenizer.model"] = table.concat(bytes), ["tokenizer_config.json"] = spm_config })
    end, "tokenizer%.model" }
    cases[#cases + 1] = { "tokenizer.model a directory", function()
      local dir = tok_dir{ ["tokenizer_config.json"] = spm_config }
      sh("mkdir " .. dir .. "/tokenizer.model")
      load_and_use(dir)
    end, "tokenizer%.model" }
    cases[#cases + 1] = { "no tokenizer files", function() load_and_use(tok_dir{}) end, "tokenizer" }
    cases[#cases + 1] = { "good files load", function() return load_and_use(tok_dir{ ["tokenizer.json"] = base_json, ["tokenizer_config.json"] = base_config }) end, "ok" }
    run_cases("tokenizer files", cases)
  end)
  spec.it("encode and decode arguments", function()
    local tok = cai.tokenizer.load("tests/data/tokenizers/gpt2")
    local V = tok:vocab_size()
    local cases = {}
    local bad_ids = { { "2^32+5", 2 ^ 32 + 5 }, { "-1", -1 }, { "V", V }, { "V+10", V + 10 }, { "1e300", 1e300 }, { "NaN", 0 / 0 },
      { "inf", 1 / 0 }, { "1.5", 1.5 }, { "a string", "7" }, { "true", true }, { "a table", {} }, { "-2^63", -2 ^ 63 } }
    for _, b in ipairs(bad_ids) do
      cases[#cases + 1] = { "decode id " .. b[1], function() return tok:decode({ 1, b[2] }) end, "decode.*ids%[2%]" }
    end
    cases[#cases + 1] = { "decode a string", function() return tok:decode("abc") end, "decode" }
    cases[#cases + 1] = { "decode nil", function() return tok:decode() end, "decode" }
    cases[#cases + 1] = { "decode unknown option", function() return tok:decode({ 1 }, { skip_special = true }) end, "skip_special_tokens" }
    cases[#cases + 1] = { "encode a number", function() return tok:encode(5) end, "encode" }
    cases[#cases + 1] = { "encode nil", function() return tok:encode() end, "encode" }
    cases[#cases + 1] = { "encode a table", function() return tok:encode({}) end, "encode" }
    cases[#cases + 1] = { "encode unknown option", function() return tok:encode("a", { add_special = true }) end, "add_special_tokens" }
    cases[#cases + 1] = { "encode not UTF-8", function() return tok:encode("caf\233 \255\254") end,
      function(ok, err) if not ok and not tostring(err):find("UTF%-8") then return tostring(err) end end }
    cases[#cases + 1] = { "encode 1 MB", function() return #tok:encode(string.rep("word ", 200000)) end, "ok" }
    cases[#cases + 1] = { "encode NULs", function() return tok:decode(tok:encode("a\0b")) end, "ok" }
    run_cases("encode and decode", cases)
  end)
end)

spec.run()

-- The generated bad-input matrix: several hundred malformed inputs made by
-- program from good ones (a safetensors file cut and corrupted at many
-- offsets and header fields, every config.json field of the wrong type, out
-- of range or missing, tokenizer.json variants, JSONL and data records,
-- constitutions, every public cai.* function with wrong arguments, write
-- faults). Each case is an error naming the culprit (a pattern per case) or
-- the documented behaviour; none is a raw Lua or C++ error, a crash, a hang
-- or a half-written file. Hand-written cases with exact messages live in
-- badinput_spec.lua; the ones that need a process of their own (signals,
-- file-size limits, read-only directories) in tests/cli/badinput_test.sh.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()
local read, write = spec.read, function(path, data) spec.write(path, data) return path end
local function sh(cmd) return os.execute(cmd) == 0 end

-- Messages that mean an input reached code that did not check it.
local RAW = {
  "attempt to ", "unknown C%+%+ exception", "bad argument #", "std::", "json%.exception", "c10::", "Exception raised from",
  "basic_string", "vector::", "stack overflow", "bad_alloc", "out of memory", "%(error object is a",
}

local SECONDS = 30  -- a case that takes longer is a hang

---Runs the cases of one group; an error lists every case that failed.
---A case is { name, fn, expect } where expect is a Lua pattern the error
---must match, or "ok" (fn must succeed; a function check(result) may follow
---as the fourth entry), or a function(ok, err) returning nil or a complaint.
local total = 0
local function run_cases(group, cases)
  local failures = {}
  for _, c in ipairs(cases) do
    local name, fn, expect, after = c[1], c[2], c[3], c[4]
    local start = cai.clock()
    local ok, err = pcall(fn)
    local took = cai.clock() - start
    local complaint
    if type(expect) == "function" then
      complaint = expect(ok, err)
    elseif expect == "ok" then
      if not ok then complaint = "expected success, got " .. tostring(err)
      elseif after then complaint = after(err) end
    elseif ok then
      complaint = "expected an error matching " .. expect .. ", but none was raised"
    elseif type(err) ~= "string" then
      complaint = "the error is a " .. type(err) .. ", not a message"
    elseif not err:find(expect) then
      complaint = "expected an error matching " .. expect .. ", got " .. err
    end
    if not complaint and not ok then
      for _, raw in ipairs(RAW) do
        if tostring(err):find(raw) then complaint = "a raw error (" .. raw .. "): " .. tostring(err) break end
      end
    end
    if not complaint and took > SECONDS then complaint = string.format("took %.0f s", took) end
    if complaint then failures[#failures + 1] = name .. ": " .. complaint end
  end
  total = total + #cases
  io.write(string.format("  %s: %d cases, %d failed\n", group, #cases, #failures))
  if #failures > 0 then error(#failures .. " of " .. #cases .. " cases failed:\n" .. table.concat(failures, "\n"), 0) end
end

---An expectation: an error matching every pattern given.
local function all_of(...)
  local patterns = { ... }
  return function(ok, err)
    if ok then return "expected an error, but none was raised" end
    for _, p in ipairs(patterns) do
      if not tostring(err):find(p) then return "expected an error matching " .. p .. ", got " .. tostring(err) end
    end
  end
end

local function lua_pattern(text) return (text:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

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

spec.run()

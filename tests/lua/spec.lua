-- A tiny spec runner for tests/lua/*_spec.lua:
--   local spec = require "spec"
--   spec.describe("thing", function()
--     spec.it("does x", function() spec.eq(f(1), 2) end)
--   end)
--   spec.run()   -- prints a summary, exits non-zero on any failure
local spec = {}

local cases = {}
local prefix = {}

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then
    local ok, s = pcall(function() return require("cai").json.encode(v) end)
    if ok then return s end
  end
  return tostring(v)
end

local function deep_equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

function spec.describe(name, body)
  prefix[#prefix + 1] = name
  body()
  prefix[#prefix] = nil
end

function spec.it(name, body)
  cases[#cases + 1] = { name = table.concat(prefix, " ") .. ": " .. name, body = body }
end

function spec.eq(actual, expected, message)
  if not deep_equal(actual, expected) then
    error(string.format("%sexpected %s, got %s", message and (message .. ": ") or "", show(expected), show(actual)), 2)
  end
end

function spec.near(actual, expected, tolerance, message)
  if type(actual) ~= "number" or math.abs(actual - expected) > tolerance then
    error(string.format("%sexpected %s within %g, got %s", message and (message .. ": ") or "",
      tostring(expected), tolerance, tostring(actual)), 2)
  end
end

function spec.truthy(value, message)
  if not value then error(message or "expected a true value", 2) end
end

---Calls fn and checks that it raises an error whose message matches pattern
---(a Lua pattern; plain=true for a plain substring). Returns the message.
function spec.raises(fn, pattern, plain)
  local ok, err = pcall(fn)
  if ok then error("expected an error matching " .. show(pattern) .. ", but none was raised", 2) end
  err = tostring(err)
  if pattern and not err:find(pattern, 1, plain) then
    error(string.format("expected an error matching %s, got %s", show(pattern), show(err)), 2)
  end
  return err
end

---A fresh temporary directory, removed by the caller if it wishes.
function spec.tmpdir()
  local handle = io.popen("mktemp -d")
  local dir = handle:read("*l")
  handle:close()
  return dir
end

---The bytes of the file at path (an error naming it when missing).
function spec.read(path)
  local f = assert(io.open(path, "rb"), "missing " .. path)
  local data = f:read("*a")
  f:close()
  return data
end

---Writes data to path.
function spec.write(path, data)
  local f = assert(io.open(path, "wb"), "cannot write " .. path)
  f:write(data)
  f:close()
end

---Copies the file from to the path to.
function spec.copy(from, to)
  spec.write(to, spec.read(from))
end

---The lines of the file at path.
function spec.read_lines(path)
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = line end
  return lines
end

---Whether a file exists at path.
function spec.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

---n as 8 little-endian bytes (a safetensors header length).
function spec.le64(n)
  local out = {}
  for i = 1, 8 do
    out[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(out)
end

---The parts of safetensors bytes: the header table, its JSON text and the data section.
function spec.safetensors_parts(data)
  local n = 0
  for i = 8, 1, -1 do n = n * 256 + data:byte(i) end
  local text = data:sub(9, 8 + n)
  return require("cai").json.decode(text), text, data:sub(9 + n)
end

spec.TOKENIZERS = "tests/data/tokenizers"

---Writes a tiny random Llama into dir with a tokenizer copied from
---tests/data/tokenizers/<tokenizer> (default "gpt2"); vocab_size follows the
---tokenizer. config fields override the defaults (hidden 32, intermediate 48,
---2 layers, 4 heads, 2 key/value heads). Returns dir and the vocabulary size.
---@param dir string
---@param opts table|nil { seed = 5, tokenizer = "gpt2", config = { field = value, ... } }
function spec.random_model(dir, opts)
  local cai = require "cai"
  opts = cai.check("spec.random_model", opts, { seed = "integer", tokenizer = "string", config = "table" })
  local tok_dir = spec.TOKENIZERS .. "/" .. (opts.tokenizer or "gpt2")
  local vocab = cai.tokenizer.load(tok_dir):vocab_size()
  local config = {
    model_type = "llama", vocab_size = vocab, hidden_size = 32, intermediate_size = 48,
    num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2,
  }
  for k, v in pairs(opts.config or {}) do config[k] = v end
  cai.model.random(dir, config, { seed = opts.seed or 5 })
  for _, name in ipairs({ "tokenizer.json", "tokenizer_config.json" }) do
    if spec.exists(tok_dir .. "/" .. name) then spec.copy(tok_dir .. "/" .. name, dir .. "/" .. name) end
  end
  return dir, vocab
end

---Four short prompt/response records for SFT tests (a fresh copy each call).
function spec.sft_examples()
  return {
    { prompt = "The cat", response = " sat on the mat." },
    { prompt = "A dog", response = " ran in the park." },
    { prompt = "Birds", response = " fly south." },
    { prompt = "Fish", response = " swim in water." },
  }
end

-- Messages that mean an input reached code that did not check it.
spec.RAW_ERRORS = {
  "attempt to ", "unknown C%+%+ exception", "bad argument #", "std::", "json%.exception", "c10::", "Exception raised from",
  "basic_string", "vector::", "stack overflow", "bad_alloc", "out of memory", "%(error object is a",
}

spec.CASE_SECONDS = 30  -- a case that takes longer counts as a hang

---An expectation for spec.cases: an error matching every pattern given.
function spec.all_of(...)
  local patterns = { ... }
  return function(ok, err)
    if ok then return "expected an error, but none was raised" end
    for _, p in ipairs(patterns) do
      if not tostring(err):find(p) then return "expected an error matching " .. p .. ", got " .. tostring(err) end
    end
  end
end

---Runs a group of generated cases in this process; an error lists every case
---that failed. A case is { name, fn, expect [, after] }: expect is a Lua
---pattern the error must match, or "ok" (fn must succeed; after(result) may
---return a complaint), or a function(ok, err) returning nil or a complaint.
---An error that is not a string, matches spec.RAW_ERRORS or a case that takes
---longer than spec.CASE_SECONDS fails too. Returns the number of cases.
function spec.cases(group, list)
  local clock = require("cai").clock
  local failures = {}
  for _, c in ipairs(list) do
    local name, fn, expect, after = c[1], c[2], c[3], c[4]
    local start = clock()
    local ok, err = pcall(fn)
    local took = clock() - start
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
      for _, raw in ipairs(spec.RAW_ERRORS) do
        if tostring(err):find(raw) then complaint = "a raw error (" .. raw .. "): " .. tostring(err) break end
      end
    end
    if not complaint and took > spec.CASE_SECONDS then complaint = string.format("took %.0f s", took) end
    if complaint then failures[#failures + 1] = name .. ": " .. complaint end
  end
  io.write(string.format("  %s: %d cases, %d failed\n", group, #list, #failures))
  if #failures > 0 then error(#failures .. " of " .. #list .. " cases failed:\n" .. table.concat(failures, "\n"), 0) end
  return #list
end

---text with Lua pattern characters escaped.
function spec.escape(text) return (text:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

function spec.run()
  local failed = 0
  for _, case in ipairs(cases) do
    local ok, err = xpcall(case.body, debug.traceback)
    if ok then
      io.write("ok   ", case.name, "\n")
    else
      failed = failed + 1
      io.write("FAIL ", case.name, "\n  ", tostring(err):gsub("\n", "\n  "), "\n")
    end
  end
  io.write(string.format("%d passed, %d failed\n", #cases - failed, failed))
  io.stdout:flush()
  if failed > 0 then os.exit(1) end
end

return spec

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

local cai = require "cai"
local spec = require "spec"
local read = spec.read

local dir = spec.tmpdir()
local items = {}
for i = 1, 7 do items[i] = "item " .. i end

-- fn for st:run: one record per item, made from its position in the whole list.
local calls
local function make(batch, first_index)
  calls[#calls + 1] = first_index
  local out = {}
  for k, item in ipairs(batch) do out[k] = { text = item:upper(), position = first_index + k } end
  return out
end

spec.describe("cai.stage", function()
  spec.it("appends records chunk by chunk and returns them in item order", function()
    calls = {}
    local path = dir .. "/whole/answers.jsonl"
    local records = cai.stage.open(path, { name = "answers" }):run(items, make, { batch_size = 3 })
    spec.eq(calls, { 0, 3, 6 })
    spec.eq(#records, 7)
    spec.eq(records[5].text, "ITEM 5")
    spec.eq(records[5].position, 5)
    spec.eq(records[5].index, 5)
    spec.eq(records[5].key, "item 5")
    spec.eq(#cai.jsonl.read(path), 7)
  end)

  spec.it("a stopped run continues where it stopped and ends with the same file", function()
    local whole = read(dir .. "/whole/answers.jsonl")
    local path = dir .. "/stopped/answers.jsonl"
    calls = {}
    local ok = pcall(function()
      cai.stage.open(path):run(items, function(batch, first_index)
        if first_index == 3 then error("stopped") end
        return make(batch, first_index)
      end, { batch_size = 3 })
    end)
    spec.truthy(not ok)
    spec.eq(#cai.jsonl.read(path), 3)
    calls = {}
    local st = cai.stage.open(path)
    spec.eq(st:count(), 3)
    local records = st:run(items, make, { batch_size = 3 })
    spec.eq(calls, { 3, 6 })  -- the finished chunk is not done again
    spec.eq(#records, 7)
    spec.eq(read(path), whole)
    calls = {}
    cai.stage.open(path):run(items, make, { batch_size = 3 })
    spec.eq(calls, {})  -- all done: nothing is called
  end)

  spec.it("drops a torn last line and redoes its chunk", function()
    local whole = read(dir .. "/whole/answers.jsonl")
    local path = dir .. "/torn/answers.jsonl"
    local first_four = whole:match("^([^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n)")
    cai.write_file(path, first_four .. '{"index":5,"te')
    calls = {}
    cai.stage.open(path):run(items, make, { batch_size = 3 })
    -- items 1-3 complete; chunk 4-6 had item 4 only (item 5 torn): redone, item 4 kept
    spec.eq(calls, { 3, 6 })
    spec.eq(read(path), whole)
  end)

  spec.it("refuses a file made from other inputs, naming file and line", function()
    local path = dir .. "/whole/answers.jsonl"
    local changed = { "item 1", "item 2", "other" }
    spec.raises(function() cai.stage.open(path):run(changed, make, { batch_size = 3 }) end,
      "answers.jsonl:3: the record for item 3 was made from other input", true)
    spec.raises(function() cai.stage.open(path):run({ "item 1" }, make) end, "only 1 items", true)
  end)

  spec.it("checks its arguments and what fn returns", function()
    local path = dir .. "/args/a.jsonl"
    spec.raises(function() cai.stage.open("") end, "cai.stage.open: argument 'path' must not be empty", true)
    spec.raises(function() cai.stage.open(path, { nme = "x" }) end, "unknown option 'nme'", true)
    local st = cai.stage.open(path)
    spec.raises(function() st:run(items, make, { batch_size = 0 }) end, "stage:run: option 'batch_size' must be >= 1, got 0", true)
    spec.raises(function() st:run(items, "f") end, "stage:run: argument 'fn' must be a function(batch, first_index), got string", true)
    spec.raises(function() st:run({ 1, 2 }, make) end, "items[1] has no key", true)
    spec.raises(function() st:run(items, function() return {} end, { batch_size = 2 }) end,
      "fn must return 2 records for items 1..2, got 0", true)
  end)
end)

spec.run()
os.execute("rm -rf " .. dir)

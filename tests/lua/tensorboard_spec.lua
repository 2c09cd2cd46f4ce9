-- report_to = "tensorboard": the event file a trainer writes is read back by
-- a TFRecord/Event reader written here from the format's description (not
-- from the writer's code): every record's masked CRC-32C is checked, the
-- first event is file_version "brain.Event:2", and the scalars equal
-- metrics.jsonl (the source of truth) step by step, also after a resume.
local cai = require "cai"
local spec = require "spec"
local bit = require "bit"

local root = spec.tmpdir()
local dir = root .. "/tiny"

-- ---- the reader ----

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) ~= 0 then c = bit.bxor(bit.rshift(c, 1), 0x82F63B78) else c = bit.rshift(c, 1) end
  end
  crc_table[i] = c
end

local function crc32c(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = bit.bxor(crc_table[bit.band(bit.bxor(c, s:byte(i)), 0xFF)], bit.rshift(c, 8)) end
  return bit.tobit(bit.bnot(c))
end

local function masked(s)
  local c = crc32c(s)
  return bit.tobit(bit.bor(bit.rshift(c, 15), bit.lshift(c, 17)) + 0xa282ead8)
end

local function u32(s, at)  -- little-endian, as a signed 32-bit bit-op value
  local a, b, c, d = s:byte(at, at + 3)
  return bit.tobit(a + b * 256 + c * 65536 + d * 16777216)
end

local function u64(s, at)
  local lo, hi = u32(s, at) % 4294967296, u32(s, at + 4) % 4294967296
  return lo + hi * 4294967296
end

local function float32(s, at)
  local b = u32(s, at) % 4294967296
  local sign = b >= 2147483648 and -1 or 1
  local exp = math.floor(b / 8388608) % 256
  local frac = b % 8388608
  if exp == 0 then return sign * math.ldexp(frac, -149) end
  if exp == 255 then return frac == 0 and sign * math.huge or 0 / 0 end
  return sign * math.ldexp(frac + 8388608, exp - 150)
end

local function float64(s, at)
  local lo, hi = u32(s, at) % 4294967296, u32(s, at + 4) % 4294967296
  local sign = hi >= 2147483648 and -1 or 1
  local exp = math.floor(hi / 1048576) % 2048
  local frac = (hi % 1048576) * 4294967296 + lo
  if exp == 0 then return sign * math.ldexp(frac, -1074) end
  return sign * math.ldexp(frac + 4503599627370496, exp - 1075)
end

local function varint(s, at)
  local v, scale = 0, 1
  while true do
    local b = s:byte(at)
    at = at + 1
    v = v + (b % 128) * scale
    if b < 128 then return v, at end
    scale = scale * 128
  end
end

-- Protobuf fields of message s: list of { field=, wire=, value= } (value: number or bytes).
local function fields(s)
  local out, at = {}, 1
  while at <= #s do
    local key
    key, at = varint(s, at)
    local field, wire = math.floor(key / 8), key % 8
    local value
    if wire == 0 then value, at = varint(s, at)
    elseif wire == 1 then value, at = s:sub(at, at + 7), at + 8
    elseif wire == 5 then value, at = s:sub(at, at + 3), at + 4
    elseif wire == 2 then
      local n
      n, at = varint(s, at)
      value, at = s:sub(at, at + n - 1), at + n
    else error("unexpected wire type " .. wire) end
    out[#out + 1] = { field = field, wire = wire, value = value }
  end
  return out
end

-- Events of a TFRecord file: { wall_time=, step=, file_version=, scalars = { tag = value } }.
local function read_events(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local events, at = {}, 1
  while at <= #data do
    spec.truthy(at + 11 <= #data, "a whole record header at byte " .. at)
    local header = data:sub(at, at + 7)
    spec.eq(u32(data, at + 8), masked(header), "length crc at byte " .. at)
    local n = u64(data, at)
    local body = data:sub(at + 12, at + 11 + n)
    spec.eq(#body, n, "a whole record body")
    spec.eq(u32(data, at + 12 + n), masked(body), "data crc at byte " .. at)
    at = at + 16 + n
    local e = { step = 0, scalars = {} }
    for _, fld in ipairs(fields(body)) do
      if fld.field == 1 then e.wall_time = float64(fld.value, 1)
      elseif fld.field == 2 then e.step = fld.value
      elseif fld.field == 3 then e.file_version = fld.value
      elseif fld.field == 5 then
        for _, v in ipairs(fields(fld.value)) do
          spec.eq(v.field, 1, "Summary holds Values")
          local tag, value
          for _, x in ipairs(fields(v.value)) do
            if x.field == 1 then tag = x.value elseif x.field == 2 then value = float32(x.value, 1) end
          end
          e.scalars[tag] = value
        end
      end
    end
    events[#events + 1] = e
  end
  return events
end

local function f32(x)  -- x rounded to float32 (to nearest, ties to even), as the event holds it
  local m, e = math.frexp(x)
  local scaled = m * 16777216
  local whole = math.floor(scaled)
  local rest = scaled - whole
  if rest > 0.5 or (rest == 0.5 and whole % 2 == 1) then whole = whole + 1 end
  return math.ldexp(whole / 16777216, e)
end

-- ---- the run ----

spec.random_model(dir, { seed = 5, config = { rms_norm_eps = 1e-5 } })

local data = {
  { prompt = "The cat", response = " sat on the mat." },
  { prompt = "A dog", response = " ran in the park." },
  { prompt = "Birds", response = " fly south." },
}

local function train(out, steps, schedule)
  local m = cai.model.load(dir)
  m:add_lora{ r = 4, alpha = 8, seed = 3 }
  return cai.train.sft{ model = m, data = data, out = out, seed = 1, max_steps = steps, learning_rate = 1e-2,
    batch_size = 2, logging_steps = 2, save_steps = 3, progress = false, report_to = "tensorboard",
    eval_data = data, eval_steps = 4, schedule = schedule }
end

local function check_against_metrics(out)
  local events = read_events(out .. "/tensorboard/events.out.tfevents.cairun")
  spec.eq(events[1].file_version, "brain.Event:2")
  spec.truthy(type(events[1].wall_time) == "number" and events[1].wall_time > 1.5e9, "wall_time in seconds")
  local lines = cai.jsonl.read(out .. "/metrics.jsonl")
  spec.eq(#events - 1, #lines, "one event per metrics line")
  for i, line in ipairs(lines) do
    local e = events[i + 1]
    spec.eq(e.step, line.step)
    local n = 0
    for key, v in pairs(line) do
      if key ~= "step" and type(v) == "number" then
        local tag = key:match("^eval_") and ("eval/" .. key:sub(6)) or ("train/" .. key)
        spec.eq(e.scalars[tag], f32(v), "step " .. line.step .. " " .. tag)
        n = n + 1
      end
    end
    local tags = 0
    for _ in pairs(e.scalars) do tags = tags + 1 end
    spec.eq(tags, n, "no other tags")
  end
  return events
end

spec.describe("report_to = \"tensorboard\"", function()
  spec.it("has a reader whose CRC-32C gives the standard check value", function()
    spec.eq(crc32c("123456789"), bit.tobit(0xE3069283))
  end)

  spec.it("writes TFRecord Event scalars equal to metrics.jsonl", function()
    local out = root .. "/run"
    train(out, 8)
    local events = check_against_metrics(out)
    spec.truthy(#events >= 5, "a file_version event and a line per logging step")
    spec.truthy(events[2].scalars["train/loss"] > 0, "train/loss")
    local eval_seen = false
    for _, e in ipairs(events) do eval_seen = eval_seen or (e.step == 4 and e.scalars["eval/loss"] ~= nil) end
    spec.truthy(eval_seen, "eval/loss at step 4")
  end)

  spec.it("agrees with metrics.jsonl after a resume", function()
    local out = root .. "/resumed"
    -- A constant rate: training longer gives the steps taken the same rates, so the resume is allowed.
    train(out, 5, "constant")
    train(out, 8, "constant")
    check_against_metrics(out)
  end)

  spec.it("checks its own reader on a corrupt record", function()
    local out = root .. "/run"
    local path = out .. "/tensorboard/events.out.tfevents.cairun"
    local f = assert(io.open(path, "rb"))
    local bytes = f:read("*a")
    f:close()
    local bad = bytes:sub(1, 30) .. string.char((bytes:byte(31) + 1) % 256) .. bytes:sub(32)
    local g = assert(io.open(root .. "/bad.tfevents", "wb"))
    g:write(bad)
    g:close()
    spec.raises(function() read_events(root .. "/bad.tfevents") end, "crc")
  end)

  spec.it("refuses a reporter it does not have", function()
    local m = cai.model.load(dir)
    m:add_lora{ r = 4, alpha = 8 }
    spec.raises(function()
      cai.train.sft{ model = m, data = data, out = root .. "/w", max_steps = 1, report_to = "wandb", progress = false }
    end, [[option 'report_to' must be "none", "tensorboard" or a list of them, got "wandb"]], true)
  end)
end)

spec.run()

-- Data-parallel training equals one process: LoRA SFT and DPO trained by
-- `cairun --nproc 2` give the adapter weights of a single-process run with
-- the same global batches (within 1e-5), and a run resumes from a
-- checkpoint written with another number of ranks.
--
-- The file is its own worker: under ctest it runs the specs; with role=train
-- (as `cairun --nproc 2 tests/lua/dist_train_spec.lua role=train ...` starts
-- it) it trains once and exits.
local cai = require "cai"
local ffi = require "ffi"

local args = cai.args{
  role = "",        -- "" (the specs) or "train" (one training run, on every rank)
  root = "",        -- folder holding the tiny model
  trainer = "sft",  -- sft | dpo
  out = "",         -- the run's out directory
  steps = 4,        -- max_steps
}

local data = {
  { prompt = "The cat", response = " sat on the mat." },
  { prompt = "A dog", response = " ran in the park all day." },
  { prompt = "Birds", response = " fly south." },
  { prompt = "Fish", response = " swim in water." },
  { prompt = "The sun", response = " is warm and bright today." },
  { prompt = "Rain", response = " falls." },
  { prompt = "Snow", response = " is cold and white." },
}

local pairs_data = {
  { prompt = "The cat", chosen = " sat on the mat.", rejected = " no." },
  { prompt = "A dog", chosen = " ran in the park.", rejected = " ran." },
  { prompt = "Birds", chosen = " fly south in winter.", rejected = " sink." },
  { prompt = "Fish", chosen = " swim.", rejected = " walk on land all day." },
  { prompt = "The sun", chosen = " is warm.", rejected = " is cold." },
  { prompt = "Rain", chosen = " falls from clouds.", rejected = " rises." },
  { prompt = "Snow", chosen = " is white.", rejected = " is green." },
}

-- One training run; the same code on every rank and in a single process.
-- Batches of 3 and 2 micro-batches per step: 7 examples give uneven shards
-- and, at an epoch's end, a micro-batch of one (rank 1 gets none of it).
local function train(root, trainer, out, steps, resume)
  local m = cai.model.load(root .. "/tiny")
  m:add_lora{ r = 4, alpha = 8, seed = 3, dropout = 0, targets = "all-linear" }
  local opts = { model = m, out = out, seed = 11, max_steps = steps, learning_rate = 1e-2, batch_size = 3,
                 gradient_accumulation_steps = 2, logging_steps = 1, save_steps = 2, progress = false, schedule = "constant",
                 resume = resume }
  if trainer == "sft" then
    opts.data = data
    return cai.train.sft(opts)
  end
  opts.pairs, opts.beta, opts.rpo_alpha = pairs_data, 0.1, 0.5
  opts.learning_rate = 2e-3  -- Adam turns float noise in near-zero gradients into lr-sized steps
  return cai.train.dpo(opts)
end

if args.role == "train" then
  train(args.root, args.trainer, args.out, args.steps, true)
  return
end

local spec = require "spec"
local root = spec.tmpdir()
local cairun = assert(os.getenv("CAI_TEST_BUILD_DIR"), "CAI_TEST_BUILD_DIR is not set") .. "/cairun"

local function sh(cmd)
  local status = os.execute(cmd)
  assert(status == 0 or status == true, "command failed: " .. cmd)
end

spec.random_model(root .. "/tiny", { seed = 5, config = { rms_norm_eps = 1e-5 } })

-- The float32 tensors of a safetensors file, by name.
local function read_safetensors(path)
  local f = assert(io.open(path, "rb"))
  local bytes = f:read("*a")
  f:close()
  local n = 0
  for i = 8, 1, -1 do n = n * 256 + bytes:byte(i) end
  local header = cai.json.decode(bytes:sub(9, 8 + n))
  local base = ffi.cast("const uint8_t*", bytes) + 8 + n
  local out = {}
  for name, info in pairs(header) do
    if name ~= "__metadata__" then
      assert(info.dtype == "F32", path .. ": " .. name .. " is " .. tostring(info.dtype) .. ", expected F32")
      local p = ffi.cast("const float*", base + info.data_offsets[1])
      local values = {}
      for i = 0, (info.data_offsets[2] - info.data_offsets[1]) / 4 - 1 do values[#values + 1] = p[i] end
      out[name] = values
    end
  end
  return out
end

-- Largest |a - b| over all tensors of two checkpoints (same names and sizes),
-- and the largest |a| (the adapters did move away from zero-initialised B).
local function compare(dir_a, dir_b)
  local a = read_safetensors(dir_a .. "/tensors.safetensors")
  local b = read_safetensors(dir_b .. "/tensors.safetensors")
  local diff, largest, count = 0, 0, 0
  for name, va in pairs(a) do
    local vb = assert(b[name], dir_b .. ": no tensor " .. name)
    spec.eq(#vb, #va, name)
    for i = 1, #va do
      diff = math.max(diff, math.abs(va[i] - vb[i]))
      if name:find("lora_B", 1, true) then largest = math.max(largest, math.abs(va[i])) end
    end
    count = count + 1
  end
  for name in pairs(b) do assert(a[name], dir_a .. ": no tensor " .. name) end
  spec.truthy(count > 0, "no tensors in " .. dir_a)
  return diff, largest
end

local function read_metrics(path)
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = cai.json.decode(line) end
  return lines
end

local function same_metrics(a, b)
  local la, lb = read_metrics(a), read_metrics(b)
  spec.eq(#lb, #la, b)
  for i = 1, #la do
    for k, v in pairs(la[i]) do
      spec.truthy(lb[i][k] ~= nil, b .. ": line " .. i .. " has no " .. k)
      spec.near(lb[i][k], v, 1e-5, b .. ": line " .. i .. " " .. k)
    end
  end
end

local function two_ranks(trainer, out, steps)
  sh(string.format("CAI_DIST_TIMEOUT=60 %s --nproc 2 tests/lua/dist_train_spec.lua role=train root=%s trainer=%s out=%s steps=%d",
                   cairun, root, trainer, out, steps))
end

for _, trainer in ipairs({ "sft", "dpo" }) do
  spec.describe("cairun --nproc 2, LoRA " .. trainer, function()
    spec.it("trains the adapter weights of one process with the same global batches", function()
      local one, two = root .. "/" .. trainer .. "-1", root .. "/" .. trainer .. "-2"
      train(root, trainer, one, 4, false)
      two_ranks(trainer, two, 4)
      local diff, largest = compare(one .. "/checkpoints/step-4", two .. "/checkpoints/step-4")
      print(string.format("  %s: max |2 ranks - 1 process| = %.3g (largest |lora_B| %.3g)", trainer, diff, largest))
      spec.truthy(diff < 1e-5, string.format("2 ranks differ from 1 by %g", diff))
      spec.truthy(largest > 1e-3, string.format("the adapters hardly moved (%g)", largest))
      same_metrics(one .. "/metrics.jsonl", two .. "/metrics.jsonl")
      -- Only rank 0 wrote: one checkpoint per save, no temporary leftovers.
      local listing = io.popen("ls " .. two .. "/checkpoints"):read("*a")
      spec.eq(listing, "step-2\nstep-4\n")
    end)
  end)
end

spec.describe("resume with another number of ranks", function()
  spec.it("continues a 2-rank run in one process and a 1-process run on 2 ranks", function()
    local straight = root .. "/resume-straight"
    train(root, "sft", straight, 4, false)
    -- 2 ranks to step 2, then one process to step 4.
    local a = root .. "/resume-2-then-1"
    two_ranks("sft", a, 2)
    local r = train(root, "sft", a, 4, true)
    spec.truthy(r.resumed_from and r.resumed_from:match("step%-2$"), tostring(r.resumed_from))
    -- one process to step 2, then 2 ranks to step 4.
    local b = root .. "/resume-1-then-2"
    train(root, "sft", b, 2, false)
    two_ranks("sft", b, 4)
    for _, dir in ipairs({ a, b }) do
      local diff = compare(straight .. "/checkpoints/step-4", dir .. "/checkpoints/step-4")
      print(string.format("  resumed: max |difference| = %.3g", diff))
      spec.truthy(diff < 1e-5, string.format("%s differs from the straight run by %g", dir, diff))
      same_metrics(straight .. "/metrics.jsonl", dir .. "/metrics.jsonl")
    end
  end)
end)

spec.run()
os.execute("rm -rf '" .. root .. "'")

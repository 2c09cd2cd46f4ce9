-- Bad input never crashes, hangs or silently trains on garbage: a matrix of
-- malformed files (safetensors, config.json, tokenizer.json, JSONL, YAML),
-- Lua API misuse and write faults. Every case must be an error naming the
-- culprit (file, field, record or argument) or the documented behaviour.
local cai = require "cai"
local spec = require "spec"

local root = spec.tmpdir()
local tok_dir = "tests/data/tokenizers/gpt2"

local read = spec.read

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

local function sh(cmd) return os.execute(cmd) == 0 end

local vocab = cai.tokenizer.load(tok_dir):vocab_size()

-- A fresh model directory (random weights, the GPT-2 test tokenizer); edit(config) may change the config first.
local count = 0
local function model_dir(edit)
  count = count + 1
  local dir = spec.random_model(root .. "/m" .. count,
    { seed = 1, config = { rms_norm_eps = 1e-5, max_position_embeddings = 64 } })
  if edit then
    local config = cai.json.decode(read(dir .. "/config.json"))
    edit(config, dir)
    write(dir .. "/config.json", cai.json.encode(config))
  end
  return dir
end

local good = model_dir()
local st = read(good .. "/model.safetensors")
local _, header, body = spec.safetensors_parts(st)
local header_len = #header
local le64 = spec.le64

-- A copy of the good model whose model.safetensors is `bytes`.
local function with_weights(bytes)
  local dir = model_dir()
  write(dir .. "/model.safetensors", bytes)
  return dir
end

local function with_header(h) return with_weights(le64(#h) .. h .. body) end

local function load(dir) return cai.model.load(dir, { dtype = "fp32" }) end

spec.describe("safetensors", function()
  spec.it("names a truncated file", function()
    local dir = with_weights(st:sub(1, #st - 100))
    spec.raises(function() load(dir) end, "model.safetensors", true)
    dir = with_weights(st:sub(1, 5))
    spec.raises(function() load(dir) end, "model.safetensors: not a safetensors file", true)
  end)
  spec.it("names a header that is not JSON or longer than the file", function()
    spec.raises(function() load(with_header("{ not json" .. string.rep(" ", 20))) end, "not valid JSON", true)
    spec.raises(function() load(with_weights(le64(1e12) .. header .. body)) end, "header length", true)
  end)
  spec.it("names offsets out of range, a wrong dtype and a shape that does not match its bytes", function()
    local h = header:gsub('"data_offsets":%[(%d+),(%d+)%]', function(a, b) return '"data_offsets":[' .. a .. ',' .. (b + 10^9) .. ']' end, 1)
    spec.raises(function() load(with_header(h)) end, "data_offsets", true)
    h = header:gsub('"dtype":"F32"', '"dtype":"F99"', 1)
    spec.raises(function() load(with_header(h)) end, 'unsupported dtype "F99"', true)
    h = header:gsub('"shape":%[(%d+)', function(a) return '"shape":[' .. (a + 1) end, 1)
    spec.raises(function() load(with_header(h)) end, "model.safetensors: tensor", true)
  end)
  spec.it("names a tensor whose shape does not fit config.json", function()
    local dir = model_dir(function(c) c.intermediate_size = 40 end)
    write(dir .. "/model.safetensors", st)
    spec.raises(function() load(dir) end, "shape", true)
  end)
  spec.it("refuses NaN weights at m:logprobs instead of returning NaN", function()
    -- every weight a float32 NaN
    local dir = with_weights(le64(header_len) .. header .. string.rep("\0\0\192\127", #body / 4))
    local m = load(dir)
    spec.raises(function() m:logprobs({ "the cat" }, { " sat" }) end, "record 1 has a NaN log-probability", true)
  end)
end)

spec.describe("config.json", function()
  spec.it("names the file and field", function()
    spec.raises(function() load(model_dir(function(c) c.rope_theta = 0 end)) end,
      'config.json: field "rope_theta" must be a positive number, got 0', true)
    spec.raises(function() load(model_dir(function(c) c.rms_norm_eps = -1e-5 end)) end,
      'field "rms_norm_eps" must be a positive number', true)
    spec.raises(function() load(model_dir(function(c) c.hidden_size = "abc" end)) end,
      'field "hidden_size" must be an integer, got "abc"', true)
    spec.raises(function() load(model_dir(function(c) c.num_attention_heads = 0 end)) end,
      '"num_attention_heads" must be a positive integer', true)
    spec.raises(function() load(model_dir(function(c) c.model_type = nil end)) end, '"model_type" is missing', true)
  end)
  spec.it("names a config.json that is not JSON, too deep, or a directory", function()
    local dir = model_dir()
    write(dir .. "/config.json", "{ \"model_type\": ")
    spec.raises(function() load(dir) end, "config.json", true)
    write(dir .. "/config.json", string.rep("[", 100000))
    spec.raises(function() load(dir) end, "nested deeper than 512", true)
    os.remove(dir .. "/config.json")
    sh("mkdir " .. dir .. "/config.json")
    spec.raises(function() load(dir) end, "config.json: is a directory, expected a file", true)
  end)
end)

spec.describe("tokenizer files", function()
  local function tok_with(edit)
    count = count + 1
    local dir = root .. "/t" .. count
    sh("mkdir -p " .. dir)
    local j = cai.json.decode(read(tok_dir .. "/tokenizer.json"))
    edit(j)
    write(dir .. "/tokenizer.json", cai.json.encode(j))
    write(dir .. "/tokenizer_config.json", read(tok_dir .. "/tokenizer_config.json"))
    return dir
  end
  spec.it("refuses two pieces with one id", function()
    local dir = tok_with(function(j) j.model.vocab["zzzz-new"] = j.model.vocab["the"] or 100 end)
    spec.raises(function() cai.tokenizer.load(dir) end, "the same id", true)
  end)
  spec.it("refuses ids that are not token ids", function()
    local dir = tok_with(function(j) j.model.vocab["zzzz-new"] = 2 ^ 40 end)
    spec.raises(function() cai.tokenizer.load(dir) end, 'model.vocab["zzzz-new"] must be a token id', true)
    dir = tok_with(function(j) j.model.vocab["zzzz-new"] = "7" end)
    spec.raises(function() cai.tokenizer.load(dir) end, "must be a token id", true)
  end)
  spec.it("names a tokenizer.json that is not JSON", function()
    count = count + 1
    local dir = root .. "/t" .. count
    sh("mkdir -p " .. dir)
    write(dir .. "/tokenizer.json", "{")
    spec.raises(function() cai.tokenizer.load(dir) end, "tokenizer.json", true)
  end)
  spec.it("decodes no id outside the vocabulary, nor one that wraps around 2^32", function()
    local tok = cai.tokenizer.load(tok_dir)
    spec.raises(function() tok:decode({ 2 ^ 32 + 5 }) end, "ids[1] = 4294967301 is out of range", true)
    spec.raises(function() tok:decode({ 1, -1 }) end, "ids[2] = -1", true)
    spec.raises(function() tok:decode({ vocab + 10 }) end, "out of range", true)
    spec.raises(function() tok:decode({ 1e300 }) end, "ids[1] must be an integer", true)
  end)
end)

spec.describe("JSON and JSONL", function()
  local deep = string.rep("[", 50000) .. string.rep("]", 50000)
  spec.it("refuses deep nesting with an error, not a crash", function()
    spec.raises(function() cai.json.decode(deep) end, "nested deeper than 512 levels at line 1, column 513", true)
    local ok, err = pcall(cai.json.decode, '{"a":' .. deep .. '}')
    spec.eq(ok, false)
    local path = write(root .. "/deep.jsonl", '{"a":1}\n' .. deep .. "\n")
    spec.raises(function() cai.jsonl.read(path) end, path .. ":2: invalid JSON: arrays/objects nested deeper", true)
    spec.eq(#cai.json.decode(string.rep("[", 500) .. string.rep("]", 500)), 1, "500 levels are fine")
    spec.truthy(err:find("nested", 1, true), err)
  end)
  spec.it("names a directory or a missing file given as a JSONL path", function()
    spec.raises(function() cai.jsonl.read(root) end, root .. ": is a directory, expected a file", true)
    spec.raises(function() cai.jsonl.read(root .. "/nosuch.jsonl") end, "nosuch.jsonl: cannot open: No such file", true)
  end)
  spec.it("reads a 10 MB record, and names the line of a bad one after it", function()
    local big = string.rep("x", 10 * 1024 * 1024)
    local path = write(root .. "/big.jsonl", '{"text":"' .. big .. '"}\n{"text": nul}\n')
    spec.raises(function() cai.jsonl.read(path) end, path .. ":2: invalid JSON", true)
    write(path, '{"text":"' .. big .. '"}\n')
    spec.eq(#cai.jsonl.read(path)[1].text, #big)
  end)
end)

spec.describe("constitution YAML", function()
  spec.it("names the file of a malformed constitution", function()
    for _, name in ipairs({ "syntax_error", "duplicate_id", "wrong_type_weight", "alias_bomb", "binary" }) do
      local path = "tests/data/constitutions/" .. name .. ".yaml"
      spec.raises(function() cai.constitution.load(path) end, name .. ".yaml", true)
    end
    spec.raises(function() cai.constitution.load(root) end, "directory", true)
  end)
end)

spec.describe("Lua API misuse", function()
  local data = { { prompt = "The cat", response = " sat on the mat." }, { prompt = "A dog", response = " ran." } }
  local function lora_model(dir)
    local m = load(dir or good)
    m:add_lora{ r = 4, alpha = 8, seed = 3 }
    return m
  end
  spec.it("refuses batch_size = 0 and other impossible trainer settings, naming them", function()
    local m = lora_model()
    local function sft(extra)
      local opts = { model = m, data = data, out = root .. "/sft-bad", max_steps = 1, progress = false }
      for k, v in pairs(extra) do opts[k] = v end
      return cai.train.sft(opts)
    end
    spec.raises(function() sft{ batch_size = 0 } end, "option 'batch_size' must be >= 1, got 0", true)
    spec.raises(function() sft{ batch_size = -3 } end, "option 'batch_size' must be >= 1", true)
    spec.raises(function() sft{ max_tokens = 0 } end, "option 'max_tokens' must be >= 1", true)
    spec.raises(function() sft{ learning_rate = 1 / 0 } end, "option 'learning_rate' must be a finite number", true)
    spec.raises(function() sft{ warmup_ratio = 2 } end, "option 'warmup_ratio' must be in [0, 1]", true)
    spec.raises(function() sft{ max_steps = 1e300 } end, "max_steps", true)
    spec.raises(function() sft{ max_length = 1000 } end, "max_length = 1000 is more than the model's max_position_embeddings (64)", true)
    spec.raises(function() sft{ report_to = 3 } end, "option 'report_to' must be", true)
  end)
  spec.it("refuses a record longer than the model's context, naming it; truncates with max_length and says so", function()
    local m = lora_model()
    local long = { data[1], { prompt = "A dog", response = string.rep(" ran and ran", 40) } }
    spec.raises(function()
      cai.train.sft{ model = m, data = long, out = root .. "/sft-long", max_steps = 1, progress = false }
    end, "data%[2%] is %d+ tokens, more than the model's max_position_embeddings %(64%)")
    local r = cai.train.sft{ model = m, data = long, out = root .. "/sft-cut", max_steps = 1, progress = false,
      max_length = 32 }
    spec.eq(r.steps, 1)
    spec.raises(function()
      cai.train.sft{ model = m, data = { { prompt = string.rep("word ", 40), response = " x" } }, out = root .. "/sft-cut2",
        max_steps = 1, progress = false, max_length = 16 }
    end, "data[1]: the prompt alone is", true)
    spec.raises(function()
      cai.train.dpo{ model = m, pairs = { { prompt = "Q", chosen = string.rep(" yes", 80), rejected = " no" } },
        out = root .. "/dpo-long", max_steps = 1, progress = false }
    end, 'pairs[1]: prompt + "chosen" is', true)
  end)
  spec.it("stops generating at the model's context and refuses a prompt that fills it", function()
    local m = load(good)
    local out = m:generate({ "the cat" }, { max_new_tokens = 1e12, progress = false })
    spec.eq(out[1].finish == "length" or out[1].finish == "eos", true)
    spec.truthy(#out[1].tokens <= 64, "at most the context")
    spec.raises(function() m:generate({ string.rep("word ", 80) }, { max_new_tokens = 4, progress = false }) end,
      "prompt 1 is %d+ tokens, which leaves no room below the model's max_position_embeddings %(64%)")
    spec.raises(function() m:logprobs({ "the cat" }, { string.rep(" sat", 80) }) end,
      "max_position_embeddings (64)", true)
    -- A context of 2^40 positions: the cache max_new_tokens = 1e12 asks for exceeds any machine's memory,
    -- an error naming the sizes and what to lower, not an allocator failure.
    local huge = spec.random_model(root .. "/huge-context", { config = { max_position_embeddings = 2 ^ 40 } })
    local h = cai.model.load(huge)
    for _, batch in ipairs({ 1, 3 }) do
      local prompts = {}
      for i = 1, batch do prompts[i] = "the cat" end
      local ok, err = pcall(h.generate, h, prompts, { max_new_tokens = 1e12, batch_size = batch, progress = false })
      spec.eq(ok, false)
      spec.truthy(tostring(err):find("KV cache", 1, true) and tostring(err):find("lower max_new_tokens", 1, true)
        and not tostring(err):find("DefaultCPUAllocator", 1, true), tostring(err))
    end
  end)
  spec.it("refuses a LoRA rank above the layers' dimensions, naming r", function()
    local m = load(good)
    spec.raises(function() m:add_lora{ r = 1e9 } end, "r = 1000000000 is more than", true)
    spec.raises(function() m:add_lora{ r = 0 } end, "r must be a positive integer", true)
  end)
  spec.it("keeps a merge after the adapter is removed (merge_and_unload)", function()
    local m = lora_model()
    local r = cai.train.sft{ model = m, data = data, out = root .. "/sft-merge", max_steps = 2, learning_rate = 0.05,
      progress = false }
    spec.eq(r.steps, 2)
    local adapted = m:logprobs({ "The cat" }, { " sat on the mat." })[1].sum
    m:merge_lora()
    m:remove_lora()
    spec.eq(m:lora_info(), nil)
    spec.near(m:logprobs({ "The cat" }, { " sat on the mat." })[1].sum, adapted, 1e-3, "merged weights stay")
    local base = load(good):logprobs({ "The cat" }, { " sat on the mat." })[1].sum
    spec.truthy(math.abs(base - adapted) > 1e-3, "the adapter changed something")
  end)
  spec.it("checks cai.stats, filter and critique arguments", function()
    spec.raises(function() cai.stats.holm({ 0.01 }, 1.5) end, "alpha must be a number in (0, 1), got 1.5", true)
    spec.raises(function() cai.stats.holm({ 0.01 }, 0) end, "alpha must be a number in (0, 1)", true)
    spec.raises(function() cai.stats.holm({ 2 }) end, "p-values[1] must be in [0, 1]", true)
    spec.raises(function() cai.stats.bootstrap_ci({ 1, 2 }, { n = 0 }) end, "option 'n' must be >= 1", true)
    spec.raises(function() cai.stats.bootstrap_ci({ 1, 2 }, { alpha = -1 }) end, "option 'alpha' must be in (0, 1)", true)
    spec.raises(function() cai.filters.apply({}, { min_words = -1 }) end, "option 'min_words' must be >= 0, got -1", true)
    spec.raises(function() cai.filters.apply({}, { max_words = -5 }) end, "option 'max_words' must be >= 0", true)
    spec.raises(function() cai.filters.apply({}, { near_duplicate = 2 }) end, "option 'near_duplicate' must be in [0, 1]", true)
    spec.raises(function() cai.filters.apply({}, { min_score_delta = -0.1 }) end, "option 'min_score_delta' must be >= 0", true)
    local fake = { generate = function(_, prompts) local r = {} for i = 1, #prompts do r[i] = { text = "x" } end return r end }
    local principles = { { id = "p", critique = "c?", revision = "r." } }
    spec.raises(function() cai.critique.run(fake, { "Q" }, { principles = principles, rounds = -2 }) end,
      "option 'rounds' must be >= 1, got -2", true)
    spec.raises(function() cai.critique.run(fake, { "Q" }, { principles = principles, per_round = 0 }) end,
      "option 'per_round' must be >= 1", true)
  end)
  spec.it("rejects integers too large to be exact", function()
    local m = load(good)
    spec.raises(function() m:generate({ "a" }, { max_new_tokens = 1 / 0, progress = false }) end, "max_new_tokens", true)
  end)
end)

spec.describe("reports", function()
  spec.it("names a missing or non-run directory and creates nothing", function()
    spec.raises(function() cai.report.build(root .. "/nosuch") end, "does not exist", true)
    spec.truthy(not io.open(root .. "/nosuch/report.html", "rb"), "no report written")
    sh("mkdir -p " .. root .. "/empty-run")
    spec.raises(function() cai.report.build(root .. "/empty-run") end, "is not a run directory", true)
    write(root .. "/afile", "x")
    spec.raises(function() cai.report.build(root .. "/afile") end, "is a file, expected a run directory", true)
  end)
end)

spec.describe("write faults", function()
  spec.it("names the file when the disk is full", function()
    spec.raises(function() cai.jsonl.append("/dev/full", { a = 1 }) end, "/dev/full: append failed: No space left on device", true)
    -- a tiny tmpfs, when this process may mount one (root in a container often may not)
    local mnt = root .. "/full"
    sh("mkdir -p " .. mnt)
    if sh("mount -t tmpfs -o size=64k tmpfs " .. mnt .. " 2>/dev/null") then
      local ok, err = pcall(cai.jsonl.write, mnt .. "/big.jsonl", { { text = string.rep("x", 200000) } })
      sh("ls " .. mnt .. " > " .. root .. "/full-ls.txt")
      local left = read(root .. "/full-ls.txt")
      sh("umount " .. mnt)
      spec.eq(ok, false)
      spec.truthy(tostring(err):find("big.jsonl: write failed: No space left on device", 1, true), tostring(err))
      spec.eq(left, "", "nothing half-written left behind")
    else
      io.write("note: cannot mount a tmpfs here; the full-disk case ran on /dev/full only\n")
    end
  end)
  spec.it("names the file in a read-only output directory", function()
    local mnt = root .. "/ro"
    sh("mkdir -p " .. mnt)
    if sh("mount -t tmpfs -o ro,size=64k tmpfs " .. mnt .. " 2>/dev/null") then
      local ok, err = pcall(cai.jsonl.write, mnt .. "/out.jsonl", { { a = 1 } })
      local ok2, err2 = pcall(cai.write_file, mnt .. "/sub/report.html", "x")
      sh("umount " .. mnt)
      spec.eq(ok, false)
      spec.truthy(tostring(err):find("out.jsonl: cannot write: Read-only file system", 1, true), tostring(err))
      spec.eq(ok2, false)
      spec.truthy(tostring(err2):find("sub: cannot create directory: Read-only file system", 1, true), tostring(err2))
    else
      io.write("note: cannot mount a read-only tmpfs here; skipping the read-only directory case\n")
    end
  end)
end)

spec.run()

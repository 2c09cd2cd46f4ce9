-- LoRA on cai.model objects: add_lora, use_lora, merge/unmerge, PEFT adapter
-- directories both ways, and m:save to a Hugging Face directory.
local cai = require "cai"
local spec = require "spec"
local read, exists = spec.read, spec.exists

local root = spec.tmpdir()
local dir = root .. "/tiny"

local _, vocab = spec.random_model(dir, { seed = 5, config = { rms_norm_eps = 1e-5 } })

-- A float32 as 4 little-endian bytes (normal numbers that float32 holds exactly).
local function f32(x)
  if x == 0 then return "\0\0\0\0" end
  local sign = 0
  if x < 0 then sign, x = 0x80, -x end
  local m, e = math.frexp(x)  -- x = m * 2^e, m in [0.5, 1)
  local exponent = e + 126
  local fraction = (m * 2 - 1) * 2 ^ 23
  return string.char(fraction % 256, math.floor(fraction / 256) % 256,
    math.floor(fraction / 65536) % 128 + (exponent % 2) * 128, sign + math.floor(exponent / 2))
end

-- Writes a safetensors file of F32 tensors { {name, shape, fn(i, j)}, ... }.
local function write_safetensors(path, tensors)
  local header, data, offset = {}, {}, 0
  for _, t in ipairs(tensors) do
    local name, shape, fn = t[1], t[2], t[3]
    local bytes = {}
    for i = 1, shape[1] do
      for j = 1, shape[2] do bytes[#bytes + 1] = f32(fn(i, j)) end
    end
    local blob = table.concat(bytes)
    header[name] = { dtype = "F32", shape = shape, data_offsets = { offset, offset + #blob } }
    data[#data + 1] = blob
    offset = offset + #blob
  end
  local json = cai.json.encode(header)
  local f = assert(io.open(path, "wb"))
  f:write(spec.le64(#json), json, table.concat(data))
  f:close()
end

-- A PEFT adapter (r = 2, alpha = 4, q_proj and v_proj) with small exact values.
local adapter = root .. "/peft_adapter"
os.execute("mkdir -p " .. adapter)
do
  local f = assert(io.open(adapter .. "/adapter_config.json", "wb"))
  f:write(cai.json.encode({
    peft_type = "LORA", task_type = "CAUSAL_LM", r = 2, lora_alpha = 4, lora_dropout = 0.0,
    target_modules = { "q_proj", "v_proj" }, bias = "none", fan_in_fan_out = false, use_rslora = false,
    use_dora = false, inference_mode = true, rank_pattern = {}, alpha_pattern = {},
    base_model_name_or_path = "tiny",
  }))
  f:close()
  local tensors = {}
  for layer = 0, 1 do
    for _, p in ipairs({ { "q_proj", 32 }, { "v_proj", 16 } }) do
      local prefix = string.format("base_model.model.model.layers.%d.self_attn.%s", layer, p[1])
      tensors[#tensors + 1] = { prefix .. ".lora_A.weight", { 2, 32 },
        function(i, j) return ((i * 7 + j * 3 + layer) % 17 - 8) / 64 end }
      tensors[#tensors + 1] = { prefix .. ".lora_B.weight", { p[2], 2 },
        function(i, j) return ((i * 5 + j * 11 + layer) % 13 - 6) / 32 end }
    end
  end
  write_safetensors(adapter .. "/adapter_model.safetensors", tensors)
end

local ids = { { 5, 9, 13, 2, 40, 7 } }

local function values(tensor)
  local out = {}
  for t = 1, 6 do
    for _, v in ipairs({ 1, 9, 33, vocab }) do out[#out + 1] = tensor:at(1, t, v) end
  end
  return out
end

local function max_diff(a, b)
  local d = 0
  for i = 1, #a do d = math.max(d, math.abs(a[i] - b[i])) end
  return d
end

spec.describe("LoRA on cai.model", function()
  spec.it("adds adapters with PEFT's defaults that leave the output unchanged", function()
    local m = cai.model.load(dir)
    local base = values(m:logits(ids))
    spec.eq(m:lora_info(), nil)
    m:add_lora{ r = 4, alpha = 8, seed = 3 }
    local info = m:lora_info()
    spec.eq(info.targets, { "q_proj", "v_proj" })
    spec.eq(info.r, 4)
    spec.eq(info.scale, 2)
    spec.eq(info.merged, false)
    spec.eq(values(m:logits(ids)), base, "B starts at zero")
    spec.eq(values(m:logits(ids, { use_lora = false })), base)
    m:remove_lora()
    m:add_lora{ r = 2, alpha = 2, rslora = true, targets = "all-linear" }
    spec.eq(#m:lora_info().targets, 7)
    spec.near(m:lora_info().scale, math.sqrt(2), 1e-12)
    m:release()
  end)

  spec.it("loads a PEFT adapter; use_lora = false gives the base model", function()
    local m = cai.model.load(dir)
    local base = values(m:logits(ids))
    m:load_lora(adapter)
    spec.eq(m:lora_info().scale, 2)
    local adapted = values(m:logits(ids))
    spec.truthy(max_diff(adapted, base) > 1e-3, "the adapter changes the logits")
    spec.eq(values(m:logits(ids, { use_lora = false })), base)
    spec.eq(values(m:logits(ids, { use_lora = true })), adapted)
    local a = m:logprobs({ { 5, 9 } }, { { 13, 2 } })[1].sum
    local b = m:logprobs({ { 5, 9 } }, { { 13, 2 } }, { use_lora = false })[1].sum
    spec.truthy(a ~= b)
    local g1 = m:generate({ { 5, 9 } }, { max_new_tokens = 4, progress = false, use_lora = false })[1].tokens
    local g2 = m:generate({ { 5, 9 } }, { max_new_tokens = 4, progress = false })[1].tokens
    spec.eq(#g1, #g2)
    m:release()
  end)

  spec.it("merges to the adapter's logits, unmerges back, and saves the merged model", function()
    local m = cai.model.load(dir)
    m:load_lora(adapter)
    local adapted = values(m:logits(ids))
    m:merge_lora()
    spec.eq(m:lora_info().merged, true)
    local merged = values(m:logits(ids))
    spec.truthy(max_diff(merged, adapted) < 1e-4, "merged == adapter logits")
    spec.raises(function() m:logits(ids, { use_lora = false }) end, "unmerge_lora")
    spec.raises(function() m:merge_lora() end, "already merged")

    local out = root .. "/merged"
    m:save(out)
    spec.truthy(exists(out .. "/tokenizer.json"), "tokenizer files are copied")
    spec.eq(read(out .. "/config.json"), read(dir .. "/config.json"))
    local back = cai.model.load(out)
    spec.eq(values(back:logits(ids)), merged)
    spec.eq(back:lora_info(), nil)
    back:release()

    m:unmerge_lora()
    spec.truthy(max_diff(values(m:logits(ids)), adapted) < 1e-4, "unmerged == adapter logits")
    spec.raises(function() m:save(root .. "/unmerged") end, "merge_lora")
    m:release()
  end)

  spec.it("saves adapters in PEFT's layout and loads them back", function()
    local m = cai.model.load(dir)
    m:load_lora(adapter)
    local adapted = values(m:logits(ids))
    local out = root .. "/saved_adapter"
    m:save_lora(out)
    local config = cai.json.decode(read(out .. "/adapter_config.json"))
    spec.eq(config.peft_type, "LORA")
    spec.eq(config.r, 2)
    spec.eq(config.lora_alpha, 4)
    spec.eq(config.target_modules, { "q_proj", "v_proj" })
    spec.eq(config.use_rslora, false)
    spec.eq(config.base_model_name_or_path, dir)
    local fresh = cai.model.load(dir)
    fresh:load_lora(out)
    spec.eq(values(fresh:logits(ids)), adapted)
    m:save_lora(out)  -- replacing an adapter directory is fine
    fresh:release()
    m:release()
  end)

  spec.it("rejects bad arguments with messages naming them", function()
    local m = cai.model.load(dir)
    spec.raises(function() m:add_lora{ rank = 4 } end, "rank")
    spec.raises(function() m:add_lora{ targets = { "q_proj", "qkv" } } end, 'unknown LoRA target "qkv"')
    spec.raises(function() m:add_lora{ r = 0 } end, "r must be a positive integer")
    spec.raises(function() m:save_lora(root .. "/none") end, "no LoRA adapters")
    spec.raises(function() m:merge_lora() end, "no LoRA adapters")
    spec.raises(function() m:load_lora(root .. "/missing") end, "not a directory")
    spec.raises(function() m:save(root .. "/x", { dtype = "fp16" }) end, "dtype")
    spec.raises(function() m:save(42) end, "m:save: argument 'dir' must be a string, got number", true)
    m:add_lora{}
    spec.raises(function() m:load_lora(adapter) end, "already has LoRA adapters")
    m:release()
  end)
end)

spec.run()

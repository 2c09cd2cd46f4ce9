-- Qwen3 and Gemma 3 (text) end to end from Lua: a tokenizer-less checkpoint
-- (tests/data/models/qwen3, as model.save_pretrained() writes one), the
-- tokenizer taken from elsewhere, the checkpoint's dtype, generation,
-- scoring, SFT and DPO with LoRA, PEFT adapter files, merge and m:save,
-- and `cairun --nproc 2` training as one process does.
--
-- The file is its own worker: with role=train (as `cairun --nproc 2
-- tests/lua/arch_spec.lua role=train ...` starts it) it trains once and exits.
local cai = require "cai"

local args = cai.args{
  role = "",   -- "" (the specs) or "train" (one LoRA SFT run, on every rank)
  model = "",  -- model directory
  tokenizer = "",  -- tokenizer directory ("" : the model's own)
  out = "",    -- the run's out directory
}

local train_data = {
  { prompt = "The cat", response = " sat on the mat." },
  { prompt = "A dog", response = " ran in the park all day." },
  { prompt = "Birds", response = " fly south." },
  { prompt = "Fish", response = " swim in water." },
  { prompt = "The sun", response = " is warm and bright today." },
}

-- LoRA SFT for 4 steps: batches of 2 in 2 micro-batches, the same on any number of ranks.
local function train_once(model_dir, tokenizer, out)
  local m = cai.model.load(model_dir, { dtype = "fp32", tokenizer = tokenizer ~= "" and tokenizer or nil })
  m:add_lora{ r = 4, alpha = 8, seed = 3, targets = "all-linear" }
  return cai.train.sft{ model = m, data = train_data, out = out, seed = 11, max_steps = 4, learning_rate = 1e-2,
                        batch_size = 2, gradient_accumulation_steps = 2, logging_steps = 1, progress = false,
                        schedule = "constant" }
end

if args.role == "train" then
  train_once(args.model, args.tokenizer, args.out)
  return
end

local spec = require "spec"
local root = spec.tmpdir()
local qwen3_dir = "tests/data/models/qwen3"
local tok_dir = "tests/data/tokenizers/qwen2"  -- 397 tokens; the fixtures' vocab_size is 400

-- The tensor names in a safetensors file's header.
local function tensor_names(path)
  local f = assert(io.open(path, "rb"))
  local size_bytes = f:read(8)
  local n = 0
  for i = 8, 1, -1 do n = n * 256 + size_bytes:byte(i) end
  local header = cai.json.decode(f:read(n))
  f:close()
  local names = {}
  for name in pairs(header) do
    if name ~= "__metadata__" then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

local gemma3_dir = root .. "/gemma3"
spec.random_model(gemma3_dir, { seed = 4, tokenizer = "qwen2", config = {
  model_type = "gemma3_text", vocab_size = 400, num_hidden_layers = 3, head_dim = 16, sliding_window = 4,
  sliding_window_pattern = 3, query_pre_attn_scalar = 16, rope_scaling = { rope_type = "linear", factor = 4.0 },
  final_logit_softcapping = 30.0,
} })

local data = spec.sft_examples()
local pairs_ = {
  { prompt = "Is ice cold?", chosen = " Yes, thank you.", rejected = " No." },
  { prompt = "Is fire cold?", chosen = " No, thank you.", rejected = " Yes." },
}

local function mean_logprob(m)
  local prompts, responses = {}, {}
  for i, r in ipairs(data) do prompts[i], responses[i] = r.prompt, r.response end
  local total = 0
  for _, s in ipairs(m:logprobs(prompts, responses)) do total = total + s.mean end
  return total / #data
end

spec.describe("a checkpoint without tokenizer files", function()
  spec.it("loads in its torch_dtype; m.tokenizer says how to give one", function()
    local m = cai.model.load(qwen3_dir)
    local info = m:info()
    spec.eq(info.model_type, "qwen3")
    spec.eq(info.dtype, "bf16")  -- config.json: "torch_dtype": "bfloat16"
    spec.eq(info.has_tokenizer, false)
    spec.raises(function() return m.tokenizer end, "has no tokenizer.*tokenizer = ")
    -- Token ids work without a tokenizer.
    local out = m:generate({ { 391, 17, 45 } }, { max_new_tokens = 3, progress = false })
    spec.eq(#out[1].tokens, 3)
    spec.raises(function() m:generate({ "hello" }, { max_new_tokens = 1, progress = false }) end, "no tokenizer")
    m:release()
  end)

  spec.it("takes the tokenizer from another directory; dtype = wins over torch_dtype", function()
    local m = cai.model.load(qwen3_dir, { dtype = "fp32", tokenizer = tok_dir })
    spec.eq(m:info().dtype, "fp32")
    spec.eq(m:info().has_tokenizer, true)
    spec.eq(m.tokenizer:vocab_size(), cai.tokenizer.load(tok_dir):vocab_size())
    local out = m:generate({ "hello" }, { max_new_tokens = 4, progress = false })
    spec.eq(type(out[1].text), "string")
    spec.raises(function() cai.model.load(qwen3_dir, { tokenizer = root .. "/none" }) end, "is not a directory")
    spec.raises(function() cai.model.load(qwen3_dir, { tokenizer = 3 }) end, "option 'tokenizer' must be a directory name")
    spec.raises(function() cai.model.load(qwen3_dir, { tokeniser = tok_dir }) end, "unknown option 'tokeniser'")
  end)
end)

for _, case in ipairs({ { name = "qwen3", dir = qwen3_dir, tokenizer = tok_dir },
                        { name = "gemma3_text", dir = gemma3_dir } }) do
  spec.describe(case.name, function()
    local function load()
      return cai.model.load(case.dir, { dtype = "fp32", tokenizer = case.tokenizer })
    end

    spec.it("SFT with LoRA makes the responses likely; the adapter has PEFT's names for every layer", function()
      local m = load()
      m:add_lora{ r = 4, alpha = 8, seed = 3, targets = "all-linear" }
      local before = mean_logprob(m)
      local r = cai.train.sft{ model = m, data = data, out = root .. "/" .. case.name .. "-sft", seed = 7, epochs = 10,
                               learning_rate = 2e-2, batch_size = 2, logging_steps = 5, progress = false }
      spec.eq(r.steps, 20)
      local after = mean_logprob(m)
      -- (the random gemma3_text has a small tied head: its logits move less than qwen3's)
      spec.truthy(after > before + 0.2, string.format("mean logprob %.3f -> %.3f", before, after))

      local adapter = root .. "/" .. case.name .. "-adapter"
      m:save_lora(adapter)
      local names = tensor_names(adapter .. "/adapter_model.safetensors")
      local n_layers = m.config.num_hidden_layers
      spec.eq(#names, n_layers * 7 * 2)  -- q k v o gate up down, A and B each
      spec.truthy(names[1]:match("^base_model%.model%.model%.layers%.0%.mlp%.down_proj%.lora_A%.weight$"), names[1])

      -- Reloaded onto a fresh model, the adapter scores the same.
      local again = load()
      again:load_lora(adapter)
      spec.near(mean_logprob(again), after, 1e-4)

      -- Merged and saved, the checkpoint reloads (q_norm/k_norm and all) with the same numbers.
      m:merge_lora()
      local saved = root .. "/" .. case.name .. "-merged"
      m:save(saved)
      local has_q_norm = false
      for _, name in ipairs(tensor_names(saved .. "/model.safetensors")) do
        has_q_norm = has_q_norm or name == "model.layers.0.self_attn.q_norm.weight"
      end
      spec.truthy(has_q_norm, "q_norm saved")
      local back = cai.model.load(saved, { tokenizer = case.tokenizer })
      spec.eq(back:info().dtype, "fp32")  -- saved as fp32, config.json says so
      spec.near(mean_logprob(back), after, 1e-4)
    end)

    spec.it("cairun --nproc 2 trains as one process does", function()
      local one, two = root .. "/" .. case.name .. "-one", root .. "/" .. case.name .. "-two"
      train_once(case.dir, case.tokenizer or "", one)
      local cairun = assert(os.getenv("CAI_TEST_BUILD_DIR"), "CAI_TEST_BUILD_DIR is not set") .. "/cairun"
      local cmd = string.format("CAI_DIST_TIMEOUT=60 %s --nproc 2 tests/lua/arch_spec.lua role=train model=%s "
                                .. "tokenizer=%s out=%s", cairun, case.dir, case.tokenizer or "", two)
      local status = os.execute(cmd)
      spec.truthy(status == 0 or status == true, "failed: " .. cmd)
      local function losses(dir)
        local out = {}
        for line in io.lines(dir .. "/metrics.jsonl") do out[#out + 1] = cai.json.decode(line).loss end
        return out
      end
      local a, b = losses(one), losses(two)
      spec.eq(#a, 4)
      spec.eq(#b, 4)
      for i = 1, 4 do spec.near(b[i], a[i], 1e-5, "step " .. i) end
    end)

    spec.it("DPO with LoRA moves the chosen completions up", function()
      local m = load()
      m:add_lora{ r = 4, alpha = 8, seed = 3, targets = "all-linear" }
      local r = cai.train.dpo{ model = m, pairs = pairs_, out = root .. "/" .. case.name .. "-dpo", seed = 3, epochs = 10,
                               beta = 0.5, learning_rate = 1e-2, batch_size = 2, schedule = "constant", progress = false }
      spec.eq(r.steps, 10)
      spec.truthy(r["rewards/margins"] > 0, "margin " .. tostring(r["rewards/margins"]))
    end)
  end)
end

spec.run()

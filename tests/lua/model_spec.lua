-- cai.model: loading, generate, logprobs, logits over a tiny random Llama
-- with the GPT-2-style test tokenizer.
local cai = require "cai"
local spec = require "spec"

local dir = spec.tmpdir() .. "/tiny"

local _, vocab = spec.random_model(dir, { seed = 3, config = { rms_norm_eps = 1e-5 } })

local m = cai.model.load(dir, { dtype = "fp32" })
local prompts = { "the cat sat", "hello", "a longer prompt with several words in it" }

spec.describe("cai.model", function()
  spec.it("loads with config, tokenizer and info", function()
    spec.eq(m.config.model_type, "llama")
    spec.eq(m.config.hidden_size, 32)
    spec.truthy(cai.tokenizer.is_tokenizer(m.tokenizer))
    spec.eq(m.tokenizer, m.tokenizer, "m.tokenizer is built once")
    local info = m:info()
    spec.eq(info.dtype, "fp32")
    spec.eq(info.vocab_size, vocab)
    spec.truthy(info.parameters > 0)
  end)

  spec.it("generates per prompt with finish and tokens", function()
    local out = m:generate(prompts, { max_new_tokens = 6, progress = false })
    spec.eq(#out, 3)
    for _, r in ipairs(out) do
      spec.truthy(r.finish == "length" or r.finish == "eos", r.finish)
      spec.truthy(#r.tokens <= 6)
      spec.eq(type(r.text), "string")
    end
    local again = m:generate({ prompts[2] }, { max_new_tokens = 6, progress = false })
    spec.eq(again[1].tokens, out[2].tokens, "greedy output does not depend on the batch")
  end)

  spec.it("samples the same per prompt whatever the batch size", function()
    local opts = { max_new_tokens = 8, temperature = 1.0, top_k = 50, seed = 11, progress = false }
    opts.batch_size = 3
    local a = m:generate(prompts, opts)
    opts.batch_size = 1
    local b = m:generate(prompts, opts)
    for i = 1, #prompts do spec.eq(b[i].tokens, a[i].tokens) end
  end)

  spec.it("first_index: a list done in chunks samples as if done at once", function()
    local opts = { max_new_tokens = 8, temperature = 1.0, seed = 5, progress = false }
    local whole = m:generate(prompts, opts)
    opts.first_index = 1
    local tail = m:generate({ prompts[2], prompts[3] }, opts)
    spec.eq(tail[1].tokens, whole[2].tokens)
    spec.eq(tail[2].tokens, whole[3].tokens)
    spec.raises(function() m:generate(prompts, { first_index = -1, progress = false }) end, "m:generate: option 'first_index' must be >= 0, got -1", true)
  end)

  spec.it("streams: a subset of a list keeps each prompt's own stream, in either engine", function()
    local opts = { max_new_tokens = 8, temperature = 1.0, seed = 5, progress = false }
    local whole = m:generate(prompts, opts)
    for _, batch in ipairs({ 1, 2 }) do
      local sub = m:generate({ prompts[3], prompts[1] }, { max_new_tokens = 8, temperature = 1.0, seed = 5,
        progress = false, streams = { 2, 0 }, batch_size = batch })
      spec.eq(sub[1].tokens, whole[3].tokens)
      spec.eq(sub[2].tokens, whole[1].tokens)
    end
    spec.raises(function() m:generate(prompts, { streams = { 0 }, progress = false }) end,
      "m:generate: opts.streams has 1 entries for 3 prompts; give one stream index per prompt", true)
    spec.raises(function() m:generate(prompts, { streams = { 0, -1, 2 }, progress = false }) end,
      "m:generate: option 'streams'", true)
  end)

  spec.it("engine options: shared prefixes and a KV budget never change a sample", function()
    local preamble = "the rules of the house say that every answer is short and kind. "
    local ps = { preamble .. "the cat sat", preamble .. "hello", "hello", preamble .. "a longer prompt" }
    local opts = { max_new_tokens = 8, temperature = 1.0, seed = 2, progress = false, batch_size = 2 }
    local shared = m:generate(ps, opts)
    opts.prefix_cache = false
    local plain = m:generate(ps, opts)
    opts.prefix_cache, opts.kv_cache_mb, opts.prefill_chunk = true, 1, 7
    local small = m:generate(ps, opts)
    for i = 1, #ps do
      spec.eq(plain[i].tokens, shared[i].tokens)
      spec.eq(small[i].tokens, shared[i].tokens)
    end
    spec.raises(function() m:generate(ps, { kv_cache_mb = 0.001, progress = false }) end,
      "generate: prompt 1 needs")
    spec.raises(function() m:generate(ps, { kv_cache_mb = -1 }) end, "m:generate: option 'kv_cache_mb' must be >= 0", true)
    spec.raises(function() m:generate(ps, { prefix_cache = 1 }) end, "prefix_cache")
    spec.raises(function() m:generate(ps, { prefill_chunk = 0 }) end, "prefill_chunk")
  end)

  spec.it("cuts at a stop string", function()
    local free = m:generate({ prompts[1] }, { max_new_tokens = 10, progress = false })[1]
    if #free.text >= 3 then
      local stop = free.text:sub(2, 3)
      local r = m:generate({ prompts[1] }, { max_new_tokens = 10, stop = { stop }, progress = false })[1]
      spec.eq(r.finish, "stop")
      spec.eq(r.text, free.text:sub(1, free.text:find(stop, 1, true) - 1))
    end
  end)

  spec.it("scores strings like the equivalent token ids", function()
    local s = m:logprobs({ "the cat" }, { " sat down" })[1]
    local p = m.tokenizer:encode("the cat", { add_special_tokens = true })
    local c = m.tokenizer:encode(" sat down", { add_special_tokens = false })
    local t = m:logprobs({ p }, { c })[1]
    spec.eq(s.n, #c)
    spec.near(s.sum, t.sum, 1e-9)
    spec.near(s.mean, s.sum / s.n, 1e-9)
    spec.truthy(s.sum < 0)
  end)

  spec.it("eos = true scores the completion as a finished answer (completion + EOS)", function()
    local p = m.tokenizer:encode("the cat", { add_special_tokens = true })
    local c = m.tokenizer:encode(" sat down", { add_special_tokens = false })
    local eos = m.tokenizer.eos_id
    spec.truthy(eos, "the test tokenizer names an EOS token")
    local with = m:logprobs({ "the cat" }, { " sat down" }, { eos = true })[1]
    local ids = {}
    for i, t in ipairs(c) do ids[i] = t end
    ids[#ids + 1] = eos
    local by_hand = m:logprobs({ p }, { ids })[1]
    spec.eq(with.n, #c + 1)
    spec.near(with.sum, by_hand.sum, 1e-9)
  end)

  spec.it("gives left-padded rows the logits of the unpadded row", function()
    local ids = { { 5, 9, 13, 2 }, { 0, 0, 7, 3 } }
    local mask = { { 1, 1, 1, 1 }, { 0, 0, 1, 1 } }
    local padded = m:logits(ids, { attention_mask = mask })
    spec.eq(padded:shape(), { 2, 4, vocab })
    local alone = m:logits({ { 7, 3 } })
    for t = 1, 2 do
      for _, v in ipairs({ 1, 17, vocab }) do
        spec.near(padded:at(2, t + 2, v), alone:at(1, t, v), 1e-5)
      end
    end
    local path = spec.tmpdir() .. "/logits.safetensors"
    padded:save(path)
    local f = assert(io.open(path, "rb"))
    local size = f:seek("end")
    f:close()
    spec.truthy(size > 2 * 4 * vocab * 4, "file holds float32 [2, 4, V]")
  end)

  spec.it("rejects bad arguments with messages naming them", function()
    spec.raises(function() m:generate(prompts, { max_tokens = 3 }) end, "max_tokens")
    spec.raises(function() m:generate("hello") end, "m:generate: argument 'prompts' must be a list of strings or token-id lists, got string", true)
    spec.raises(function() m:logprobs({ "a" }, {}) end, "1 prompts but 0 completions")
    spec.raises(function() m:logits({ { 1, 2 }, { 3 } }) end, "left%-pad")
    spec.raises(function() m:generate(prompts, { use_lora = true }) end, "no LoRA adapter")
    spec.raises(function() m:generate({ { vocab + 5 } }) end, "outside the vocabulary")
    spec.raises(function() cai.model.load(dir .. "/missing") end, "not a directory")
    spec.raises(function() cai.model.load(dir, { dtype = "fp16" }) end, "dtype")
  end)

  spec.it("is unusable after release", function()
    local m2 = cai.model.load(dir)
    m2:release()
    m2:release()
    spec.raises(function() m2:generate({ "x" }) end, "released")
  end)
end)

spec.run()

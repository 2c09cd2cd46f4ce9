-- cai.tokenizer from Lua: loading HF directories, encode/decode options,
-- fields, batch encode, errors, and training a tokenizer directory.
local spec = require "spec"
local cai = require "cai"

local data = "tests/data/tokenizers/"

local function golden(name)
  local f = assert(io.open(data .. name .. "/golden.json", "rb"))
  local g = cai.json.decode(f:read("*a"))
  f:close()
  return g
end

spec.describe("cai.tokenizer.load", function()
  for _, name in ipairs({ "qwen2", "gpt2", "llama", "llama_nonlegacy", "gemma" }) do
    spec.it(name .. " gives Hugging Face's ids and decodes", function()
      local tok = cai.tokenizer.load(data .. name)
      local g = golden(name)
      spec.eq(tok:vocab_size(), g.vocab_size)
      for _, c in ipairs(g.cases) do
        spec.eq(tok:encode(c.text), c.ids, c.text)
        spec.eq(tok:encode(c.text, { add_special_tokens = false }), c.ids_no_special, c.text)
        spec.eq(tok:decode(c.ids), c.decode, c.text)
        spec.eq(tok:decode(c.ids, { skip_special_tokens = true }), c.decode_skip_special, c.text)
      end
    end)
  end

  spec.it("exposes bos/eos/pad ids (nil when absent) and pieces", function()
    local llama = cai.tokenizer.load(data .. "llama")
    spec.eq(llama.bos_id, 1)
    spec.eq(llama.eos_id, 2)
    spec.eq(llama.pad_id, nil)
    spec.eq(llama.kind, "spm")
    spec.eq(llama:id_to_piece(1), "<s>")
    spec.eq(llama:piece_to_id("</s>"), 2)
    spec.eq(llama:piece_to_id("no such piece"), nil)
    local qwen = cai.tokenizer.load(data .. "qwen2")
    spec.eq(qwen.bos_id, nil)
    spec.eq(qwen.kind, "bpe")
    spec.eq(qwen:id_to_piece(qwen.eos_id), "<|im_end|>")
    spec.truthy(cai.tokenizer.is_tokenizer(qwen))
  end)

  spec.it("encode_batch equals encode, on any number of threads", function()
    local tok = cai.tokenizer.load(data .. "gemma")
    local texts = {}
    for _, c in ipairs(golden("gemma").cases) do texts[#texts + 1] = c.text end
    local expected = {}
    for i, t in ipairs(texts) do expected[i] = tok:encode(t) end
    spec.eq(tok:encode_batch(texts), expected)
    spec.eq(tok:encode_batch(texts, { threads = 3 }), expected)
    local decoded = tok:decode_batch(expected, { skip_special_tokens = true, threads = 2 })
    spec.eq(decoded[1], tok:decode(expected[1], { skip_special_tokens = true }))
  end)

  spec.it("reports errors naming the file, field or option", function()
    spec.raises(function() cai.tokenizer.load("tests/data/tokenizers/no-such-dir") end, "not a directory")
    spec.raises(function() cai.tokenizer.load(42) end,
      "cai.tokenizer.load: argument 'dir' must be a string (a model directory), got number", true)
    local tok = cai.tokenizer.load(data .. "llama")
    spec.raises(function() tok:encode("x", { add_special = true }) end, "add_special")
    spec.raises(function() tok:id_to_piece(100000) end, "out of range")
    spec.raises(function() tok:decode({ 1, -5 }) end, "out of range")
    spec.raises(function() tok:encode("\255\254") end, "not valid UTF%-8")
    local dir = spec.tmpdir() .. "/wordpiece"
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/tokenizer.json", "wb"))
    f:write('{"model": {"type": "WordLevel", "vocab": {}}}')
    f:close()
    spec.raises(function() cai.tokenizer.load(dir) end, 'model.type "WordLevel" is not supported %(supported: BPE, Unigram, WordPiece%)')
  end)

  spec.it("releases early; use after release is an error", function()
    local tok = cai.tokenizer.load(data .. "gpt2")
    tok:release()
    tok:release()
    spec.raises(function() tok:encode("x") end, "released")
  end)
end)

spec.describe("cai.tokenizer.train", function()
  spec.it("writes a directory that loads and round-trips text", function()
    local dir = spec.tmpdir() .. "/trained"
    local out = cai.tokenizer.train{ input = data .. "corpus.txt", dir = dir, vocab_size = 600 }
    spec.eq(out, dir)
    local tok = cai.tokenizer.load(dir)
    spec.eq(tok.bos_id, 1)
    spec.eq(tok.eos_id, 2)
    spec.eq(tok.pad_id, 3)
    spec.eq(tok:vocab_size(), 600)
    local text = "Hello world, a constitution with principles! 123 ünï 👍"
    local ids = tok:encode(text)
    spec.eq(ids[1], 1)
    spec.eq(tok:decode(ids, { skip_special_tokens = true }), text)
    spec.raises(function() cai.tokenizer.train{ input = data .. "corpus.txt", dir = dir, vocab_size = 600 } end,
                "already exists")
  end)

  spec.it("trains a Gemma-style tokenizer without a dummy prefix", function()
    local dir = spec.tmpdir() .. "/gemma_style"
    cai.tokenizer.train{ input = { data .. "corpus.txt" }, model_prefix = dir, vocab_size = 500, style = "gemma" }
    local tok = cai.tokenizer.load(dir)
    spec.eq(tok.bos_id, 2)
    spec.eq(tok.pad_id, 0)
    spec.eq(tok:id_to_piece(tok:encode("Hello", { add_special_tokens = false })[1]):sub(1, 3) ~= "\226\150\129", true)
  end)

  spec.it("rejects bad options", function()
    spec.raises(function() cai.tokenizer.train{ input = data .. "corpus.txt" } end, "dir")
    spec.raises(function() cai.tokenizer.train{ input = "missing.txt", dir = spec.tmpdir() .. "/x" } end, "does not exist")
    spec.raises(function() cai.tokenizer.train{ input = data .. "corpus.txt", dir = spec.tmpdir() .. "/y", vocab = 5 } end,
                "vocab")
  end)
end)

spec.run()

-- cai.model.load_reward: a tiny random LlamaForSequenceClassification whose
-- score head is row K of the embedding matrix, so its score must equal the
-- tied causal model's logit for token K at the text's last token.
local cai = require "cai"
local spec = require "spec"
local read, write = spec.read, spec.write

local K = 17  -- the embedding row (0-based token id) used as score.weight
local tok_dir = "tests/data/tokenizers/llama_json"
local root = spec.tmpdir()
local base_dir, rm_dir = root .. "/base", root .. "/rm"

-- A safetensors file holding one F32 tensor given as raw little-endian bytes.
local function safetensors_one(name, shape, bytes)
  local header = cai.json.encode { [name] = { dtype = "F32", shape = shape, data_offsets = { 0, #bytes } } }
  header = header .. string.rep(" ", (8 - #header % 8) % 8)
  return spec.le64(#header) .. header .. bytes
end

local config = {
  model_type = "llama", vocab_size = cai.tokenizer.load(tok_dir):vocab_size(), hidden_size = 32,
  intermediate_size = 48, num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2,
  rms_norm_eps = 1e-5, tie_word_embeddings = true,
}
cai.model.random(base_dir, config, { seed = 3 })
for _, f in ipairs { "tokenizer.json", "tokenizer_config.json" } do
  write(base_dir .. "/" .. f, read(tok_dir .. "/" .. f))
  os.execute("mkdir -p " .. rm_dir)
  write(rm_dir .. "/" .. f, read(tok_dir .. "/" .. f))
end

-- The reward model: the base weights as shard 1, score.weight = embed_tokens[K] as shard 2.
local weights = read(base_dir .. "/model.safetensors")
local header, header_text = spec.safetensors_parts(weights)
local data_start = 8 + #header_text
local embed = header["model.embed_tokens.weight"]
local C = config.hidden_size
local row_begin = data_start + embed.data_offsets[1] + K * C * 4
write(rm_dir .. "/model-00001-of-00002.safetensors", weights)
write(rm_dir .. "/model-00002-of-00002.safetensors",
  safetensors_one("score.weight", { 1, C }, weights:sub(row_begin + 1, row_begin + C * 4)))
local weight_map = { ["score.weight"] = "model-00002-of-00002.safetensors" }
for name in pairs(header) do
  if name ~= "__metadata__" then weight_map[name] = "model-00001-of-00002.safetensors" end
end
write(rm_dir .. "/model.safetensors.index.json", cai.json.encode { metadata = {}, weight_map = weight_map })
local rm_config = {}
for k, v in pairs(config) do rm_config[k] = v end
rm_config.architectures = { "LlamaForSequenceClassification" }
rm_config.num_labels = 1
rm_config.tie_word_embeddings = false  -- a reward checkpoint has no LM head either way
write(rm_dir .. "/config.json", cai.json.encode(rm_config))

local texts = { "the cat sat on the mat", "hi", "a reward model scores whole answers", "hello world" }

spec.describe("cai.model.load_reward", function()
  local m = cai.model.load(base_dir)
  local rm = cai.model.load_reward(rm_dir, { dtype = "fp32" })

  spec.it("scores each text as the head at its last token", function()
    local info = rm:info()
    spec.eq(info.architecture, "LlamaForSequenceClassification")
    spec.eq(info.dtype, "fp32")
    local scores = rm:score(texts, { batch_size = 2 })
    spec.eq(#scores, #texts)
    for i, text in ipairs(texts) do
      local ids = m.tokenizer:encode(text, { add_special_tokens = true })
      spec.eq(ids[1], 1, "BOS first")
      local logit = m:logits({ ids }):at(1, #ids, K + 1)
      spec.near(scores[i], logit, 1e-5, text)
    end
    spec.truthy(math.abs(scores[1] - scores[2]) > 1e-4, "scores depend on the text")
  end)

  spec.it("gives the same scores whatever the batch size", function()
    local one = rm:score(texts, { batch_size = 1 })
    local three = rm:score(texts, { batch_size = 3 })
    local default = rm:score(texts)
    for i = 1, #texts do
      spec.near(three[i], one[i], 1e-5)
      spec.near(default[i], one[i], 1e-5)
    end
    spec.eq(#rm:score({}), 0)
  end)

  spec.it("works as cai.scoring.reward_model", function()
    local scorer = cai.scoring.reward_model(rm_dir, { batch_size = 2 })
    local s = scorer:score({ "Say hi.", "Add 2+2." }, { "Hi!", "4" })
    spec.eq(#s, 2)
    spec.truthy(s[1] == s[1] and s[2] == s[2])
    local expected = rm:score({ "Instruction: Say hi.\nResponse: Hi!" })[1]
    spec.near(s[1], expected, 1e-6)
    scorer:release()
  end)

  spec.it("cai.model.random writes a random reward model for a ForSequenceClassification config", function()
    local dir = spec.tmpdir() .. "/random_rm"
    local c = {}
    for k, v in pairs(rm_config) do c[k] = v end
    cai.model.random(dir, c, { seed = 4 })
    local f = assert(io.open(base_dir .. "/tokenizer.json", "rb"))
    local tok = f:read("*a")
    f:close()
    write(dir .. "/tokenizer.json", tok)
    local r = cai.model.load_reward(dir)
    local s = r:score(texts)
    spec.eq(#s, #texts)
    spec.truthy(s[1] == s[1] and s[1] ~= s[2])
    r:release()
    c.num_labels = 0
    spec.raises(function() cai.model.random(dir .. "2", c) end, "num_labels is 0", true)
  end)

  spec.it("checks its arguments", function()
    spec.raises(function() cai.model.load_reward(42) end, "cai.model.load_reward: argument 'dir' must be a string, got number", true)
    spec.raises(function() cai.model.load_reward(rm_dir, { dtyp = "fp32" }) end, "unknown option 'dtyp'", true)
    spec.raises(function() cai.model.load_reward(rm_dir, { dtype = "fp16" }) end, 'cai.model.load_reward: option \'dtype\' must be one of fp32, bf16; got "fp16"',
      true)
    spec.raises(function() cai.model.load_reward(rm_dir, "bf16") end, "options must be a table", true)
    spec.raises(function() rm:score("text") end, "rm:score")
    spec.raises(function() rm:score({ "a", 5 }) end, "texts[2] must be a string", true)
    spec.raises(function() rm:score({ "a" }, { batch_size = 0 }) end, "batch_size' must be >= 1", true)
    spec.raises(function() rm:score({ "a" }, { batch = 2 }) end, "batch")
  end)

  spec.it("refuses what is not a one-label reward model, naming the file", function()
    spec.raises(function() cai.model.load_reward(base_dir) end, "field \"architectures\" must be a list", true)
    spec.raises(function() cai.model.load_reward(root .. "/missing") end, "is not a directory", true)
    local two = root .. "/two"
    os.execute("mkdir -p " .. two)
    local c = {}
    for k, v in pairs(rm_config) do c[k] = v end
    c.num_labels = 2
    write(two .. "/config.json", cai.json.encode(c))
    spec.raises(function() cai.model.load_reward(two) end, two .. "/config.json: num_labels is 2", true)
    local no_tok = root .. "/no_tok"
    os.execute("mkdir -p " .. no_tok)
    write(no_tok .. "/config.json", cai.json.encode(rm_config))
    spec.raises(function() cai.model.load_reward(no_tok) end, "tokenizer does not load", true)
  end)

  spec.it("releases early, idempotently; use after release is an error", function()
    local r = cai.model.load_reward(rm_dir)
    r:release()
    r:release()
    spec.raises(function() r:score({ "a" }) end, "released")
    rm:release()
    m:release()
    spec.raises(function() rm:info() end, "released")
  end)
end)

spec.run()

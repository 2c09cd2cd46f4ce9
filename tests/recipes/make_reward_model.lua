-- Writes a random reward model (LlamaForSequenceClassification, one label)
-- with the tiny model's shape and tokenizer into dir=, for recipe tests.
-- Its scores are random but deterministic: enough to drive the pipeline.
local cai = require "cai"
local args = cai.args{ dir = "", seed = 7 }
if args.dir == "" then error("make_reward_model.lua: dir= is required", 0) end
local tiny = cai.tiny.path()
local config = cai.json.decode(assert(io.open(tiny .. "/config.json")):read("*a"))
config.architectures = { "LlamaForSequenceClassification" }
config.num_labels = 1
config.tie_word_embeddings = false
cai.model.random(args.dir, config, { seed = args.seed })
for _, f in ipairs({ "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json" }) do
  local src = io.open(tiny .. "/" .. f, "rb")
  if src then
    local data = src:read("*a")
    src:close()
    local dst = assert(io.open(args.dir .. "/" .. f, "wb"))
    dst:write(data)
    dst:close()
  end
end
print("reward model: " .. args.dir)

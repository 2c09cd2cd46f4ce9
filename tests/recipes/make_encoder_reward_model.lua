-- Writes a random DeBERTa-v3-style reward model (DebertaV2ForSequenceClassification,
-- one label, log-bucketed relative positions) with the test Unigram
-- tokenizer of tests/data/encoders/deberta_tok into dir=, for recipe tests:
-- the shape of OpenAssistant/reward-model-deberta-v3-large-v2 at toy size.
local cai = require "cai"
local args = cai.args{ dir = "", seed = 5 }
if args.dir == "" then error("make_encoder_reward_model.lua: dir= is required", 0) end
local tok = "tests/data/encoders/deberta_tok"
cai.model.random(args.dir, {
  architectures = { "DebertaV2ForSequenceClassification" }, model_type = "deberta-v2",
  vocab_size = cai.tokenizer.load(tok):vocab_size(), hidden_size = 32, num_hidden_layers = 2,
  num_attention_heads = 4, intermediate_size = 64, max_position_embeddings = 512, type_vocab_size = 0,
  relative_attention = true, position_buckets = 32, max_relative_positions = -1, pos_att_type = { "p2c", "c2p" },
  share_att_key = true, norm_rel_ebd = "layer_norm", position_biased_input = false, layer_norm_eps = 1e-7,
  id2label = { ["0"] = "LABEL_0" },
}, { seed = args.seed })
for _, f in ipairs({ "tokenizer.json", "tokenizer_config.json" }) do
  local src = assert(io.open(tok .. "/" .. f, "rb"))
  local data = src:read("*a")
  src:close()
  local dst = assert(io.open(args.dir .. "/" .. f, "wb"))
  dst:write(data)
  dst:close()
end
print("encoder reward model: " .. args.dir)

-- Writes a small random chat model into dir=: a Qwen-shaped decoder
-- (model_type= qwen2 by default; qwen3 once that architecture loads) with the
-- vocabulary of the real tokenizer in tokenizer= (its tokenizer.json and
-- tokenizer_config.json, chat template included, are copied), and a
-- generation_config.json naming the end-of-turn EOS ids as Qwen3's does.
-- What a new user has after `save_pretrained` of a fresh model plus the
-- tokenizer of the checkpoint they mean to fine-tune.
local cai = require "cai"
local args = cai.args{ dir = "", tokenizer = "", model_type = "qwen2", seed = 7 }
if args.dir == "" or args.tokenizer == "" then error("make_chat_model.lua: dir= and tokenizer= are required", 0) end
local tok = cai.tokenizer.load(args.tokenizer)
local function id(piece)
  local v = tok:piece_to_id(piece)
  if v == nil then error("make_chat_model.lua: the tokenizer has no " .. piece, 0) end
  return v
end
local eos = { id("<|im_end|>"), id("<|endoftext|>") }
local vocab = tok:vocab_size()
vocab = math.ceil(vocab / 128) * 128
local config = {
  model_type = args.model_type, architectures = { args.model_type == "qwen3" and "Qwen3ForCausalLM" or "Qwen2ForCausalLM" },
  vocab_size = vocab, hidden_size = 64, intermediate_size = 128, num_hidden_layers = 2, num_attention_heads = 4,
  num_key_value_heads = 2, rms_norm_eps = 1e-6, rope_theta = 1000000, max_position_embeddings = 4096,
  tie_word_embeddings = true, bos_token_id = eos[2], eos_token_id = eos[1],
}
if args.model_type == "qwen3" then config.head_dim = 16 end
cai.model.random(args.dir, config, { seed = args.seed })
for _, f in ipairs({ "tokenizer.json", "tokenizer_config.json" }) do
  local src = assert(io.open(args.tokenizer .. "/" .. f, "rb"))
  local text = src:read("*a")
  src:close()
  cai.write_file(args.dir .. "/" .. f, text)
end
cai.json.write(args.dir .. "/generation_config.json", { bos_token_id = eos[2], eos_token_id = eos, do_sample = false })
print(string.format("chat model: %s (%s, vocabulary %d, eos %d %d)", args.dir, args.model_type, vocab, eos[1], eos[2]))

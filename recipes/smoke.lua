-- smoke.lua: proves the stack on a fresh machine in a few seconds.
--   1. a synthetic corpus from cai.world (seeded),
--   2. a sentencepiece tokenizer trained on it (sentencepiece runs isolated
--      from libtorch in the same process),
--   3. a tiny random Llama model written as a Hugging Face directory,
--   4. loading it back, batched generation and log-prob scoring.
-- It writes its files and a JSONL report under out=.
--
--   build/cairun recipes/smoke.lua out=runs/smoke seed=7
local cai = require "cai"

local args = cai.args{
  dtype = "fp32",      -- compute dtype of the random model: "fp32" or "bf16"
  out = "runs/smoke",  -- where the corpus, model directory and report go
  seed = 42,           -- decides the corpus, the weights and the samples
  lines = 2000,        -- corpus size
  vocab_size = 500,    -- tokenizer vocabulary (byte fallback alone takes 256)
  new_tokens = 12,     -- tokens generated per prompt
}

-- 1. corpus
cai.mkdir(args.out)
local world = cai.world.new{ seed = args.seed }
local corpus_path = args.out .. "/corpus.txt"
cai.write_file(corpus_path, table.concat(world:pretraining_corpus(args.lines), "\n") .. "\n")
cai.log.info("corpus:", args.lines, "lines in", corpus_path)

-- 2. tokenizer (kept when a previous run already trained it)
local model_dir = args.out .. "/model"
if not cai.exists(model_dir .. "/tokenizer.model") then
  cai.tokenizer.train{ input = corpus_path, dir = model_dir, vocab_size = args.vocab_size }
end
local tok = cai.tokenizer.load(model_dir)
cai.log.info("tokenizer:", tok:vocab_size(), "pieces")

-- 3. a tiny random model beside the tokenizer
cai.model.random(model_dir, {
  model_type = "llama", vocab_size = tok:vocab_size(), hidden_size = 64, intermediate_size = 128,
  num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2, max_position_embeddings = 256,
  bos_token_id = tok.bos_id, eos_token_id = tok.eos_id,
}, { seed = args.seed })

-- 4. load, generate, score
local m = cai.model.load(model_dir, { dtype = args.dtype })
local prompts = { "The capital of", "Three plus four is" }
local outs = m:generate(prompts, { max_new_tokens = args.new_tokens, temperature = 0.8, seed = args.seed })
local scores = m:logprobs(prompts, { " a city", " seven" })
local report = {}
for i, prompt in ipairs(prompts) do
  report[i] = { prompt = prompt, text = outs[i].text, finish = outs[i].finish, tokens = #outs[i].tokens,
                logprob = scores[i].sum }
  cai.log.info(string.format("%q -> %q (%s), log p = %.2f", prompt, outs[i].text, outs[i].finish, scores[i].sum))
end
cai.jsonl.write(args.out .. "/report.jsonl", report)
m:release()
print(string.format("smoke: ok (%d-piece tokenizer, tiny random llama, report in %s/report.jsonl)",
  tok:vocab_size(), args.out))

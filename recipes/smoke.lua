-- smoke.lua: proves the stack on a fresh machine in a few seconds.
-- Builds a small synthetic corpus, trains a sentencepiece tokenizer on it
-- (sentencepiece runs isolated from libtorch in the same process), encodes
-- and decodes held-out text, and writes a JSONL report.
--
--   build/cairun recipes/smoke.lua out=runs/smoke seed=7
local cai = require "cai"
local spm = require "cai._spm"

local args = cai.args{
  out = "runs/smoke",  -- where the corpus, tokenizer and report go
  seed = 42,           -- decides the synthetic corpus
  lines = 2000,        -- corpus size
  vocab_size = 400,    -- tokenizer vocabulary (byte fallback alone takes 256)
}

local rng = cai.rng(args.seed)
local subjects = { "the cat", "a student", "the model", "my friend", "the teacher", "a robot" }
local verbs = { "reads", "writes", "explains", "answers", "asks about", "summarises" }
local objects = { "the question", "a short story", "the weather", "prime numbers", "the recipe", "a poem" }

os.execute("mkdir -p '" .. args.out .. "'")
local corpus_path = args.out .. "/corpus.txt"
local corpus = assert(io.open(corpus_path, "w"))
for i = 1, args.lines do
  corpus:write(string.format("%s %s %s. %d + %d = %d\n", rng:choice(subjects), rng:choice(verbs),
    rng:choice(objects), i % 10, (i * 7) % 10, i % 10 + (i * 7) % 10))
end
corpus:close()
cai.log.info("corpus:", args.lines, "lines in", corpus_path)

spm.train(string.format("--input=%s --model_prefix=%s/tokenizer --vocab_size=%d --model_type=bpe " ..
  "--byte_fallback=true --minloglevel=2 --seed_sentencepiece_size=10000", corpus_path, args.out, args.vocab_size))
local tok = spm.load(args.out .. "/tokenizer.model")

local samples = { "the robot explains a poem.", "3 + 4 = 7", "unseen words: café ☕" }
local report = {}
for i, text in ipairs(samples) do
  local ids = tok:encode(text)
  local back = tok:decode(ids)
  if back ~= text then error(string.format("round trip failed for %q: got %q", text, back)) end
  report[i] = { text = text, tokens = #ids, ids = ids }
  cai.log.info(string.format("%-28q -> %d tokens", text, #ids))
end
cai.jsonl.write(args.out .. "/report.jsonl", report)
print(string.format("smoke: ok (vocab %d, report in %s/report.jsonl)", tok:piece_size(), args.out))

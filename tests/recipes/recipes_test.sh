#!/usr/bin/env bash
# The stage recipes end to end at small sizes, on the tiny model and two
# fixtures made here (a critic that revises, a random reward model): what
# each writes, that a stopped generation stage continues to the same bytes,
# that a rerun with other settings is refused, and that bad inputs (no or a
# broken reward model, a malformed dataset) stop with an error naming them.
set -u
cairun=${1:?usage: recipes_test.sh path/to/cairun}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
. "$(dirname "$0")/../cli/check.sh"


# Fixtures.
check "fixture: critic model" 0 'critic model' -- "$cairun" tests/recipes/make_critic_model.lua dir="$dir/critic"
check "fixture: reward model" 0 'reward model' -- "$cairun" tests/recipes/make_reward_model.lua dir="$dir/rm"

# stage1_sft_dpo: every file of the stage, a rerun that only reads them, other settings refused.
s1=(recipes/stage1_sft_dpo.lua out="$dir/s1" sft_examples=40 pair_examples=30 eval_examples=16 sft_steps=12
    dpo_steps=6 max_new_tokens=12 save_steps=4 batch_size=8)
check "stage1_sft_dpo" 0 'stage1_sft_dpo: done' -- "$cairun" "${s1[@]}"
lua "stage1: summary has base, sft, dpo with the criteria and preference accuracy" "
  local s = read(D .. '/s1/summary.json')
  for _, m in ipairs({ 'base', 'sft', 'dpo' }) do
    local e = s.models[m]
    if not (e and e.ends_with_end.rate and e.ends_with_end.lo and e.preference_accuracy.n == 16
      and e.factually_correct and e.coherent) then return false end
  end
  return s.comparisons.sft_dpo ~= nil and s.preference_tests.base_sft.p ~= nil"
lua "stage1: pairs to the five-type mix, chosen = SFT answers" "
  local p = jsonl(D .. '/s1/pairs.jsonl')
  local n = {}
  for _, x in ipairs(p) do n[x.negative_type] = (n[x.negative_type] or 0) + 1 end
  local sft = jsonl(D .. '/s1/sft_responses.jsonl')
  return #p == 30 and n.unwarranted_refusal == 9 and n.verbose_vague == 3 and #sft == 30
    and p[1].instruction == sft[1].instruction"
lua "stage1: LoRA adapters in PEFT's layout, merged SFT model, report" "
  return cai.exists(D .. '/s1/sft/adapter/adapter_config.json') and cai.exists(D .. '/s1/dpo/adapter/adapter_model.safetensors')
    and cai.exists(D .. '/s1/sft/merged/model.safetensors') and cai.exists(D .. '/s1/report.html')
    and #jsonl(D .. '/s1/metrics.jsonl') > 0"
cp "$dir/s1/summary.json" "$dir/s1-summary.json"
check "stage1: rerun continues from its files" 0 'eval base: 16 of 16 items done by a previous run' -- env CAI_LOG=info "$cairun" "${s1[@]}"
same "stage1: rerun gives the same summary" "$dir/s1-summary.json" "$dir/s1/summary.json"
check "stage1: other settings refused" nz 'holds a run with other settings: seed \(was 42, now 43\)' -- "$cairun" "${s1[@]}" seed=43
check "stage1: gen_batch may change" 0 'stage1_sft_dpo: done' -- "$cairun" "${s1[@]}" gen_batch=5

# cai_pipeline: seed 004's records, DPO on revised over initial, milestone checks; a stopped stage continues.
cp=(recipes/cai_pipeline.lua model="$dir/critic" constitution=tests/recipes/critic.yaml n=10 out="$dir/cp"
    answer_tokens=24 critique_tokens=48 critique_temperature=0 gen_batch=4)
check "cai_pipeline" 0 'cai_pipeline: done' -- "$cairun" "${cp[@]}"
lua "cai_pipeline: records in seed 004's format" "
  local r = jsonl(D .. '/cp/records.jsonl')
  local x = r[1]
  return #r == 10 and type(x.instruction) == 'string' and type(x.initial_answer) == 'string'
    and type(x.principle) == 'string' and type(x.critique) == 'string' and type(x.revised_answer) == 'string'
    and x.preference_pair.prompt == x.instruction and x.preference_pair.chosen == x.revised_answer
    and x.preference_pair.rejected == x.initial_answer"
lua "cai_pipeline: DPO ran and the summary answers the milestone" "
  local s = read(D .. '/cp/summary.json')
  return s.milestone == 1 and s.pairs > 0 and s.dpo_steps == 10 and s.checks.pipeline_completed == true
    and s.checks.dpo_loss_decreases ~= nil and s.prefers_revised.after.n == s.pairs
    and cai.exists(D .. '/cp/dpo/adapter/adapter_config.json')"
cp "$dir/cp/records.jsonl" "$dir/cp-records.jsonl"
head -n 3 "$dir/cp-records.jsonl" > "$dir/cp/records.jsonl"
head -c 40 <(sed -n 4p "$dir/cp-records.jsonl") >> "$dir/cp/records.jsonl"   # a line cut short by a crash
check "cai_pipeline: a stopped run continues" 0 'cai_pipeline: done' -- "$cairun" "${cp[@]}"
same "cai_pipeline: continued records equal the uninterrupted ones" "$dir/cp-records.jsonl" "$dir/cp/records.jsonl"

# critique_revision: a reward model is required and must load; filters, analysis, DPO with eval and best checkpoint.
cr=(recipes/critique_revision.lua model="$dir/critic" constitution=tests/recipes/critic.yaml n=24 out="$dir/cr"
    answer_tokens=24 critique_tokens=48 dpo_steps=8 eval_steps=4 save_steps=4 batch_size=4 min_score_delta=0)
check "critique_revision: no reward model" nz 'reward_model= is required.*no heuristic' -- "$cairun" "${cr[@]}"
mkdir -p "$dir/broken_rm" && echo '{"model_type": "llama",' > "$dir/broken_rm/config.json"
check "critique_revision: a broken reward model stops the run" nz 'broken_rm/config.json' -- "$cairun" "${cr[@]}" reward_model="$dir/broken_rm"
check "critique_revision" 0 'critique_revision: done' -- "$cairun" "${cr[@]}" reward_model="$dir/rm"
lua "critique_revision: scores, pair report, best checkpoint by eval_loss" "
  local s = read(D .. '/cr/summary.json')
  local rep = read(D .. '/cr/pair_report.json')
  local scored = jsonl(D .. '/cr/scored.jsonl')
  return #scored == 24 and type(scored[1].base_score) == 'number' and type(scored[1].revised_score) == 'number'
    and rep.total == 24 and s.dpo.best ~= nil and cai.exists(D .. '/cr/dpo/best/adapter_config.json')
    and s.eval_pairs >= 1 and cai.exists(D .. '/cr/report.html') and #jsonl(D .. '/cr/metrics.jsonl') > 0"
check "analyze_pairs" 0 'analyze_pairs: report in' -- "$cairun" recipes/analyze_pairs.lua pairs="$dir/cr/scored.jsonl"
lua "analyze_pairs: report beside the input" "local r = read(D .. '/cr/scored.report.json'); return r.total == 24"

# sft_helpful: a JSONL dataset, held-out split, base vs tuned side by side; a malformed dataset is named.
"$cairun" -e "local cai = require 'cai'
local w = cai.world.new{ seed = 3 }
local rows = {}
for i, r in ipairs(w:instructions(40, { split = 'train' })) do rows[i] = { instruction = r.instruction, response = r.reference } end
cai.jsonl.write('$dir/helpful.jsonl', rows)"
check "sft_helpful" 0 'sft_helpful: done' -- "$cairun" recipes/sft_helpful.lua data="$dir/helpful.jsonl" out="$dir/sh" steps=8 eval_steps=4 max_eval=6 max_new_tokens=12 batch_size=8
lua "sft_helpful: held-out NLL for both, side by side, best adapter" "
  local s = read(D .. '/sh/summary.json')
  return s.heldout == 6 and s.train == 34 and s.heldout_nll.base.tokens > 0 and s.heldout_nll.tuned.tokens > 0
    and #jsonl(D .. '/sh/side_by_side.jsonl') == 6 and cai.exists(D .. '/sh/side_by_side.md')
    and cai.exists(D .. '/sh/sft/best/adapter_config.json') and cai.exists(D .. '/sh/report.html')"
printf '{"instruction": "a", "response": "b"}\n{"instruction": "c"}\n' > "$dir/bad.jsonl"
check "sft_helpful: a record without a response" nz 'bad.jsonl:2: this record is prompt-only, standard \(fields found: instruction\)' -- "$cairun" recipes/sft_helpful.lua data="$dir/bad.jsonl" out="$dir/sh-bad"
printf '{"instruction": "a", "response": "b"}\n{"instruction": \n' > "$dir/broken.jsonl"
check "sft_helpful: malformed JSONL" nz 'broken.jsonl:2' -- "$cairun" recipes/sft_helpful.lua data="$dir/broken.jsonl" out="$dir/sh-broken"

# evaluate: any set of models and adapters, each against the first.
check "evaluate" 0 'evaluate: done' -- "$cairun" recipes/evaluate.lua out="$dir/ev" n=12 max_new_tokens=12 \
  models="base=tiny,sft=$dir/s1/sft/merged,dpo=$dir/s1/sft/merged+$dir/s1/dpo/adapter"
lua "evaluate: every model, comparisons and paired preference tests against the first" "
  local s = read(D .. '/ev/summary.json')
  return s.models.base.preference_accuracy.n == 12 and s.models.dpo.ends_with_end ~= nil
    and s.comparisons.base_dpo ~= nil and s.preference_tests.base_sft ~= nil and #jsonl(D .. '/ev/outputs/sft.jsonl') == 12"
check "evaluate: a bad models= entry" nz 'models= entries must be name=dir' -- "$cairun" recipes/evaluate.lua out="$dir/ev-bad" models="tiny"

finish

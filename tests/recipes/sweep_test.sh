#!/usr/bin/env bash
# cairun sweep: the grid, one run directory per cell, resuming, the
# comparison (means and spread, paired effects with intervals, exact tests
# with Holm, power note) and errors naming the failed cell or argument; and
# recipes/ablations.lua answering a question as a sweep of the quickstart.
set -u
cairun=${1:?usage: sweep_test.sh path/to/cairun}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
. "$(dirname "$0")/../cli/check.sh"

sw=(sweep tests/recipes/sweep_fixture.lua seed=1,2,3,4,5,6 mode=a,b out="$dir/sw")
check "sweep: 12 cells" 0 'sweep: 12 cells, comparison in' -- "$cairun" "${sw[@]}"
check "sweep: one run directory per cell" 0 '^12$' -- bash -c "ls '$dir/sw/cells' | grep -c '^seed=[1-6],mode=[ab]$'"
check "sweep: comparison" 0 '^true$' -- "$cairun" -e "local cai = require 'cai'
local c = cai.json.decode(assert(io.open('$dir/sw/comparison.json')):read('*a'))
local e = {}
for _, x in ipairs(c.effects) do e[x.metric] = x end
local g, f = e['models.m.good'], e['models.m.flat']
local a = c.configs[1].metrics['models.m.good']
print(tostring(c.baseline == 'mode=a' and #c.configs == 2 and a.n == 6 and math.abs(a.mean - 0.505) < 1e-9
  and a.sd > 0 and g.n == 6 and math.abs(g.mean_diff - 0.2025) < 1e-9 and g.lo < g.mean_diff and g.hi > g.mean_diff
  and math.abs(g.p - 2 / 64) < 1e-12 and g.p_holm >= g.p and math.abs(f.mean_diff) < 1e-12 and f.p == 1
  and c.power.seeds == 6 and c.power.tests == #c.effects and c.power.seeds_needed == 7
  and c.power.note:find('at least 7 seeds are needed', 1, true) ~= nil))"
check "sweep: markdown" 0 'models.m.good \| 6 \| \+0.203' -- cat "$dir/sw/comparison.md"
check "sweep: a rerun runs no cell again" 0 'cell 12/12 seed=6,mode=b done by a previous run' -- env CAI_LOG=info "$cairun" "${sw[@]}"
check "sweep: three seeds" 0 'sweep: 6 cells' -- "$cairun" sweep tests/recipes/sweep_fixture.lua seed=1,2,3 mode=a,b out="$dir/sw3"
check "sweep: power note in the markdown" 0 'cannot give p < 0.250' -- cat "$dir/sw3/comparison.md"
check "sweep: a failed cell is named" nz 'cell seed=1,fail=1 failed' -- "$cairun" sweep tests/recipes/sweep_fixture.lua seed=1 fail=0,1 out="$dir/swf"
check "sweep: a bad argument" nz "argument 'mode' is not of the form key=v1,v2" -- "$cairun" sweep tests/recipes/sweep_fixture.lua mode out="$dir/swb"

# recipes/ablations.lua: a question as a sweep of the quickstart (tiny sizes), its answer in ablations.md.
ab=(recipes/ablations.lua out="$dir/ab" seeds=1,2 questions=mode sft_examples=16 pair_examples=12 eval_examples=8
    sft_steps=4 dpo_steps=2 max_new_tokens=6 batch_size=4)
check "ablations: the mode question" 0 'ablations: done' -- "$cairun" "${ab[@]}"
expect "ablations: the answer names the baseline and the power" 'Baseline `mode=sft_dpo`; with 2 seeds the exact sign-flip test cannot give p < 0.500'
check "ablations: every mode ran, each with its final model" 0 '^true$' -- "$cairun" -e "local cai = require 'cai'
local ok = true
for _, m in ipairs { 'sft_dpo', 'dpo_only', 'sft_only' } do
  for _, seed in ipairs { 1, 2 } do
    local cell = '$dir/ab/mode/cells/seed=' .. seed .. ',mode=' .. m
      .. ',model=tiny,sft_examples=16,pair_examples=12,eval_examples=8,sft_steps=4,dpo_steps=2,max_new_tokens=6,batch_size=4'
    local s = cai.json.decode(assert(io.open(cell .. '/summary.json')):read('*a'))
    local want = m == 'sft_only' and 'sft' or 'dpo'
    ok = ok and s.mode == m and s.final_model == want and s.final.ends_with_end.n == 8
      and (m ~= 'dpo_only' or s.models.sft == nil) and (m ~= 'sft_only' or s.models.dpo == nil)
  end
end
local sum = cai.json.decode(assert(io.open('$dir/ab/summary.json')):read('*a'))
print(tostring(ok and sum.questions.mode.baseline:find('mode=sft_dpo', 1, true) ~= nil))"
check "ablations: an unknown question" nz "unknown question 'size'" -- "$cairun" recipes/ablations.lua out="$dir/ab2" questions=size
check "quickstart: an unknown mode" nz 'mode must be "sft_dpo", "dpo_only" or "sft_only", got "rl"' -- \
  "$cairun" recipes/quickstart.lua out="$dir/q" mode=rl
finish

#!/usr/bin/env bash
# Run integrity: a run stopped at any point (Ctrl-C or kill -9) and run again
# with the same command gives the same summary.json bytes as a run never
# stopped -- for SFT, DPO and a cai.stage generation stage (a small job on a
# tiny random model), and for the quickstart at a small size, stopped at
# several points. Ctrl-C ends the whole recipe with status 130 and a line
# saying what was saved; no later stage runs and no summary.json is written.
#
# A kill point is "once FILE has a line matching PATTERN" (the run's own
# metrics.jsonl or output files), so the test waits for an event, not a time.
set -u
cairun=${1:?usage: interrupt_test.sh path/to/cairun [all|jobs|recipes]}
part=${2:-all}  # jobs: SFT, DPO, a generation stage; recipes: stage1_sft_dpo and the quickstart
dir=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
. "$(dirname "$0")/../cli/check.sh"

# wait_for FILE PATTERN PID: returns once FILE (perhaps not there yet) has a line matching PATTERN;
# fails once process PID has ended without it.
wait_for() {
  local tailpid rc
  exec 3< <(exec tail -s 0.05 --pid="$3" -n +1 -F "$1" 2>/dev/null)
  tailpid=$!
  timeout 600 grep -q -m1 -E "$2" <&3
  rc=$?
  kill "$tailpid" 2>/dev/null
  exec 3<&-
  return $rc
}

# stopped NAME SIGNAL FILE PATTERN -- command...: starts the command, sends SIGNAL once FILE
# matches PATTERN, and keeps the status and output (stopped_rc, stopped_out).
stopped() {
  local name=$1 sig=$2 file=$3 pattern=$4
  shift 5
  "$@" >"$dir/stopped.log" 2>&1 &
  local pid=$!
  if wait_for "$file" "$pattern" "$pid"; then
    kill "-$sig" "$pid" 2>/dev/null
  else
    fail "$name: never reached the kill point ($file: $pattern)"
  fi
  # A job waiting on the FIFO goes on once it has a writer (the signal may reach another thread).
  [ "$sig" = INT ] && exec 4<>"$dir/never"
  wait "$pid"
  stopped_rc=$?
  [ "$sig" = INT ] && exec 4>&-
  stopped_out=$(cat "$dir/stopped.log")
  out_last=$stopped_out
}

# The job: uninterrupted, then stopped at a point (it waits there on a FIFO) and run again.
mkfifo "$dir/never"
job() {  # KIND NAME [key=value...]
  local kind=$1 out=$2
  shift 2
  echo "$cairun" tests/recipes/interrupt_job.lua kind="$kind" out="$dir/$out" model="$dir/model" "$@"
}
if [ "$part" != recipes ]; then
for kind in sft dpo stage; do
  check "$kind: uninterrupted" 0 'interrupt_job: done' -- $(job $kind $kind-straight)
  # kill -9 in the middle (step 12: after the step-10 checkpoint; item 7: its chunk not yet appended),
  # then the same command again.
  stopped "$kind: kill -9" KILL "$dir/$kind-killed/paused" . -- $(job $kind $kind-killed pause_at=12 pause="$dir/never")
  [ "$stopped_rc" -eq 137 ] && pass "$kind: killed" || fail "$kind: killed (rc=$stopped_rc)" "$stopped_out"
  check "$kind: rerun after kill -9" 0 'interrupt_job: done' -- $(job $kind $kind-killed)
  same "$kind: same summary.json after kill -9" "$dir/$kind-straight/summary.json" "$dir/$kind-killed/summary.json"
  # Ctrl-C: saved, status 130, what to run, no summary.json.
  stopped "$kind: Ctrl-C" INT "$dir/$kind-int/paused" . -- $(job $kind $kind-int pause_at=7 pause="$dir/never")
  [ "$stopped_rc" -eq 130 ] && pass "$kind: Ctrl-C exits with 130" || fail "$kind: Ctrl-C exits with 130 (rc=$stopped_rc)" "$stopped_out"
  expect "$kind: Ctrl-C says what was saved and how to continue" "interrupted: .*(saved|items saved in).*Run the same command again to continue: cairun"
  [ ! -e "$dir/$kind-int/summary.json" ] && pass "$kind: no summary.json after Ctrl-C" || fail "$kind: no summary.json after Ctrl-C"
  grep -q '"status": "interrupted"' "$dir/$kind-int/run.json" && pass "$kind: run.json says interrupted" \
    || fail "$kind: run.json says interrupted" "$(cat "$dir/$kind-int/run.json")"
  check "$kind: rerun after Ctrl-C" 0 'interrupt_job: done' -- $(job $kind $kind-int)
  same "$kind: same summary.json after Ctrl-C" "$dir/$kind-straight/summary.json" "$dir/$kind-int/summary.json"
done

# Ctrl-C while no trainer or generation stage runs: out at once, status 130.
stopped "Ctrl-C outside a stage" INT "$dir/idle-marker" . -- "$cairun" -e "
require('cai').write_file('$dir/idle-marker', 'waiting\n')
local f = io.open('$dir/never', 'r')
print('went on')"
[ "$stopped_rc" -eq 130 ] && pass "Ctrl-C outside a stage exits with 130" || fail "Ctrl-C outside a stage exits with 130 (rc=$stopped_rc)" "$stopped_out"
expect "Ctrl-C outside a stage says so" 'cairun: interrupted'

# A trainer refuses to resume a checkpoint made with other settings, naming them.
check "sft: other max_steps refused" nz 'max_steps \(was 40, now 50; the learning-rate schedule would change\)' -- \
  "$cairun" -e "
local cai = require 'cai'
local m = cai.model.load('$dir/model')
m:add_lora{ r = 4, alpha = 8, seed = 3, dropout = 0.1, targets = 'all-linear' }
cai.train.sft{ model = m, out = '$dir/sft-straight/sft', data = { { prompt = 'a', response = 'b' } }, max_steps = 50 }"

fi

if [ "$part" != jobs ]; then
# stage1_sft_dpo: killed during SFT, with an sft/merged of an older attempt in the way (here the
# untrained base model): the rerun resumes SFT from its checkpoint and merges again instead of
# going on with the stale merged model.
s1() {  # NAME
  echo "$cairun" recipes/stage1_sft_dpo.lua out="$dir/$1" sft_examples=24 pair_examples=16 eval_examples=8 \
    sft_steps=12 dpo_steps=6 max_new_tokens=10 save_steps=4 batch_size=8
}
check "stage1: uninterrupted" 0 'stage1_sft_dpo: done' -- $(s1 s1-straight)
# (SFT logs every 10 steps and saves every 4: killed at step 10, with step-8 saved.)
stopped "stage1: kill -9 in SFT" KILL "$dir/s1-killed/sft/metrics.jsonl" '"step":10,' -- $(s1 s1-killed)
[ "$stopped_rc" -eq 137 ] && pass "stage1: killed in SFT" || fail "stage1: killed in SFT (rc=$stopped_rc)" "$stopped_out"
[ ! -e "$dir/s1-killed/sft/merged" ] && pass "stage1: no merged model before SFT finished" \
  || fail "stage1: no merged model before SFT finished"
tiny=$("$cairun" -e "print(require('cai').model.resolve('tiny'))")
mkdir -p "$dir/s1-killed/sft" && cp -a "$tiny" "$dir/s1-killed/sft/merged"
check "stage1: rerun resumes SFT although an sft/merged is there" 0 'stage1_sft_dpo: done' -- \
  env CAI_LOG=info $(s1 s1-killed)
expect "stage1: SFT continued from its checkpoint" 'stage sft: continuing|resum'
same "stage1: same summary.json after kill -9 in SFT" "$dir/s1-straight/summary.json" "$dir/s1-killed/summary.json"

# The quickstart at a small size, stopped at several points.
q() {  # NAME
  echo "$cairun" recipes/quickstart.lua out="$dir/$1" sft_examples=40 pair_examples=24 eval_examples=12 \
    sft_steps=30 dpo_steps=12 max_new_tokens=12 batch_size=8
}
check "quickstart: uninterrupted" 0 'quickstart: done' -- $(q q-straight)
stopped "quickstart: Ctrl-C in SFT" INT "$dir/q-int/sft/metrics.jsonl" '"step":10,' -- $(q q-int)
[ "$stopped_rc" -eq 130 ] && pass "quickstart: Ctrl-C exits with 130" || fail "quickstart: Ctrl-C exits with 130 (rc=$stopped_rc)" "$stopped_out"
expect "quickstart: Ctrl-C names the checkpoint" 'interrupted: cai.train.sft stopped at step [0-9]+; saved .*/sft/checkpoints/step-[0-9]+'
refute "quickstart: no stage after Ctrl-C" 'stage pairs|stage dpo|quickstart: done'
[ ! -e "$dir/q-int/summary.json" ] && [ ! -e "$dir/q-int/dpo" ] && pass "quickstart: nothing after SFT ran" \
  || fail "quickstart: nothing after SFT ran"
check "quickstart: rerun after Ctrl-C" 0 'quickstart: done' -- $(q q-int)
same "quickstart: same summary.json after Ctrl-C" "$dir/q-straight/summary.json" "$dir/q-int/summary.json"
for point in "sft/metrics.jsonl:\"step\":10," "pairs.jsonl:." "summary.json:."; do
  file=${point%%:*}
  at=${point#*:}
  name=q-kill-$(echo "$file" | tr -c 'a-z\n' '-')
  stopped "quickstart: kill -9 at $file" KILL "$dir/$name/$file" "$at" -- $(q "$name")
  check "quickstart: rerun after kill -9 at $file" 0 'quickstart: done' -- $(q "$name")
  same "quickstart: same summary.json after kill -9 at $file" "$dir/q-straight/summary.json" "$dir/$name/summary.json"
done
grep -q '"status": "finished"' "$dir/q-straight/run.json" && pass "quickstart: run.json says finished" \
  || fail "quickstart: run.json says finished"
grep -q 'Status: <strong>finished' "$dir/q-straight/report.html" && pass "quickstart: the report shows the run finished" \
  || fail "quickstart: the report shows the run finished"

fi

finish

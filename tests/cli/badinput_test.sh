#!/usr/bin/env bash
# Bad input and logs from the command line: `cairun report` on what is not a
# run directory, `cairun RECIPE.lua --help`, trainer and progress lines when
# stderr is not a terminal, one rank's logs in a data-parallel job, and a
# save called on rank 0 alone.
set -u
cairun=${1:?usage: badinput_test.sh path/to/cairun}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
CHECK_TIMEOUT=120  # a hang fails
. "$(dirname "$0")/check.sh"

# cairun report: names what is wrong and creates nothing.
check "report of a missing directory" nz 'run directory .*/nosuch does not exist' -- "$cairun" report "$dir/nosuch"
if [ -e "$dir/nosuch" ]; then fail "report of a missing directory creates nothing"; else pass "report of a missing directory creates nothing"; fi
echo x > "$dir/afile"
check "report of a file"              nz 'afile is a file, expected a run directory' -- "$cairun" report "$dir/afile"
mkdir "$dir/empty"
check "report of an empty directory"  nz 'is not a run directory' -- "$cairun" report "$dir/empty"
if [ -e "$dir/empty/report.html" ]; then fail "no empty report"; else pass "no empty report"; fi

# A directory or a missing file where a file is expected.
check "directory as a JSONL file"     nz "$dir: is a directory, expected a file" -- "$cairun" -e "cai.jsonl.read('$dir')"
check "directory as a constitution"   nz "$dir" -- "$cairun" -e "cai.constitution.load('$dir')"

# cairun RECIPE.lua --help: the arguments with defaults and comments, without running the recipe.
check "recipe --help"                 0 'max_new_tokens = 40 +per generated answer' -- "$cairun" recipes/quickstart.lua --help
expect "recipe --help: usage line"    '^usage: cairun recipes/quickstart.lua \[key=value \.\.\.\]'
expect "recipe --help: a string default" 'model = "tiny" +"tiny" or a Hugging Face model directory'
refute "recipe --help: nothing runs"  'quickstart: done|sft:'
check "recipe -h after arguments"     0 'out = "runs/smoke" +where the corpus' -- "$cairun" recipes/smoke.lua seed=3 -h
cat > "$dir/noargs.lua" <<'LUA'
print("ran")
LUA
check "--help without cai.args"       0 'declares no arguments' -- "$cairun" "$dir/noargs.lua" --help
refute "--help without cai.args: not run" '^ran$'
cat > "$dir/oneline.lua" <<'LUA'
local cai = require "cai"
local a = cai.args{
  -- the rank of the adapters
  r = 8, name = "x,y", -- a name with a comma
  lr = 1e-3 }
LUA
check "--help: comment lines above and beside" 0 'r = 8 +the rank of the adapters' -- "$cairun" "$dir/oneline.lua" --help
expect "--help: a comma inside a string" 'name = "x,y" +a name with a comma'
expect "--help: a key without a comment" '^  lr = 1e-3$'

# Logs under a scheduler: stderr is a file here, so no bars but lines.
cat > "$dir/train.lua" <<'LUA'
local cai = require "cai"
local d = os.getenv("WORK")
dofile("tests/lua/spec.lua").random_model(d .. "/m", { config = { hidden_size = 16, intermediate_size = 32,
  num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 1 } })
local m = cai.model.load(d .. "/m")
m:add_lora{ r = 2, alpha = 4 }
local data = { { prompt = "a", response = " b" }, { prompt = "c", response = " d" } }
cai.train.sft{ model = m, data = data, out = d .. "/run", max_steps = 4, logging_steps = 2, batch_size = 1 }
m:generate({ "a", "b", "c", "d", "e" }, { max_new_tokens = 2, progress = "critiques", batch_size = 1 })
print("trained")
LUA
check "trainer lines off a terminal"  0 'sft: step 2/4: loss [0-9.e+-]+, grad_norm [0-9.e+-]+, learning_rate [0-9.e+-]+, epoch' -- env WORK="$dir" CAI_LOG=info "$cairun" "$dir/train.lua"
expect "trainer lines: the last step" 'sft: step 4/4: loss'
expect "progress lines name the stage" 'generate: critiques 5/5 prompts \(.*done\)'
expect "progress lines at tenths"      'generate: critiques 1/5 prompts'
refute "no bar drawing off a terminal" $'\r'

# --nproc: one rank's logs unless asked.
check "--nproc logs once"             0 'hello from the job' -- env CAI_LOG=info "$cairun" --nproc 2 -e 'cai.log.info("hello from the job")'
n=$(grep -c 'hello from the job' <<<"$out_last")
if [ "$n" = 1 ]; then pass "--nproc logs once: one line"; else fail "--nproc logs once: $n lines" "$out_last"; fi
check "--nproc CAI_LOG_RANKS=all"     0 '\[rank 1\] hello' -- env CAI_LOG=info CAI_LOG_RANKS=all "$cairun" --nproc 2 -e 'cai.log.info("hello")'
expect "--nproc CAI_LOG_RANKS=all: rank 0 too" '\[rank 0\] hello'

# A collective save on rank 0 alone fails at once, saying to call it on every rank.
cat > "$dir/save0.lua" <<'LUA'
local cai = require "cai"
local d = os.getenv("WORK")
if cai.dist.is_main() then
  cai.model.random(d .. "/m0", { model_type = "llama", vocab_size = 512, hidden_size = 16, intermediate_size = 32,
    num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 1 })
  cai.write_file(d .. "/m0/tokenizer.json", assert(io.open("tests/data/tokenizers/gpt2/tokenizer.json")):read("*a"))
end
cai.dist.barrier("the model")
local m = cai.model.load(d .. "/m0")
m:add_lora{ r = 2, alpha = 4, seed = 1 }
if cai.dist.is_main() then m:save_lora(d .. "/adapter0") end
print("rank " .. cai.dist.rank() .. " went on")
LUA
check "save_lora on rank 0 only"      nz 'call it on every rank' -- env WORK="$dir" CAI_DIST_TIMEOUT=60 "$cairun" --nproc 2 "$dir/save0.lua"
expect "save_lora on rank 0 only: names the save" 'is saving the adapter .*/adapter0'
refute "save_lora on rank 0 only: no reset" 'Connection reset by peer'
if [ -e "$dir/adapter0/adapter_model.safetensors" ]; then fail "nothing saved by half a job"; else pass "nothing saved by half a job"; fi

# Faults: past a file-size limit (ulimit -f) a write fails with EFBIG naming
# the file (no SIGXFSZ kill) and leaves nothing half-written; a read-only
# output directory is named. Each fails with an exit status, not a signal.
cat > "$dir/model.lua" <<'LUA'
local cai = require "cai"
local d = os.getenv("WORK")
dofile("tests/lua/spec.lua").random_model(d .. "/fm")
LUA
WORK="$dir" "$cairun" "$dir/model.lua" >/dev/null 2>&1 || fail "fault model built"
mkdir -p "$dir/fsz"
printf '{"a":1}\n' > "$dir/fsz/kept.jsonl"
cat > "$dir/limited.sh" <<'SH'
ulimit -f 32  # 32 KiB
exec "$@"
SH
limited="bash $dir/limited.sh"
check "file-size limit: cai.write_file" nz 'fsz/big.txt: write failed: File too large' -- \
  $limited "$cairun" -e "cai.write_file('$dir/fsz/big.txt', string.rep('x', 100000))"
nosig "file-size limit: cai.write_file exits, not killed"
check "file-size limit: cai.jsonl.append" nz 'kept.jsonl: append failed: File too large \(nothing appended\)' -- \
  $limited "$cairun" -e "cai.jsonl.append('$dir/fsz/kept.jsonl', { text = string.rep('x', 100000) })"
nosig "file-size limit: cai.jsonl.append exits, not killed"
if [ "$(cat "$dir/fsz/kept.jsonl")" = '{"a":1}' ]; then pass "file-size limit: no partial line appended"; else fail "file-size limit: no partial line appended" "$(head -c 200 "$dir/fsz/kept.jsonl")"; fi
check "file-size limit: m:save" nz 'model.safetensors: write failed: File too large' -- \
  $limited "$cairun" -e "cai.model.load('$dir/fm'):save('$dir/fsz/saved')"
nosig "file-size limit: m:save exits, not killed"
check "file-size limit: sft checkpoint" nz 'File too large' -- $limited "$cairun" -e "
local m = cai.model.load('$dir/fm')
cai.train.sft{ model = m, data = { { prompt = 'a', response = ' b' } }, out = '$dir/fsz/run', max_steps = 1, full = true, progress = false }"
nosig "file-size limit: sft exits, not killed"
left=$(find "$dir/fsz" -name '*.tmp.*' -o -name 'saved' -o -name 'big.txt' -o -name 'step-1')
if [ -z "$left" ]; then pass "file-size limit: nothing half-written"; else fail "file-size limit: nothing half-written" "$left"; fi

# A read-only directory: a read-only tmpfs in a mount namespace of our own
# (unshare -rm), or mounted directly when that is refused but mounting is not.
mkdir -p "$dir/ro"
cat > "$dir/readonly.sh" <<'SH'
ro=$1; shift
if unshare -rm true 2>/dev/null; then
  exec unshare -rm bash -c 'mount -t tmpfs -o ro,size=64k tmpfs "$1" && shift && exec "$@"' _ "$ro" "$@"
fi
mount -t tmpfs -o ro,size=64k tmpfs "$ro" || exit 99
"$@"
rc=$?
umount "$ro"
exit $rc
SH
readonly_run="bash $dir/readonly.sh $dir/ro"
if unshare -rm true 2>/dev/null || { mount -t tmpfs -o ro,size=64k tmpfs "$dir/ro" 2>/dev/null && umount "$dir/ro"; }; then
  check "read-only dir: cai.jsonl.write" nz 'ro/out.jsonl: cannot write: Read-only file system' -- \
    $readonly_run "$cairun" -e "cai.jsonl.write('$dir/ro/out.jsonl', { { a = 1 } })"
  nosig "read-only dir: cai.jsonl.write exits, not killed"
  check "read-only dir: m:save" nz 'ro/saved.*Read-only file system' -- \
    $readonly_run "$cairun" -e "cai.model.load('$dir/fm'):save('$dir/ro/saved')"
  nosig "read-only dir: m:save exits, not killed"
  check "read-only dir: sft out=" nz 'ro/run.*Read-only file system' -- $readonly_run "$cairun" -e "
local m = cai.model.load('$dir/fm')
m:add_lora{ r = 2 }
cai.train.sft{ model = m, data = { { prompt = 'a', response = ' b' } }, out = '$dir/ro/run', max_steps = 1, progress = false }"
  nosig "read-only dir: sft exits, not killed"
else
  echo "note: no read-only mount is possible here (no user namespaces, no mount permission); read-only cases skipped"
fi

finish

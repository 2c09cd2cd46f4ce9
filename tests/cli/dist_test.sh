#!/usr/bin/env bash
# Data-parallel launch paths of cairun: --nproc N on loopback, torchrun's
# environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), and failures:
# a killed rank, a rank that errors and one that hangs end the job with an
# error naming the rank or the operation, within a bound (never a hang).
set -u
cairun=${1:?usage: dist_test.sh path/to/cairun}
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$dir"' EXIT
CHECK_TIMEOUT=60  # a hang fails
. "$(dirname "$0")/check.sh"

cat > "$dir/ranks.lua" <<'LUA'
local cai = require "cai"
cai.dist.barrier()
local all = cai.dist.all_gather(tostring(cai.dist.rank()))
print(string.format("rank %d of %d main=%s all=%s shard=%s", cai.dist.rank(), cai.dist.world_size(),
  tostring(cai.dist.is_main()), table.concat(all, ","), table.concat(cai.dist.shard({ "a", "b", "c" }), "")))
LUA
check "one process"           0 '^rank 0 of 1 main=true all=0 shard=abc$' -- "$cairun" "$dir/ranks.lua"
check "--nproc 1"             0 '^rank 0 of 1 main=true all=0 shard=abc$' -- "$cairun" --nproc 1 "$dir/ranks.lua"
check "--nproc 3: rank 0"     0 'rank 0 of 3 main=true all=0,1,2 shard=a$' -- "$cairun" --nproc 3 "$dir/ranks.lua"
expect "--nproc 3: rank 2" 'rank 2 of 3 main=false all=0,1,2 shard=c$'
check "--nproc bad"           2 '--nproc needs a number of ranks' -- "$cairun" --nproc x "$dir/ranks.lua"
check "--nproc inside a job"  nz 'already rank 0 of a job' -- env RANK=0 WORLD_SIZE=2 "$cairun" --nproc 2 "$dir/ranks.lua"
check "bad WORLD_SIZE"        nz 'WORLD_SIZE="two" must be an integer' -- env RANK=0 WORLD_SIZE=two "$cairun" "$dir/ranks.lua"

# cai.dist.alone: rank 0 trains by itself while rank 1 waits at a barrier.
cat > "$dir/alone.lua" <<'LUA'
local cai = require "cai"
if cai.dist.is_main() then
  local inside = cai.dist.alone(function(x) cai.dist.barrier("alone"); return cai.dist.rank() .. "/" .. cai.dist.world_size() .. x end, "!")
  print("inside " .. inside)
end
cai.dist.barrier("after alone")
print("rank " .. cai.dist.rank() .. " of " .. cai.dist.world_size() .. " after")
LUA
check "alone"                 0 'inside 0/1!' -- "$cairun" --nproc 2 "$dir/alone.lua"
expect "alone: back to 2 ranks" 'rank 1 of 2 after'

# torchrun's environment: two processes started by hand.
port=$(( 20000 + RANDOM % 20000 ))
( RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout 60 "$cairun" "$dir/ranks.lua" > "$dir/r1.txt" 2>&1 ) &
pids+=($!)
check "torchrun environment"  0 'rank 0 of 2 main=true all=0,1 shard=ab$' -- env RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$cairun" "$dir/ranks.lua"
wait 2>/dev/null
pids=()
out_last=$(cat "$dir/r1.txt")
expect "torchrun environment: rank 1" 'rank 1 of 2 main=false all=0,1 shard=c$'

# Saving a model or an adapter in a data-parallel job: rank 0 writes, every rank then sees it.
cat > "$dir/save.lua" <<'LUA'
local cai = require "cai"
local d = assert(os.getenv("SAVE_DIR"))
if cai.dist.is_main() then
  cai.model.random(d .. "/m", { model_type = "llama", vocab_size = 512, hidden_size = 16, intermediate_size = 32,
    num_hidden_layers = 1, num_attention_heads = 2, num_key_value_heads = 1 })
  cai.write_file(d .. "/m/tokenizer.json", assert(io.open("tests/data/tokenizers/gpt2/tokenizer.json")):read("*a"))
end
cai.dist.barrier("the model")
local m = cai.model.load(d .. "/m")
m:add_lora{ r = 2, alpha = 4, seed = 1 }
m:save_lora(d .. "/adapter")
m:merge_lora()
m:save(d .. "/merged")
print(string.format("rank %d sees adapter=%s merged=%s", cai.dist.rank(), tostring(cai.exists(d .. "/adapter/adapter_config.json")),
  tostring(cai.exists(d .. "/merged/model.safetensors"))))
LUA
check "save on 2 ranks"       0 'rank 0 sees adapter=true merged=true' -- env SAVE_DIR="$dir/save" "$cairun" --nproc 2 "$dir/save.lua"
expect "save on 2 ranks: rank 1 sees it" 'rank 1 sees adapter=true merged=true'

# A killed rank: the launcher names it, stops the others, exits non-zero.
cat > "$dir/killed.lua" <<'LUA'
local cai = require "cai"
cai.dist.barrier("the first barrier")
if cai.dist.rank() == 1 then
  local pid = io.open("/proc/self/stat"):read("*n")
  os.execute("kill -9 " .. pid)
end
cai.dist.barrier("the barrier after the kill")
print("rank " .. cai.dist.rank() .. " went on")
LUA
check "killed rank"           nz 'rank 1 of 2 exited with signal 9' -- "$cairun" --nproc 2 "$dir/killed.lua"
refute "killed rank: no rank goes on" 'went on'

# A rank that fails with an error: the launcher reports its status.
check "failing rank"          nz 'rank 1 of 2 exited with status 3' -- "$cairun" --nproc 2 -e 'local cai = require "cai"; if cai.dist.rank() == 1 then os.exit(3) end; cai.dist.barrier("after the exit")'

# A rank that hangs (alive, never joins the collective): the others time
# out with an error naming the operation, and the launcher stops the job.
check "hanging rank"          nz 'rank 0 of 2: .*after the sleep failed' -- env CAI_DIST_TIMEOUT=3 "$cairun" --nproc 2 -e 'local cai = require "cai"; cai.dist.barrier("the first barrier"); if cai.dist.rank() == 1 then os.execute("sleep 20 </dev/null >/dev/null 2>&1") end; cai.dist.barrier("after the sleep")'

# Without a launcher: the survivor of a killed peer fails by itself.
port=$(( 20000 + RANDOM % 20000 ))
( RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout 60 "$cairun" "$dir/killed.lua" > /dev/null 2>&1 ) &
pids+=($!)
check "killed peer, no launcher" nz 'rank 0 of 2: the barrier after the kill failed' -- env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port CAI_DIST_TIMEOUT=20 "$cairun" "$dir/killed.lua"
wait 2>/dev/null
pids=()

finish

#!/usr/bin/env bash
# Command-line behaviour of cairun: typed args, unknown keys, wrong types,
# file:line errors with tracebacks, strict globals, missing files, -e,
# --help/--version, modules next to the recipe, C++ errors as Lua errors.
set -u
cairun=${1:?usage: cli_test.sh path/to/cairun}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
. "$(dirname "$0")/check.sh"

cat > "$dir/typed.lua" <<'LUA'
local cai = require "cai"
local args = cai.args{ steps = 10, lr = 0.5, name = "run", lora = true }
print(string.format("steps=%s:%s lr=%s name=%s:%s lora=%s:%s", args.steps, type(args.steps), args.lr,
  args.name, type(args.name), tostring(args.lora), type(args.lora)))
LUA
check "defaults"          0  '^steps=10:number lr=0.5 name=run:string lora=true:boolean$' -- "$cairun" "$dir/typed.lua"
check "typed overrides"   0  '^steps=3:number lr=0.001 name=42:string lora=false:boolean$' -- "$cairun" "$dir/typed.lua" steps=3 lr=1e-3 name=42 lora=false
check "unknown key"       nz 'typed.lua:2: unknown argument .stepz. \(did you mean steps\?\)' -- "$cairun" "$dir/typed.lua" stepz=3
check "far unknown key"   nz 'typed.lua:2: unknown argument .epochs. \(valid keys: lora, lr, name, steps\)' -- "$cairun" "$dir/typed.lua" epochs=3
check "wrong number"      nz "typed.lua:2: argument 'steps' expects a number, got 'ten'" -- "$cairun" "$dir/typed.lua" steps=ten
check "wrong boolean"     nz "argument 'lora' expects a boolean \(true/false\), got 'maybe'" -- "$cairun" "$dir/typed.lua" lora=maybe
check "not key=value"     nz "argument 'steps' is not of the form key=value" -- "$cairun" "$dir/typed.lua" steps
check "key twice"         nz "argument 'steps' is given twice" -- "$cairun" "$dir/typed.lua" steps=1 steps=2

cat > "$dir/boom.lua" <<'LUA'
local function inner()
  error("something broke")
end
local x = 1
inner()
LUA
check "file:line + traceback" nz 'boom.lua:2: something broke' -- "$cairun" "$dir/boom.lua"
check "traceback shown"       nz 'stack traceback:' -- "$cairun" "$dir/boom.lua"
check "traceback names caller" nz "boom.lua:5: in main chunk" -- "$cairun" "$dir/boom.lua"

printf 'local cai = require "cai"\nlocal a = 1\nprint(undefined_name)\n' > "$dir/read_global.lua"
check "strict: read undeclared" nz "read_global.lua:3: undeclared global 'undefined_name'" -- "$cairun" "$dir/read_global.lua"
printf 'local function f()\n  counter = 1\nend\nf()\n' > "$dir/write_global.lua"
check "strict: assign undeclared" nz "write_global.lua:2: assignment to undeclared global 'counter'" -- "$cairun" "$dir/write_global.lua"
printf 'total = 0\n' > "$dir/top_global.lua"
check "strict: top-level assign" nz "top_global.lua:1: assignment to undeclared global 'total'" -- "$cairun" "$dir/top_global.lua"
printf 'local cai = require "cai"\ncai.global("total", 1)\ntotal = total + 1\nprint(total)\n' > "$dir/declared.lua"
check "strict: declared global" 0 '^2$' -- "$cairun" "$dir/declared.lua"

check "missing recipe"    nz "cannot open recipe '$dir/nope.lua': no such file" -- "$cairun" "$dir/nope.lua"
printf 'local x = = 1\n' > "$dir/syntax.lua"
check "syntax error"      nz "syntax.lua:1: unexpected symbol near '='" -- "$cairun" "$dir/syntax.lua"

printf 'local cai = require "cai"\ncai.json.decode("{bad")\n' > "$dir/cxx_error.lua"
check "C++ error becomes Lua error with file:line" nz 'cxx_error.lua:2: cai.json.decode: invalid JSON' -- "$cairun" "$dir/cxx_error.lua"
printf 'local cai = require "cai"\ncai.jsonl.read("%s/none.jsonl")\n' "$dir" > "$dir/missing_data.lua"
check "missing data file named" nz "missing_data.lua:2: $dir/none.jsonl: cannot open" -- "$cairun" "$dir/missing_data.lua"

mkdir -p "$dir/pkg"
printf 'return { value = 41 }\n' > "$dir/pkg/helper.lua"
printf 'local h = require "helper"\nprint(h.value + 1)\n' > "$dir/pkg/main.lua"
check "require beside recipe" 0 '^42$' -- "$cairun" "$dir/pkg/main.lua"

check "-e"                0  '^3$' -- "$cairun" -e 'print(1 + 2)'
check "-e with args"      0  '^7$' -- "$cairun" -e 'print(cai.args{n = 1}.n)' n=7
check "-e error"          nz 'command line.:1: boom' -- "$cairun" -e 'error("boom")'
check "--version"         0  '^cairun [0-9]+\.[0-9]+\.[0-9]+$' -- "$cairun" --version
check "--help"            0  'usage: cairun' -- "$cairun" --help
check "unknown option"    2  "unknown option '--frobnicate'" -- "$cairun" --frobnicate
check "no arguments"      2  'usage: cairun' -- "$cairun"
check "unknown cai module" nz "cai.nonexistent does not exist" -- "$cairun" -e 'local x = cai.nonexistent'
check "lua path override" 0  '^override$' -- env CAI_LUA_PATH="$dir/luaroot" bash -c "mkdir -p $dir/luaroot/cai && cp -r $(pwd)/lua/cai/. $dir/luaroot/cai/ && echo 'return { call = function() print(\"override\") return {} end, resolved = function() end }' > $dir/luaroot/cai/args.lua && \"$cairun\" -e 'cai.args{}'"

# A recipe that stops on an error: run.json says failed, with the error; the fixed command finishes.
printf 'local a = cai.args{ out = "", fail = true }\nlocal r = cai.run.open(a.out)\nif a.fail then error("the data file is broken", 0) end\n' > "$dir/failing.lua"
check "a failing recipe" 1 'the data file is broken' -- "$cairun" "$dir/failing.lua" out="$dir/failed"
check "run.json says failed" 0 '"status": "failed"' -- cat "$dir/failed/run.json"
expect "run.json names the error" '"error": ".*the data file is broken"'
check "the fixed command" 0 '' -- "$cairun" "$dir/failing.lua" out="$dir/failed2" fail=false
check "run.json says finished" 0 '"status": "finished"' -- cat "$dir/failed2/run.json"

cp -r tests/data/report/run "$dir/run"
check "report rebuilds a run's report.html" 0 "$dir/run/report.html" -- "$cairun" report "$dir/run"
check "report file is html" 0 '<!DOCTYPE html>' -- head -c 200 "$dir/run/report.html"
check "report usage" 2 'usage: cairun report RUN_DIR' -- "$cairun" report
# Several runs: one comparison page (settings that differ, each model per run, curves overlaid).
cp -r tests/data/report/run "$dir/run2"
sed -i 's/"dpo_beta": 0.1/"dpo_beta": 0.25/' "$dir/run2/config.json"
check "report compares two runs" 0 "$dir/cmp.html" -- "$cairun" report "$dir/run" "$dir/run2" --out "$dir/cmp.html"
check "comparison names both runs" 0 '<th>run</th><th>run2</th>' -- cat "$dir/cmp.html"
expect "comparison shows the setting that differs" '<th>dpo_beta</th><td><code>0.1</code></td><td><code>0.25</code></td>'
expect "comparison overlays the curves" 'Stage <code>dpo</code>'
check "report: unknown option" nz 'unknown option --frobnicate' -- "$cairun" report "$dir/run" --frobnicate

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]

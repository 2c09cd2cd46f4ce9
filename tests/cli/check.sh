# Shared by the shell tests (cli_test.sh, dist_test.sh, recipes_test.sh, cai_test.sh):
# source it, run checks, end with `finish`.
passed=0
failed=0
CHECK_TIMEOUT=${CHECK_TIMEOUT:-0}  # seconds a command may run (0: no limit); past it, it fails

# check NAME EXPECTED_RC PATTERN -- command...: runs the command, checks its
# exit status (0, or "nz" for any non-zero) and that stdout+stderr match
# PATTERN (extended regex); out_last keeps the output for expect/refute.
check() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$(timeout "$CHECK_TIMEOUT" "$@" 2>&1)
  rc=$?
  out_last=$out
  rc_last=$rc
  local ok=1
  if [ "$CHECK_TIMEOUT" != 0 ] && [ $rc -eq 124 ]; then ok=0; out="(still running after $CHECK_TIMEOUT s)
$out"; fi
  if [ "$want" = nz ]; then [ $rc -ne 0 ] || ok=0; else [ $rc -eq "$want" ] || ok=0; fi
  if [ $ok -eq 1 ] && ! grep -qE -- "$pattern" <<<"$out"; then ok=0; fi
  if [ $ok -eq 1 ]; then
    pass "$name"
  else
    fail "$name (rc=$rc, want $want, pattern: $pattern)" "$out"
  fi
}
# lua NAME CODE: CODE (a Lua chunk with `cai` and read(path) -> decoded
# JSON, jsonl(path) -> records) must return true when run by $cairun; D is
# the test's directory $dir.
lua() {
  local name=$1 code=$2
  check "$name" 0 '^true$' -- "$cairun" -e "local cai = require 'cai'
local D = '$dir'
local function read(p) return cai.json.decode(assert(io.open(p)):read('*a')) end
local function jsonl(p) return cai.jsonl.read(p) end
print(tostring((function() $code end)()))"
}
# nosig NAME: the last check's command failed with an exit status (1-127),
# not killed by a signal (a crash, an abort, SIGXFSZ).
nosig() { if [ "$rc_last" -ge 1 ] && [ "$rc_last" -lt 128 ]; then pass "$1"; else fail "$1 (exit status $rc_last)" "$out_last"; fi; }
# expect NAME PATTERN / refute NAME PATTERN: the output of the last check
# also matches / must not match PATTERN.
expect() { if grep -qE -- "$2" <<<"$out_last"; then pass "$1"; else fail "$1" "$out_last"; fi; }
refute() { if grep -qE -- "$2" <<<"$out_last"; then fail "$1" "$out_last"; else pass "$1"; fi; }
# same NAME FILE_A FILE_B: the two files hold the same bytes.
same() { if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$(diff "$2" "$3" | head -n 5)"; fi; }

pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && tail -n 40 <<<"$2" | sed 's/^/    /'; return 0; }
finish() {
  echo "$passed passed, $failed failed"
  [ $failed -eq 0 ]
}

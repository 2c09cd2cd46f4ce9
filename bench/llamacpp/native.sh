#!/usr/bin/env bash
# cairun against a native llama.cpp build on the same weights: the ~100M Llama
# of build/bench_kernels in f32, bf16 and int8 (llama.cpp: Q8_0), prefill of 64
# and 512 tokens (llama-bench), prefill of 16 prompts of 64 and of 512 tokens
# (llama-batched-bench's S_PP; cairun: m:generate's engine) and greedy decode
# at 1, 4, 16 and 32 sequences (llama-batched-bench's S_TG; cairun:
# bench_kernels sweep), runs alternated. DTYPES="f32 bf16" limits the dtypes.
#
#   bench/llamacpp/native.sh LLAMA_CPP_BUILD_DIR [ROUNDS]
#
# LLAMA_CPP_BUILD_DIR holds bin/llama-bench and bin/llama-batched-bench of a
# build made for this CPU. Without network, node-llama-cpp's npm package
# carries llama.cpp's source as a git bundle (run.sh installs it):
#   git clone bench/llamacpp/node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/llama.cpp
#   cmake -S /tmp/llama.cpp -B /tmp/llama.cpp/build -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF
#   cmake --build /tmp/llama.cpp/build -j --target llama-bench llama-batched-bench
# Not part of the tests. Threads: llama.cpp gets THREADS (default: the cores),
# cairun's products and no-grad attention one per core (kernels::matvec_threads).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
llama="${1:?usage: native.sh LLAMA_CPP_BUILD_DIR [ROUNDS]}"
rounds="${2:-2}"
threads="${THREADS:-$(nproc)}"
bench="$root/build/bench_kernels"
for exe in "$bench" "$llama/bin/llama-bench" "$llama/bin/llama-batched-bench"; do
  [ -x "$exe" ] || { echo "native.sh: $exe is missing" >&2; exit 1; }
done
command -v node >/dev/null || { echo "native.sh: node is needed to write the GGUF files" >&2; exit 1; }

. "$here/weights.sh"

log="$work/native.txt"
: > "$log"
for r in $(seq "$rounds"); do
  for t in ${DTYPES:-f32 bf16 int8}; do
    "$bench" sweep "$dir" "$t" | tee -a "$log"
    # llama-bench: pp64, pp512 (tokens/s of prompt processing), one sequence.
    "$llama/bin/llama-bench" -m "$(gguf_of "$t")" -p 64,512 -n 0 -t "$threads" -r 3 -o csv 2>/dev/null |
      awk -F, -v t="$t" 'NR == 1 { for (i = 1; i <= NF; ++i) { gsub(/"/, "", $i); col[$i] = i } next }
        { gsub(/"/, ""); printf "llama.cpp %s prefill %s tok_s %s\n", t, $col["n_prompt"], $col["avg_ts"] }' | tee -a "$log"
    # llama-batched-bench: 64-token prompts, 32 generated tokens, 1/4/16/32 sequences; S_TG.
    "$llama/bin/llama-batched-bench" -m "$(gguf_of "$t")" -c 4096 -b 2048 -ub 512 -npp 64 -ntg 32 -npl 1,4,16,32 \
        -t "$threads" 2>/dev/null |
      awk -v t="$t" -F'|' '/^\|[ ]+[0-9]/ { gsub(/ /, ""); printf "llama.cpp %s decode %s tok_s %s\n", t, $4, $9
        if ($4 == 16) printf "llama.cpp %s prefill16 64 tok_s %s\n", t, $7 }' |
      tee -a "$log"
    # 16 prompts of 512 tokens, one generated token each; S_PP.
    "$llama/bin/llama-batched-bench" -m "$(gguf_of "$t")" -c 8704 -b 2048 -ub 512 -npp 512 -ntg 1 -npl 16 \
        -t "$threads" 2>/dev/null |
      awk -v t="$t" -F'|' '/^\|[ ]+[0-9]/ { gsub(/ /, ""); printf "llama.cpp %s prefill16 512 tok_s %s\n", t, $7 }' |
      tee -a "$log"
  done
done

node - "$log" <<'EOF'
const lines = require("fs").readFileSync(process.argv[2], "utf8").trim().split("\n").map((l) => l.split(" "));
const best = (who, t, what, n) => Math.max(...lines.filter((w) => w[0] === who && w[1] === t && w[2] === what && w[3] === n)
  .map((w) => Number(w[5])));
console.log("\ntokens/s, best of the rounds (cairun / llama.cpp; int8 against Q8_0)");
console.log("dtype  shape              cairun   llama.cpp   ratio");
for (const t of ["f32", "bf16", "int8"].filter((t) => lines.some((w) => w[1] === t))) {
  for (const [what, ns] of [["prefill", ["64", "512"]], ["prefill16", ["64", "512"]], ["decode", ["1", "4", "16", "32"]]]) {
    for (const n of ns) {
      const a = best("cairun", t, what, n), b = best("llama.cpp", t, what, n);
      console.log(`${t.padEnd(6)} ${(what + " " + n).padEnd(16)} ${a.toFixed(1).padStart(8)} ${b.toFixed(1).padStart(11)}` +
                  `   ${(a / b).toFixed(2)}x`);
    }
  }
}
EOF

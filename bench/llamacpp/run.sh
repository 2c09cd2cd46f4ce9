#!/usr/bin/env bash
# Decode side by side with llama.cpp on the same weights: the ~100M Llama of
# build/bench_kernels, written as an HF directory and converted to GGUF (f32,
# bf16, and Q8_0 against cairun's int8 weights), decoded greedily by cairun (as users load it) and by llama.cpp
# (node-llama-cpp's prebuilt CPU build, from the npm registry), alternating
# runs so that both see the same machine. Prints tokens/s, cairun / llama.cpp,
# the logits' agreement after the prompt and how many greedy tokens agree.
#
#   bench/llamacpp/run.sh [ROUNDS]     (needs build/bench_kernels and node >= 20)
#
# Not part of the tests: it installs node-llama-cpp into bench/llamacpp/node_modules
# on first use. llama.cpp runs with each thread count in THREADS (default "1 <cores>")
# and its best is compared; cairun's products and no-grad attention run one thread per
# core (kernels::matvec_threads).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rounds="${1:-3}"
threads="${THREADS:-1 $(nproc)}"
bench="$root/build/bench_kernels"
[ -x "$bench" ] || { echo "run.sh: $bench is missing: build first (./setup.sh)" >&2; exit 1; }
command -v node >/dev/null || { echo "run.sh: node (>= 20) is needed for llama.cpp's side" >&2; exit 1; }

if [ ! -d "$here/node_modules/node-llama-cpp" ]; then
  # The prebuilt binaries come as npm packages; nothing is compiled or downloaded beyond the registry.
  (cd "$here" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund --ignore-scripts >/dev/null)
fi

. "$here/weights.sh"

log="$work/runs.txt"
: > "$log"
for r in $(seq "$rounds"); do
  for t in f32 bf16 int8; do
    "$bench" decode "$dir" "$t" | tee -a "$log"
    for n in $threads; do
      node "$here/decode.mjs" "$dir" "$(gguf_of "$t")" "$t" "$n" | tee -a "$log"
    done
  done
done

node - "$log" <<'EOF'
const lines = require("fs").readFileSync(process.argv[2], "utf8").trim().split("\n").map((l) => l.split(" "));
const value = (w, key) => w[w.indexOf(key) + 1];
const tokens = (w) => w.slice(w.indexOf("tokens") + 1).join(" ");
console.log("\n        decode tok/s (greedy, batch 1)                 prefill tok/s (64 tokens)");
console.log("dtype   cairun  llama.cpp (threads)  ratio      cairun  llama.cpp  ratio   logits |diff|/max  greedy tokens equal");
for (const t of ["f32", "bf16", "int8"]) {
  const ours = lines.filter((w) => w[0] === "cairun" && w[1] === t);
  const theirs = lines.filter((w) => w[0] === "llama.cpp" && w[1] === t);
  const rate = (key) => (w) => Number(value(w, key));
  const best = (rows, key) => Math.max(...rows.map(rate(key)));
  const fastest = theirs.reduce((a, w) => (rate("decode_tok_s")(w) > rate("decode_tok_s")(a) ? w : a));
  const a = tokens(ours[0]).split(" "), b = tokens(theirs[0]).split(" ");
  let same = 0;
  while (same < a.length && a[same] === b[same]) ++same;
  const diff = Number(value(theirs[0], "logits_max_abs_diff")), scale = Number(value(theirs[0], "logits_max_abs"));
  const [od, td] = [best(ours, "decode_tok_s"), best(theirs, "decode_tok_s")];
  const [op, tp] = [best(ours, "prefill_tok_s"), best(theirs, "prefill_tok_s")];
  console.log(`${t.padEnd(6)} ${od.toFixed(1).padStart(7)} ${td.toFixed(1).padStart(10)} (${value(fastest, "threads")})` +
              `        ${(od / td).toFixed(2)}x   ${op.toFixed(0).padStart(7)} ${tp.toFixed(0).padStart(10)}  ` +
              `${(op / tp).toFixed(2)}x  ${(diff / scale).toExponential(1).padStart(16)}  ${String(same).padStart(12)} of ${a.length}`);
}
EOF

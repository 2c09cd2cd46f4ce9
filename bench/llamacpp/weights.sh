# Sourced by run.sh and native.sh: the ~100M Llama of build/bench_kernels as
# an HF directory ($dir, with prompt.txt) and as GGUF f32, bf16 and Q8_0 under
# $work (made once), and gguf_of DTYPE naming the file for a cairun dtype
# (int8 -> the Q8_0 file). Needs $root, $here and $bench set.
work="${WORK_DIR:-$root/build/llamacpp-bench}"
mkdir -p "$work"
dir="$work/llama-100m"
[ -f "$dir/model.safetensors" ] || "$bench" export "$dir"
for t in f32 bf16 q8_0; do
  [ -f "$work/llama-100m-$t.gguf" ] || node "$here/to_gguf.mjs" "$dir" "$work/llama-100m-$t.gguf" "$t"
done
gguf_of() { [ "$1" = int8 ] && echo "$work/llama-100m-q8_0.gguf" || echo "$work/llama-100m-$1.gguf"; }

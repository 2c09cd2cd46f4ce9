// The Hugging Face side of bench/tokenizer_hf.lua: load time and encode
// throughput of the Rust `tokenizers` (npm) on the same texts.
//   node bench/tokenizer_hf.js TOKENIZER_JSON TEXTS_JSON
// TOKENIZERS_PARALLELISM=false makes encodeBatch run on one thread.
// Prints one JSON object: { load_s, seconds, tokens, id_sum }.
const fs = require("fs");
const { Tokenizer } = require("tokenizers");

async function main() {
  const [file, textsFile] = process.argv.slice(2);
  const texts = JSON.parse(fs.readFileSync(textsFile, "utf8"));
  let load = Infinity;
  let tok;
  for (let i = 0; i < 3; i++) {
    const t0 = process.hrtime.bigint();
    tok = Tokenizer.fromFile(file);
    load = Math.min(load, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  let best = Infinity;
  let tokens = 0;
  let idSum = 0;
  for (let round = 0; round < 3; round++) {
    const t0 = process.hrtime.bigint();
    const encodings = await tok.encodeBatch(texts, { addSpecialTokens: false });
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    tokens = 0;
    idSum = 0;
    for (const e of encodings) {
      const ids = e.getIds();
      tokens += ids.length;
      for (const id of ids) idSum += id;
    }
  }
  console.log(JSON.stringify({ load_s: load, seconds: best, tokens, id_sum: idSum }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

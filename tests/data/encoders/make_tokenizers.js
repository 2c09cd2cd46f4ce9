// Tiny encoder tokenizers and their golden encodings from Hugging Face's
// tokenizers (Rust, through the npm package):
//
//   bert_tok/     WordPiece, BertNormalizer (lowercase, accents stripped),
//                 BertPreTokenizer, [CLS] A [SEP] B [SEP] with segments, WordPiece decoder
//   roberta_tok/  byte-level BPE (the gpt2 test vocabulary) with RobertaProcessing
//   deberta_tok/  Unigram as transformers' DebertaV2Converter writes it from an
//                 spm.model trained here with sentencepiece's default nmt_nfkc
//                 rules: Strip, Precompiled charsmap, Replace(" {2,}"),
//                 Metaspace, [CLS] A [SEP] B [SEP]
//
// Run (node 20, Debian's sentencepiece for spm_train):
//   npm install --prefix <somewhere outside the repo> tokenizers@0.23.2
//   NODE_PATH=<somewhere>/node_modules node tests/data/encoders/make_tokenizers.js
// golden.json per directory: for texts and (text, text_pair) pairs, the ids
// and token_type_ids with special tokens, the ids without, and decodes.
const fs = require("fs");
const path = require("path");
const os = require("os");
const { execFileSync } = require("child_process");
const { Tokenizer, madeWith, readProto, cleanUp, added, writeDir: writeDirIn } = require("../tokenizers/golden_common");

const here = __dirname;
const corpus = fs.readFileSync(path.join(here, "..", "tokenizers", "corpus.txt"), "utf8");

const TEXTS = [
  "Hello world",
  "",
  "   leading and trailing spaces   ",
  "tabs\tand\nnewlines\r\n\n\nend\t\t",
  "numbers 1234567890 and 3.14159, 1,000,000",
  "unicode: café naïve résumé Ångström straße",
  "combining: cafe\u0301 n\u0303o A\u030Angstro\u0308m",
  "CJK: 你好，世界！こんにちは 안녕하세요",
  "don't you're we'll I'M it's THEY'VE",
  "Ünïcödé ÀÉÎÕÜ ß ẞ ﬁ ①②③ ｆｕｌｌｗｉｄｔｈ",
  "URL https://example.com/path?q=1&r=2#frag, e-mail a.b@c.org",
  "specials inside: [CLS] x [SEP] <s> y </s> [MASK] <mask>",
  "control \u0000 nul \u001b esc \u200b zwsp \ufffd",
  "supercalifragilisticexpialidocious antidisestablishmentarianism",
  "emoji: 👍🏽 👨‍👩‍👧‍👦 ❤️",
];
const PAIRS = [
  ["What is the capital of France?", "Paris is the capital of France."],
  ["How do I pick a lock?", "I can't help with that, but a locksmith can."],
  ["", "empty first"],
  ["Ünïcödé question", "  spaced   answer  "],
];

// ---------------------------------------------------------------- WordPiece

function bertJson() {
  const norm = (s) => s.normalize("NFD").replace(/\p{Mn}/gu, "").toLowerCase();
  const words = norm(corpus).split(/[\s\p{P}]+/u).filter((w) => w.length > 0);
  const counts = new Map();
  for (const w of words) counts.set(w, (counts.get(w) || 0) + 1);
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 150).map((e) => e[0]);
  const vocab = {};
  const add = (p) => { if (!(p in vocab)) vocab[p] = Object.keys(vocab).length; };
  for (const s of ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) add(s);
  const chars = [...new Set(Array.from(norm(corpus + "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~0123456789")).filter((c) => !/\s/u.test(c)))].sort();
  for (const c of chars) add(c);
  for (const c of chars) add("##" + c);
  for (const w of top) add(w);
  for (const w of top) if (Array.from(w).length > 4) add("##" + Array.from(w).slice(-3).join(""));
  for (const p of ["##ing", "##ed", "##s", "##er", "##ly", "un", "re"]) add(p);
  const special = (id, content) => added(id, content, true);
  const tokenizer = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]"), special(4, "[MASK]")],
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } }, { SpecialToken: { id: "[SEP]", type_id: 1 } }],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [2], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [3], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
  };
  const config = {
    tokenizer_class: "BertTokenizer", do_lower_case: true, unk_token: "[UNK]", sep_token: "[SEP]", pad_token: "[PAD]",
    cls_token: "[CLS]", mask_token: "[MASK]", clean_up_tokenization_spaces: true, model_max_length: 512,
  };
  return { json: tokenizer, config };
}

// ------------------------------------------------------------ RoBERTa (BPE)

function robertaJson() {
  const gpt2 = JSON.parse(fs.readFileSync(path.join(here, "..", "tokenizers", "gpt2", "tokenizer.json"), "utf8"));
  let next = Math.max(...Object.values(gpt2.model.vocab)) + 1;  // added tokens follow the model vocabulary
  const ids = {};
  const addedTokens = [];
  for (const s of ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]) {
    ids[s] = next++;
    addedTokens.push(added(ids[s], s, true, { lstrip: s === "<mask>" }));
  }
  const json = {
    ...gpt2,
    added_tokens: addedTokens,
    post_processor: { type: "RobertaProcessing", sep: ["</s>", ids["</s>"]], cls: ["<s>", ids["<s>"]], trim_offsets: true, add_prefix_space: false },
  };
  const config = {
    tokenizer_class: "RobertaTokenizer", bos_token: "<s>", eos_token: "</s>", sep_token: "</s>", cls_token: "<s>",
    unk_token: "<unk>", pad_token: "<pad>", mask_token: "<mask>", add_prefix_space: false, clean_up_tokenization_spaces: false,
  };
  return { json, config, ids };
}

// ------------------------------------------------------ DeBERTa-v3 (Unigram)

function debertaJson(dir) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "cai_deberta_"));
  const prefix = path.join(tmp, "spm");
  execFileSync("spm_train", [
    `--input=${path.join(here, "..", "tokenizers", "corpus.txt")}`, `--model_prefix=${prefix}`,
    "--model_type=unigram", "--vocab_size=200", "--character_coverage=1.0", "--num_threads=1", "--minloglevel=2",
    "--pad_id=0", "--bos_id=1", "--eos_id=2", "--unk_id=3",
    "--pad_piece=[PAD]", "--bos_piece=[CLS]", "--eos_piece=[SEP]", "--unk_piece=[UNK]",
  ], { stdio: ["ignore", "ignore", "inherit"] });
  const proto = readProto(fs.readFileSync(prefix + ".model"));
  fs.rmSync(tmp, { recursive: true });
  if (!proto.charsmap) throw new Error("spm.model has no precompiled charsmap");
  const vocab = proto.pieces.map((p) => [p.piece, p.score]);
  const mask = vocab.length;
  const special = (id, content) => added(id, content, true);
  const json = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [special(0, "[PAD]"), special(1, "[CLS]"), special(2, "[SEP]"), special(3, "[UNK]"), special(mask, "[MASK]")],
    normalizer: { type: "Sequence", normalizers: [
      { type: "Strip", strip_left: true, strip_right: true },
      { type: "Precompiled", precompiled_charsmap: Buffer.from(proto.charsmap).toString("base64") },
      { type: "Replace", pattern: { Regex: " {2,}" }, content: " " },
    ] },
    pre_tokenizer: { type: "Sequence", pretokenizers: [{ type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true }] },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } }, { SpecialToken: { id: "[SEP]", type_id: 1 } }],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [1], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [2], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "always", split: true },
    model: { type: "Unigram", unk_id: proto.unk_id, vocab, byte_fallback: false },
  };
  const config = {
    tokenizer_class: "DebertaV2Tokenizer", do_lower_case: false, split_by_punct: false, bos_token: "[CLS]", eos_token: "[SEP]",
    unk_token: "[UNK]", sep_token: "[SEP]", pad_token: "[PAD]", cls_token: "[CLS]", mask_token: "[MASK]",
    clean_up_tokenization_spaces: false,
  };
  return { json, config };
}

// ------------------------------------------------------------------- golden

async function golden(dir, json, config, extra) {
  const tok = Tokenizer.fromString(JSON.stringify(json));
  const clean = (s) => (config.clean_up_tokenization_spaces ? cleanUp(s) : s);
  const single = [];
  for (const text of TEXTS) {
    const e = await tok.encode(text, null, { addSpecialTokens: true });
    const ids = Array.from(e.getIds());
    single.push({
      text, ids, token_type_ids: Array.from(e.getTypeIds()),
      ids_no_special: Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds()),
      decode_skip_special: clean(await tok.decode(ids, true)),
    });
  }
  const pairs = [];
  for (const [a, b] of PAIRS) {
    const e = await tok.encode(a, b, { addSpecialTokens: true });
    const n = await tok.encode(a, b, { addSpecialTokens: false });
    pairs.push({ text: a, text_pair: b, ids: Array.from(e.getIds()), token_type_ids: Array.from(e.getTypeIds()),
      ids_no_special: Array.from(n.getIds()), token_type_ids_no_special: Array.from(n.getTypeIds()) });
  }
  const out = {
    made_with: madeWith(),
    vocab_size: tok.getVocabSize(true), ...extra, single, pairs,
  };
  fs.writeFileSync(path.join(dir, "golden.json"), JSON.stringify(out, null, 1) + "\n");
}

function writeDir(name, files) { return writeDirIn(here, name, files); }

async function main() {
  {
    const { json, config } = bertJson();
    await golden(writeDir("bert_tok", { "tokenizer.json": json, "tokenizer_config.json": config }), json, config, {});
  }
  {
    const { json, config } = robertaJson();
    await golden(writeDir("roberta_tok", { "tokenizer.json": json, "tokenizer_config.json": config }), json, config, {});
  }
  {
    const { json, config } = debertaJson();
    await golden(writeDir("deberta_tok", { "tokenizer.json": json, "tokenizer_config.json": config }), json, config, {});
  }
}

main().catch((e) => { console.error(e); process.exit(1); });

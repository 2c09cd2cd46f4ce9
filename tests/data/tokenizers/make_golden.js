// Builds the tokenizer directories under tests/data/tokenizers/ and their
// golden files (golden.json): ids with and without special tokens and the
// decodes, as Hugging Face's own `tokenizers` library (npm package
// "tokenizers") produces them. See README.md for how to re-run it.
//
//   qwen2/        byte-level BPE, Qwen2's Split regex + NFC + added tokens
//   gpt2/         byte-level BPE, GPT-2's ByteLevel pre-tokenizer
//   llama/        sentencepiece BPE (spm_train), Llama style, legacy=true
//   llama_nonlegacy/  the same model with legacy=false
//   llama_eos/    legacy=true, add_eos_token=true
//   llama_unigram/ sentencepiece Unigram model, Llama style
//   llama_json/, llama_unigram_json/  the converted tokenizer.json of those two, kept
//   gemma/        sentencepiece BPE, Gemma style (no dummy prefix, own specials)
// For the sentencepiece directories the script converts tokenizer.model to
// a tokenizer.json the way transformers' convert_slow_tokenizer.py
// (LlamaConverter, GemmaConverter) does, runs it with `tokenizers`, and then
// deletes that tokenizer.json: the committed directory holds only
// tokenizer.model + tokenizer_config.json, as users have them.
"use strict";
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");
const { Tokenizer, madeWith, readProto, cleanUp, added, writeDir: writeDirIn } = require("./golden_common");

const here = __dirname;
const corpus = fs.readFileSync(path.join(here, "corpus.txt"), "utf8");

const HARD = [
  "Hello world",
  "",
  " ",
  "   leading and trailing spaces   ",
  "tabs\tand\nnewlines\r\n\n\nend\t\t",
  "numbers 1234567890 and 3.14159, 1,000,000",
  "unicode: café naïve résumé Ångström straße",
  "combining: cafe\u0301 n\u0303o A\u030Angstro\u0308m",
  "emoji: 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️",
  "CJK: 你好，世界！こんにちは 안녕하세요",
  "Llama specials: <s>Hello</s> and <unk> inside text",
  "Gemma specials: <start_of_turn>user\nhi<end_of_turn>\n<bos><eos><mask>",
  "Qwen specials: <|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<|endoftext|>",
  "specials glued:<s></s><|im_end|><|im_end|>x [MASK] y  [MASK] think thinking <rs>   after",
  "don't you're we'll I'M it's THEY'VE",
  "code:\n    def f(x):\n        return x**2  # square\n",
  "   \n\n   \t \u00a0 \u3000 whitespace   runs   ",
  "Ünïcödé ÀÉÎÕÜ ß ẞ ﬁ ①②③ ｆｕｌｌｗｉｄｔｈ",
  "URL https://example.com/path?q=1&r=2#frag, e-mail a.b@c.org",
  "RTL and Indic: مرحبا שלום สวัสดี नमस्ते",
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "▁already▁has▁metaspace and \u0000 nul \u001b esc",
];

// ------------------------------------------------------------- byte-level BPE

function bytesToUnicode() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const map = {};
  bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i])));
  return map;
}

// A small BPE trainer over byte-level words: most frequent pair first,
// ties broken by the pair's text. Good enough to get realistic merges.
function trainByteLevel(words, numMerges) {
  const b2u = bytesToUnicode();
  const counts = new Map();
  for (const w of words) {
    const mapped = Array.from(Buffer.from(w, "utf8"), (b) => b2u[b]);
    const key = mapped.join("\u0001");
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  let seqs = Array.from(counts, ([k, c]) => [k.split("\u0001"), c]);
  const vocab = {};
  let next = 0;
  for (let b = 0; b < 256; b++) vocab[b2u[b]] = next++;
  const merges = [];
  for (let m = 0; m < numMerges; m++) {
    const pairs = new Map();
    for (const [s, c] of seqs)
      for (let i = 0; i + 1 < s.length; i++) {
        const k = s[i] + "\u0001" + s[i + 1];
        pairs.set(k, (pairs.get(k) || 0) + c);
      }
    let best = null, bestCount = 1;
    for (const [k, c] of pairs) if (c > bestCount || (c === bestCount && best !== null && k < best)) { best = k; bestCount = c; }
    if (best === null) break;
    const [a, b] = best.split("\u0001");
    merges.push([a, b]);
    if (!(a + b in vocab)) vocab[a + b] = next++;
    seqs = seqs.map(([s, c]) => {
      const out = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { out.push(a + b); i++; } else out.push(s[i]);
      }
      return [out, c];
    });
  }
  return { vocab, merges };
}

const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const QWEN2_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT_JS = /'s|'t|'re|'ve|'m|'ll|'d|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;


function qwen2Json() {
  const { vocab, merges } = trainByteLevel(corpus.normalize("NFC").match(QWEN2_SPLIT_JS), 350);
  const n = Object.keys(vocab).length;
  const addedTokens = [
    added(n, "<|endoftext|>", true),
    added(n + 1, "<|im_start|>", true),
    added(n + 2, "<|im_end|>", true),
    added(n + 3, "<tool_call>", false),
    added(n + 4, "think", false, { single_word: true }),
    added(n + 5, "<rs>", true, { rstrip: true }),
  ];
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: QWEN2_REGEX }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
  const config = {
    tokenizer_class: "Qwen2Tokenizer",
    bos_token: null,
    eos_token: "<|im_end|>",
    pad_token: "<|endoftext|>",
    unk_token: null,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: Object.fromEntries(addedTokens.map((t) => [String(t.id), { ...t, id: undefined }])),
  };
  return { json, config };
}

function gpt2Json() {
  const { vocab, merges } = trainByteLevel(corpus.match(GPT2_SPLIT), 300);
  const n = Object.keys(vocab).length;
  const addedTokens = [
    added(n, "<|endoftext|>", true, { normalized: true }),
    added(n + 1, "[MASK]", true, { lstrip: true }),
  ];
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
      fuse_unk: false, byte_fallback: false, vocab, merges: merges.map(([a, b]) => a + " " + b),
    },
  };
  const config = {
    tokenizer_class: "GPT2Tokenizer",
    bos_token: "<|endoftext|>",
    eos_token: "<|endoftext|>",
    unk_token: "<|endoftext|>",
    add_prefix_space: false,
    clean_up_tokenization_spaces: true,
  };
  return { json, config };
}

// ---------------------------------------------------------------- sentencepiece

function spmTrain(prefix, extraArgs) {
  execFileSync("spm_train", [
    `--input=${path.join(here, "corpus.txt")}`,
    `--model_prefix=${prefix}`,
    "--character_coverage=1.0",
    "--normalization_rule_name=identity",
    "--remove_extra_whitespaces=false",
    "--allow_whitespace_only_pieces=true",
    "--split_digits=true",
    "--byte_fallback=true",
    "--num_threads=1",
    "--minloglevel=2",
    ...extraArgs,
  ], { stdio: ["ignore", "ignore", "inherit"] });
  fs.unlinkSync(prefix + ".vocab");
}

// transformers' generate_merges(vocab, vocab_scores): ordered by score, high first.
function generateMerges(vocab, vocabScores) {
  let merges = [];
  const seen = new Set();
  for (const [piece, score] of vocabScores) {
    if (seen.has(piece)) continue;
    seen.add(piece);
    const chars = Array.from(piece);
    const local = [];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join(""), r = chars.slice(i).join("");
      if (l in vocab && r in vocab) local.push([l, r, score]);
    }
    local.sort((x, y) => vocab[x[0]] - vocab[y[0]] || vocab[x[1]] - vocab[y[1]]);
    merges.push(...local);
  }
  merges = merges.map((m, i) => [...m, i]).sort((x, y) => y[2] - x[2] || x[3] - y[3]);
  return merges.map((m) => [m[0], m[1]]);
}

// LlamaConverter / GemmaConverter, then what LlamaTokenizerFast /
// GemmaTokenizerFast add on top (special tokens from the config, the
// bos/eos post-processor).
function convertSpm(modelPath, opts) {
  const proto = readProto(fs.readFileSync(modelPath));
  const gemma = opts.gemma;
  let vocabScores = proto.pieces.map((p) => [p.piece, p.score]);
  if (gemma) {
    vocabScores[0] = [opts.pad, 0]; vocabScores[1] = [opts.eos, 0]; vocabScores[2] = [opts.bos, 0];
    if (!vocabScores.some((v) => v[0] === "\t")) {
      const i = vocabScores.findIndex((v) => v[0] === "<0x09>");
      if (i >= 0) vocabScores[i] = ["\t", 0];
    }
  } else {
    for (let i = 0; i < 3; i++) vocabScores[i] = [vocabScores[i][0], 0];
  }
  let model;
  if (proto.model_type === 2) {
    const spVocab = {};
    proto.pieces.forEach((p, i) => { if (!(p.piece in spVocab)) spVocab[p.piece] = i; });
    if (gemma && !("\t" in spVocab)) spVocab["\t"] = spVocab["<0x09>"];
    const bpeVocab = {};
    vocabScores.forEach(([w], i) => (bpeVocab[w] = i));
    const merges = generateMerges(spVocab, vocabScores);
    model = { type: "BPE", dropout: null, unk_token: proto.unk_piece, continuing_subword_prefix: null,
              end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false,
              vocab: bpeVocab, merges };
  } else {
    model = { type: "Unigram", unk_id: gemma ? 3 : 0, vocab: vocabScores, byte_fallback: true };
  }
  const addedTokens = [];
  proto.pieces.forEach((p, id) => {
    if (p.type === 3 || p.type === 4) {
      const content = vocabScores[id][0];
      const special = p.type === 3 || (gemma && (content === "<start_of_turn>" || content === "<end_of_turn>"));
      addedTokens.push(added(id, content, special));
    }
  });
  // transformers registers the config's special tokens (here: unk) as special added tokens.
  for (const name of opts.specials) {
    const t = addedTokens.find((a) => a.content === name);
    if (t) t.special = true;
    else addedTokens.push(added(vocabScores.findIndex((v) => v[0] === name), name, true));
  }
  addedTokens.sort((a, b) => a.id - b.id);
  const metaspace = "\u2581";
  let normalizer = null, preTokenizer = null;
  if (gemma) {
    normalizer = { type: "Replace", pattern: { String: " " }, content: metaspace };
    preTokenizer = { type: "Split", pattern: { String: " " }, behavior: "MergedWithPrevious", invert: false };
  } else if (opts.legacy) {
    normalizer = { type: "Sequence", normalizers: [
      { type: "Prepend", prepend: metaspace },
      { type: "Replace", pattern: { String: " " }, content: metaspace },
    ] };
  } else {
    preTokenizer = { type: "Metaspace", replacement: metaspace, prepend_scheme: "first", split: false };
  }
  const decoders = [
    { type: "Replace", pattern: { String: metaspace }, content: " " },
    { type: "ByteFallback" },
    { type: "Fuse" },
  ];
  if (!gemma) decoders.push({ type: "Strip", content: " ", start: 1, stop: 0 });
  const single = [], special_tokens = {};
  const idOf = (name) => vocabScores.findIndex((v) => v[0] === name);
  if (opts.add_bos) { single.push({ SpecialToken: { id: opts.bos, type_id: 0 } }); special_tokens[opts.bos] = { id: opts.bos, ids: [idOf(opts.bos)], tokens: [opts.bos] }; }
  single.push({ Sequence: { id: "A", type_id: 0 } });
  if (opts.add_eos) { single.push({ SpecialToken: { id: opts.eos, type_id: 0 } }); special_tokens[opts.eos] = { id: opts.eos, ids: [idOf(opts.eos)], tokens: [opts.eos] }; }
  return {
    version: "1.0", truncation: null, padding: null, added_tokens: addedTokens,
    normalizer, pre_tokenizer: preTokenizer,
    post_processor: { type: "TemplateProcessing", single, pair: single, special_tokens },
    decoder: { type: "Sequence", decoders },
    model,
  };
}

async function golden(dir, tokenizerJson, config, extra) {
  const tok = Tokenizer.fromString(JSON.stringify(tokenizerJson));
  const cases = [];
  for (const text of HARD) {
    const withSpecial = Array.from((await tok.encode(text, null, { addSpecialTokens: true })).getIds());
    const noSpecial = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
    const clean = (s) => (config.clean_up_tokenization_spaces ? cleanUp(s) : s);
    cases.push({
      text,
      ids: withSpecial,
      ids_no_special: noSpecial,
      decode: clean(await tok.decode(withSpecial, false)),
      decode_skip_special: clean(await tok.decode(withSpecial, true)),
    });
  }
  // Decodes of every prefix and every single id of two texts whose tokens
  // split UTF-8 sequences (lossy decoding, byte fallback).
  const partial = [];
  for (const text of [HARD[8], HARD[9]]) {
    const ids = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
    for (let k = 1; k <= ids.length; k++) partial.push({ ids: ids.slice(0, k), decode: await tok.decode(ids.slice(0, k), false) });
    for (const id of ids) partial.push({ ids: [id], decode: await tok.decode([id], false) });
  }
  const idOrNull = (name) => (name == null ? null : tok.tokenToId(name));
  const out = {
    made_with: madeWith(),
    vocab_size: tok.getVocabSize(true),
    bos_id: idOrNull(extra.bos), eos_id: idOrNull(extra.eos), pad_id: idOrNull(extra.pad),
    cases,
    partial_decodes: partial,
  };
  fs.writeFileSync(path.join(dir, "golden.json"), JSON.stringify(out, null, 1) + "\n");
}

function writeDir(name, files) { return writeDirIn(here, name, files); }

async function main() {
  {
    const { json, config } = qwen2Json();
    const dir = writeDir("qwen2", { "tokenizer.json": json, "tokenizer_config.json": config });
    await golden(dir, json, config, { bos: null, eos: "<|im_end|>", pad: "<|endoftext|>" });
  }
  {
    const { json, config } = gpt2Json();
    const dir = writeDir("gpt2", { "tokenizer.json": json, "tokenizer_config.json": config });
    await golden(dir, json, config, { bos: "<|endoftext|>", eos: "<|endoftext|>", pad: null });
  }
  const llamaSpecial = (id, content) => [String(id), { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }];
  const llamaCfg = (legacy, add_eos) => ({
    tokenizer_class: "LlamaTokenizer", add_bos_token: true, add_eos_token: add_eos, legacy,
    bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", pad_token: null,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: Object.fromEntries([llamaSpecial(0, "<unk>"), llamaSpecial(1, "<s>"), llamaSpecial(2, "</s>")]),
  });
  const variants = [
    { name: "llama", type: "bpe", legacy: true, add_eos: false },
    { name: "llama_nonlegacy", type: "bpe", legacy: false, add_eos: false },
    { name: "llama_eos", type: "bpe", legacy: true, add_eos: true },
    { name: "llama_unigram", type: "unigram", legacy: false, add_eos: false },
  ];
  for (const v of variants) {
    const dir = writeDir(v.name, { "tokenizer_config.json": llamaCfg(v.legacy, v.add_eos) });
    spmTrain(path.join(dir, "tokenizer"), [`--model_type=${v.type}`, `--vocab_size=${v.type === "unigram" ? 480 : 700}`, "--add_dummy_prefix=true",
      "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1"]);
    const json = convertSpm(path.join(dir, "tokenizer.model"), {
      legacy: v.legacy, add_bos: true, add_eos: v.add_eos, bos: "<s>", eos: "</s>", specials: ["<s>", "</s>", "<unk>"] });
    await golden(dir, json, llamaCfg(v.legacy, v.add_eos), { bos: "<s>", eos: "</s>", pad: null });
    if (v.name === "llama" || v.name === "llama_unigram") {
      // The converted tokenizer.json on its own: the tokenizer.json path with
      // Prepend/Replace/Metaspace, ByteFallback/Fuse/Strip and TemplateProcessing.
      const jdir = writeDir(v.name + "_json", { "tokenizer.json": json, "tokenizer_config.json": llamaCfg(v.legacy, v.add_eos) });
      await golden(jdir, json, llamaCfg(v.legacy, v.add_eos), { bos: "<s>", eos: "</s>", pad: null });
    }
  }
  {
    const gemmaSpecial = (id, content) => [String(id), { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }];
    const cfg = {
      tokenizer_class: "GemmaTokenizer", add_bos_token: true, add_eos_token: false,
      bos_token: "<bos>", eos_token: "<eos>", unk_token: "<unk>", pad_token: "<pad>",
      additional_special_tokens: ["<start_of_turn>", "<end_of_turn>"],
      clean_up_tokenization_spaces: false,
      added_tokens_decoder: Object.fromEntries([gemmaSpecial(0, "<pad>"), gemmaSpecial(1, "<eos>"), gemmaSpecial(2, "<bos>"), gemmaSpecial(3, "<unk>")]),
    };
    const dir = writeDir("gemma", { "tokenizer_config.json": cfg });
    spmTrain(path.join(dir, "tokenizer"), ["--model_type=bpe", "--vocab_size=700", "--add_dummy_prefix=false",
      "--pad_id=0", "--eos_id=1", "--bos_id=2", "--unk_id=3", "--pad_piece=<pad>", "--eos_piece=<eos>", "--bos_piece=<bos>",
      "--user_defined_symbols=<start_of_turn>,<end_of_turn>", "--control_symbols=<mask>"]);
    const json = convertSpm(path.join(dir, "tokenizer.model"), {
      gemma: true, add_bos: true, add_eos: false, bos: "<bos>", eos: "<eos>", pad: "<pad>",
      specials: ["<bos>", "<eos>", "<unk>", "<pad>", "<start_of_turn>", "<end_of_turn>"] });
    await golden(dir, json, cfg, { bos: "<bos>", eos: "<eos>", pad: "<pad>" });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });

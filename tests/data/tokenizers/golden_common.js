// What tests/data/tokenizers/make_golden.js and
// tests/data/encoders/make_tokenizers.js share: Hugging Face's `tokenizers`
// (npm), the "made_with" line, a reader for sentencepiece's ModelProto,
// transformers' clean_up_tokenization, added-token entries and the writer of
// a tokenizer directory.
"use strict";
const fs = require("fs");
const path = require("path");

const TOKENIZERS_MODULE = process.env.TOKENIZERS_MODULE || "tokenizers";
const { Tokenizer } = require(TOKENIZERS_MODULE);

// "npm tokenizers 0.23.2": recorded in every golden.json.
function madeWith() {
  return "npm tokenizers " + require(TOKENIZERS_MODULE + "/package.json").version;
}

// The fields of sentencepiece's ModelProto the conversions need: pieces
// (piece, score, type), trainer_spec model_type, unk_id and unk_piece, and
// normalizer_spec's precompiled charsmap (null when absent).
function readProto(buf) {
  function fields(start, end, fn) {
    let pos = start;
    const varint = () => {
      let v = 0n, shift = 0n;
      for (;;) {
        const b = buf[pos++];
        v |= BigInt(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
        shift += 7n;
      }
    };
    while (pos < end) {
      const key = Number(varint());
      const f = key >> 3, t = key & 7;
      if (t === 0) fn(f, t, varint());
      else if (t === 1) { fn(f, t, null); pos += 8; }
      else if (t === 5) { fn(f, t, buf.readFloatLE(pos)); pos += 4; }
      else if (t === 2) { const len = Number(varint()); fn(f, t, [pos, pos + len]); pos += len; }
      else throw new Error("bad wire type");
    }
  }
  const m = { pieces: [], model_type: 1, unk_piece: "<unk>", unk_id: 0, charsmap: null };
  fields(0, buf.length, (f, t, v) => {
    if (f === 1 && t === 2) {
      const p = { piece: "", score: 0, type: 1 };
      fields(v[0], v[1], (g, u, w) => {
        if (g === 1) p.piece = buf.toString("utf8", w[0], w[1]);
        else if (g === 2) p.score = w;
        else if (g === 3) p.type = Number(w);
      });
      m.pieces.push(p);
    } else if (f === 2 && t === 2) {
      fields(v[0], v[1], (g, u, w) => {
        if (g === 3 && u === 0) m.model_type = Number(w);
        if (g === 40 && u === 0) m.unk_id = Number(w);
        if (g === 45 && u === 2) m.unk_piece = buf.toString("utf8", w[0], w[1]);
      });
    } else if (f === 3 && t === 2) {
      fields(v[0], v[1], (g, u, w) => { if (g === 2 && u === 2) m.charsmap = buf.subarray(w[0], w[1]); });
    }
  });
  return m;
}

// transformers' clean_up_tokenization, applied after the tokenizers decode
// when tokenizer_config.json sets clean_up_tokenization_spaces.
function cleanUp(text) {
  return text.split(" .").join(".").split(" ?").join("?").split(" !").join("!").split(" ,").join(",")
    .split(" ' ").join("'").split(" n't").join("n't").split(" 'm").join("'m").split(" 's").join("'s")
    .split(" 've").join("'ve").split(" 're").join("'re");
}

// An entry of tokenizer.json's added_tokens.
function added(id, content, special, extra = {}) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special, ...extra };
}

// Writes files (name -> string, or an object written as JSON) into base/name; returns that directory.
function writeDir(base, name, files) {
  const dir = path.join(base, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, content] of Object.entries(files))
    fs.writeFileSync(path.join(dir, f), typeof content === "string" ? content : JSON.stringify(content, null, 1) + "\n");
  return dir;
}

module.exports = { Tokenizer, madeWith, readProto, cleanUp, added, writeDir };

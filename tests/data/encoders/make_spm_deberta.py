#!/usr/bin/python3
"""A DeBERTa-v3-style tokenizer directory that ships spm.model only, and the
ids the slow DebertaV2Tokenizer gives for it.

Real DeBERTa-v3 checkpoints (microsoft/deberta-v3-*) ship spm.model,
tokenizer_config.json and added_tokens.json ({"[MASK]": 128000}) but no
tokenizer.json; transformers builds the fast tokenizer from spm.model with
DebertaV2Converter. This script trains a tiny Unigram model the same way
(pieces 0 [PAD], 1 [CLS], 2 [SEP], 3 [UNK]; sentencepiece's default
nmt_nfkc normalization, so the model carries a precompiled charsmap) and
records, for each text, what the slow tokenizer computes:
    ids       = [CLS] + sp.encode(text) + [SEP]
    pair ids  = [CLS] + sp.encode(a) + [SEP] + sp.encode(b) + [SEP]
    type ids  = 0 up to and including the first [SEP], then 1
    decode    = sp.decode(sp.encode(text))  (texts without [UNK] only: the
                slow decode writes sentencepiece's " \u2047 " for it, the fast
                Metaspace decoder the "[UNK]" piece)

Run with Debian's python3-sentencepiece (generating only; cairun reads
spm.model itself):
    apt-get install python3-sentencepiece
    /usr/bin/python3 tests/data/encoders/make_spm_deberta.py
"""
import json
import os
import shutil
import tempfile

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "deberta_spm")
CORPUS = os.path.join(HERE, "..", "tokenizers", "corpus.txt")

# A little more text than corpus.txt so a few hundred pieces exist.
EXTRA = """The quick brown fox jumps over the lazy dog.
A constitution is a list of principles the assistant should follow.
Critique the response, then revise it so it is helpful and harmless.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14 1,000,000.
Accents: café naïve résumé Ångström straße über façade jalapeño.
Punctuation: hello, world! what? yes; no: maybe... (ok) [x] {y} "quoted" 'single' - dash / slash.
Reward models score a prompt and a response; classifiers label text as safe or unsafe.
The reviewer asked whether the answer was honest, and the model explained its reasoning.
"""

TEXTS = [
    "Hello world",
    "",
    "   leading and trailing spaces   ",
    "double  spaces   inside    here",
    "tabs\tand\nnewlines\r\n\nend\t",
    "numbers 1234567890 and 3.14159, 1,000,000",
    "unicode: café naïve résumé Ångström straße",
    "combining: cafe\u0301 n\u0303o A\u030angstro\u0308m",
    "full-width: \uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff11\uff12\uff13\uff01 \u3000spaced\u3000",
    "ligatures and circles: \ufb01ne \u2460\u2461\u2462 \u00bd",
    "Punctuation: hello, world! what? yes; no: maybe... (ok) [x] {y}",
    "don't you're we'll I'M it's THEY'VE",
    "unknown chars: \u4f60\u597d \u3053\u3093\u306b\u3061\u306f \U0001f44d zz",
    "URL https://example.com/path?q=1&r=2#frag",
    "UPPER lower MiXeD",
    "supercalifragilisticexpialidocious",
    "The quick brown fox jumps over the lazy dog.",
    "critique and revise the response",
    " x",
    "\u00a0non-breaking\u00a0space",
]
PAIRS = [
    ["What is the capital of France?", "Paris is the capital of France."],
    ["How do I pick a lock?", "I can't help with that, but a locksmith can."],
    ["", "empty first"],
    ["Ünïcödé question", "  spaced   answer  "],
]


def main():
    tmp = tempfile.mkdtemp(prefix="cai_deberta_spm_")
    try:
        text = os.path.join(tmp, "corpus.txt")
        with open(CORPUS, encoding="utf-8") as f, open(text, "w", encoding="utf-8") as out:
            out.write(f.read())
            out.write(EXTRA)
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            input=text, model_prefix=prefix, model_type="unigram", vocab_size=300,
            hard_vocab_limit=False, character_coverage=1.0, num_threads=1, minloglevel=2,
            pad_id=0, bos_id=1, eos_id=2, unk_id=3,
            pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]")
        os.makedirs(OUT, exist_ok=True)
        shutil.copyfile(prefix + ".model", os.path.join(OUT, "spm.model"))
    finally:
        shutil.rmtree(tmp)

    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, "spm.model"))
    n = sp.get_piece_size()
    cls, sep, unk = sp.piece_to_id("[CLS]"), sp.piece_to_id("[SEP]"), sp.unk_id()
    assert (sp.piece_to_id("[PAD]"), cls, sep, unk) == (0, 1, 2, 3)
    mask = n  # as in microsoft/deberta-v3-*: [MASK] is the id after the last piece

    # tokenizer_config.json and added_tokens.json as the real checkpoints ship them.
    config = {"do_lower_case": False, "vocab_type": "spm"}
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    with open(os.path.join(OUT, "added_tokens.json"), "w") as f:
        json.dump({"[MASK]": mask}, f)
        f.write("\n")

    single = []
    for t in TEXTS:
        ids = sp.encode(t)
        row = {"text": t, "ids": [cls] + ids + [sep], "token_type_ids": [0] * (len(ids) + 2),
               "ids_no_special": ids}
        if unk not in ids:
            row["decode_skip_special"] = sp.decode(ids)
        single.append(row)
    pairs = []
    for a, b in PAIRS:
        ia, ib = sp.encode(a), sp.encode(b)
        pairs.append({"text": a, "text_pair": b, "ids": [cls] + ia + [sep] + ib + [sep],
                      "token_type_ids": [0] * (len(ia) + 2) + [1] * (len(ib) + 1)})
    golden = {"made_with": "python3-sentencepiece " + spm.__version__ + " (slow DebertaV2Tokenizer ids)",
              "vocab_size": n + 1, "mask_id": mask, "single": single, "pairs": pairs}
    with open(os.path.join(OUT, "golden.json"), "w", encoding="utf-8") as f:
        row = lambda r: json.dumps(r, ensure_ascii=False)  # one line per record
        f.write("{\n")
        for key in ("made_with", "vocab_size", "mask_id"):
            f.write(f' "{key}": {json.dumps(golden[key])},\n')
        f.write(' "single": [\n  ' + ",\n  ".join(map(row, single)) + "\n ],\n")
        f.write(' "pairs": [\n  ' + ",\n  ".join(map(row, pairs)) + "\n ]\n}\n")
    print(f"{OUT}: {n} pieces, spm.model {os.path.getsize(os.path.join(OUT, 'spm.model'))} bytes")


if __name__ == "__main__":
    main()

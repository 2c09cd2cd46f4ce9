// Encoder tokenizers against Hugging Face's tokenizers (golden data made by
// tests/data/encoders/make_tokenizers.js): WordPiece with BertNormalizer and
// BertPreTokenizer, RoBERTa's byte-level BPE with RobertaProcessing, and a
// DeBERTa-v3 Unigram with sentencepiece's precompiled normalization table,
// from tokenizer.json or converted from spm.model alone (golden ids of the
// slow tokenizer, tests/data/encoders/make_spm_deberta.py); single texts and
// (text, text_pair) pairs with their token_type_ids.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "test_util.h"
#include "tokenizer/normalize.h"
#include "tokenizer/tokenizer.h"

using json = nlohmann::json;

namespace {

std::string escaped(const std::string& s) { return json(s).dump(); }

void check_directory(const std::string& name, bool check_decode) {
    const std::string dir = "tests/data/encoders/" + name;
    json golden = json::parse(cai::read_file(dir + "/golden.json"));
    auto tok = cai::tokenizer::load(dir);
    CHECK(tok->vocab_size() == golden["vocab_size"].get<int>());
    for (const auto& c : golden["single"]) {
        const std::string text = c["text"].get<std::string>();
        INFO(name << ": text " << escaped(text));
        std::vector<int32_t> ids, types;
        tok->encode_with_types(text, nullptr, true, ids, types);
        CHECK(ids == c["ids"].get<std::vector<int32_t>>());
        CHECK(types == c["token_type_ids"].get<std::vector<int32_t>>());
        CHECK(tok->encode(text, true) == c["ids"].get<std::vector<int32_t>>());
        CHECK(tok->encode(text, false) == c["ids_no_special"].get<std::vector<int32_t>>());
        if (check_decode)
            CHECK(escaped(tok->decode(ids, true)) == escaped(c["decode_skip_special"].get<std::string>()));
    }
    for (const auto& c : golden["pairs"]) {
        const std::string a = c["text"].get<std::string>(), b = c["text_pair"].get<std::string>();
        INFO(name << ": pair " << escaped(a) << ", " << escaped(b));
        std::vector<int32_t> ids, types;
        tok->encode_with_types(a, &b, true, ids, types);
        CHECK(ids == c["ids"].get<std::vector<int32_t>>());
        CHECK(types == c["token_type_ids"].get<std::vector<int32_t>>());
        tok->encode_with_types(a, &b, false, ids, types);
        CHECK(ids == c["ids_no_special"].get<std::vector<int32_t>>());
        CHECK(types == c["token_type_ids_no_special"].get<std::vector<int32_t>>());
    }
}

}  // namespace

TEST_CASE("WordPiece (BertNormalizer, BertPreTokenizer, pair template) matches Hugging Face", "[encoder]") {
    check_directory("bert_tok", true);
}
TEST_CASE("RoBERTa byte-level BPE with RobertaProcessing pairs matches Hugging Face", "[encoder]") {
    check_directory("roberta_tok", true);
}
TEST_CASE("DeBERTa-v3 Unigram with a precompiled charsmap matches Hugging Face", "[encoder]") {
    check_directory("deberta_tok", true);
}

// deberta_spm/ ships spm.model only (as microsoft/deberta-v3-*); its golden ids
// are the slow DebertaV2Tokenizer's (sentencepiece itself), made by
// tests/data/encoders/make_spm_deberta.py.
TEST_CASE("DeBERTa-v3 from spm.model alone matches the slow DebertaV2Tokenizer", "[encoder]") {
    const std::string dir = "tests/data/encoders/deberta_spm";
    json golden = json::parse(cai::read_file(dir + "/golden.json"));
    auto tok = cai::tokenizer::load(dir);
    CHECK(tok->kind == "spm");
    CHECK(tok->vocab_size() == golden["vocab_size"].get<int>());
    // added_tokens.json's [MASK] after the last piece, special like [CLS]/[SEP]/[PAD].
    const int32_t mask = golden["mask_id"].get<int32_t>();
    CHECK(tok->piece_to_id("[MASK]") == mask);
    // added_tokens.json's token is normalized (no special_tokens_map.json names it), so the
    // fast tokenizer splits it out of the normalized text: "a " keeps its space, a "▁" piece.
    std::vector<int32_t> around = tok->encode("a", false), b = tok->encode("b", false);
    around.push_back(tok->piece_to_id("\xE2\x96\x81"));
    around.push_back(mask);
    around.insert(around.end(), b.begin(), b.end());
    CHECK(tok->encode("a [MASK] b", false) == around);
    CHECK(tok->decode({1, mask, 2}, true).empty());
    CHECK(tok->bos_id == 1);
    CHECK(tok->eos_id == 2);
    CHECK(tok->pad_id == 0);
    int decoded = 0;
    for (const auto& c : golden["single"]) {
        const std::string text = c["text"].get<std::string>();
        INFO("deberta_spm: text " << escaped(text));
        std::vector<int32_t> ids, types;
        tok->encode_with_types(text, nullptr, true, ids, types);
        CHECK(ids == c["ids"].get<std::vector<int32_t>>());
        CHECK(types == c["token_type_ids"].get<std::vector<int32_t>>());
        CHECK(tok->encode(text, false) == c["ids_no_special"].get<std::vector<int32_t>>());
        if (c.contains("decode_skip_special")) {
            CHECK(escaped(tok->decode(ids, true)) == escaped(c["decode_skip_special"].get<std::string>()));
            ++decoded;
        }
    }
    CHECK(decoded >= 15);
    for (const auto& c : golden["pairs"]) {
        const std::string a = c["text"].get<std::string>(), b = c["text_pair"].get<std::string>();
        INFO("deberta_spm: pair " << escaped(a) << ", " << escaped(b));
        std::vector<int32_t> ids, types;
        tok->encode_with_types(a, &b, true, ids, types);
        CHECK(ids == c["ids"].get<std::vector<int32_t>>());
        CHECK(types == c["token_type_ids"].get<std::vector<int32_t>>());
    }
}

TEST_CASE("spm.model follows do_lower_case and split_by_punct, and appends a missing [MASK]", "[encoder]") {
    const std::string dir = test_util::temp_dir();
    cai::write_file_atomic(dir + "/spm.model", cai::read_file("tests/data/encoders/deberta_spm/spm.model"));
    cai::write_file_atomic(dir + "/tokenizer_config.json", R"({"do_lower_case": true, "split_by_punct": true})");
    auto plain = cai::tokenizer::load("tests/data/encoders/deberta_spm");
    auto options = cai::tokenizer::load(dir);
    CHECK(options->encode("HELLO World", false) == plain->encode("hello world", false));
    CHECK(plain->encode("HELLO World", false) != plain->encode("hello world", false));
    // split_by_punct: each punctuation character is a word of its own, with its own "▁".
    CHECK(options->encode("a,b", false) == plain->encode("a , b", false));
    CHECK(plain->encode("a,b", false) != plain->encode("a , b", false));
    // No added_tokens.json: DebertaV2Tokenizer's default mask_token is appended after the pieces.
    CHECK(options->piece_to_id("[MASK]") == plain->piece_to_id("[MASK]"));
    CHECK(options->vocab_size() == plain->vocab_size());
}

TEST_CASE("a broken spm.model is an error naming the file", "[encoder]") {
    const std::string dir = test_util::temp_dir();
    cai::write_file_atomic(dir + "/spm.model", std::string("\x0a\xff\xff\xff", 4));
    CHECK_THROWS_WITH(cai::tokenizer::load(dir), Catch::Contains("spm.model"));
    CHECK(cai::tokenizer::has_files(dir));
    CHECK_FALSE(cai::tokenizer::has_files(dir + "/nothing"));
}

TEST_CASE("WordPiece splits greedily and gives one unk for an unsplittable word", "[encoder]") {
    cai::tok::wordpiece_model wp;
    int32_t id = 0;
    for (const char* p : {"[UNK]", "un", "##aff", "##able", "a", "##ff"}) wp.add_piece(p, id++);
    wp.unk_id = 0;
    std::vector<int32_t> out;
    wp.encode_word("unaffable", out);
    CHECK(out == std::vector<int32_t>{1, 2, 3});
    out.clear();
    wp.encode_word("unaffablez", out);  // no piece for "z": the whole word is unk
    CHECK(out == std::vector<int32_t>{0});
    out.clear();
    wp.max_input_chars_per_word = 3;
    wp.encode_word("affable", out);
    CHECK(out == std::vector<int32_t>{0});
}

TEST_CASE("BertNormalizer cleans, pads CJK, strips accents and lowercases", "[encoder]") {
    cai::tok::bert_normalizer_options o;
    CHECK(cai::tok::bert_normalize("Ça\tVA\x01 你好", o) == "ca va  你  好 ");
    o.lowercase = false;
    o.strip_accents = -1;  // follows lowercase: kept
    CHECK(cai::tok::bert_normalize("Ça", o) == "Ça");
    CHECK(cai::tok::lowercase("ÀΣ") == "àσ");  // per character, no final-sigma context
}

TEST_CASE("a pair needs a pair template", "[encoder]") {
    auto tok = cai::tokenizer::load("tests/data/tokenizers/llama");
    std::vector<int32_t> ids, types;
    std::string b = "b";
    CHECK_THROWS_WITH(tok->encode_with_types("a", &b, true, ids, types), Catch::Contains("pair template"));
}

// Encoder tokenizers against Hugging Face's tokenizers (golden data made by
// tests/data/encoders/make_tokenizers.js): WordPiece with BertNormalizer and
// BertPreTokenizer, RoBERTa's byte-level BPE with RobertaProcessing, and a
// DeBERTa-v3 Unigram with sentencepiece's precompiled normalization table;
// single texts and (text, text_pair) pairs with their token_type_ids.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "core/fs.h"
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

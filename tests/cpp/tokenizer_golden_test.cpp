// Golden ids and decodes from Hugging Face's tokenizers (see
// tests/data/tokenizers/README.md) for byte-level BPE (Qwen2, GPT-2 style)
// and sentencepiece (Llama legacy / non-legacy / eos / unigram, Gemma).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include "core/fs.h"
#include "tokenizer/tokenizer.h"

using json = nlohmann::json;

namespace {

std::string escaped(const std::string& s) { return json(s).dump(); }

void check_directory(const std::string& name) {
    const std::string dir = "tests/data/tokenizers/" + name;
    json golden = json::parse(cai::read_file(dir + "/golden.json"));
    auto tok = cai::tokenizer::load(dir);
    CHECK(tok->vocab_size() == golden["vocab_size"].get<int>());
    auto id_or = [](const json& v) { return v.is_null() ? -1 : v.get<int>(); };
    CHECK(tok->bos_id == id_or(golden["bos_id"]));
    CHECK(tok->eos_id == id_or(golden["eos_id"]));
    CHECK(tok->pad_id == id_or(golden["pad_id"]));
    for (const auto& c : golden["cases"]) {
        const std::string text = c["text"].get<std::string>();
        INFO(name << ": text " << escaped(text));
        auto ids = c["ids"].get<std::vector<int32_t>>();
        auto ids_plain = c["ids_no_special"].get<std::vector<int32_t>>();
        CHECK(tok->encode(text, true) == ids);
        CHECK(tok->encode(text, false) == ids_plain);
        CHECK(escaped(tok->decode(ids, false)) == escaped(c["decode"].get<std::string>()));
        CHECK(escaped(tok->decode(ids, true)) == escaped(c["decode_skip_special"].get<std::string>()));
    }
    for (const auto& c : golden["partial_decodes"]) {
        INFO(name << ": decode of " << c["ids"].dump());
        CHECK(escaped(tok->decode(c["ids"].get<std::vector<int32_t>>(), false)) == escaped(c["decode"].get<std::string>()));
    }
}

}  // namespace

TEST_CASE("qwen2-style byte-level BPE matches Hugging Face") { check_directory("qwen2"); }
TEST_CASE("gpt2-style byte-level BPE matches Hugging Face") { check_directory("gpt2"); }
TEST_CASE("llama sentencepiece (legacy) matches Hugging Face") { check_directory("llama"); }
TEST_CASE("llama sentencepiece (legacy=false) matches Hugging Face") { check_directory("llama_nonlegacy"); }
TEST_CASE("llama sentencepiece with add_eos_token matches Hugging Face") { check_directory("llama_eos"); }
TEST_CASE("llama sentencepiece unigram matches Hugging Face") { check_directory("llama_unigram"); }
TEST_CASE("gemma sentencepiece matches Hugging Face") { check_directory("gemma"); }

TEST_CASE("batch encode equals one-by-one encode for every thread count") {
    auto tok = cai::tokenizer::load("tests/data/tokenizers/qwen2");
    json golden = json::parse(cai::read_file("tests/data/tokenizers/qwen2/golden.json"));
    std::vector<std::string> texts;
    for (const auto& c : golden["cases"]) texts.push_back(c["text"].get<std::string>());
    std::vector<std::vector<int32_t>> expected;
    for (const auto& t : texts) expected.push_back(tok->encode(t, true));
    for (int threads : {1, 2, 3, 0}) CHECK(tok->encode_batch(texts, true, threads) == expected);
}

TEST_CASE("converted llama tokenizer.json (BPE, byte fallback) matches Hugging Face") { check_directory("llama_json"); }
TEST_CASE("converted llama tokenizer.json (Unigram) matches Hugging Face") { check_directory("llama_unigram_json"); }

TEST_CASE("unsupported tokenizer.json components are errors naming them") {
    char tmpl[] = "/tmp/cai_tok_XXXXXX";
    std::string dir = mkdtemp(tmpl);
    auto write = [&](const std::string& body) { cai::write_file_atomic(dir + "/tokenizer.json", body); };
    auto message = [&] {
        try {
            cai::tokenizer::load(dir);
        } catch (const std::exception& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    write(R"({"model": {"type": "WordLevel", "vocab": {}}})");
    CHECK_THAT(message(), Catch::Contains("tokenizer.json: model.type \"WordLevel\" is not supported (supported: BPE, Unigram, WordPiece)"));
    write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "Nmt"}})");
    CHECK_THAT(message(), Catch::Contains("normalizer.type \"Nmt\" is not supported"));
    write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
              "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits"}]}})");
    CHECK_THAT(message(), Catch::Contains("pre_tokenizer.pretokenizers[0].type \"Digits\" is not supported"));
    write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})");
    CHECK_THAT(message(), Catch::Contains("model.merges[0]"));
    write("{not json");
    CHECK_THAT(message(), Catch::Contains("tokenizer.json: not valid JSON"));
    std::remove((dir + "/tokenizer.json").c_str());
    cai::write_file_atomic(dir + "/tokenizer.model", "not a model");
    CHECK_THAT(message(), Catch::Contains("tokenizer.model"));
    std::remove((dir + "/tokenizer.model").c_str());
    CHECK_THAT(message(), Catch::Contains("has none of tokenizer.json, tokenizer.model or spm.model"));
    ::rmdir(dir.c_str());
}

TEST_CASE("a Llama config with add_prefix_space re-converts tokenizer.model, as transformers does") {
    char tmpl[] = "/tmp/cai_tok_XXXXXX";
    std::string dir = mkdtemp(tmpl);
    const std::string src = "tests/data/tokenizers/llama";
    cai::write_file_atomic(dir + "/tokenizer.model", cai::read_file(src + "/tokenizer.model"));
    json config = json::parse(cai::read_file(src + "/tokenizer_config.json"));
    config["add_prefix_space"] = true;
    cai::write_file_atomic(dir + "/tokenizer_config.json", config.dump());
    cai::write_file_atomic(dir + "/tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
    auto tok = cai::tokenizer::load(dir);
    CHECK(tok->kind == "spm");
    json golden = json::parse(cai::read_file(src + "/golden.json"));
    for (const auto& c : golden["cases"])
        CHECK(tok->encode(c["text"].get<std::string>(), true) == c["ids"].get<std::vector<int32_t>>());
    for (const char* f : {"/tokenizer.model", "/tokenizer_config.json", "/tokenizer.json"}) std::remove((dir + f).c_str());
    ::rmdir(dir.c_str());
}

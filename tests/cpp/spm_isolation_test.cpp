// sentencepiece and libtorch in one process: train a tiny sentencepiece
// model, encode with it, and run a libtorch op. Without the isolated,
// deep-bound libcai_spm.so this process would crash before main or abort
// on a protobuf version check (see DESIGN.md).
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "tokenizer/spm.h"

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/cai_spm_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

}  // namespace

TEST_CASE("sentencepiece trains and encodes in a process that uses libtorch") {
    at::Tensor a = at::ones({4, 4});
    REQUIRE(at::mm(a, a).sum().item<float>() == Approx(64.0f));

    std::string dir = temp_dir();
    std::string corpus = dir + "/corpus.txt";
    {
        std::ofstream out(corpus);
        for (int i = 0; i < 200; ++i)
            out << "the cat sat on the mat number " << i << " and the dog ran to the park\n";
    }
    cai::spm_model::train("--input=" + corpus + " --model_prefix=" + dir + "/m --vocab_size=300" +
                          " --model_type=bpe --byte_fallback=true --minloglevel=2");
    auto spm = cai::spm_model::load(dir + "/m.model");
    REQUIRE(spm->piece_size() == 300);

    std::vector<int32_t> ids = spm->encode("the cat sat on the mat");
    REQUIRE(!ids.empty());
    REQUIRE(spm->decode(ids) == "the cat sat on the mat");
    // byte fallback: a character the corpus never had still round-trips
    REQUIRE(spm->decode(spm->encode("café ☕")) == "café ☕");

    // libtorch still works after sentencepiece ran
    at::Tensor t = at::tensor(std::vector<float>(ids.begin(), ids.end()));
    REQUIRE(t.numel() == static_cast<int64_t>(ids.size()));
    REQUIRE(at::matmul(at::eye(3), at::ones({3})).sum().item<float>() == Approx(3.0f));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("sentencepiece errors name the file") {
    REQUIRE_THROWS_WITH(cai::spm_model::load("/nonexistent/tokenizer.model"),
                        Catch::Contains("/nonexistent/tokenizer.model"));
    REQUIRE_THROWS_WITH(cai::spm_model::from_bytes("not a model", "x/tokenizer.model"),
                        Catch::Contains("x/tokenizer.model: not a valid sentencepiece model"));
}

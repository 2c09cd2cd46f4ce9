// runtime/model/safetensors: round trips and every malformed-file error.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <stdlib.h>

#include <string>

#include "core/error.h"
#include "core/fs.h"
#include "model/safetensors.h"

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/cai_safetensors_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

// A file from a header text and a data section, as the format lays them out.
std::string raw_file(const std::string& header, const std::string& data) {
    std::string out;
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.push_back(char((n >> (8 * i)) & 0xff));
    return out + header + data;
}

std::string error_of(const std::string& path) {
    try {
        cai::safetensors_file f(path);
    } catch (const cai::error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("safetensors: F32, BF16 and F16 round trip with metadata") {
    std::string dir = temp_dir();
    std::string path = cai::path_join(dir, "t.safetensors");
    at::Tensor a = at::arange(12, at::kFloat).view({3, 4}) / 7.0;
    at::Tensor b = at::tensor({1.5f, -2.25f, 3.0f}).to(at::kBFloat16);
    at::Tensor c = at::tensor({0.5f, 65504.0f}).to(at::kHalf);
    at::Tensor empty = at::zeros({0, 3}, at::kFloat);
    cai::save_safetensors(path, {{"a", a}, {"b", b}, {"c", c}, {"empty", empty}}, {{"format", "pt"}});

    cai::safetensors_file f(path);
    REQUIRE(f.names() == std::vector<std::string>{"a", "b", "c", "empty"});
    REQUIRE(f.metadata().at("format") == "pt");
    REQUIRE(f.entry("a").dtype == "F32");
    REQUIRE(f.entry("b").dtype == "BF16");
    REQUIRE(f.entry("c").dtype == "F16");
    REQUIRE(f.entry("a").shape == std::vector<int64_t>{3, 4});
    REQUIRE(at::equal(f.load("a"), a));
    REQUIRE(at::equal(f.load("b"), b));
    REQUIRE(at::equal(f.load("c"), c));
    REQUIRE(f.load("empty").sizes() == empty.sizes());
    // Conversion on load: BF16 values are exact in F32.
    REQUIRE(at::equal(f.load("b", at::kFloat), at::tensor({1.5f, -2.25f, 3.0f})));

    // The header is padded so the data section starts 8-byte aligned.
    std::string bytes = cai::read_file(path);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | (unsigned char)bytes[i];
    REQUIRE((8 + header_len) % 8 == 0);
    REQUIRE(bytes.size() == 8 + header_len + 12 * 4 + 3 * 2 + 2 * 2);
}

TEST_CASE("safetensors: a file written by hand in the reference layout reads back") {
    std::string dir = temp_dir();
    std::string path = cai::path_join(dir, "hand.safetensors");
    float values[2] = {1.0f, -3.5f};
    std::string data(reinterpret_cast<const char*>(values), sizeof values);
    cai::write_file_atomic(path, raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data));
    cai::safetensors_file f(path);
    REQUIRE(at::equal(f.load("x"), at::tensor({1.0f, -3.5f})));
    REQUIRE_THROWS_WITH(f.load("y"), Catch::Contains("no tensor named \"y\""));
}

TEST_CASE("safetensors: malformed files are errors naming the file and tensor") {
    std::string dir = temp_dir();
    std::string path = cai::path_join(dir, "bad.safetensors");
    auto write = [&](const std::string& content) { cai::write_file_atomic(path, content); };
    std::string eight(8, '\0');

    write("abc");
    REQUIRE_THAT(error_of(path), Catch::Contains("8-byte header length is missing"));

    write(raw_file("{}", "").substr(0, 8) + "{");  // header length 2, one byte present
    REQUIRE_THAT(error_of(path), Catch::Contains("exceeds the file"));

    write(raw_file("{nope", ""));
    REQUIRE_THAT(error_of(path), Catch::Contains("not valid JSON"));

    // Truncated: the header promises 8 bytes of data, the file holds 4.
    write(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(4, '\0')));
    REQUIRE_THAT(error_of(path), Catch::Contains("tensor \"w\"") && Catch::Contains("truncated"));

    // Size inconsistent with shape and dtype.
    write(raw_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight));
    REQUIRE_THAT(error_of(path), Catch::Contains("tensor \"w\"") && Catch::Contains("need 12"));

    write(raw_file(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", eight));
    REQUIRE_THAT(error_of(path), Catch::Contains("tensor \"w\"") && Catch::Contains("unsupported dtype \"Q4\""));

    write(raw_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight));
    REQUIRE_THAT(error_of(path), Catch::Contains("tensor \"w\"") && Catch::Contains("shape"));

    write(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight));
    REQUIRE_THAT(error_of(path), Catch::Contains("end before they begin"));

    write(raw_file(R"({"w":{"dtype":"F32","shape":[2]}})", eight));
    REQUIRE_THAT(error_of(path), Catch::Contains("data_offsets"));

    write(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                   eight));
    REQUIRE_THAT(error_of(path), Catch::Contains("\"a\" and \"b\" overlap"));

    write(raw_file(R"({"__metadata__":{"k":1}})", ""));
    REQUIRE_THAT(error_of(path), Catch::Contains("__metadata__"));

    REQUIRE_THAT(error_of(cai::path_join(dir, "missing.safetensors")), Catch::Contains("cannot open"));
}

TEST_CASE("safetensors: the writer refuses duplicate names") {
    std::string dir = temp_dir();
    at::Tensor t = at::zeros({2});
    REQUIRE_THROWS_WITH(cai::save_safetensors(cai::path_join(dir, "d.safetensors"), {{"a", t}, {"a", t}}),
                        Catch::Contains("appears twice"));
}

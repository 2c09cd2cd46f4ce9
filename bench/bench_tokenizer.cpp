// Tokenizer throughput: tokens/s of encode on one thread, of encode_batch on
// all cores, and (baseline) of sentencepiece's own encoder on the same text.
//   build/bench_tokenizer [tokenizer dir] [megabytes of text]
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/fs.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    std::string dir = argc > 1 ? argv[1] : "tests/data/tokenizers/llama";
    double megabytes = argc > 2 ? std::stod(argv[2]) : 2.0;
    auto tok = cai::tokenizer::load(dir);
    std::string corpus = cai::read_file("tests/data/tokenizers/corpus.txt");
    std::vector<std::string> lines;
    size_t total = 0;
    while (total < megabytes * 1e6) {
        size_t start = 0;
        for (size_t nl; (nl = corpus.find('\n', start)) != std::string::npos; start = nl + 1) {
            lines.push_back(corpus.substr(start, nl - start) + " emoji 👍🏽 and café " + std::to_string(lines.size()));
            total += lines.back().size();
        }
    }
    std::printf("tokenizer %s (%s), %zu texts, %.1f MB\n", dir.c_str(), tok->kind.c_str(), lines.size(), total / 1e6);

    auto t0 = std::chrono::steady_clock::now();
    size_t tokens = 0;
    for (const auto& l : lines) tokens += tok->encode(l, false).size();
    double single = seconds_since(t0);
    std::printf("encode, 1 thread:        %10.0f tokens/s  %6.1f MB/s\n", tokens / single, total / 1e6 / single);

    t0 = std::chrono::steady_clock::now();
    auto batch = tok->encode_batch(lines, false, 0);
    double batched = seconds_since(t0);
    std::printf("encode_batch, all cores: %10.0f tokens/s  (%.2fx one thread)\n", tokens / batched, single / batched);

    if (tok->kind == "spm") {
        auto spm = cai::spm_model::load(cai::path_join(dir, "tokenizer.model"));
        t0 = std::chrono::steady_clock::now();
        size_t spm_tokens = 0;
        for (const auto& l : lines) spm_tokens += spm->encode(l).size();
        double baseline = seconds_since(t0);
        std::printf("sentencepiece, 1 thread: %10.0f tokens/s  (ours is %.2fx sentencepiece)\n",
                    spm_tokens / baseline, baseline / single * double(tokens) / double(spm_tokens));
    }
    return 0;
}

// The generation engine on a CAI-shaped workload: every prompt is a shared
// preamble (~400 tokens: constitution text, few-shot examples) followed by
// its own instruction (20-60 tokens); answers are sampled (temperature 1)
// and end on EOS at varied lengths (a set of EOS ids sized for a mean answer
// length, capped at max_new_tokens), with stop strings searched throughout.
// Three ways, alternated, same process, same prompts and seeds:
//   fixed      the earlier engine: batches of batch_size prompts, each batch as
//              long as its longest answer, every prompt prefilled whole
//   continuous continuous batching, prefix_cache = false
//   prefix     continuous batching with shared prefix blocks (the default)
// and checks that all three give the same tokens. Prints the median seconds of
// each and the ratios to "fixed".
//
//   build/bench_generate [prompts=64] [rounds=3] [batch_size=16] [mean_answer=96] [model=25m|100m]
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/rng.h"
#include "generate/generate.h"
#include "machine.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "tokenizer/tokenizer.h"

namespace {

// Random Llamas with the 700-piece sentencepiece vocabulary of tests/data/tokenizers/llama, so
// that stop strings are decoded and searched as in a real run.
const char* config_25m = R"({"model_type":"llama","vocab_size":700,"hidden_size":512,"intermediate_size":1536,
  "num_hidden_layers":8,"num_attention_heads":8,"num_key_value_heads":8,"max_position_embeddings":2048})";
const char* config_100m = R"({"model_type":"llama","vocab_size":700,"hidden_size":768,"intermediate_size":2048,
  "num_hidden_layers":16,"num_attention_heads":12,"num_key_value_heads":4,"max_position_embeddings":2048})";

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    bench::use_openblas_avx512_kernels(argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines as they come, also into a pipe
    const int64_t n_prompts = argc > 1 ? std::atoll(argv[1]) : 64;
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
    const int64_t batch_size = argc > 3 ? std::atoll(argv[3]) : 16;
    const int64_t mean_answer = argc > 4 ? std::atoll(argv[4]) : 96;
    const std::string size = argc > 5 ? argv[5] : "25m";
    bench::print_machine();

    cai::model_config c = cai::parse_model_config(size == "100m" ? config_100m : config_25m);
    auto m = cai::model::from_tensors(c, cai::random_model_tensors(c, 1), at::kFloat, size);
    m->tok = cai::tokenizer::load("tests/data/tokenizers/llama");
    // EOS: enough ids that a near-uniform draw ends an answer after mean_answer tokens on average.
    const int64_t eos_count = std::max<int64_t>(1, c.vocab_size / mean_answer);
    m->eos_ids.clear();
    for (int64_t i = 0; i < eos_count; ++i) m->eos_ids.push_back(c.vocab_size - 1 - i);

    cai::rng r(7);
    std::vector<int32_t> preamble;
    for (int i = 0; i < 400; ++i) preamble.push_back((int32_t)r.integer(3, c.vocab_size - eos_count - 1));
    std::vector<std::vector<int32_t>> prompts;
    int64_t prompt_tokens = 0;
    for (int64_t p = 0; p < n_prompts; ++p) {
        std::vector<int32_t> ids = preamble;
        for (int64_t i = 0, n = r.integer(20, 60); i < n; ++i)
            ids.push_back((int32_t)r.integer(3, c.vocab_size - eos_count - 1));
        prompt_tokens += (int64_t)ids.size();
        prompts.push_back(std::move(ids));
    }

    cai::generate_options o;
    o.max_new_tokens = 4 * mean_answer;
    o.sampling.temperature = 1.0;
    o.seed = 3;
    o.batch_size = batch_size;
    o.stop = {"\n\nUser:", "###"};
    o.show_progress = false;

    const char* names[] = {"fixed", "continuous", "prefix"};
    std::vector<double> times[3];
    std::vector<std::vector<int32_t>> reference;
    int64_t generated = 0, differing[3] = {0, 0, 0};
    std::printf("model %s (%.1fM parameters, fp32), %lld prompts of %lld tokens on average (400 shared), "
                "batch_size %lld, answers: mean ~%lld tokens, at most %lld\n",
                size.c_str(), m->parameter_count() / 1e6, (long long)n_prompts, (long long)(prompt_tokens / n_prompts),
                (long long)batch_size, (long long)mean_answer, (long long)o.max_new_tokens);
    for (int round = 0; round < rounds; ++round) {
        for (int way = 0; way < 3; ++way) {
            o.continuous = way > 0;
            o.prefix_cache = way == 2;
            m->generation_state.reset();  // no prefix kept from an earlier round
            auto t0 = std::chrono::steady_clock::now();
            std::vector<cai::generation> out = cai::generate(*m, prompts, o);
            times[way].push_back(bench::seconds_since(t0));
            if (reference.empty()) {
                for (const auto& g : out) {
                    reference.push_back(g.tokens);
                    generated += (int64_t)g.tokens.size();
                }
            } else {
                for (size_t i = 0; i < out.size(); ++i) differing[way] += out[i].tokens != reference[i];
            }
        }
    }
    std::printf("answers: %lld tokens in all (mean %.1f); runs alternated, %d rounds, median seconds\n",
                (long long)generated, (double)generated / n_prompts, rounds);
    const double base = median(times[0]);
    for (int way = 0; way < 3; ++way) {
        const double t = median(times[way]);
        std::printf("  %-11s %8.2f s  %7.0f generated tok/s  %5.2fx fixed  (answers differing from the first run: %lld)\n",
                    names[way], t, generated / t, base / t, (long long)differing[way]);
    }
    return 0;
}

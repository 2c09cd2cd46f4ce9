// runtime/generate: sampler tables and statistics, batched generation
// (cache, batch-size invariance, stop strings, EOS, length), scoring.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "generate/generate.h"
#include "generate/sampler.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "tokenizer/tokenizer.h"
#include "fixtures.h"

namespace {

// The extended character tokenizer: "ab" is one token (39), E N D and x0..x4 are tokens too.
struct char_tokenizer : fixtures::char_tokenizer {
    char_tokenizer() : fixtures::char_tokenizer(/*extended=*/true) {}
};
const char* llama_json = fixtures::tiny_llama_json(40);
const char* gemma2_json = R"({"model_type":"gemma2","vocab_size":40,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"sliding_window":4})";

std::shared_ptr<cai::model> make(const char* json, double std = 0.5) {
    auto m = fixtures::char_model(json, 11, std);  // vocab 40: the extended tokenizer
    m->eos_ids = {};  // tests choose their own EOS
    return m;
}

std::vector<std::vector<int32_t>> encode_all(const cai::model& m, const std::vector<std::string>& texts) {
    std::vector<std::vector<int32_t>> out;
    for (const auto& t : texts) out.push_back(m.tok->encode(t, true));
    return out;
}

const std::vector<std::string> prompts = {"hello there", "a", "the quick brown fox jumps", "xyz.", "END of it"};

std::vector<float> log_probs(std::vector<double> p) {
    std::vector<float> out;
    for (double x : p) out.push_back((float)std::log(x));
    return out;
}

void require_distribution(const std::vector<double>& got, const std::vector<double>& expect) {
    REQUIRE(got.size() == expect.size());
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(expect[i]).margin(1e-6));
}

}  // namespace

TEST_CASE("sampler: hand-worked distributions") {
    std::vector<float> l = log_probs({0.5, 0.3, 0.15, 0.05});
    cai::sampling_options o;
    o.temperature = 1;
    require_distribution(cai::sampling_distribution(l.data(), 4, o, {}), {0.5, 0.3, 0.15, 0.05});
    o.top_k = 3;
    require_distribution(cai::sampling_distribution(l.data(), 4, o, {}), {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0});
    o.top_k = 0;
    o.top_p = 0.75;  // 0.5 < 0.75 so token 1 joins; the mass before token 2 (0.8) reaches 0.75
    require_distribution(cai::sampling_distribution(l.data(), 4, o, {}), {0.625, 0.375, 0, 0});
    o.top_p = 1;
    o.min_p = 0.5;  // threshold 0.25
    require_distribution(cai::sampling_distribution(l.data(), 4, o, {}), {0.625, 0.375, 0, 0});
    o.min_p = 0;
    o.temperature = 2;  // p^(1/2), renormalised
    double s = std::sqrt(0.5) + std::sqrt(0.3) + std::sqrt(0.15) + std::sqrt(0.05);
    require_distribution(cai::sampling_distribution(l.data(), 4, o, {}),
                         {std::sqrt(0.5) / s, std::sqrt(0.3) / s, std::sqrt(0.15) / s, std::sqrt(0.05) / s});
    o.temperature = 1;
    o.repetition_penalty = 2;  // negative logit of token 0 doubles: 0.5 -> 0.25 before renormalising
    require_distribution(cai::sampling_distribution(l.data(), 4, o, {0, 0}),
                         {0.25 / 0.75, 0.3 / 0.75, 0.15 / 0.75, 0.05 / 0.75});
    std::vector<float> pos = {2.0f, 1.0f};  // positive logits are divided: 2 -> 1, a tie
    require_distribution(cai::sampling_distribution(pos.data(), 2, o, {0}), {0.5, 0.5});
    o.temperature = 0;
    require_distribution(cai::sampling_distribution(l.data(), 4, o, {}), {1, 0, 0, 0});
    o.top_p = 0;
    REQUIRE_THROWS_WITH(o.check(), Catch::Contains("top_p"));
}

TEST_CASE("sampler: draws follow the distribution") {
    std::vector<float> l = log_probs({0.5, 0.3, 0.15, 0.05});
    cai::sampling_options o;
    o.temperature = 1;
    o.top_k = 3;
    cai::rng r(123);
    const int n = 40000;
    int counts[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; ++i) counts[cai::sample_token(l.data(), 4, o, {}, r)]++;
    double expect[4] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0};
    for (int i = 0; i < 4; ++i) {
        double sd = std::sqrt(n * expect[i] * (1 - expect[i])) + 1e-9;
        REQUIRE(std::abs(counts[i] - n * expect[i]) <= 4 * sd);
    }
    REQUIRE(counts[3] == 0);
}

TEST_CASE("generate: greedy decoding with the cache equals argmax over full forwards") {
    auto m = make(gemma2_json);
    cai::generate_options o;
    o.max_new_tokens = 8;
    o.show_progress = false;
    auto ids = encode_all(*m, prompts);
    auto out = cai::generate(*m, ids, o);
    for (size_t i = 0; i < ids.size(); ++i) {
        std::vector<int64_t> seq(ids[i].begin(), ids[i].end());
        std::vector<int32_t> expect;
        for (int step = 0; step < 8; ++step) {
            at::Tensor logits = m->forward(at::tensor(seq, at::kLong).view({1, -1}))[0][-1];
            int32_t next = (int32_t)logits.argmax().item<int64_t>();
            expect.push_back(next);
            seq.push_back(next);
        }
        REQUIRE(out[i].tokens == expect);
        REQUIRE(out[i].finish == "length");
        REQUIRE(out[i].text == m->tok->decode(expect, true));
    }
}

TEST_CASE("generate: a prompt's sample depends on seed and index, never on batch size") {
    auto m = make(llama_json, 0.3);
    cai::generate_options o;
    o.max_new_tokens = 12;
    o.show_progress = false;
    o.seed = 7;
    o.sampling.temperature = 1.0;
    o.sampling.top_p = 0.95;
    auto ids = encode_all(*m, prompts);
    o.batch_size = 5;
    auto all = cai::generate(*m, ids, o);
    for (int64_t bs : {1, 2, 3}) {
        o.batch_size = bs;
        auto again = cai::generate(*m, ids, o);
        for (size_t i = 0; i < ids.size(); ++i) REQUIRE(again[i].tokens == all[i].tokens);
    }
    // Same prompt at the same index alone gives the same sample; another seed differs somewhere.
    auto first = cai::generate(*m, {ids[0]}, o);
    REQUIRE(first[0].tokens == all[0].tokens);
    o.seed = 8;
    auto other = cai::generate(*m, ids, o);
    bool differs = false;
    for (size_t i = 0; i < ids.size(); ++i) differs = differs || other[i].tokens != all[i].tokens;
    REQUIRE(differs);
}

TEST_CASE("generate: stop strings and EOS end each sequence separately") {
    auto m = make(llama_json, 0.3);
    cai::generate_options o;
    o.max_new_tokens = 10;
    o.show_progress = false;
    auto ids = encode_all(*m, {prompts[0], prompts[2]});
    auto free_run = cai::generate(*m, ids, o);
    const std::string text0 = free_run[0].text;
    REQUIRE(text0.size() >= 4);

    // A stop string taken from the middle of row 0's text: row 0 is cut before it.
    std::string stop = text0.substr(2, 2);
    o.stop = {stop};
    auto stopped = cai::generate(*m, ids, o);
    REQUIRE(stopped[0].finish == "stop");
    REQUIRE(stopped[0].text == text0.substr(0, text0.find(stop)));
    REQUIRE(m->tok->decode(stopped[0].tokens, true).find(stop) != std::string::npos);
    bool row1_has_stop = free_run[1].text.find(stop) != std::string::npos;
    if (!row1_has_stop) REQUIRE(stopped[1].tokens == free_run[1].tokens);

    // EOS: the third token row 0 would produce ends row 0 there; row 1 behaves as alone.
    o.stop = {};
    int32_t eos = free_run[0].tokens[2];
    m->eos_ids = {eos};
    auto with_eos = cai::generate(*m, ids, o);
    REQUIRE(with_eos[0].finish == "eos");
    std::vector<int32_t> prefix(free_run[0].tokens.begin(), free_run[0].tokens.begin() + 2);
    if (free_run[0].tokens[0] != eos && free_run[0].tokens[1] != eos) REQUIRE(with_eos[0].tokens == prefix);
    auto row1_alone = cai::generate(*m, {ids[0], ids[1]}, o);
    REQUIRE(with_eos[1].tokens == row1_alone[1].tokens);
    for (int32_t t : with_eos[1].tokens) REQUIRE(t != eos);

    o.max_new_tokens = 0;
    auto none = cai::generate(*m, ids, o);
    REQUIRE(none[0].finish == "length");
    REQUIRE(none[0].tokens.empty());
    REQUIRE_THROWS_WITH(cai::generate(*m, {{}}, o), Catch::Contains("prompt 1 has no tokens"));
}

TEST_CASE("logprobs: tokenized pairs keep the boundary and sums equal the forward") {
    auto m = make(llama_json, 0.3);
    char_tokenizer tok;
    // Jointly "xab" would encode as x + ab; the pair keeps the prompt's "a" and scores "b" alone.
    cai::pair_ids pair = cai::tokenize_pair(tok, "xa", "b");
    REQUIRE(tok.encode("xab", true) == std::vector<int32_t>{1, 26, 39});
    REQUIRE(pair.ids == std::vector<int32_t>{1, 26, 3, 4});
    REQUIRE(pair.completion_start == 3);

    std::vector<std::vector<int32_t>> p = {{1, 26, 3}, {1, 5}}, c = {{4}, {6, 7, 8}};
    auto scores = cai::score_completions(*m, p, c, 2);
    for (size_t i = 0; i < p.size(); ++i) {
        std::vector<int64_t> seq(p[i].begin(), p[i].end());
        seq.insert(seq.end(), c[i].begin(), c[i].end());
        at::Tensor logits = m->forward(at::tensor(seq, at::kLong).view({1, -1}))[0].to(at::kDouble);
        double expect = 0;
        for (size_t t = p[i].size(); t < seq.size(); ++t)
            expect += at::log_softmax(logits[t - 1], -1)[seq[t]].item<double>();
        REQUIRE(scores[i].n == (int64_t)c[i].size());
        REQUIRE(scores[i].sum == Approx(expect).margin(1e-5));
        REQUIRE(scores[i].mean == Approx(expect / c[i].size()).margin(1e-5));
    }
    auto one = cai::score_completions(*m, {p[1]}, {c[1]}, 1);
    REQUIRE(one[0].sum == Approx(scores[1].sum).margin(1e-5));
    auto empty = cai::score_completions(*m, {p[0]}, {{}}, 1);
    REQUIRE(empty[0].n == 0);
    REQUIRE(empty[0].sum == 0);
    REQUIRE_THROWS_WITH(cai::score_completions(*m, {{}}, {{4}}, 1), Catch::Contains("prompt 1 has no tokens"));
}

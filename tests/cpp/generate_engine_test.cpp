// runtime/generate: the engine. Incremental stop detection against decoding
// the whole output at every step; continuous batching and shared prefixes
// against the earlier fixed batches (same outputs for any batch size, slot
// order or sharing), slots refilled in order, KV pool limits.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "generate/generate.h"
#include "generate/stop.h"
#include "kernels/cpu.h"
#include "tokenizer/tokenizer.h"
#include "fixtures.h"
#include "model/kv_memory.h"
#include "test_util.h"

namespace {

// The step (1-based count of tokens) at which the whole output's text first
// holds a stop string and that text cut before the earliest one; 0 and "" when never.
std::pair<size_t, std::string> stop_by_whole_decode(const cai::tokenizer& tok, const std::vector<int32_t>& ids,
                                                    const std::vector<std::string>& stop) {
    for (size_t n = 1; n <= ids.size(); ++n) {
        const std::string text = tok.decode(std::vector<int32_t>(ids.begin(), ids.begin() + n), true);
        size_t best = std::string::npos;
        for (const auto& s : stop) best = std::min(best, text.find(s));
        if (best != std::string::npos) return {n, text.substr(0, best)};
    }
    return {0, ""};
}

}  // namespace

TEST_CASE("stop_search: the same step and text as decoding the whole output, stops spanning tokens") {
    // Byte-level BPE (GPT-2: byte tokens split UTF-8 characters) and sentencepiece with byte
    // fallback (Llama: leading-space stripping, <0xNN> pieces); ids drawn half from the low
    // range where the byte pieces are, so incomplete characters are frequent.
    for (const char* name : {"gpt2", "llama"}) {
        auto tok = cai::tokenizer::load(std::string("tests/data/tokenizers/") + name);
        cai::rng r(17);
        int stopped = 0, multi_token = 0;
        for (int trial = 0; trial < 150; ++trial) {
            std::vector<int32_t> ids;
            for (int i = 0; i < 40; ++i)
                ids.push_back((int32_t)(r.uniform() < 0.5 ? r.integer(0, 299) : r.integer(0, tok->vocab_size() - 1)));
            const std::string whole = tok->decode(ids, true);
            // Stop strings cut from the text (1 to 8 bytes, so many span token boundaries), plus one absent.
            std::vector<std::string> stop = {"\x01never"};
            for (int k = 0; k < 2 && whole.size() > 8; ++k) {
                const size_t len = (size_t)r.integer(1, 8), at = (size_t)r.integer(0, (int64_t)(whole.size() - len));
                stop.push_back(whole.substr(at, len));
            }
            INFO(name << " trial " << trial);
            const auto expect = stop_by_whole_decode(*tok, ids, stop);
            cai::stop_search search(*tok, stop);
            size_t got = 0;
            std::vector<int32_t> so_far;
            for (size_t n = 1; n <= ids.size() && !got; ++n) {
                so_far.push_back(ids[n - 1]);
                if (search.add(so_far)) {
                    got = n;
                } else {
                    REQUIRE(search.text() == tok->decode(so_far, true));  // the provisional text is exact
                }
            }
            REQUIRE(got == expect.first);
            if (got) {
                REQUIRE(search.text() == expect.second);
                ++stopped;
                // Did the stop string need more than the last token's text?
                const std::string last = tok->decode({ids[got - 1]}, true);
                const std::string before = tok->decode(std::vector<int32_t>(ids.begin(), ids.begin() + got - 1), true);
                for (const auto& s : stop)
                    if (before.find(s) == std::string::npos && (before + last).find(s) != std::string::npos &&
                        last.find(s) == std::string::npos)
                        ++multi_token;
            }
        }
        INFO(name << ": " << stopped << " stopped, " << multi_token << " across token boundaries");
        REQUIRE(stopped >= 100);
        REQUIRE(multi_token >= 10);
    }
}

namespace {

const char* gemma2_json = R"({"model_type":"gemma2","vocab_size":40,"hidden_size":16,"intermediate_size":24,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"sliding_window":4})";

std::shared_ptr<cai::model> engine_model(const char* json) {
    auto m = fixtures::char_model(json, 11, 0.3);  // vocab 40: the extended character tokenizer
    m->eos_ids = {};
    return m;
}

// Prompts of different lengths; most share a 23-character opening (several KV blocks of 4).
std::vector<std::vector<int32_t>> engine_prompts(const cai::model& m) {
    const std::string common = "the rules say. be kind ";
    std::vector<std::string> texts = {common + "and brief",  "hello there", common + "a",
                                      common + "and brief", common + "xyz. more words here to be long",
                                      "a",                   common,        common + "ab cd",
                                      "the rules say. no",   common + "q"};
    std::vector<std::vector<int32_t>> out;
    for (const auto& t : texts) out.push_back(m.tok->encode(t, true));
    return out;
}

cai::generate_options engine_options() {
    cai::generate_options o;
    o.max_new_tokens = 14;
    o.show_progress = false;
    o.block_size = 4;
    o.prefill_chunk = 16;
    return o;
}

std::vector<std::vector<int32_t>> tokens_of(const std::vector<cai::generation>& out) {
    std::vector<std::vector<int32_t>> t;
    for (const auto& g : out) t.push_back(g.tokens);
    return t;
}

void require_same(const std::vector<cai::generation>& a, const std::vector<cai::generation>& b) {
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        INFO("prompt " << i + 1);
        REQUIRE(a[i].tokens == b[i].tokens);
        REQUIRE(a[i].finish == b[i].finish);
        REQUIRE(a[i].text == b[i].text);
    }
}

}  // namespace

TEST_CASE("engine: outputs equal the fixed batches for any batch size, with and without shared prefixes") {
    for (const char* json : {fixtures::tiny_llama_json(40), gemma2_json}) {
        auto m = engine_model(json);
        auto prompts = engine_prompts(*m);
        for (bool sampled : {false, true}) {
            INFO((sampled ? "seeded sampling" : "greedy") << ", " << json);
            cai::generate_options o = engine_options();
            if (sampled) {
                o.sampling.temperature = 1.0;
                o.sampling.top_p = 0.9;
                o.seed = 5;
            }
            // A stop string from one free-running output and an EOS from another end some rows early.
            o.continuous = false;
            o.batch_size = 16;
            auto free_run = cai::generate(*m, prompts, o);
            size_t longest = 0;
            for (size_t i = 0; i < free_run.size(); ++i)
                if (free_run[i].text.size() > free_run[longest].text.size()) longest = i;
            REQUIRE(free_run[longest].text.size() >= 6);
            o.stop = {free_run[longest].text.substr(3, 2)};
            m->eos_ids = {free_run[(longest + 4) % free_run.size()].tokens[5]};
            auto fixed = cai::generate(*m, prompts, o);
            int ended_early = 0;
            for (const auto& g : fixed) ended_early += g.finish != "length";
            REQUIRE(ended_early >= 2);
            o.continuous = true;
            for (bool prefix : {false, true})
                for (int64_t bs : {1, 2, 3, 4, 16}) {
                    INFO("batch_size " << bs << ", prefix_cache " << prefix);
                    o.batch_size = bs;
                    o.prefix_cache = prefix;
                    m->generation_state.reset();
                    require_same(cai::generate(*m, prompts, o), fixed);
                }
            // Reversed order: each prompt keeps its index (first_index), so its sample is the same.
            for (size_t i = 0; i < prompts.size(); ++i) {
                cai::generate_options one = o;
                one.batch_size = 3;
                one.first_index = i;
                auto alone = cai::generate(*m, {prompts[i]}, one);
                REQUIRE(alone[0].tokens == fixed[i].tokens);
            }
            m->eos_ids = {};
        }
    }
}

TEST_CASE("engine: a finished row frees its slot for the next prompt at the next step, in order") {
    auto m = engine_model(fixtures::tiny_llama_json(40));
    auto prompts = engine_prompts(*m);
    cai::generate_options o = engine_options();
    o.continuous = false;
    auto free_run = cai::generate(*m, prompts, o);
    m->eos_ids = {free_run[0].tokens[2], free_run[5].tokens[1]};  // rows end at different lengths
    auto fixed = cai::generate(*m, prompts, o);
    o.continuous = true;
    o.batch_size = 3;
    cai::generate_trace trace;
    o.trace = &trace;
    auto out = cai::generate(*m, prompts, o);
    require_same(out, fixed);
    const size_t N = prompts.size();
    for (size_t p = 0; p < 3; ++p) {
        REQUIRE(trace.slot[p] == (int64_t)p);
        REQUIRE(trace.admitted_step[p] == 0);
    }
    for (size_t p = 1; p < N; ++p) REQUIRE(trace.admitted_step[p] >= trace.admitted_step[p - 1]);  // in order
    for (size_t p = 3; p < N; ++p) {
        // The slot's previous prompt finished at the step before.
        int64_t previous = -1;
        for (size_t q = 0; q < p; ++q)
            if (trace.slot[q] == trace.slot[p]) previous = (int64_t)q;
        REQUIRE(previous >= 0);
        REQUIRE(trace.admitted_step[p] == trace.finished_step[previous] + 1);
        // Slots freed at the same step go to the next prompts lowest slot first.
        if (trace.admitted_step[p] == trace.admitted_step[p - 1]) REQUIRE(trace.slot[p] > trace.slot[p - 1]);
    }
    // Rows end by EOS or length independently; each length row has max_new_tokens tokens.
    for (size_t p = 0; p < N; ++p) {
        if (out[p].finish == "length") REQUIRE((int64_t)out[p].tokens.size() == o.max_new_tokens);
        if (out[p].finish == "eos") REQUIRE((int64_t)out[p].tokens.size() < o.max_new_tokens);
    }
    REQUIRE(out[0].finish == "eos");
    REQUIRE(out[0].tokens.size() == 2);
}

TEST_CASE("engine: shared prompt prefixes are computed once, within a call and across calls") {
    auto m = engine_model(fixtures::tiny_llama_json(40));
    auto prompts = engine_prompts(*m);
    cai::generate_options o = engine_options();
    o.batch_size = 4;
    o.prefix_cache = false;
    o.kv_cache_bytes = 64 << 20;  // room for every block: nothing evicted
    auto plain = cai::generate(*m, prompts, o);
    cai::generate_trace trace;
    o.trace = &trace;
    o.prefix_cache = true;
    m->generation_state.reset();
    require_same(cai::generate(*m, prompts, o), plain);
    // Within the call: each prompt reuses the whole blocks it shares with an earlier prompt (at least
    // one prompt token is always computed).
    const int64_t bs = o.block_size;
    auto shared_blocks = [&](size_t p, size_t q) {
        size_t n = 0;
        while (n < prompts[p].size() && n < prompts[q].size() && prompts[p][n] == prompts[q][n]) ++n;
        return (int64_t)std::min<size_t>(n, prompts[p].size() - 1) / bs * bs;
    };
    int64_t expect = 0, total = 0;
    for (size_t p = 0; p < prompts.size(); ++p) {
        int64_t best = 0;
        for (size_t q = 0; q < p; ++q) best = std::max(best, shared_blocks(p, q));
        expect += best;
        total += (int64_t)prompts[p].size();
    }
    REQUIRE(expect >= 60);
    REQUIRE(trace.prompt_tokens == total);
    REQUIRE(trace.prompt_tokens_reused == expect);
    // The next call finds every whole prompt block kept from this one.
    int64_t again = 0;
    for (const auto& p : prompts) again += (int64_t)(p.size() - 1) / bs * bs;
    require_same(cai::generate(*m, prompts, o), plain);
    REQUIRE(trace.prompt_tokens_reused == again);
    // Changed weights: nothing kept is used (the keys and values would be stale).
    m->layers[0].k_proj.weight.mul_(1.5);
    auto changed = cai::generate(*m, prompts, o);
    REQUIRE(trace.prompt_tokens_reused == expect);
    o.prefix_cache = false;
    require_same(cai::generate(*m, prompts, o), changed);
}

TEST_CASE("engine: a KV pool too small for a prompt is refused with the numbers") {
    auto m = engine_model(fixtures::tiny_llama_json(40));
    auto prompts = engine_prompts(*m);
    cai::generate_options o = engine_options();
    // One KV slot of this model: 2 layers x (k, v) x 2 key/value heads x head_dim 4 x 4 bytes = 128.
    const int64_t per_token = 2 * 2 * m->config.num_kv_heads * m->config.head_dim * 4;
    o.kv_cache_bytes = per_token * 20;  // 20 slots; prompt 1 needs 33 + 14 (in blocks of 4: 48)
    REQUIRE_THROWS_WITH(cai::generate(*m, prompts, o),
                        Catch::Contains("generate: prompt 1 needs 48 KV slots (6.0 KiB: 33 prompt tokens + up to 14 new)") &&
                            Catch::Contains("KV pool holds 20 slots") && Catch::Contains("kv_cache_mb"));
    // A pool that holds one or two rows at a time still gives the same outputs (rows wait for room).
    o.kv_cache_bytes = per_token * 80;  // the longest prompt needs 72
    o.batch_size = 4;
    auto small = cai::generate(*m, prompts, o);
    o.kv_cache_bytes = 0;
    require_same(small, cai::generate(*m, prompts, o));
}

TEST_CASE("engine: the memory limit counts the weights and a container's cgroup limit") {
    auto m = engine_model(fixtures::tiny_llama_json(40));
    // weight_bytes: every float32 parameter once (this config ties no head).
    REQUIRE(m->weight_bytes() == 4 * m->parameter_count());
    // A cgroup v2 limit below physical memory is the limit; "max" is none.
    const std::string root = test_util::temp_dir();
    auto write = [&](const std::string& text) {
        std::ofstream(root + "/memory.max") << text << "\n";
    };
    write("1048576");
    cai::memory_limit limit = cai::process_memory_limit(root);
    CHECK(limit.bytes == 1048576.0);
    CHECK(limit.source.find("cgroup limit") != std::string::npos);
    write("max");
    limit = cai::process_memory_limit(root);
    CHECK(limit.bytes > 1048576.0);
    CHECK(limit.source == "this machine's memory");
    // A stated KV budget beyond what the process may use is refused before any allocation.
    auto prompts = engine_prompts(*m);
    cai::generate_options o = engine_options();
    o.kv_cache_bytes = (int64_t)1 << 60;
    REQUIRE_THROWS_WITH(cai::generate(*m, prompts, o),
                        Catch::Contains("kv_cache_mb = ") && Catch::Contains("with the model's weights") &&
                            Catch::Contains("lower kv_cache_mb"));
}

TEST_CASE("paged cache: tokens fed in chunks into scattered blocks give the full forward's logits") {
    for (bool kernels_on : {true, false})
    for (const char* json : {fixtures::tiny_llama_json(40), gemma2_json}) {
        INFO("kernels " << (kernels_on ? "on" : "off (the ATen path)") << ", " << json);
        cai::kernels::scoped_enabled kernels(kernels_on);
        auto m = engine_model(json);
        auto prompts = engine_prompts(*m);
        const std::vector<int32_t>& a = prompts[4];  // 55 tokens
        const std::vector<int32_t>& b = prompts[1];  // 12 tokens
        // Two rows over a pool of 40 blocks of 4, each row's blocks out of order and interleaved.
        const int64_t bs = 4, blocks = 40;
        cai::kv_cache cache;
        for (size_t l = 0; l < m->layers.size(); ++l) {
            // Slots nobody writes hold finite leftovers (as blocks a finished row gave back do).
            cache.k.push_back(at::randn({blocks, bs, m->config.num_kv_heads, m->config.head_dim}) * 100);
            cache.v.push_back(at::randn({blocks, bs, m->config.num_kv_heads, m->config.head_dim}) * 100);
        }
        cache.block_size = bs;
        cache.capacity = 16 * bs;
        cache.block_table = at::zeros({2, 16}, at::kLong);
        for (int64_t j = 0; j < 16; ++j) {
            cache.block_table[0][j] = 39 - 2 * j;
            cache.block_table[1][j] = (5 + 2 * j) % 40;
        }
        cache.length = {0, 0};
        std::vector<at::Tensor> got_a, got_b;
        size_t at_a = 0, at_b = 0;
        for (int64_t chunk : {1, 3, 9, 2, 12, 1, 20, 7}) {  // 9, 12, 20: suffix_attention (kernels on), the gathered plain path (off)
            const int64_t ta = std::min<int64_t>(chunk, (int64_t)(a.size() - at_a));
            const int64_t tb = std::min<int64_t>(chunk, (int64_t)(b.size() - at_b));
            const int64_t T = std::max(ta, tb);
            if (T == 0) break;
            at::Tensor ids = at::zeros({2, T}, at::kLong), mask = at::zeros({2, T}, at::kLong);
            for (int64_t t = 0; t < ta; ++t) ids[0][T - ta + t] = a[at_a + t], mask[0][T - ta + t] = 1;
            for (int64_t t = 0; t < tb; ++t) ids[1][T - tb + t] = b[at_b + t], mask[1][T - tb + t] = 1;
            at::Tensor logits = m->forward(ids, mask, &cache);  // (2, T, V)
            for (int64_t t = 0; t < ta; ++t) got_a.push_back(logits[0][T - ta + t]);
            for (int64_t t = 0; t < tb; ++t) got_b.push_back(logits[1][T - tb + t]);
            at_a += ta;
            at_b += tb;
        }
        REQUIRE(at_a == a.size());
        REQUIRE(at_b == b.size());
        auto full = [&](const std::vector<int32_t>& ids) {
            return m->forward(at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, -1}))[0];
        };
        REQUIRE(at::allclose(at::stack(got_a), full(a), 1e-4, 1e-5));
        REQUIRE(at::allclose(at::stack(got_b), full(b), 1e-4, 1e-5));
        REQUIRE(cache.length == std::vector<int64_t>{(int64_t)a.size(), (int64_t)b.size()});
    }
}

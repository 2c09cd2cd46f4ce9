// runtime/generate: the engine. Incremental stop detection against decoding
// the whole output at every step.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "core/rng.h"
#include "generate/stop.h"
#include "tokenizer/tokenizer.h"

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

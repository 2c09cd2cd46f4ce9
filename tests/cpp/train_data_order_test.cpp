// runtime/train/data_order: epoch shuffles and batches decided by the seed,
// the token budget honoured, and a sampler that resumes at a position.
#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/data_order.h"
#include "test_util.h"

namespace {

using test_util::error_of;

std::vector<int64_t> sorted_all(const cai::batch_list& batches) {
    std::vector<int64_t> all;
    for (const auto& b : batches) all.insert(all.end(), b.begin(), b.end());
    std::sort(all.begin(), all.end());
    return all;
}

std::vector<int64_t> iota(int64_t n) {
    std::vector<int64_t> v(n);
    std::iota(v.begin(), v.end(), 0);
    return v;
}

}  // namespace

TEST_CASE("epoch_permutation: a permutation fixed by (seed, epoch)") {
    auto a = cai::epoch_permutation(50, 42, 0);
    REQUIRE(a == cai::epoch_permutation(50, 42, 0));
    REQUIRE(a != cai::epoch_permutation(50, 42, 1));
    REQUIRE(a != cai::epoch_permutation(50, 43, 0));
    auto sorted = a;
    std::sort(sorted.begin(), sorted.end());
    REQUIRE(sorted == iota(50));
    REQUIRE(a != iota(50));
}

TEST_CASE("epoch_batches: fixed size cuts the permutation; no shuffle keeps file order") {
    std::vector<int64_t> lengths(10, 1);
    cai::batching o;
    o.seed = 7;
    o.batch_size = 4;
    auto batches = cai::epoch_batches(lengths, o, 0);
    REQUIRE(batches.size() == 3);
    REQUIRE(batches[2].size() == 2);
    auto perm = cai::epoch_permutation(10, 7, 0);
    REQUIRE(batches[0] == std::vector<int64_t>(perm.begin(), perm.begin() + 4));
    o.shuffle = false;
    batches = cai::epoch_batches(lengths, o, 3);
    REQUIRE(batches == cai::batch_list{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}});
}

TEST_CASE("epoch_batches: token budget packs sorted lengths under the budget") {
    // No shuffle, one pool: sorted longest first 9 8 5 4 3 3 2 1 1 (indexes below);
    // budget 12: [9] (9*2 > 12), [8] (16 > 12), [5 4] (15 > 12 for 3 rows), [3 3 2 1] (3*4 = 12), [1].
    std::vector<int64_t> lengths = {3, 9, 1, 5, 2, 8, 4, 3, 1};
    cai::batching o;
    o.shuffle = false;
    o.max_tokens = 12;
    auto batches = cai::epoch_batches(lengths, o, 0);
    REQUIRE(batches == cai::batch_list{{1}, {5}, {3, 6}, {0, 7, 4, 2}, {8}});
    // max_batch_size caps the rows.
    o.max_batch_size = 2;
    batches = cai::epoch_batches(lengths, o, 0);
    REQUIRE(batches == cai::batch_list{{1}, {5}, {3, 6}, {0, 7}, {4, 2}, {8}});
}

TEST_CASE("epoch_batches: shuffled token budget batches cover every example once, within budget") {
    std::vector<int64_t> lengths;
    for (int i = 0; i < 200; ++i) lengths.push_back(1 + (i * 37) % 61);
    cai::batching o;
    o.seed = 11;
    o.max_tokens = 128;
    o.sort_pool = 64;
    auto e0 = cai::epoch_batches(lengths, o, 0);
    REQUIRE(sorted_all(e0) == iota(200));
    for (const auto& b : e0) REQUIRE(cai::padded_tokens(lengths, b) <= 128);
    REQUIRE(e0 == cai::epoch_batches(lengths, o, 0));
    REQUIRE(e0 != cai::epoch_batches(lengths, o, 1));
}

TEST_CASE("epoch_batches: an example over the budget is an error naming it") {
    cai::batching o;
    o.max_tokens = 8;
    REQUIRE(error_of([&] { cai::epoch_batches({3, 4, 9}, o, 0); }) ==
            "batching: example 2 has 9 tokens, more than max_tokens (8); raise max_tokens or truncate the example "
            "(max_length)");
    o.batch_size = 2;
    REQUIRE(error_of([&] { cai::epoch_batches({3}, o, 0); }).find("exactly one of batch_size") != std::string::npos);
}

TEST_CASE("batch_sampler: crosses epochs and resumes from a position") {
    std::vector<int64_t> lengths;
    for (int i = 0; i < 23; ++i) lengths.push_back(1 + i % 7);
    cai::batching o;
    o.seed = 5;
    o.max_tokens = 14;
    cai::batch_sampler straight(lengths, o);
    std::vector<std::vector<int64_t>> seen;
    cai::data_position at_7;
    for (int i = 0; i < 40; ++i) {
        if (i == 7) at_7 = straight.position();
        seen.push_back(straight.next());
    }
    REQUIRE(straight.position().epoch >= 2);
    // A fresh sampler seeked to the saved position continues identically.
    cai::batch_sampler resumed(lengths, o);
    resumed.seek(at_7);
    for (int i = 7; i < 40; ++i) REQUIRE(resumed.next() == seen[i]);
    // The first epoch is exactly epoch_batches(0).
    auto e0 = cai::epoch_batches(lengths, o, 0);
    for (size_t i = 0; i < e0.size(); ++i) REQUIRE(seen[i] == e0[i]);
    REQUIRE(error_of([&] { resumed.seek({0, 1000}); }).find("was the data set changed") != std::string::npos);
}

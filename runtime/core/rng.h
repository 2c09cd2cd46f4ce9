// The runtime's one random generator: xoshiro256** seeded through
// splitmix64. Same seed, same stream, on every machine. Streams for
// independent purposes come from rng::derive(seed, key...), so a prompt's
// sample depends only on (seed, its index), never on batch composition.
#pragma once

#include <cstdint>
#include <vector>

namespace cai {

class rng {
public:
    explicit rng(uint64_t seed = 0);
    uint64_t next_u64();
    double uniform();                       // [0, 1) with 53 random bits
    int64_t integer(int64_t lo, int64_t hi);  // inclusive bounds, unbiased
    double normal();                        // standard normal
    size_t weighted_index(const std::vector<double>& weights);  // weights >= 0, sum > 0

    // A seed for a sub-stream, mixed from a parent seed and keys.
    static uint64_t derive(uint64_t seed, uint64_t key1, uint64_t key2 = 0);

private:
    uint64_t s_[4];
    bool has_spare_ = false;
    double spare_ = 0;
};

}  // namespace cai

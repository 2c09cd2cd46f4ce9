#include "core/rng.h"

#include <cmath>

#include "core/error.h"

namespace cai {
namespace {

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

rng::rng(uint64_t seed) {
    uint64_t state = seed;
    for (auto& s : s_) s = splitmix64(state);
}

uint64_t rng::next_u64() {
    uint64_t result = rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

double rng::uniform() { return (next_u64() >> 11) * 0x1.0p-53; }

int64_t rng::integer(int64_t lo, int64_t hi) {
    if (hi < lo) fail("rng: integer range is empty: [", lo, ", ", hi, "]");
    uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;
    if (span == 0) return static_cast<int64_t>(next_u64());  // full 64-bit range
    uint64_t limit = UINT64_MAX - UINT64_MAX % span;
    uint64_t x;
    do x = next_u64(); while (x >= limit);
    return lo + static_cast<int64_t>(x % span);
}

double rng::normal() {
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    double u, v, s;
    do {
        u = 2 * uniform() - 1;
        v = 2 * uniform() - 1;
        s = u * u + v * v;
    } while (s >= 1 || s == 0);
    double m = std::sqrt(-2 * std::log(s) / s);
    spare_ = v * m;
    has_spare_ = true;
    return u * m;
}

size_t rng::weighted_index(const std::vector<double>& weights) {
    double total = 0;
    for (double w : weights) {
        if (!(w >= 0) || std::isinf(w)) fail("rng: weights must be finite and >= 0");
        total += w;
    }
    if (!(total > 0)) fail("rng: weights must not all be zero");
    double r = uniform() * total;
    for (size_t i = 0; i < weights.size(); ++i) {
        if (r < weights[i]) return i;
        r -= weights[i];
    }
    for (size_t i = weights.size(); i-- > 0;)
        if (weights[i] > 0) return i;
    return 0;
}

uint64_t rng::derive(uint64_t seed, uint64_t key1, uint64_t key2) {
    uint64_t state = seed ^ 0x6a09e667f3bcc909ULL;
    uint64_t a = splitmix64(state);
    state = a ^ key1;
    uint64_t b = splitmix64(state);
    state = b ^ (key2 * 0x9e3779b97f4a7c15ULL + 1);
    return splitmix64(state);
}

}  // namespace cai

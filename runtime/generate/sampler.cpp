#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

#include "core/error.h"
#include "kernels/cpu.h"

namespace cai {

namespace {

// The most likely tokens first, ties by lower id: the order a stable sort by
// descending probability gives.
struct more_likely {
    const std::vector<double>& probs;
    bool operator()(int64_t a, int64_t b) const { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); }
};

// Marks score[i] = -inf for every token outside the smallest set of most
// likely tokens whose mass reaches top_p. Sorts only a growing prefix (64,
// 256, ... tokens) until the mass is reached, adding the probabilities in
// the same order as a full sort would, so the kept set is identical.
void drop_outside_top_p(std::vector<double>& score, const std::vector<double>& probs, double top_p) {
    const int64_t vocab = (int64_t)probs.size();
    const double minus_inf = -std::numeric_limits<double>::infinity();
    std::vector<int64_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    if (!kernels::enabled()) {  // the plain path: sort everything
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return probs[a] > probs[b]; });
        double before = 0;
        for (int64_t i : order) {
            if (before >= top_p) score[i] = minus_inf;
            before += probs[i];
        }
        return;
    }
    int64_t sorted = 0;
    double before = 0;
    for (int64_t want = std::min<int64_t>(64, vocab);; want = std::min<int64_t>(want * 4, vocab)) {
        std::partial_sort(order.begin() + sorted, order.begin() + want, order.end(), more_likely{probs});
        for (; sorted < want; ++sorted) {
            if (before >= top_p) {  // every remaining token is dropped
                for (int64_t j = sorted; j < vocab; ++j) score[order[j]] = minus_inf;
                return;
            }
            before += probs[order[sorted]];
        }
        if (want == vocab) return;
    }
}

}  // namespace

void sampling_options::check() const {
    if (!(temperature >= 0) || std::isinf(temperature)) fail("generate: temperature must be >= 0, got ", temperature);
    if (top_k < 0) fail("generate: top_k must be >= 0, got ", top_k);
    if (!(top_p > 0 && top_p <= 1)) fail("generate: top_p must be in (0, 1], got ", top_p);
    if (!(min_p >= 0 && min_p <= 1)) fail("generate: min_p must be in [0, 1], got ", min_p);
    if (!(repetition_penalty > 0)) fail("generate: repetition_penalty must be > 0, got ", repetition_penalty);
}

std::vector<double> sampling_distribution(const float* logits, int64_t vocab, const sampling_options& o,
                                          const std::vector<int32_t>& context) {
    const double minus_inf = -std::numeric_limits<double>::infinity();
    std::vector<double> score(logits, logits + vocab);
    for (double s : score)
        if (std::isnan(s)) fail("generate: the model produced NaN logits");

    if (o.repetition_penalty != 1.0) {
        std::unordered_set<int32_t> seen(context.begin(), context.end());
        for (int32_t id : seen) {
            if (id < 0 || id >= vocab) continue;
            double& s = score[id];
            s = s < 0 ? s * o.repetition_penalty : s / o.repetition_penalty;
        }
    }
    std::vector<double> probs(vocab, 0.0);
    if (o.temperature == 0) {
        probs[std::max_element(score.begin(), score.end()) - score.begin()] = 1.0;
        return probs;
    }
    for (double& s : score) s /= o.temperature;

    if (o.top_k > 0 && o.top_k < vocab) {  // keep every token scoring at least the k-th best
        std::vector<double> sorted = score;
        std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(), std::greater<double>());
        double kth = sorted[o.top_k - 1];
        for (double& s : score)
            if (s < kth) s = minus_inf;
    }
    auto softmax = [&] {
        double mx = *std::max_element(score.begin(), score.end()), sum = 0;
        for (int64_t i = 0; i < vocab; ++i) sum += (probs[i] = std::exp(score[i] - mx));
        for (double& p : probs) p /= sum;
    };
    softmax();
    if (o.top_p < 1.0) {  // the smallest set of most likely tokens whose mass reaches top_p
        drop_outside_top_p(score, probs, o.top_p);
        softmax();
    }
    if (o.min_p > 0) {  // drop tokens less likely than min_p times the most likely one
        double threshold = o.min_p * *std::max_element(probs.begin(), probs.end());
        for (int64_t i = 0; i < vocab; ++i)
            if (probs[i] < threshold) score[i] = minus_inf;
        softmax();
    }
    return probs;
}

int32_t sample_token(const float* logits, int64_t vocab, const sampling_options& o, const std::vector<int32_t>& context,
                     rng& r) {
    std::vector<double> probs = sampling_distribution(logits, vocab, o, context);
    if (o.temperature == 0) return (int32_t)(std::max_element(probs.begin(), probs.end()) - probs.begin());
    double u = r.uniform(), cumulative = 0;
    int32_t last = 0;
    for (int64_t i = 0; i < vocab; ++i) {
        if (probs[i] <= 0) continue;
        cumulative += probs[i];
        last = (int32_t)i;
        if (u < cumulative) return last;
    }
    return last;  // u within rounding of 1
}

}  // namespace cai

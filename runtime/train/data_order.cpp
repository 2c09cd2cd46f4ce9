#include "train/data_order.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace cai {
namespace {

// Sub-stream keys: one stream per (purpose, epoch).
constexpr uint64_t key_example_order = 0x6578616d706c65ULL;  // "example"
constexpr uint64_t key_batch_order = 0x6261746368ULL;        // "batch"

template <class T>
void shuffle_in_place(std::vector<T>& items, uint64_t seed) {
    rng r(seed);
    for (int64_t i = (int64_t)items.size() - 1; i > 0; --i) std::swap(items[i], items[r.integer(0, i)]);
}

void check_batching(const std::vector<int64_t>& lengths, const batching& o) {
    if ((o.batch_size > 0) == (o.max_tokens > 0))
        fail("batching: set exactly one of batch_size (", o.batch_size, ") and max_tokens (", o.max_tokens, ")");
    if (o.batch_size < 0 || o.max_tokens < 0 || o.max_batch_size < 0)
        fail("batching: batch_size, max_tokens and max_batch_size must be >= 0");
    if (o.max_tokens > 0 && o.sort_pool < 1) fail("batching: sort_pool must be >= 1, got ", o.sort_pool);
    if (o.max_tokens > 0) {
        for (size_t i = 0; i < lengths.size(); ++i) {
            if (lengths[i] < 1) fail("batching: example ", i, " has length ", lengths[i], "; lengths must be >= 1");
            if (lengths[i] > o.max_tokens)
                fail("batching: example ", i, " has ", lengths[i], " tokens, more than max_tokens (", o.max_tokens,
                     "); raise max_tokens or truncate the example (max_length)");
        }
    }
}

}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    shuffle_in_place(order, rng::derive(seed, key_example_order, (uint64_t)epoch));
    return order;
}

int64_t padded_tokens(const std::vector<int64_t>& lengths, const std::vector<int64_t>& batch) {
    int64_t longest = 0;
    for (int64_t i : batch) longest = std::max(longest, lengths[i]);
    return longest * (int64_t)batch.size();
}

batch_list epoch_batches(const std::vector<int64_t>& lengths, const batching& o, int64_t epoch) {
    check_batching(lengths, o);
    const int64_t n = (int64_t)lengths.size();
    std::vector<int64_t> order;
    if (o.shuffle) {
        order = epoch_permutation(n, o.seed, epoch);
    } else {
        order.resize(n);
        std::iota(order.begin(), order.end(), 0);
    }
    batch_list batches;
    if (o.batch_size > 0) {
        for (int64_t start = 0; start < n; start += o.batch_size)
            batches.emplace_back(order.begin() + start, order.begin() + std::min(n, start + o.batch_size));
        return batches;
    }
    for (int64_t pool_start = 0; pool_start < n; pool_start += o.sort_pool) {
        std::vector<int64_t> pool(order.begin() + pool_start, order.begin() + std::min(n, pool_start + o.sort_pool));
        std::stable_sort(pool.begin(), pool.end(), [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
        std::vector<int64_t> batch;
        int64_t longest = 0;  // the first row of a batch is its longest
        for (int64_t i : pool) {
            const bool full = o.max_batch_size > 0 && (int64_t)batch.size() >= o.max_batch_size;
            if (!batch.empty() && (full || longest * ((int64_t)batch.size() + 1) > o.max_tokens)) {
                batches.push_back(std::move(batch));
                batch.clear();
            }
            if (batch.empty()) longest = lengths[i];
            batch.push_back(i);
        }
        if (!batch.empty()) batches.push_back(std::move(batch));
    }
    if (o.shuffle) shuffle_in_place(batches, rng::derive(o.seed, key_batch_order, (uint64_t)epoch));
    return batches;
}

batch_sampler::batch_sampler(std::vector<int64_t> lengths, const batching& options)
    : lengths_(std::move(lengths)), options_(options) {
    if (lengths_.empty()) fail("batch_sampler: the data set is empty");
    check_batching(lengths_, options_);
}

const batch_list& batch_sampler::plan(int64_t epoch) {
    if (planned_epoch_ != epoch) {
        planned_ = epoch_batches(lengths_, options_, epoch);
        planned_epoch_ = epoch;
    }
    return planned_;
}

std::vector<int64_t> batch_sampler::next() {
    if (position_.batch >= (int64_t)plan(position_.epoch).size()) position_ = {position_.epoch + 1, 0};
    std::vector<int64_t> batch = plan(position_.epoch)[position_.batch];
    position_.batch += 1;
    return batch;
}

void batch_sampler::seek(const data_position& position) {
    if (position.epoch < 0 || position.batch < 0)
        fail("batch_sampler: position (epoch ", position.epoch, ", batch ", position.batch, ") is negative");
    if (position.batch > batches_in_epoch(position.epoch))
        fail("batch_sampler: position (epoch ", position.epoch, ", batch ", position.batch, ") is past the ",
             batches_in_epoch(position.epoch), " batches of that epoch; was the data set changed since the checkpoint?");
    position_ = position;
}

int64_t batch_sampler::batches_in_epoch(int64_t epoch) const {
    if (options_.batch_size > 0) return ((int64_t)lengths_.size() + options_.batch_size - 1) / options_.batch_size;
    return (int64_t)epoch_batches(lengths_, options_, epoch).size();
}

}  // namespace cai

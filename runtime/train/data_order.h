// The order in which a trainer sees its examples, decided by the seed alone:
// epoch shuffles, fixed-size batches or token-budget batches, and a position
// (epoch, batch) that a checkpoint stores so a resumed run continues with
// exactly the batch the interrupted one would have taken next.
#pragma once

#include <cstdint>
#include <vector>

namespace cai {

using batch_list = std::vector<std::vector<int64_t>>;  // example indexes per batch

struct data_position {
    int64_t epoch = 0;  // 0-based
    int64_t batch = 0;  // the next batch to take within the epoch
};

// A permutation of 0..n-1 for one epoch, from (seed, epoch) only.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

struct batching {
    uint64_t seed = 0;
    bool shuffle = true;         // false: examples in file order (batches too)
    int64_t batch_size = 0;      // fixed-size batches (the last one may be short) ...
    int64_t max_tokens = 0;      // ... or batches whose padded size (rows * longest) <= max_tokens
    int64_t max_batch_size = 0;  // token budget: also at most this many rows (0 = no limit)
    int64_t sort_pool = 1024;    // token budget: examples sorted by length within pools of this size
};

// Batches for one epoch. Fixed size: the epoch permutation cut in order.
// Token budget: the permutation is cut into pools of sort_pool examples,
// each pool sorted by length (longest first, ties in permutation order) and
// packed greedily; then the batches of the epoch are shuffled. An example
// longer than max_tokens (or of length < 1) is an error naming it.
batch_list epoch_batches(const std::vector<int64_t>& lengths, const batching& options, int64_t epoch);

// Rows * longest row of one batch: the tokens a padded batch holds.
int64_t padded_tokens(const std::vector<int64_t>& lengths, const std::vector<int64_t>& batch);

// An endless stream of batches over epochs, resumable from a position.
class batch_sampler {
public:
    batch_sampler(std::vector<int64_t> lengths, const batching& options);

    // The next batch; moves to the next epoch after the last batch of one.
    std::vector<int64_t> next();
    data_position position() const { return position_; }
    void seek(const data_position& position);
    // Number of batches in an epoch (token-budget epochs may differ slightly).
    int64_t batches_in_epoch(int64_t epoch) const;
    int64_t size() const { return (int64_t)lengths_.size(); }

private:
    const batch_list& plan(int64_t epoch);
    std::vector<int64_t> lengths_;
    batching options_;
    data_position position_;
    int64_t planned_epoch_ = -1;
    batch_list planned_;
};

}  // namespace cai

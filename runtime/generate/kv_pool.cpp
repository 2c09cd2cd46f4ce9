#include "generate/kv_pool.h"

#include "core/error.h"
#include "model/model.h"

namespace cai {

kv_pool::kv_pool(const model& m, int64_t blocks, int64_t block_size) : block_size_(block_size) {
    if (blocks < 1 || block_size < 1) fail("generate: a KV pool needs blocks and block_size >= 1");
    const model_config& c = m.config;
    auto opts = at::TensorOptions().dtype(m.dtype);
    for (size_t i = 0; i < m.layers.size(); ++i) {
        // Zeros: a prefill chunk gathers (and weighs by 0) slots no row has written yet; they must be finite.
        k.push_back(at::zeros({blocks, block_size, c.num_kv_heads, c.head_dim}, opts));
        v.push_back(at::zeros({blocks, block_size, c.num_kv_heads, c.head_dim}, opts));
    }
    bytes_per_block_ = 2 * (int64_t)m.layers.size() * block_size * c.num_kv_heads * c.head_dim *
                       (int64_t)at::elementSize(m.dtype);
    refs_.assign(blocks, 0);
    lru_at_.assign(blocks, lru_.end());
    key_of_.resize(blocks);
    for (int64_t b = blocks - 1; b >= 0; --b) free_.push_back((int32_t)b);  // take() hands out 0, 1, 2, ...
}

size_t kv_pool::prefix_hash::operator()(const std::vector<int32_t>& t) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the ids
    for (int32_t id : t) h = (h ^ (uint32_t)id) * 1099511628211ull;
    return (size_t)h;
}

int64_t kv_pool::available() const { return (int64_t)free_.size() + (int64_t)lru_.size() - reserved_; }

bool kv_pool::reserve(int64_t n) {
    if (n > available()) return false;
    reserved_ += n;
    return true;
}

void kv_pool::unreserve(int64_t n) {
    if (n > reserved_) fail("generate: KV pool: unreserving ", n, " blocks of ", reserved_, " reserved");
    reserved_ -= n;
}

int32_t kv_pool::take() {
    if (reserved_ < 1) fail("generate: KV pool: a block taken without a reservation");
    int32_t block;
    if (!free_.empty()) {
        block = free_.back();
        free_.pop_back();
    } else {
        if (lru_.empty()) fail("generate: KV pool: no block left for a reservation");
        block = lru_.front();  // evict the least recently used cached prefix
        lru_.pop_front();
        lru_at_[block] = lru_.end();
        cached_.erase(key_of_[block]);
        key_of_[block].clear();
    }
    --reserved_;
    refs_[block] = 1;
    return block;
}

void kv_pool::retain(int32_t block) {
    if (reserved_ < 1) fail("generate: KV pool: a block retained without a reservation");
    if (refs_[block] == 0) {  // cached, unreferenced: it leaves the LRU list
        lru_.erase(lru_at_[block]);
        lru_at_[block] = lru_.end();
    }
    --reserved_;  // shared or revived, it stands in for one reserved block
    ++refs_[block];
}

void kv_pool::release(int32_t block) {
    if (refs_[block] < 1) fail("generate: KV pool: block ", block, " released more often than taken");
    if (--refs_[block] > 0) return;
    if (!key_of_[block].empty()) {
        lru_at_[block] = lru_.insert(lru_.end(), block);
    } else {
        free_.push_back(block);
    }
}

int32_t kv_pool::lookup(const std::vector<int32_t>& tokens, size_t end) {
    if (cached_.empty()) return -1;
    auto it = cached_.find(std::vector<int32_t>(tokens.begin(), tokens.begin() + end));
    return it == cached_.end() ? -1 : it->second;
}

void kv_pool::remember(const std::vector<int32_t>& tokens, size_t end, int32_t block) {
    if (!key_of_[block].empty()) return;
    std::vector<int32_t> key(tokens.begin(), tokens.begin() + end);
    if (cached_.count(key)) return;
    key_of_[block] = key;
    cached_.emplace(std::move(key), block);
}

std::vector<std::pair<std::vector<int32_t>, int32_t>> kv_pool::cached_lru() const {
    std::vector<std::pair<std::vector<int32_t>, int32_t>> out;
    for (int32_t block : lru_) out.emplace_back(key_of_[block], block);
    return out;
}

void kv_pool::clear_prefixes() {
    cached_.clear();
    for (int32_t block : lru_) {
        lru_at_[block] = lru_.end();
        free_.push_back(block);
    }
    lru_.clear();
    for (auto& key : key_of_) key.clear();
}

}  // namespace cai

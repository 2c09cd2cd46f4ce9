// The generation engine's key/value memory: one pool of fixed-size blocks
// per layer, (blocks, block_size, Hkv, D), which rows address through block
// tables (model/model.h's paged kv_cache). Blocks carry reference counts, so
// rows whose prompts start with the same tokens can share the blocks that
// hold that prefix.
//
// The prefix cache maps a full block's worth of prompt tokens (with every
// token before it: the key is the whole prefix, so two blocks match only when
// everything they attend to matches) to the block that holds its keys and
// values. A block nobody references any more stays cached and is evicted in
// least-recently-used order when a fresh block is needed.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <list>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace cai {

class model;

class kv_pool {
public:
    // blocks * block_size token slots for every layer of m, in m's dtype.
    kv_pool(const model& m, int64_t blocks, int64_t block_size);

    int64_t blocks() const { return (int64_t)refs_.size(); }
    int64_t block_size() const { return block_size_; }
    int64_t bytes_per_block() const { return bytes_per_block_; }
    // Blocks a new reservation may still take: free or cached-unreferenced, less what is reserved.
    int64_t available() const;
    int64_t cached_blocks() const { return (int64_t)cached_.size(); }

    // Promises n blocks to a row (taken later with take()); false when they are not there.
    bool reserve(int64_t n);
    void unreserve(int64_t n);
    // A block for reserved use (reference count 1): a free one, else the least recently used cached one.
    int32_t take();
    // One more / one fewer reference; a block at zero references stays cached when it holds a prefix.
    void retain(int32_t block);
    void release(int32_t block);

    // The block caching the prompt prefix tokens[0, end) (end a multiple of block_size), or -1.
    int32_t lookup(const std::vector<int32_t>& tokens, size_t end);
    // Records that block holds tokens[0, end)'s last block_size tokens (no-op when a block already does).
    void remember(const std::vector<int32_t>& tokens, size_t end, int32_t block);
    // Forgets every cached prefix (the weights changed).
    void clear_prefixes();
    // The unreferenced cached blocks with their prefixes, least recently used first.
    std::vector<std::pair<std::vector<int32_t>, int32_t>> cached_lru() const;

    std::vector<at::Tensor> k, v;  // per layer: (blocks, block_size, Hkv, D)

private:
    struct prefix_hash {
        size_t operator()(const std::vector<int32_t>& t) const;
    };
    int64_t block_size_ = 0, bytes_per_block_ = 0, reserved_ = 0;
    std::vector<int32_t> refs_;       // per block: references from rows
    std::vector<int32_t> free_;       // unreferenced and holding no prefix
    std::list<int32_t> lru_;          // unreferenced and holding a prefix, least recently used first
    std::vector<std::list<int32_t>::iterator> lru_at_;  // per block: its place in lru_, or lru_.end()
    std::unordered_map<std::vector<int32_t>, int32_t, prefix_hash> cached_;  // prefix -> block
    std::vector<std::vector<int32_t>> key_of_;  // per block: its prefix when cached, else empty
};

}  // namespace cai

// Batched generation and completion scoring over a loaded model.
//
// generate: an engine with batch_size slots over one paged KV pool
// (generate/kv_pool.h). Prompts take free slots in order; each engine step
// computes up to prefill_chunk prompt tokens of the rows being prefilled and
// one token of every decoding row; a finished row frees its slot for the next
// prompt at the next step. Prompts that start with the same tokens share the
// KV blocks of that prefix (prefix_cache). Each prompt samples from its own
// stream rng::derive(seed, index), so its sample depends on (seed, its index,
// the prompt) and never on batch size, slot, order or sharing. A sequence
// ends on an EOS id ("eos"), on a stop string ("stop": text is cut before
// it) or after max_new_tokens ("length").
//
// In a data-parallel run (dist::world_size() > 1) generate and
// score_completions are collective: every rank must call them with the same
// prompts; each computes its contiguous share (dist::shard_of) and every rank
// gets the whole list back in the original order, the same as one process
// gives (a prompt's stream is derived from its index in the whole list).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "generate/sampler.h"

namespace cai {

class model;
class tokenizer;

struct generate_trace;

struct generate_options {
    sampling_options sampling;
    int64_t max_new_tokens = 256;
    std::vector<std::string> stop;  // needs the model's tokenizer
    uint64_t seed = 0;
    int64_t batch_size = 16;   // slots: rows decoded together
    bool prefix_cache = true;  // share the KV blocks of prompt prefixes (within a call and, cached, across calls)
    int64_t prefill_chunk = 512;   // prompt tokens computed per engine step, over all rows being prefilled
    int64_t kv_cache_bytes = 0;    // the KV pool's size; 0: what batch_size rows of this call need at most
    int64_t block_size = 16;       // token slots per KV block
    bool continuous = true;        // false: the earlier fixed batches (kept for benchmarks)
    generate_trace* trace = nullptr;  // when set, filled with what the engine did
    bool show_progress = true;
    std::string progress_label;  // names the bar: "generate: critiques"
    bool shard = true;         // data-parallel: share the prompts among the ranks (false: all on this rank)
    uint64_t first_index = 0;  // prompts[i] samples from rng::derive(seed, first_index + i)
    // When not empty (one per prompt): prompts[i] samples from
    // rng::derive(seed, streams[i]) instead, so a subset of a list (e.g. the
    // items whose answer is asked again) keeps each item's own stream.
    std::vector<uint64_t> streams;
};

// The sampling stream of prompts[i] under o (streams[i], else first_index + i).
inline uint64_t stream_index(const generate_options& o, size_t i) {
    return o.streams.empty() ? o.first_index + i : o.streams[i];
}

// What the engine did, for tests and benchmarks (continuous engine only).
struct generate_trace {
    std::vector<int64_t> slot;           // per prompt: the slot it ran in
    std::vector<int64_t> admitted_step;  // per prompt: the engine step it took its slot at
    std::vector<int64_t> finished_step;  // per prompt: the step it finished at (its slot is free for the next)
    int64_t steps = 0;
    int64_t prompt_tokens = 0;         // prompt tokens in all
    int64_t prompt_tokens_reused = 0;  // of those, read from shared KV blocks instead of computed
    int64_t pool_blocks = 0, pool_bytes = 0;
};

struct generation {
    std::string text;    // decoded without special tokens; cut before a stop string
    std::string finish;  // "eos" | "stop" | "length"
    std::vector<int32_t> tokens;  // generated ids, EOS excluded; with "stop", up to the token completing it
};

std::vector<generation> generate(const model& m, const std::vector<std::vector<int32_t>>& prompts,
                                 const generate_options& options);

// A prompt/completion pair as token ids: the prompt encoded with special
// tokens (BOS; none with add_special_tokens = false, for a prompt a chat
// template rendered), the completion encoded on its own without them, then
// concatenated. Tokens never merge across the boundary, so the completion's
// tokens are exactly those a generation after this prompt would produce.
struct pair_ids {
    std::vector<int32_t> ids;
    size_t completion_start = 0;  // ids[completion_start:] are the completion
};
pair_ids tokenize_pair(const tokenizer& tok, const std::string& prompt, const std::string& completion,
                       bool add_special_tokens = true);

struct completion_logprob {
    double sum = 0;   // log p(completion | prompt), natural log
    double mean = 0;  // sum / n (0 when n == 0)
    int64_t n = 0;    // completion tokens
};

// One forward per batch; prompts must be non-empty.
std::vector<completion_logprob> score_completions(const model& m, const std::vector<std::vector<int32_t>>& prompts,
                                                  const std::vector<std::vector<int32_t>>& completions,
                                                  int64_t batch_size = 8, bool shard = true);

}  // namespace cai

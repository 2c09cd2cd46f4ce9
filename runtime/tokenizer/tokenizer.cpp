// tokenizer::load picks the implementation for an HF directory, and the
// batch helpers shared by every implementation.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "tokenizer/bpe.h"
#include "tokenizer/hf_config.h"
#include "tokenizer/spm_tokenizer.h"

namespace cai {

std::shared_ptr<tokenizer> tokenizer::load(const std::string& dir) {
    std::shared_ptr<tokenizer> tok = load_files(dir);
    tok->dir = dir;
    return tok;
}

std::shared_ptr<tokenizer> tokenizer::load_files(const std::string& dir) {
    if (!is_directory(dir)) fail("tokenizer: \"", dir, "\" is not a directory");
    const std::string json_path = path_join(dir, "tokenizer.json");
    const std::string model_path = path_join(dir, "tokenizer.model");
    // Like transformers' AutoTokenizer: tokenizer.json when present (the fast
    // tokenizer), else tokenizer.model converted the way transformers does.
    if (file_exists(json_path)) {
        // LlamaTokenizerFast re-converts tokenizer.model when the config sets
        // add_prefix_space (transformers passes from_slow=True then).
        tok::hf_config config = tok::hf_config::read(dir);
        bool from_slow = file_exists(model_path) && config.tokenizer_class.find("Llama") != std::string::npos &&
                         config.add_prefix_space.has_value();
        if (!from_slow) return load_bpe_tokenizer(dir);
    }
    if (file_exists(model_path)) return load_spm_tokenizer(dir);
    // DeBERTa-v2/v3 checkpoints ship their sentencepiece model as spm.model.
    if (file_exists(path_join(dir, "spm.model"))) return load_deberta_spm_tokenizer(dir);
    fail("tokenizer: directory \"", dir, "\" has none of tokenizer.json, tokenizer.model or spm.model (DeBERTa-v2/v3)");
}

bool tokenizer::has_files(const std::string& dir) {
    for (const char* name : {"tokenizer.json", "tokenizer.model", "spm.model"})
        if (file_exists(path_join(dir, name))) return true;
    return false;
}

void tokenizer::encode_with_types(const std::string& text, const std::string* pair, bool add_special_tokens,
                                  std::vector<int32_t>& ids, std::vector<int32_t>& type_ids) const {
    if (pair)
        fail("tokenizer (", kind, "): no pair template; text pairs need a tokenizer.json whose post-processor "
             "defines one (TemplateProcessing, BertProcessing or RobertaProcessing)");
    ids = encode(text, add_special_tokens);
    type_ids.assign(ids.size(), 0);
}

namespace {

// Runs fn(i) for i in [0, n) on up to `threads` threads; the first exception
// is rethrown on the calling thread once every worker has stopped.
template <class Fn>
void parallel_for(size_t n, int threads, Fn&& fn) {
    size_t workers = threads > 0 ? size_t(threads) : std::max(1u, std::thread::hardware_concurrency());
    workers = std::min(workers, n);
    if (workers <= 1) {
        for (size_t i = 0; i < n; ++i) fn(i);
        return;
    }
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex error_mutex;
    std::vector<std::thread> pool;
    for (size_t w = 0; w < workers; ++w) {
        pool.emplace_back([&] {
            for (size_t i; !failed && (i = next.fetch_add(1)) < n;) {
                try {
                    fn(i);
                } catch (...) {
                    std::lock_guard<std::mutex> lock(error_mutex);
                    if (!first_error) first_error = std::current_exception();
                    failed = true;
                }
            }
        });
    }
    for (auto& t : pool) t.join();
    if (first_error) std::rethrow_exception(first_error);
}

}  // namespace

std::vector<std::vector<int32_t>> tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          bool add_special_tokens, int threads) const {
    std::vector<std::vector<int32_t>> out(texts.size());
    parallel_for(texts.size(), threads, [&](size_t i) { out[i] = encode(texts[i], add_special_tokens); });
    return out;
}

std::vector<std::string> tokenizer::decode_batch(const std::vector<std::vector<int32_t>>& ids,
                                                 bool skip_special_tokens, int threads) const {
    std::vector<std::string> out(ids.size());
    parallel_for(ids.size(), threads, [&](size_t i) { out[i] = decode(ids[i], skip_special_tokens); });
    return out;
}

}  // namespace cai

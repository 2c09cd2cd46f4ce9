#include "tokenizer/bpe.h"

#include "core/error.h"

namespace cai {

std::shared_ptr<tokenizer> load_bpe_tokenizer(const std::string& dir) {
    fail(dir, "/tokenizer.json: byte-level BPE tokenizers are not implemented yet");
}

bool bpe_json_is_sentencepiece_style(const std::string& json_path) { return false; }

}  // namespace cai

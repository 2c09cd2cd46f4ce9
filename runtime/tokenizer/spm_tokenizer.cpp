#include "tokenizer/spm_tokenizer.h"

#include "core/error.h"

namespace cai {

std::shared_ptr<tokenizer> load_spm_tokenizer(const std::string& dir) {
    fail(dir, "/tokenizer.model: sentencepiece tokenizers are not implemented yet");
}

}  // namespace cai

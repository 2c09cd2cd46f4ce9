// Test fixtures shared by the Catch2 tests: the character tokenizer, the
// tiny Llama config and random models built from them. Each test used to
// carry its own copy of these; keep them here, once.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include <ATen/ATen.h>

#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "train/interrupt.h"
#include "train/lora.h"
#include "tokenizer/tokenizer.h"

namespace fixtures {

// A tokenizer over single characters: 0 pad, 1 BOS (added with special
// tokens), 2 EOS, a..z are ids 3..28, ' ' is 29 and '.' is 30 (vocab 32).
// The extended one (vocab 40) also has E N D (31..33), x0..x4 (34..38) and
// the merged pair "ab" (39), so "ab" encodes as one token. Any other
// character is an error naming it.
class char_tokenizer : public cai::tokenizer {
public:
    explicit char_tokenizer(bool extended = false) : extended_(extended) {
        bos_id = 1;
        eos_id = 2;
        pad_id = 0;
        add_bos = true;
        for (char c = 'a'; c <= 'z'; ++c) pieces_.push_back(std::string(1, c));
        pieces_.push_back(" ");
        pieces_.push_back(".");
        if (extended_)
            for (const char* p : {"E", "N", "D", "x0", "x1", "x2", "x3", "x4", "ab"}) pieces_.push_back(p);
        else
            pieces_.push_back("<unused31>");
    }
    std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const override {
        std::vector<int32_t> out;
        if (add_special_tokens) out.push_back(bos_id);
        for (size_t i = 0; i < text.size(); ++i) {
            if (extended_ && text.compare(i, 2, "ab") == 0) {
                out.push_back(39);
                ++i;
                continue;
            }
            int32_t id = piece_to_id(std::string(1, text[i]));
            if (id < 0) throw cai::error("char_tokenizer: cannot encode " + text.substr(i, 1));
            out.push_back(id);
        }
        return out;
    }
    std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override {
        std::string out;
        for (int32_t id : ids) {
            if (id < 3) {
                if (!skip_special_tokens) out += id == 0 ? "<pad>" : id == 1 ? "<s>" : "</s>";
                continue;
            }
            out += id_to_piece(id);
        }
        return out;
    }
    std::string id_to_piece(int32_t id) const override {
        if (id == 0) return "<pad>";
        if (id == 1) return "<s>";
        if (id == 2) return "</s>";
        return pieces_.at(static_cast<size_t>(id - 3));
    }
    int32_t piece_to_id(const std::string& piece) const override {
        if (piece == "<unused31>") return -1;
        for (size_t i = 0; i < pieces_.size(); ++i)
            if (pieces_[i] == piece) return static_cast<int32_t>(i) + 3;
        return -1;
    }
    int32_t vocab_size() const override { return extended_ ? 40 : 32; }

private:
    bool extended_;
    std::vector<std::string> pieces_;
};

// The tiny Llama config the tests share: hidden 16, intermediate 24, 2
// layers, 4 heads, 2 key/value heads, and vocab_size tokens (32 for
// char_tokenizer, 40 for the extended one). The text lives as long as the
// test program.
inline const char* tiny_llama_json(int vocab_size = 32) {
    static std::map<int, std::string> made;
    std::string& json = made[vocab_size];
    if (json.empty())
        json = R"({"model_type":"llama","vocab_size":)" + std::to_string(vocab_size) +
               R"(,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,)"
               R"("num_key_value_heads":2})";
    return json.c_str();
}

// A model with random weights (normal, standard deviation `std`) for a config JSON.
inline std::shared_ptr<cai::model> random_model(const std::string& json, uint64_t seed, double std = 0.02,
                                                at::ScalarType dtype = at::kFloat) {
    cai::model_config c = cai::parse_model_config(json);
    return cai::model::from_tensors(c, cai::random_model_tensors(c, seed, std), dtype, "test");
}

// random_model with a char_tokenizer (extended when the vocabulary has room for it).
inline std::shared_ptr<cai::model> char_model(const std::string& json, uint64_t seed, double std = 0.02,
                                              at::ScalarType dtype = at::kFloat) {
    auto m = random_model(json, seed, std, dtype);
    m->tok = std::make_shared<char_tokenizer>(m->config.vocab_size >= 40);
    return m;
}

// The trainers' test model: char_model(tiny_llama_json(32), seed 5, std 0.3)
// with LoRA adapters (r 4, alpha 8, every linear, seed 3) and this dropout.
inline std::shared_ptr<cai::model> char_lora_model(double dropout = 0.0) {
    auto m = char_model(tiny_llama_json(32), 5, 0.3);
    cai::lora_options lo;
    lo.r = 4;
    lo.alpha = 8;
    lo.dropout = dropout;
    lo.targets = {"all-linear"};
    lo.seed = 3;
    cai::lora_add(*m, lo);
    return m;
}

// A trainer's on_log that asks the run to stop (as Ctrl-C does) once step
// `at` is logged; never when at <= 0.
inline std::function<void(const std::string&)> interrupt_at_step(int64_t at) {
    return [at](const std::string& line) {
        if (at > 0 && line.rfind("{\"step\":" + std::to_string(at) + ",", 0) == 0) cai::request_interrupt();
    };
}

}  // namespace fixtures

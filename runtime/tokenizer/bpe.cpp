#include "tokenizer/bpe.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "tokenizer/hf_config.h"
#include "tokenizer/pipeline.h"

namespace cai {

namespace {

using json = nlohmann::json;
using namespace cai::tok;

std::string base64_decode(const std::string& in, const std::string& where) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        if (c == '=') break;
        int v = value(c);
        if (v < 0) fail(where, ".precompiled_charsmap is not base64 (character '", c, "')");
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += char((acc >> bits) & 0xFF);
        }
    }
    return out;
}

struct reader {
    std::string file;  // "<dir>/tokenizer.json"

    // A token id: an integer in [0, 2^24) (the range model.vocab allows); a
    // larger one would wrap when narrowed.
    int32_t token_id(const json& v, const std::string& what) const {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= (int64_t(1) << 24))
            fail(file, ": ", what, " must be a token id (an integer in [0, 2^24)), got ", v.dump());
        return v.get<int32_t>();
    }

    [[noreturn]] void unsupported(const std::string& where, const std::string& type, const char* supported) const {
        fail(file, ": ", where, ".type \"", type, "\" is not supported (supported: ", supported, ")");
    }
    std::string type_of(const json& j, const std::string& where) const {
        if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
            fail(file, ": ", where, " must be an object with a string \"type\"");
        return j["type"].get<std::string>();
    }
    std::string string_pattern(const json& pattern, const std::string& where, bool* is_regex) const {
        if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
            *is_regex = false;
            return pattern["String"].get<std::string>();
        }
        if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
            *is_regex = true;
            return pattern["Regex"].get<std::string>();
        }
        fail(file, ": ", where, ".pattern must be {\"String\": ...} or {\"Regex\": ...}");
    }

    void normalizer(const json& j, const std::string& where, pipeline& p) const {
        if (j.is_null()) return;
        std::string type = type_of(j, where);
        if (type == "Sequence") {
            size_t k = 0;
            for (const auto& n : j.at("normalizers")) normalizer(n, where + ".normalizers[" + std::to_string(k++) + "]", p);
        } else if (type == "NFC") {
            p.normalizers.push_back({normalizer_step::nfc, "", ""});
        } else if (type == "Prepend") {
            p.normalizers.push_back({normalizer_step::prepend, j.at("prepend").get<std::string>(), ""});
        } else if (type == "Replace") {
            bool is_regex = false;
            std::string from = string_pattern(j.at("pattern"), where, &is_regex);
            if (is_regex) {
                normalizer_step n{normalizer_step::replace_regex, from, j.at("content").get<std::string>()};
                n.pattern = compile_regex(from, file + ": " + where);
                p.normalizers.push_back(std::move(n));
            } else {
                p.normalizers.push_back({normalizer_step::replace, from, j.at("content").get<std::string>()});
            }
        } else if (type == "BertNormalizer") {
            normalizer_step n{normalizer_step::bert, "", ""};
            n.bert_options.clean_text = j.value("clean_text", true);
            n.bert_options.handle_chinese_chars = j.value("handle_chinese_chars", true);
            n.bert_options.lowercase = j.value("lowercase", true);
            const json accents = j.value("strip_accents", json());
            n.bert_options.strip_accents = accents.is_null() ? -1 : accents.get<bool>() ? 1 : 0;
            p.normalizers.push_back(std::move(n));
        } else if (type == "Lowercase") {
            p.normalizers.push_back({normalizer_step::lowercase, "", ""});
        } else if (type == "StripAccents") {
            p.normalizers.push_back({normalizer_step::strip_accents, "", ""});
        } else if (type == "Strip") {
            normalizer_step n{normalizer_step::strip, "", ""};
            n.left = j.value("strip_left", true);
            n.right = j.value("strip_right", true);
            p.normalizers.push_back(std::move(n));
        } else if (type == "NFD") {
            p.normalizers.push_back({normalizer_step::nfd, "", ""});
        } else if (type == "NFKD") {
            p.normalizers.push_back({normalizer_step::nfkd, "", ""});
        } else if (type == "NFKC") {
            p.normalizers.push_back({normalizer_step::nfkc, "", ""});
        } else if (type == "Precompiled") {
            normalizer_step n{normalizer_step::precompiled, "", ""};
            const json& map = j.at("precompiled_charsmap");
            if (map.is_null()) return;  // transformers writes null for an identity table
            n.charsmap = std::make_shared<precompiled_charsmap>(base64_decode(map.get<std::string>(), where),
                                                                file + ": " + where);
            p.normalizers.push_back(std::move(n));
        } else {
            unsupported(where, type, "NFC, NFD, NFKC, NFKD, Prepend, Replace, BertNormalizer, Lowercase, StripAccents, "
                        "Strip, Sequence");
        }
    }

    void pre_tokenizer(const json& j, const std::string& where, pipeline& p) const {
        if (j.is_null()) return;
        std::string type = type_of(j, where);
        pre_tokenizer_step s{};
        if (type == "Sequence") {
            size_t k = 0;
            for (const auto& n : j.at("pretokenizers"))
                pre_tokenizer(n, where + ".pretokenizers[" + std::to_string(k++) + "]", p);
            return;
        } else if (type == "Split") {
            s.kind = pre_tokenizer_step::split;
            bool is_regex = false;
            std::string pattern = string_pattern(j.at("pattern"), where, &is_regex);
            s.pattern = is_regex ? compile_regex(pattern, file + ": " + where) : literal_regex(pattern, file + ": " + where);
            std::string behavior = j.at("behavior").get<std::string>();
            if (behavior == "Isolated") s.behavior = pre_tokenizer_step::isolated;
            else if (behavior == "Removed") s.behavior = pre_tokenizer_step::removed;
            else if (behavior == "MergedWithPrevious") s.behavior = pre_tokenizer_step::merged_with_previous;
            else if (behavior == "MergedWithNext") s.behavior = pre_tokenizer_step::merged_with_next;
            else if (behavior == "Contiguous") s.behavior = pre_tokenizer_step::contiguous;
            else fail(file, ": ", where, ".behavior \"", behavior, "\" is not supported");
            s.invert = j.value("invert", false);
        } else if (type == "ByteLevel") {
            s.kind = pre_tokenizer_step::byte_level;
            s.add_prefix_space = j.value("add_prefix_space", false);
            s.use_regex = j.value("use_regex", true);
        } else if (type == "Metaspace") {
            s.kind = pre_tokenizer_step::metaspace;
            s.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
            std::string scheme = j.value("prepend_scheme", std::string(j.value("add_prefix_space", true) ? "always" : "never"));
            s.prepend_scheme = scheme == "first" ? pre_tokenizer_step::first
                               : scheme == "never" ? pre_tokenizer_step::never : pre_tokenizer_step::always;
            s.split_on_replacement = j.value("split", true);
        } else if (type == "BertPreTokenizer") {
            s.kind = pre_tokenizer_step::bert;
        } else if (type == "WhitespaceSplit") {
            s.kind = pre_tokenizer_step::whitespace_split;
        } else if (type == "Whitespace") {
            // \w+|[^\w\s]+, keeping the matches (Split, Removed, inverted).
            s.kind = pre_tokenizer_step::split;
            s.pattern = compile_regex("\\w+|[^\\w\\s]+", file + ": " + where);
            s.behavior = pre_tokenizer_step::removed;
            s.invert = true;
        } else if (type == "Punctuation") {
            s.kind = pre_tokenizer_step::punctuation;
            std::string behavior = j.value("behavior", std::string("Isolated"));
            const char* names[][2] = {{"Isolated", "isolated"}, {"Removed", "removed"},
                                      {"MergedWithPrevious", "merged_with_previous"},
                                      {"MergedWithNext", "merged_with_next"}, {"Contiguous", "contiguous"}};
            s.punctuation_behavior.clear();
            for (auto& n : names)
                if (behavior == n[0]) s.punctuation_behavior = n[1];
            if (s.punctuation_behavior.empty()) fail(file, ": ", where, ".behavior \"", behavior, "\" is not supported");
        } else {
            unsupported(where, type, "Split, ByteLevel, Metaspace, BertPreTokenizer, WhitespaceSplit, Whitespace, "
                        "Punctuation, Sequence");
        }
        p.pre_tokenizers.push_back(std::move(s));
    }

    void decoder(const json& j, const std::string& where, pipeline& p) const {
        if (j.is_null()) {
            p.has_decoder = false;
            return;
        }
        std::string type = type_of(j, where);
        decoder_step d{};
        if (type == "Sequence") {
            size_t k = 0;
            for (const auto& n : j.at("decoders")) decoder(n, where + ".decoders[" + std::to_string(k++) + "]", p);
            return;
        } else if (type == "ByteLevel") {
            d.kind = decoder_step::byte_level;
        } else if (type == "Replace") {
            bool is_regex = false;
            d.kind = decoder_step::replace;
            d.a = string_pattern(j.at("pattern"), where, &is_regex);
            if (is_regex) fail(file, ": ", where, ": Replace with a Regex pattern is not supported (only String)");
            d.b = j.at("content").get<std::string>();
        } else if (type == "ByteFallback") {
            d.kind = decoder_step::byte_fallback;
        } else if (type == "Fuse") {
            d.kind = decoder_step::fuse;
        } else if (type == "Strip") {
            d.kind = decoder_step::strip;
            d.a = j.at("content").get<std::string>();
            d.start = j.value("start", 0);
            d.stop = j.value("stop", 0);
        } else if (type == "Metaspace") {
            d.kind = decoder_step::metaspace;
            d.a = j.value("replacement", std::string("\xE2\x96\x81"));
            std::string scheme = j.value("prepend_scheme", std::string(j.value("add_prefix_space", true) ? "always" : "never"));
            d.prepend = scheme != "never";
        } else if (type == "WordPiece") {
            d.kind = decoder_step::wordpiece;
            d.a = j.value("prefix", std::string("##"));
            d.cleanup = j.value("cleanup", true);
        } else {
            unsupported(where, type, "ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, WordPiece, Sequence");
        }
        p.decoders.push_back(std::move(d));
    }

    // Collects the ids the post-processor puts before and after one sequence.
    void post_processor(const json& j, const std::string& where, pipeline& p) const {
        if (j.is_null()) return;
        std::string type = type_of(j, where);
        if (type == "Sequence") {
            size_t k = 0;
            for (const auto& n : j.at("processors")) post_processor(n, where + ".processors[" + std::to_string(k++) + "]", p);
        } else if (type == "ByteLevel") {
            // offsets only
        } else if (type == "TemplateProcessing") {
            const json& specials = j.at("special_tokens");
            auto read_template = [&](const char* key, std::vector<template_item>& out) {
                for (const auto& item : j.at(key)) {
                    template_item t;
                    if (item.contains("Sequence")) {
                        std::string id = item["Sequence"].at("id").get<std::string>();
                        if (id != "A" && id != "B")
                            fail(file, ": ", where, ".", key, ": Sequence id must be \"A\" or \"B\", got \"", id, "\"");
                        t.sequence = id == "A" ? 0 : 1;
                        t.type_id = item["Sequence"].value("type_id", 0);
                    } else if (item.contains("SpecialToken")) {
                        std::string name = item["SpecialToken"].at("id").get<std::string>();
                        if (!specials.contains(name))
                            fail(file, ": ", where, ": special token \"", name, "\" has no entry in special_tokens");
                        for (const auto& id : specials[name].at("ids"))
                            t.ids.push_back(token_id(id, where + ".special_tokens[\"" + name + "\"].ids"));
                        t.type_id = item["SpecialToken"].value("type_id", 0);
                    } else {
                        fail(file, ": ", where, ".", key, " items must be Sequence or SpecialToken");
                    }
                    out.push_back(std::move(t));
                }
            };
            p.single_template.clear();
            p.pair_template.clear();
            read_template("single", p.single_template);
            if (j.contains("pair") && !j["pair"].is_null()) read_template("pair", p.pair_template);
            bool seen_sequence = false;
            for (const auto& t : p.single_template) {
                if (t.sequence >= 0) {
                    seen_sequence = true;
                    continue;
                }
                (seen_sequence ? p.suffix_ids : p.prefix_ids).insert((seen_sequence ? p.suffix_ids : p.prefix_ids).end(),
                                                                     t.ids.begin(), t.ids.end());
            }
        } else if (type == "RobertaProcessing" || type == "BertProcessing") {
            const int32_t cls = token_id(j.at("cls").at(1), where + ".cls"), sep = token_id(j.at("sep").at(1), where + ".sep");
            p.prefix_ids.push_back(cls);
            p.suffix_ids.push_back(sep);
            // <s> A </s></s> B </s> (RoBERTa: all in segment 0) or [CLS] A [SEP] B [SEP] (BERT: B in segment 1).
            p.single_template = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}};
            p.pair_types_zero = type == "RobertaProcessing";
            if (type == "RobertaProcessing")
                p.pair_template = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}, {-1, {sep}, 0}, {1, {}, 0}, {-1, {sep}, 0}};
            else
                p.pair_template = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}, {1, {}, 1}, {-1, {sep}, 1}};
        } else {
            unsupported(where, type, "ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing, Sequence");
        }
    }

    void model(const json& j, pipeline& p) const {
        std::string type = type_of(j, "model");
        if (type == "Unigram") {
            auto uni = std::make_unique<unigram_model>();
            const json& vocab = j.at("vocab");
            if (!vocab.is_array()) fail(file, ": model.vocab must be a list of [piece, score]");
            for (const auto& v : vocab) {
                if (!v.is_array() || v.size() != 2) fail(file, ": model.vocab entries must be [piece, score]");
                uni->add_piece(v[0].get<std::string>(), v[1].get<double>());
            }
            uni->finish();
            uni->unk_id = j.value("unk_id", json()).is_null() ? 0 : token_id(j["unk_id"], "model.unk_id");
            uni->byte_fallback = j.value("byte_fallback", false);
            p.unigram = std::move(uni);
            return;
        }
        if (type == "WordPiece") {
            auto wp = std::make_unique<wordpiece_model>();
            const json& vocab = j.at("vocab");
            if (!vocab.is_object()) fail(file, ": model.vocab must be an object {piece: id}");
            for (auto it = vocab.begin(); it != vocab.end(); ++it)
                wp->add_piece(it.key(), token_id(it.value(), "model.vocab[\"" + it.key() + "\"]"));
            wp->continuing_subword_prefix = j.value("continuing_subword_prefix", std::string("##"));
            wp->max_input_chars_per_word = j.value("max_input_chars_per_word", (int64_t)100);
            std::string unk = j.value("unk_token", std::string("[UNK]"));
            auto it = wp->vocab.find(unk);
            if (it == wp->vocab.end()) fail(file, ": model.unk_token \"", unk, "\" is not in model.vocab");
            wp->unk_id = it->second;
            p.wordpiece = std::move(wp);
            return;
        }
        if (type != "BPE") unsupported("model", type, "BPE, Unigram, WordPiece");
        if (!j.value("dropout", json()).is_null()) fail(file, ": model.dropout must be null (BPE dropout is not supported)");
        for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
            if (j.contains(key) && !j[key].is_null() && !j[key].get<std::string>().empty())
                fail(file, ": model.", key, " is not supported (must be null or \"\")");
        }
        auto bpe = std::make_unique<bpe_model>();
        if (!j.contains("vocab")) fail(file, ": model.vocab is missing");
        if (!j.contains("merges") || !j["merges"].is_array())
            fail(file, ": model.merges must be a list of merges (\"left right\" or [left, right])");
        const json& vocab = j.at("vocab");
        if (!vocab.is_object()) fail(file, ": model.vocab must be an object {piece: id}");
        for (auto it = vocab.begin(); it != vocab.end(); ++it) {
            const json& id = it.value();
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t(1) << 24))
                fail(file, ": model.vocab[\"", it.key(), "\"] must be a token id (an integer in [0, 2^24)), got ",
                     id.dump());
            const int32_t n = id.get<int32_t>();
            const std::string other = size_t(n) < bpe->pieces.size() ? bpe->pieces[size_t(n)] : std::string();
            if (!other.empty())
                fail(file, ": model.vocab gives the pieces \"", other, "\" and \"", it.key(), "\" the same id ", n,
                     "; every piece needs its own id");
            bpe->add_piece(it.key(), n);
        }
        int32_t rank = 0;
        for (const auto& m : j.at("merges")) {
            std::string left, right;
            if (m.is_string()) {
                std::string s = m.get<std::string>();
                size_t space = s.find(' ', 1);
                if (space == std::string::npos) fail(file, ": model.merges[", rank, "] \"", s, "\" is not \"left right\"");
                left = s.substr(0, space);
                right = s.substr(space + 1);
            } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
                left = m[0].get<std::string>();
                right = m[1].get<std::string>();
            } else {
                fail(file, ": model.merges[", rank, "] must be \"left right\" or [left, right]");
            }
            if (!bpe->add_merge(left, right, rank))
                fail(file, ": model.merges[", rank, "] (\"", left, "\", \"", right, "\") uses a piece missing from model.vocab");
            ++rank;
        }
        if (j.contains("unk_token") && j["unk_token"].is_string()) {
            bpe->unk_id = bpe->id_of(j["unk_token"].get<std::string>());
        }
        bpe->fuse_unk = j.value("fuse_unk", false);
        bpe->byte_fallback = j.value("byte_fallback", false);
        bpe->ignore_merges = j.value("ignore_merges", false);
        p.bpe = std::move(bpe);
    }
};

}  // namespace

std::shared_ptr<tokenizer> load_bpe_tokenizer(const std::string& dir) {
    const std::string path = path_join(dir, "tokenizer.json");
    reader r{path};
    json j = parse_json(read_file(path), path);
    auto p = std::make_shared<pipeline>();
    p->name = path;
    p->kind = "bpe";
    try {
        if (!j.is_object() || !j.contains("model")) fail(path, ": no \"model\" object");
        if (j.contains("truncation") && !j["truncation"].is_null())
            fail(path, ": truncation is set; remove it (cairun does not truncate inside the tokenizer)");
        r.model(j["model"], *p);
        r.normalizer(j.value("normalizer", json()), "normalizer", *p);
        r.pre_tokenizer(j.value("pre_tokenizer", json()), "pre_tokenizer", *p);
        r.decoder(j.value("decoder", json()), "decoder", *p);
        r.post_processor(j.value("post_processor", json()), "post_processor", *p);
        const json added = j.value("added_tokens", json::array());
        if (!added.is_array()) fail(path, ": added_tokens must be a list of {id, content, ...}");
        for (size_t k = 0; k < added.size(); ++k) {
            const json& a = added[k];
            const std::string where = "added_tokens[" + std::to_string(k) + "]";
            if (!a.is_object() || !a.contains("id") || !a.contains("content") || !a["content"].is_string())
                fail(path, ": ", where, " must be an object with an \"id\" and a string \"content\", got ", a.dump());
            added_token t;
            t.id = r.token_id(a["id"], where + ".id");
            t.content = a["content"].get<std::string>();
            if (t.content.empty()) fail(path, ": ", where, ".content is empty");
            bool* flags[] = {&t.special, &t.lstrip, &t.rstrip, &t.single_word, &t.normalized};
            const char* names[] = {"special", "lstrip", "rstrip", "single_word", "normalized"};
            for (size_t f = 0; f < 5; ++f) {
                const json v = a.value(names[f], json(false));
                if (!v.is_boolean()) fail(path, ": ", where, ".", names[f], " must be true or false, got ", v.dump());
                *flags[f] = v.get<bool>();
            }
            try {
                p->added.add(t);
            } catch (const cai::error& e) {
                fail(path, ": ", where, ": ", e.what());
            }
        }
    } catch (const json::exception& e) {
        fail(path, ": unexpected structure: ", json_error_text(e.what()));
    }
    hf_config config = hf_config::read(dir);
    // The defaults of LlamaTokenizerFast / GemmaTokenizerFast when the config omits a name.
    auto default_name = [&](std::optional<std::string>& name, const char* value) {
        if (!name && p->piece_to_id(value) >= 0) name = value;
    };
    if (config.is_gemma()) {
        default_name(config.bos_token, "<bos>");
        default_name(config.eos_token, "<eos>");
        default_name(config.unk_token, "<unk>");
        default_name(config.pad_token, "<pad>");
    } else if (config.is_llama_like()) {
        default_name(config.bos_token, "<s>");
        default_name(config.eos_token, "</s>");
        default_name(config.unk_token, "<unk>");
    }
    apply_hf_config(*p, config);
    if (config.is_llama_like()) {
        // LlamaTokenizerFast / GemmaTokenizerFast rebuild the post-processor from the config.
        set_bos_eos_template(*p, config.add_bos_token.value_or(true), config.add_eos_token.value_or(false));
    } else {
        p->add_bos = p->bos_id >= 0 && !p->prefix_ids.empty() && p->prefix_ids.front() == p->bos_id;
        p->add_eos = p->eos_id >= 0 && !p->suffix_ids.empty() && p->suffix_ids.back() == p->eos_id;
    }
    return p;
}

}  // namespace cai

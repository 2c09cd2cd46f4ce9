#include "tokenizer/hf_config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "tokenizer/pipeline.h"

namespace cai::tok {

namespace {

using json = nlohmann::json;

json read_json(const std::string& path) {
    return parse_json(read_file(path), path);
}

// A token field: "text", {"content": "text", ...} or null.
std::optional<std::string> token_name(const json& v, const std::string& file, const char* key) {
    if (v.is_null()) return std::nullopt;
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    fail(file, ": field \"", key, "\" must be a string or {\"content\": ...}, got ", v.dump());
}

std::optional<bool> opt_bool(const json& j, const std::string& file, const char* key) {
    if (!j.contains(key) || j[key].is_null()) return std::nullopt;
    if (!j[key].is_boolean()) fail(file, ": field \"", key, "\" must be true or false, got ", j[key].dump());
    return j[key].get<bool>();
}

}  // namespace

hf_config hf_config::read(const std::string& dir) {
    hf_config c;
    c.dir = dir;
    const std::string map_path = path_join(dir, "special_tokens_map.json");
    const std::string config_path = path_join(dir, "tokenizer_config.json");
    // special_tokens_map.json first; tokenizer_config.json overrides it.
    for (const std::string& path : {map_path, config_path}) {
        if (!file_exists(path)) continue;
        json j = read_json(path);
        if (!j.is_object()) fail(path, ": must hold a JSON object");
        const char* keys[] = {"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"};
        std::optional<std::string>* fields[] = {&c.bos_token, &c.eos_token, &c.unk_token, &c.pad_token,
                                                &c.sep_token, &c.cls_token, &c.mask_token};
        for (int k = 0; k < 7; ++k)
            if (j.contains(keys[k])) *fields[k] = token_name(j[keys[k]], path, keys[k]);
        if (j.contains("additional_special_tokens") && j["additional_special_tokens"].is_array()) {
            c.additional_special_tokens.clear();
            for (const auto& t : j["additional_special_tokens"])
                if (auto name = token_name(t, path, "additional_special_tokens")) c.additional_special_tokens.push_back(*name);
        }
        if (path != config_path) continue;
        if (j.contains("tokenizer_class") && j["tokenizer_class"].is_string())
            c.tokenizer_class = j["tokenizer_class"].get<std::string>();
        c.add_bos_token = opt_bool(j, path, "add_bos_token");
        c.add_eos_token = opt_bool(j, path, "add_eos_token");
        c.legacy = opt_bool(j, path, "legacy");
        c.add_prefix_space = opt_bool(j, path, "add_prefix_space");
        c.clean_up_tokenization_spaces = opt_bool(j, path, "clean_up_tokenization_spaces");
        c.do_lower_case = opt_bool(j, path, "do_lower_case");
        c.split_by_punct = opt_bool(j, path, "split_by_punct");
        if (j.contains("added_tokens_decoder")) {
            const json& d = j["added_tokens_decoder"];
            if (!d.is_object()) fail(path, ": field \"added_tokens_decoder\" must be an object");
            for (auto it = d.begin(); it != d.end(); ++it) {
                added_token t;
                try {
                    t.id = std::stoi(it.key());
                } catch (...) {
                    fail(path, ": added_tokens_decoder key \"", it.key(), "\" is not a token id");
                }
                const json& v = it.value();
                if (!v.is_object() || !v.contains("content") || !v["content"].is_string())
                    fail(path, ": added_tokens_decoder[\"", it.key(), "\"] needs a string \"content\"");
                t.content = v["content"].get<std::string>();
                t.special = v.value("special", false);
                t.lstrip = v.value("lstrip", false);
                t.rstrip = v.value("rstrip", false);
                t.single_word = v.value("single_word", false);
                t.normalized = v.value("normalized", !t.special);
                c.added_tokens_decoder.push_back(t);
            }
        }
    }
    // added_tokens.json ({"token": id}, older transformers' save format): tokens
    // added_tokens_decoder does not already give.
    const std::string added_path = path_join(dir, "added_tokens.json");
    if (file_exists(added_path)) {
        json j = read_json(added_path);
        if (!j.is_object()) fail(added_path, ": must hold a JSON object {\"token\": id, ...}");
        for (auto it = j.begin(); it != j.end(); ++it) {
            if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
                fail(added_path, ": token \"", it.key(), "\" must map to a non-negative integer id, got ",
                     it.value().dump());
            added_token t;
            t.content = it.key();
            t.id = it.value().get<int32_t>();
            bool known = false;
            for (const added_token& d : c.added_tokens_decoder) known = known || d.id == t.id || d.content == t.content;
            if (known) continue;
            for (const auto* name : {&c.bos_token, &c.eos_token, &c.unk_token, &c.pad_token, &c.sep_token,
                                     &c.cls_token, &c.mask_token})
                t.special = t.special || (*name && **name == t.content);
            for (const std::string& name : c.additional_special_tokens) t.special = t.special || name == t.content;
            t.normalized = !t.special;
            c.added_tokens_decoder.push_back(t);
        }
    }
    return c;
}

bool hf_config::is_gemma() const { return tokenizer_class.find("Gemma") != std::string::npos; }

bool hf_config::is_llama_like() const {
    return tokenizer_class.find("Llama") != std::string::npos || is_gemma();
}

void apply_hf_config(pipeline& p, const hf_config& c) {
    for (const added_token& t : c.added_tokens_decoder)
        if (!p.added.by_content(t.content)) p.added.add(t);
    std::vector<std::string> specials;
    // transformers' SPECIAL_TOKENS_ATTRIBUTES order: a name missing from the
    // vocabulary gets the next free id in this order.
    for (const auto* name : {&c.bos_token, &c.eos_token, &c.unk_token, &c.sep_token, &c.pad_token, &c.cls_token,
                             &c.mask_token})
        if (*name) specials.push_back(**name);
    specials.insert(specials.end(), c.additional_special_tokens.begin(), c.additional_special_tokens.end());
    for (const std::string& s : specials) {
        if (s.empty()) continue;
        if (const added_token* t = p.added.by_content(s)) {
            if (!t->special) {
                added_token copy = *t;
                copy.special = true;
                p.added.add(copy);
            }
            continue;
        }
        added_token t;
        t.content = s;
        t.special = true;
        t.id = p.piece_to_id(s);
        if (t.id < 0) t.id = p.vocab_size();  // transformers appends unknown special tokens
        p.added.add(t);
    }
    auto id_of = [&](const std::optional<std::string>& name) { return name ? p.piece_to_id(*name) : -1; };
    p.bos_id = id_of(c.bos_token);
    p.eos_id = id_of(c.eos_token);
    p.pad_id = id_of(c.pad_token);
    p.clean_up_tokenization_spaces = c.clean_up_tokenization_spaces.value_or(false);
}

void set_bos_eos_template(pipeline& p, bool add_bos, bool add_eos) {
    p.prefix_ids.clear();
    p.suffix_ids.clear();
    if (add_bos) {
        if (p.bos_id < 0) fail(p.name, ": add_bos_token is true but there is no bos_token");
        p.prefix_ids.push_back(p.bos_id);
    }
    if (add_eos) {
        if (p.eos_id < 0) fail(p.name, ": add_eos_token is true but there is no eos_token");
        p.suffix_ids.push_back(p.eos_id);
    }
    p.add_bos = add_bos;
    p.add_eos = add_eos;
}

}  // namespace cai::tok

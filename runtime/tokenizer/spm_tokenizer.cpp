#include "tokenizer/spm_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "core/fs.h"
#include "tokenizer/hf_config.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/spm.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

namespace cai {

// ------------------------------------------------------------ protobuf reader

namespace {

struct wire {
    const std::string& bytes;
    const std::string& name;
    size_t pos, end;

    uint64_t varint() {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (pos >= end) fail(name, ": truncated sentencepiece model (varint at byte ", pos, ")");
            unsigned char b = bytes[pos++];
            v |= uint64_t(b & 0x7F) << shift;
            if (!(b & 0x80)) return v;
        }
        fail(name, ": malformed varint at byte ", pos);
    }
    // Reads one field; calls on_field(field, wire_type, value, sub) where sub
    // is the length-delimited payload range.
    template <class Fn>
    void each_field(Fn&& on_field) {
        while (pos < end) {
            uint64_t key = varint();
            uint32_t field = uint32_t(key >> 3), type = uint32_t(key & 7);
            uint64_t value = 0;
            size_t sub_start = 0, sub_end = 0;
            switch (type) {
                case 0: value = varint(); break;
                case 1:
                    if (pos + 8 > end) fail(name, ": truncated sentencepiece model");
                    std::memcpy(&value, bytes.data() + pos, 8);
                    pos += 8;
                    break;
                case 2: {
                    uint64_t len = varint();
                    if (len > end - pos) fail(name, ": truncated sentencepiece model (field ", field, ")");
                    sub_start = pos;
                    sub_end = pos + len;
                    pos = sub_end;
                    break;
                }
                case 5: {
                    if (pos + 4 > end) fail(name, ": truncated sentencepiece model");
                    uint32_t v32;
                    std::memcpy(&v32, bytes.data() + pos, 4);
                    value = v32;
                    pos += 4;
                    break;
                }
                default: fail(name, ": not a sentencepiece model (wire type ", type, " at byte ", pos, ")");
            }
            on_field(field, type, value, sub_start, sub_end);
        }
    }
};

}  // namespace

spm_proto spm_proto::parse(const std::string& bytes, const std::string& name) {
    spm_proto m;
    wire top{bytes, name, 0, bytes.size()};
    top.each_field([&](uint32_t field, uint32_t type, uint64_t, size_t a, size_t b) {
        if (type != 2) return;
        if (field == 1) {  // SentencePiece
            piece p;
            wire w{bytes, name, a, b};
            w.each_field([&](uint32_t f, uint32_t t, uint64_t v, size_t sa, size_t sb) {
                if (f == 1 && t == 2) p.text = bytes.substr(sa, sb - sa);
                else if (f == 2 && t == 5) {
                    uint32_t v32 = uint32_t(v);
                    std::memcpy(&p.score, &v32, 4);
                } else if (f == 3 && t == 0) p.type = int(v);
            });
            m.pieces.push_back(std::move(p));
        } else if (field == 2) {  // TrainerSpec
            wire w{bytes, name, a, b};
            w.each_field([&](uint32_t f, uint32_t t, uint64_t v, size_t sa, size_t sb) {
                if (t == 0) {
                    if (f == 3) m.model_type = int(v);
                    else if (f == 35) m.byte_fallback = v != 0;
                    else if (f == 40) m.unk_id = int32_t(v);
                    else if (f == 41) m.bos_id = int32_t(v);
                    else if (f == 42) m.eos_id = int32_t(v);
                    else if (f == 43) m.pad_id = int32_t(v);
                } else if (t == 2 && f == 45) {
                    m.unk_piece = bytes.substr(sa, sb - sa);
                }
            });
        } else if (field == 3) {  // NormalizerSpec
            wire w{bytes, name, a, b};
            w.each_field([&](uint32_t f, uint32_t t, uint64_t v, size_t sa, size_t sb) {
                if (f == 3 && t == 0) m.add_dummy_prefix = v != 0;
                else if (f == 2 && t == 2) m.precompiled_charsmap = bytes.substr(sa, sb - sa);
            });
        }
    });
    if (m.pieces.empty()) fail(name, ": not a sentencepiece model (no pieces)");
    return m;
}

// ---------------------------------------------------------------- conversion

namespace {

using namespace cai::tok;

const char* const metaspace = "\xE2\x96\x81";  // U+2581 "▁"

// transformers' generate_merges: every split of every piece whose halves are
// both pieces, ordered by the piece's score (highest first), ties by the
// halves' ids.
void add_score_merges(bpe_model& bpe, const std::vector<std::pair<std::string, float>>& vocab_scores,
                      const std::unordered_map<std::string, int32_t>& lookup) {
    struct candidate {
        std::string left, right;
        float score;
        int32_t left_id, right_id;
    };
    std::vector<candidate> merges;
    std::unordered_map<std::string, bool> seen;
    for (const auto& [piece, score] : vocab_scores) {
        if (seen.count(piece)) continue;  // dict(vocab_scores) keeps one entry per piece
        seen[piece] = true;
        std::vector<candidate> local;
        // Python slices by characters: split only at UTF-8 character boundaries.
        for (size_t i = 1; i < piece.size(); ++i) {
            if ((static_cast<unsigned char>(piece[i]) & 0xC0) == 0x80) continue;
            auto l = lookup.find(piece.substr(0, i)), r = lookup.find(piece.substr(i));
            if (l != lookup.end() && r != lookup.end())
                local.push_back({l->first, r->first, score, l->second, r->second});
        }
        std::stable_sort(local.begin(), local.end(), [](const candidate& a, const candidate& b) {
            return std::make_pair(a.left_id, a.right_id) < std::make_pair(b.left_id, b.right_id);
        });
        merges.insert(merges.end(), local.begin(), local.end());
    }
    std::stable_sort(merges.begin(), merges.end(), [](const candidate& a, const candidate& b) { return a.score > b.score; });
    int32_t rank = 0;
    for (const auto& m : merges) bpe.add_merge(m.left, m.right, rank++);
}

}  // namespace

std::shared_ptr<tokenizer> load_spm_tokenizer(const std::string& dir) {
    const std::string path = path_join(dir, "tokenizer.model");
    spm_proto proto = spm_proto::parse(read_file(path), path);
    hf_config config = hf_config::read(dir);
    const bool gemma = config.is_gemma() ||
                       (config.tokenizer_class.empty() && proto.pieces.size() > 2 && proto.pieces[2].text == "<bos>");
    const bool legacy = config.legacy.value_or(true);
    const bool add_prefix_space = config.add_prefix_space.value_or(true);

    auto p = std::make_shared<pipeline>();
    p->name = path;
    p->kind = "spm";

    // Vocabulary as the converter builds it.
    std::vector<std::pair<std::string, float>> vocab_scores;
    for (const auto& piece : proto.pieces) vocab_scores.push_back({piece.text, piece.score});
    if (gemma) {
        // The first three pieces are named after the tokenizer's pad, eos, bos.
        const std::optional<std::string>* names[] = {&config.pad_token, &config.eos_token, &config.bos_token};
        for (int k = 0; k < 3 && k < int(vocab_scores.size()); ++k)
            vocab_scores[size_t(k)] = {names[k]->value_or(proto.pieces[size_t(k)].text), 0.0f};
        bool has_tab = std::any_of(vocab_scores.begin(), vocab_scores.end(), [](auto& v) { return v.first == "\t"; });
        if (!has_tab)
            for (auto& v : vocab_scores)
                if (v.first == "<0x09>") {
                    v = {"\t", 0.0f};
                    break;
                }
    } else {
        for (int k = 0; k < 3 && k < int(vocab_scores.size()); ++k) vocab_scores[size_t(k)].second = 0.0f;
    }

    if (proto.model_type == 2) {
        auto bpe = std::make_unique<bpe_model>();
        for (size_t id = 0; id < vocab_scores.size(); ++id) bpe->add_piece(vocab_scores[id].first, int32_t(id));
        // Merge halves are looked up in the sentencepiece vocabulary itself
        // (for Gemma, with "\t" also naming the <0x09> piece).
        std::unordered_map<std::string, int32_t> lookup;
        for (size_t id = 0; id < proto.pieces.size(); ++id) lookup.emplace(proto.pieces[id].text, int32_t(id));
        if (gemma && !lookup.count("\t") && lookup.count("<0x09>")) lookup["\t"] = lookup["<0x09>"];
        add_score_merges(*bpe, vocab_scores, lookup);
        bpe->unk_id = bpe->id_of(proto.unk_piece);
        bpe->fuse_unk = true;
        bpe->byte_fallback = true;
        p->bpe = std::move(bpe);
    } else if (proto.model_type == 1) {
        auto uni = std::make_unique<unigram_model>();
        for (const auto& [piece, score] : vocab_scores) uni->add_piece(piece, score);
        uni->finish();
        uni->unk_id = gemma ? 3 : 0;
        uni->byte_fallback = true;
        p->unigram = std::move(uni);
    } else {
        fail(path, ": trainer_spec.model_type ", proto.model_type,
             " is not supported (supported: 1 UNIGRAM, 2 BPE)");
    }

    // Control pieces are special added tokens, user-defined pieces plain added tokens.
    for (size_t id = 0; id < proto.pieces.size(); ++id) {
        const auto& piece = proto.pieces[id];
        if (piece.type != spm_proto::control && piece.type != spm_proto::user_defined) continue;
        added_token t;
        t.content = vocab_scores[id].first;
        t.id = int32_t(id);
        t.special = piece.type == spm_proto::control ||
                    (gemma && (t.content == "<start_of_turn>" || t.content == "<end_of_turn>"));
        p->added.add(t);
    }

    // Normalizer, pre-tokenizer and decoder of the converted fast tokenizer.
    if (gemma) {
        p->normalizers.push_back({normalizer_step::replace, " ", metaspace});
    } else if (legacy) {
        if (add_prefix_space) p->normalizers.push_back({normalizer_step::prepend, metaspace, ""});
        p->normalizers.push_back({normalizer_step::replace, " ", metaspace});
    } else {
        pre_tokenizer_step s{};
        s.kind = pre_tokenizer_step::metaspace;
        s.prepend_scheme = add_prefix_space ? pre_tokenizer_step::first : pre_tokenizer_step::never;
        s.split_on_replacement = false;
        p->pre_tokenizers.push_back(std::move(s));
    }
    p->decoders.push_back({decoder_step::replace, metaspace, " "});
    p->decoders.push_back({decoder_step::byte_fallback, "", ""});
    p->decoders.push_back({decoder_step::fuse, "", ""});
    if (!gemma && add_prefix_space) {
        decoder_step strip{decoder_step::strip, " ", ""};
        strip.start = 1;
        p->decoders.push_back(strip);
    }

    // Special token names default to the model's own pieces.
    auto piece_name = [&](int32_t id) -> std::optional<std::string> {
        if (id < 0 || size_t(id) >= vocab_scores.size()) return std::nullopt;
        return vocab_scores[size_t(id)].first;
    };
    if (!config.unk_token) config.unk_token = piece_name(proto.unk_id);
    if (!config.bos_token) config.bos_token = piece_name(proto.bos_id);
    if (!config.eos_token) config.eos_token = piece_name(proto.eos_id);
    if (!config.pad_token && gemma) config.pad_token = piece_name(proto.pad_id >= 0 ? proto.pad_id : 0);
    apply_hf_config(*p, config);
    set_bos_eos_template(*p, config.add_bos_token.value_or(true), config.add_eos_token.value_or(false));
    return p;
}

std::shared_ptr<tokenizer> load_deberta_spm_tokenizer(const std::string& dir) {
    const std::string path = path_join(dir, "spm.model");
    spm_proto proto = spm_proto::parse(read_file(path), path);
    if (proto.model_type != 1)
        fail(path, ": trainer_spec.model_type ", proto.model_type,
             " is not supported for DeBERTa-v2/v3 (DebertaV2Converter builds a Unigram model: 1 UNIGRAM)");
    if (proto.unk_id < 0 || size_t(proto.unk_id) >= proto.pieces.size())
        fail(path, ": trainer_spec.unk_id ", proto.unk_id, " is not a piece id (the model has ",
             proto.pieces.size(), " pieces)");
    hf_config config = hf_config::read(dir);

    auto p = std::make_shared<pipeline>();
    p->name = path;
    p->kind = "spm";

    // Model: every piece with its score, as SpmConverter's vocab.
    auto uni = std::make_unique<unigram_model>();
    for (const auto& piece : proto.pieces) uni->add_piece(piece.text, piece.score);
    uni->finish();
    uni->unk_id = proto.unk_id;
    uni->byte_fallback = proto.byte_fallback;
    p->unigram = std::move(uni);

    // Control pieces are special added tokens, user-defined pieces plain ones.
    for (size_t id = 0; id < proto.pieces.size(); ++id) {
        const auto& piece = proto.pieces[id];
        if (piece.type != spm_proto::control && piece.type != spm_proto::user_defined) continue;
        added_token t;
        t.content = piece.text;
        t.id = int32_t(id);
        t.special = piece.type == spm_proto::control;
        p->added.add(t);
    }

    // Normalizer: sentencepiece's remove_extra_whitespaces restated as Strip
    // and Replace around the model's own normalization table.
    if (config.do_lower_case.value_or(false)) p->normalizers.push_back({normalizer_step::lowercase, "", ""});
    p->normalizers.push_back({normalizer_step::strip, "", ""});
    if (!proto.precompiled_charsmap.empty()) {
        normalizer_step n{normalizer_step::precompiled, "", ""};
        n.charsmap = std::make_shared<precompiled_charsmap>(proto.precompiled_charsmap,
                                                            path + ": normalizer_spec.precompiled_charsmap");
        p->normalizers.push_back(std::move(n));
    }
    normalizer_step spaces{normalizer_step::replace_regex, " {2,}", " "};
    spaces.pattern = compile_regex(" {2,}", path);
    p->normalizers.push_back(std::move(spaces));

    // Pre-tokenizer and decoder.
    if (config.split_by_punct.value_or(false)) {
        pre_tokenizer_step s{};
        s.kind = pre_tokenizer_step::punctuation;
        s.punctuation_behavior = "isolated";
        p->pre_tokenizers.push_back(std::move(s));
    }
    pre_tokenizer_step meta{};
    meta.kind = pre_tokenizer_step::metaspace;
    meta.replacement = metaspace;
    meta.prepend_scheme = pre_tokenizer_step::always;
    meta.split_on_replacement = true;
    p->pre_tokenizers.push_back(std::move(meta));
    decoder_step decode{decoder_step::metaspace, metaspace, ""};
    decode.prepend = true;
    p->decoders.push_back(decode);

    // Special tokens: DebertaV2Tokenizer's defaults where the files name none.
    auto default_name = [](std::optional<std::string>& name, const char* value) {
        if (!name) name = value;
    };
    default_name(config.bos_token, "[CLS]");
    default_name(config.eos_token, "[SEP]");
    default_name(config.unk_token, "[UNK]");
    default_name(config.sep_token, "[SEP]");
    default_name(config.pad_token, "[PAD]");
    default_name(config.cls_token, "[CLS]");
    default_name(config.mask_token, "[MASK]");
    apply_hf_config(*p, config);

    // Post-processor: [CLS] A [SEP] and [CLS] A [SEP] B [SEP], B in segment 1.
    const int32_t cls = p->piece_to_id(*config.cls_token), sep = p->piece_to_id(*config.sep_token);
    if (cls < 0 || sep < 0)
        fail(dir, ": cls_token \"", *config.cls_token, "\" and sep_token \"", *config.sep_token,
             "\" must both be tokens of ", path);
    p->prefix_ids = {cls};
    p->suffix_ids = {sep};
    p->single_template = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}};
    p->pair_template = {{-1, {cls}, 0}, {0, {}, 0}, {-1, {sep}, 0}, {1, {}, 1}, {-1, {sep}, 1}};
    p->add_bos = p->bos_id >= 0 && p->bos_id == cls;
    p->add_eos = p->eos_id >= 0 && p->eos_id == sep;
    return p;
}

// ------------------------------------------------------------------- training

namespace {

std::string join_symbols(const std::vector<std::string>& symbols, const char* what) {
    std::string out;
    for (const auto& s : symbols) {
        if (s.empty() || s.find_first_of(", \t\n") != std::string::npos)
            fail("cai.tokenizer.train: ", what, " entry \"", s, "\" must be non-empty without spaces or commas");
        out += (out.empty() ? "" : ",") + s;
    }
    return out;
}

void check_flag_value(const std::string& value, const char* what) {
    if (value.empty() || value.find_first_of(" \t\n") != std::string::npos)
        fail("cai.tokenizer.train: ", what, " \"", value, "\" must be non-empty and contain no whitespace");
}

}  // namespace

void train_spm_tokenizer(const spm_train_options& o) {
    const char* fn = "cai.tokenizer.train";
    if (o.input.empty()) fail(fn, ": input must name at least one text file");
    for (const auto& f : o.input) {
        check_flag_value(f, "input file");
        if (f.find(',') != std::string::npos) fail(fn, ": input file \"", f, "\" must not contain a comma");
        if (!file_exists(f)) fail(fn, ": input file \"", f, "\" does not exist");
    }
    check_flag_value(o.dir, "dir");
    if (file_exists(o.dir) || is_directory(o.dir))
        fail(fn, ": dir \"", o.dir, "\" already exists; remove it or choose another");
    if (o.model_type != "bpe" && o.model_type != "unigram")
        fail(fn, ": model_type must be \"bpe\" or \"unigram\", got \"", o.model_type, "\"");
    if (o.style != "llama" && o.style != "gemma")
        fail(fn, ": style must be \"llama\" or \"gemma\", got \"", o.style, "\"");
    if (o.vocab_size < 8) fail(fn, ": vocab_size must be at least 8, got ", o.vocab_size);
    const bool gemma = o.style == "gemma";

    const std::string tmp = o.dir + ".tmp." + std::to_string(::getpid());
    make_directories(tmp);
    try {
        std::string inputs;
        for (const auto& f : o.input) inputs += (inputs.empty() ? "" : ",") + f;
        std::ostringstream args;
        args << "--input=" << inputs << " --model_prefix=" << path_join(tmp, "tokenizer")
             << " --vocab_size=" << o.vocab_size << " --model_type=" << o.model_type
             << " --character_coverage=" << o.character_coverage
             << " --byte_fallback=" << (o.byte_fallback ? "true" : "false")
             << " --split_digits=" << (o.split_digits ? "true" : "false")
             << " --normalization_rule_name=identity --remove_extra_whitespaces=false"
             << " --allow_whitespace_only_pieces=true --num_threads=" << std::max(1, o.threads)
             << " --max_sentence_length=" << o.max_sentence_length << " --minloglevel=2";
        if (o.input_sentence_size > 0)
            args << " --input_sentence_size=" << o.input_sentence_size << " --shuffle_input_sentence=true";
        if (gemma)
            args << " --add_dummy_prefix=false --pad_id=0 --eos_id=1 --bos_id=2 --unk_id=3"
                 << " --pad_piece=<pad> --eos_piece=<eos> --bos_piece=<bos> --unk_piece=<unk>";
        else
            args << " --add_dummy_prefix=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=3"
                 << " --unk_piece=<unk> --bos_piece=<s> --eos_piece=</s> --pad_piece=<pad>";
        if (!o.user_defined_symbols.empty())
            args << " --user_defined_symbols=" << join_symbols(o.user_defined_symbols, "user_defined_symbols");
        if (!o.control_symbols.empty())
            args << " --control_symbols=" << join_symbols(o.control_symbols, "control_symbols");
        spm_model::train(args.str());
        std::remove(path_join(tmp, "tokenizer.vocab").c_str());

        // tokenizer_config.json as transformers writes it for this style.
        nlohmann::ordered_json config;
        const char* names[4];
        if (gemma) {
            names[0] = "<pad>"; names[1] = "<eos>"; names[2] = "<bos>"; names[3] = "<unk>";
            config["tokenizer_class"] = "GemmaTokenizer";
            config["bos_token"] = "<bos>";
            config["eos_token"] = "<eos>";
            config["unk_token"] = "<unk>";
            config["pad_token"] = "<pad>";
        } else {
            names[0] = "<unk>"; names[1] = "<s>"; names[2] = "</s>"; names[3] = "<pad>";
            config["tokenizer_class"] = "LlamaTokenizer";
            config["bos_token"] = "<s>";
            config["eos_token"] = "</s>";
            config["unk_token"] = "<unk>";
            config["pad_token"] = "<pad>";
            config["legacy"] = false;
        }
        config["add_bos_token"] = true;
        config["add_eos_token"] = false;
        config["clean_up_tokenization_spaces"] = false;
        nlohmann::ordered_json decoder;
        for (int id = 0; id < 4; ++id)
            decoder[std::to_string(id)] = {{"content", names[id]}, {"lstrip", false}, {"normalized", false},
                                           {"rstrip", false}, {"single_word", false}, {"special", true}};
        config["added_tokens_decoder"] = decoder;
        write_file_atomic(path_join(tmp, "tokenizer_config.json"), config.dump(2) + "\n");
        rename_into_place(tmp, o.dir);
    } catch (...) {
        std::remove(path_join(tmp, "tokenizer.model").c_str());
        std::remove(path_join(tmp, "tokenizer.vocab").c_str());
        std::remove(path_join(tmp, "tokenizer_config.json").c_str());
        ::rmdir(tmp.c_str());
        throw;
    }
}

}  // namespace cai

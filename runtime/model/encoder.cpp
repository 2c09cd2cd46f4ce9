// Encoder classifiers (bert, roberta, distilbert, deberta-v2): config,
// weights and the eval-mode forward pass. See encoder.h for how the four
// families differ and how this follows transformers.
#include "model/encoder.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/strings.h"
#include "model/model.h"
#include "model/random.h"
#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"

namespace cai {
namespace {

using json = nlohmann::json;
using tensor_list = std::vector<std::pair<std::string, at::Tensor>>;

void check_activation(const std::string& name, const std::string& where, const char* field) {
    for (const char* a : {"gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh"})
        if (name == a) return;
    fail(where, ": field \"", field, "\" is \"", name,
         "\"; supported activations: gelu, gelu_new, gelu_pytorch_tanh, relu, tanh");
}

at::Tensor activation(const std::string& name, const at::Tensor& x) {
    if (name == "gelu") return at::gelu(x);
    if (name == "gelu_new" || name == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
    if (name == "relu") return at::relu(x);
    return at::tanh(x);
}

// x: (..., in), w: (out, in), b: (out) or undefined -> (..., out)
at::Tensor dense(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) { return at::linear(x, w, b); }

// x: (B, T, H*D) -> (B, H, T, D)
at::Tensor split_heads(const at::Tensor& x, int64_t H) {
    return x.view({x.size(0), x.size(1), H, -1}).permute({0, 2, 1, 3});
}

const std::string& base_prefix(const std::string& model_type) {
    static const std::map<std::string, std::string> prefixes = {
        {"bert", "bert."}, {"roberta", "roberta."}, {"distilbert", "distilbert."}, {"deberta-v2", "deberta."}};
    return prefixes.at(model_type);
}

}  // namespace

// Named tensors by HF name, handed out once each, with shape checks.
class encoder_classifier::weight_source {
public:
    weight_source(const tensor_list& tensors, at::ScalarType dtype, std::string where)
        : dtype_(dtype), where_(std::move(where)) {
        for (const auto& [name, t] : tensors) {
            std::string key = name;
            // Old checkpoints name LayerNorm parameters gamma/beta; transformers renames them.
            if (ends_with(key, "LayerNorm.gamma")) key = key.substr(0, key.size() - 5) + "weight";
            if (ends_with(key, "LayerNorm.beta")) key = key.substr(0, key.size() - 4) + "bias";
            if (!by_name_.emplace(key, t).second) fail(where_, ": tensor \"", key, "\" appears twice");
        }
    }
    // Generating mode: every tensor asked for is drawn from gen and recorded.
    weight_source(rng* gen, double std) : dtype_(at::kFloat), where_("random"), gen_(gen), std_(std) {}
    tensor_list generated;

    bool has(const std::string& name) const { return by_name_.count(name) != 0; }
    // The tensor in `as` (the compute dtype unless float32 is asked for).
    at::Tensor take(const std::string& name, std::vector<int64_t> shape, bool float32 = false) {
        if (gen_) {
            at::Tensor t = at::empty(shape, at::kFloat);
            float* p = t.data_ptr<float>();
            const bool norm = ends_with(name, "LayerNorm.weight") || ends_with(name, "layer_norm.weight");
            for (int64_t i = 0; i < t.numel(); ++i)
                p[i] = (float)((norm ? 1.0 : 0.0) + gen_->normal() * (norm ? 0.1 : std_));
            generated.emplace_back(name, t);
            return t;
        }
        auto it = by_name_.find(name);
        if (it == by_name_.end())
            fail(where_, ": missing tensor \"", name, "\" (shape ", shape_string(shape),
                 "); is this checkpoint saved by the *ForSequenceClassification class config.json names?");
        if (it->second.sizes() != at::IntArrayRef(shape))
            fail(where_, ": tensor \"", name, "\" has shape ", shape_string(it->second.sizes()), ", expected ",
                 shape_string(shape), " (from config.json)");
        used_.insert(name);
        return it->second.to(float32 ? at::kFloat : dtype_).contiguous().clone();
    }
    // Tensors nobody took, except those transformers also ignores.
    std::vector<std::string> unused(const std::vector<std::string>& ignorable_parts) const {
        std::vector<std::string> out;
        for (const auto& [name, t] : by_name_) {
            if (used_.count(name)) continue;
            bool ignore = false;
            for (const auto& part : ignorable_parts) ignore = ignore || name.find(part) != std::string::npos;
            if (!ignore) out.push_back(name);
        }
        return out;
    }

private:
    std::map<std::string, at::Tensor> by_name_;
    std::set<std::string> used_;
    at::ScalarType dtype_;
    std::string where_;
    rng* gen_ = nullptr;
    double std_ = 0;
};


bool is_encoder_model_type(const std::string& model_type) {
    return model_type == "bert" || model_type == "roberta" || model_type == "distilbert" ||
           model_type == "deberta-v2";
}

std::string config_model_type(const std::string& json_text, const std::string& where) {
    json j = parse_json(json_text, where);
    if (j.is_object() && j.contains("model_type") && j["model_type"].is_string())
        return j["model_type"].get<std::string>();
    return "";
}

encoder_config parse_encoder_config(const std::string& json_text, const std::string& where) {
    json j = parse_json(json_text, where);
    if (!j.is_object()) fail(where, ": expected a JSON object");
    json_fields r{j, where};
    encoder_config c;
    c.json = json_text;
    c.model_type = r.string("model_type", "");
    if (!is_encoder_model_type(c.model_type))
        fail(where, ": model_type is \"", c.model_type,
             "\"; an encoder classifier is one of bert, roberta, distilbert, deberta-v2");
    if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].empty() ||
        !j["architectures"][0].is_string())
        fail(where, ": field \"architectures\" must be a list naming a *ForSequenceClassification class (e.g. [\"",
             c.model_type == "deberta-v2" ? "DebertaV2" : c.model_type == "distilbert" ? "DistilBert"
             : c.model_type == "roberta" ? "Roberta" : "Bert",
             "ForSequenceClassification\"])");
    c.architecture = j["architectures"][0].get<std::string>();
    if (!ends_with(c.architecture, "ForSequenceClassification"))
        fail(where, ": architectures[0] is \"", c.architecture,
             "\"; a classifier or reward model is a *ForSequenceClassification checkpoint (the base model or a "
             "masked-LM head has no classification head to score with)");

    if (c.model_type == "distilbert") {
        c.vocab_size = r.positive("vocab_size", 30522);
        c.hidden_size = r.positive("dim", 768);
        c.num_layers = r.positive("n_layers", 6);
        c.num_heads = r.positive("n_heads", 12);
        c.intermediate_size = r.positive("hidden_dim", 3072);
        c.hidden_act = r.string("activation", "gelu");
        c.max_position_embeddings = r.positive("max_position_embeddings", 512);
        c.type_vocab_size = 0;
        c.layer_norm_eps = 1e-12;
        c.pad_token_id = r.integer("pad_token_id", 0);
        check_activation(c.hidden_act, where, "activation");
    } else {
        const bool deberta = c.model_type == "deberta-v2";
        c.vocab_size = r.positive("vocab_size", deberta ? 128100 : c.model_type == "roberta" ? 50265 : 30522);
        c.hidden_size = r.positive("hidden_size", deberta ? 1536 : 768);
        c.num_layers = r.positive("num_hidden_layers", deberta ? 24 : 12);
        c.num_heads = r.positive("num_attention_heads", deberta ? 24 : 12);
        c.intermediate_size = r.positive("intermediate_size", deberta ? 6144 : 3072);
        c.hidden_act = r.string("hidden_act", "gelu");
        check_activation(c.hidden_act, where, "hidden_act");
        c.max_position_embeddings = r.positive("max_position_embeddings", 512);
        c.type_vocab_size = r.integer("type_vocab_size", deberta ? 0 : 2);
        if (c.type_vocab_size < 0) fail(where, ": field \"type_vocab_size\" must be >= 0");
        c.layer_norm_eps = r.number("layer_norm_eps", deberta ? 1e-7 : 1e-12);
        c.pad_token_id = r.integer("pad_token_id", c.model_type == "roberta" ? 1 : 0);
        std::string pet = r.string("position_embedding_type", "absolute");
        if (pet != "absolute")
            fail(where, ": position_embedding_type \"", pet, "\" is not supported (only \"absolute\")");
        if (deberta) {
            c.relative_attention = r.boolean("relative_attention", false);
            c.max_relative_positions = r.integer("max_relative_positions", -1);
            if (c.max_relative_positions < 1) c.max_relative_positions = c.max_position_embeddings;
            c.position_buckets = r.integer("position_buckets", -1);
            c.share_att_key = r.boolean("share_att_key", false);
            c.position_biased_input = r.boolean("position_biased_input", true);
            c.embedding_size = r.positive("embedding_size", c.hidden_size);
            c.pooler_hidden_size = r.positive("pooler_hidden_size", c.hidden_size);
            c.pooler_hidden_act = r.string("pooler_hidden_act", "gelu");
            check_activation(c.pooler_hidden_act, where, "pooler_hidden_act");
            std::vector<std::string> types;
            if (r.present("pos_att_type")) {
                const json& v = j["pos_att_type"];
                if (v.is_string()) {  // "p2c|c2p", as DebertaV2Config splits it
                    std::string s = v.get<std::string>();
                    for (size_t a = 0, b; a <= s.size(); a = b + 1) {
                        b = s.find('|', a);
                        if (b == std::string::npos) b = s.size();
                        std::string t = s.substr(a, b - a);
                        t.erase(0, t.find_first_not_of(' '));
                        t.erase(t.find_last_not_of(' ') + 1);
                        std::transform(t.begin(), t.end(), t.begin(), ::tolower);
                        if (!t.empty()) types.push_back(t);
                    }
                } else if (v.is_array()) {
                    for (const auto& x : v) {
                        if (!x.is_string()) fail(where, ": field \"pos_att_type\" must list strings, got ", v.dump());
                        types.push_back(x.get<std::string>());
                    }
                } else {
                    fail(where, ": field \"pos_att_type\" must be a list like [\"p2c\", \"c2p\"] or \"p2c|c2p\"");
                }
            }
            for (const auto& t : types) {
                if (t == "c2p") c.c2p = true;
                else if (t == "p2c") c.p2c = true;
                else fail(where, ": pos_att_type \"", t, "\" is not supported (c2p, p2c)");
            }
            std::string norm = r.string("norm_rel_ebd", "none");
            std::transform(norm.begin(), norm.end(), norm.begin(), ::tolower);
            c.norm_rel_layer_norm = norm.find("layer_norm") != std::string::npos;
            if (r.integer("conv_kernel_size", 0) > 0)
                fail(where, ": conv_kernel_size > 0 (DeBERTa-v2's convolution layer) is not supported; "
                     "DeBERTa-v3 checkpoints have none");
            if (r.integer("z_steps", 0) > 0) fail(where, ": z_steps > 0 is not supported");
        }
    }
    if (c.hidden_size % c.num_heads != 0)
        fail(where, ": the hidden size ", c.hidden_size, " is not a multiple of the number of attention heads ",
             c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
    if (c.model_type == "deberta-v2" && r.present("attention_head_size") &&
        r.integer("attention_head_size", c.head_dim) != c.head_dim)
        fail(where, ": attention_head_size ", r.integer("attention_head_size", 0),
             " is not hidden_size / num_attention_heads; not supported");

    // Labels as transformers' PretrainedConfig reads them: id2label wins over num_labels.
    if (r.present("id2label")) {
        const json& m = j["id2label"];
        if (!m.is_object() || m.empty()) fail(where, ": field \"id2label\" must be an object {\"0\": \"label\", ...}");
        std::map<int64_t, std::string> labels;
        for (auto it = m.begin(); it != m.end(); ++it) {
            char* end = nullptr;
            long long k = std::strtoll(it.key().c_str(), &end, 10);
            if (it.key().empty() || *end || k < 0 || !it.value().is_string())
                fail(where, ": id2label entry \"", it.key(), "\" must map an integer id to a label string");
            labels[k] = it.value().get<std::string>();
        }
        c.num_labels = (int64_t)labels.size();
        for (int64_t i = 0; i < c.num_labels; ++i) {
            auto it = labels.find(i);
            if (it == labels.end()) fail(where, ": id2label must name ids 0..", c.num_labels - 1, "; id ", i, " is missing");
            c.id2label.push_back(it->second);
        }
    } else {
        c.num_labels = r.positive("num_labels", 2);
        for (int64_t i = 0; i < c.num_labels; ++i) c.id2label.push_back("LABEL_" + std::to_string(i));
    }
    c.problem_type = r.string("problem_type", "");
    if (!c.problem_type.empty() && c.problem_type != "regression" && c.problem_type != "single_label_classification" &&
        c.problem_type != "multi_label_classification")
        fail(where, ": problem_type \"", c.problem_type,
             "\" is not one of regression, single_label_classification, multi_label_classification");
    return c;
}

// ------------------------------------------------------------------- weights

std::shared_ptr<encoder_classifier> encoder_classifier::from_tensors(const encoder_config& c,
                                                                     const tensor_list& tensors,
                                                                     at::ScalarType dtype, const std::string& where) {
    if (dtype != at::kFloat && dtype != at::kBFloat16) fail("encoder: compute dtype must be fp32 or bf16");
    weight_source w(tensors, dtype, where);
    auto m = build(c, dtype, w);
    // What transformers ignores too: buffers, roberta's unused pooler, a
    // deberta position table without position_biased_input.
    std::vector<std::string> unused = w.unused({"position_ids", "roberta.pooler.", "embeddings.position_embeddings"});
    if (!unused.empty()) {
        std::string names;
        for (size_t k = 0; k < unused.size() && k < 5; ++k) names += (k ? ", " : "") + unused[k];
        log_warn(where, ": ", unused.size(), " tensor(s) the ", c.architecture, " head does not use (", names,
                 unused.size() > 5 ? ", ..." : "", "); ignored as transformers ignores them");
    }
    return m;
}

void encoder_classifier::write_random(const std::string& dir, const std::string& config_json, uint64_t seed,
                                      double std) {
    encoder_config c = parse_encoder_config(config_json, "config.json");
    rng gen(seed);
    weight_source w(&gen, std);
    build(c, at::kFloat, w);
    write_model_dir(dir, config_json, w.generated, at::kFloat);
}

std::shared_ptr<encoder_classifier> encoder_classifier::build(const encoder_config& c, at::ScalarType dtype,
                                                              weight_source& w) {
    auto m = std::make_shared<encoder_classifier>();
    m->config = c;
    m->dtype = dtype;
    const std::string base = base_prefix(c.model_type);
    const int64_t C = c.hidden_size, F = c.intermediate_size, L = c.num_labels;
    const bool deberta = c.model_type == "deberta-v2", distil = c.model_type == "distilbert";
    const int64_t E = deberta ? c.embedding_size : C;

    const std::string emb = base + "embeddings.";
    m->word_ = w.take(emb + "word_embeddings.weight", {c.vocab_size, E});
    if (!deberta || c.position_biased_input)
        m->position_ = w.take(emb + "position_embeddings.weight", {c.max_position_embeddings, E});
    if (c.type_vocab_size > 0) m->token_type_ = w.take(emb + "token_type_embeddings.weight", {c.type_vocab_size, E});
    if (deberta && E != C) m->embed_proj_ = w.take(emb + "embed_proj.weight", {C, E});
    m->emb_ln_w_ = w.take(emb + "LayerNorm.weight", {C});
    m->emb_ln_b_ = w.take(emb + "LayerNorm.bias", {C});

    if (deberta && c.relative_attention) {
        m->rel_embeddings_ = w.take(base + "encoder.rel_embeddings.weight", {2 * c.att_span(), C});
        if (c.norm_rel_layer_norm) {
            m->rel_ln_w_ = w.take(base + "encoder.LayerNorm.weight", {C});
            m->rel_ln_b_ = w.take(base + "encoder.LayerNorm.bias", {C});
        }
    }
    for (int64_t i = 0; i < c.num_layers; ++i) {
        layer_weights lw;
        auto pair = [&](const std::string& name, std::vector<int64_t> shape, at::Tensor& weight, at::Tensor& bias) {
            weight = w.take(name + ".weight", shape);
            bias = w.take(name + ".bias", {shape[0]});
        };
        if (distil) {
            const std::string p = base + "transformer.layer." + std::to_string(i) + ".";
            pair(p + "attention.q_lin", {C, C}, lw.q_w, lw.q_b);
            pair(p + "attention.k_lin", {C, C}, lw.k_w, lw.k_b);
            pair(p + "attention.v_lin", {C, C}, lw.v_w, lw.v_b);
            pair(p + "attention.out_lin", {C, C}, lw.o_w, lw.o_b);
            pair(p + "sa_layer_norm", {C}, lw.attn_ln_w, lw.attn_ln_b);
            pair(p + "ffn.lin1", {F, C}, lw.ff1_w, lw.ff1_b);
            pair(p + "ffn.lin2", {C, F}, lw.ff2_w, lw.ff2_b);
            pair(p + "output_layer_norm", {C}, lw.out_ln_w, lw.out_ln_b);
        } else {
            const std::string p = base + "encoder.layer." + std::to_string(i) + ".";
            const std::string s = p + "attention.self.";
            pair(s + (deberta ? "query_proj" : "query"), {C, C}, lw.q_w, lw.q_b);
            pair(s + (deberta ? "key_proj" : "key"), {C, C}, lw.k_w, lw.k_b);
            pair(s + (deberta ? "value_proj" : "value"), {C, C}, lw.v_w, lw.v_b);
            if (deberta && c.relative_attention && !c.share_att_key) {
                if (c.c2p) pair(s + "pos_key_proj", {C, C}, lw.pos_key_w, lw.pos_key_b);
                if (c.p2c) pair(s + "pos_query_proj", {C, C}, lw.pos_query_w, lw.pos_query_b);
            }
            pair(p + "attention.output.dense", {C, C}, lw.o_w, lw.o_b);
            pair(p + "attention.output.LayerNorm", {C}, lw.attn_ln_w, lw.attn_ln_b);
            pair(p + "intermediate.dense", {F, C}, lw.ff1_w, lw.ff1_b);
            pair(p + "output.dense", {C, F}, lw.ff2_w, lw.ff2_b);
            pair(p + "output.LayerNorm", {C}, lw.out_ln_w, lw.out_ln_b);
        }
        m->layers_.push_back(std::move(lw));
    }

    // The head, float32.
    int64_t P = C;
    if (c.model_type == "bert") {
        m->pool_w_ = w.take(base + "pooler.dense.weight", {C, C}, true);
        m->pool_b_ = w.take(base + "pooler.dense.bias", {C}, true);
        m->out_w_ = w.take("classifier.weight", {L, C}, true);
        m->out_b_ = w.take("classifier.bias", {L}, true);
    } else if (c.model_type == "roberta") {
        m->pool_w_ = w.take("classifier.dense.weight", {C, C}, true);
        m->pool_b_ = w.take("classifier.dense.bias", {C}, true);
        m->out_w_ = w.take("classifier.out_proj.weight", {L, C}, true);
        m->out_b_ = w.take("classifier.out_proj.bias", {L}, true);
    } else if (distil) {
        m->pool_w_ = w.take("pre_classifier.weight", {C, C}, true);
        m->pool_b_ = w.take("pre_classifier.bias", {C}, true);
        m->out_w_ = w.take("classifier.weight", {L, C}, true);
        m->out_b_ = w.take("classifier.bias", {L}, true);
    } else {
        P = c.pooler_hidden_size;
        m->pool_w_ = w.take("pooler.dense.weight", {P, C}, true);
        m->pool_b_ = w.take("pooler.dense.bias", {P}, true);
        m->out_w_ = w.take("classifier.weight", {L, P}, true);
        m->out_b_ = w.take("classifier.bias", {L}, true);
    }
    return m;
}

int64_t encoder_classifier::parameter_count() const {
    int64_t n = 0;
    for (const at::Tensor* t : {&word_, &position_, &token_type_, &emb_ln_w_, &emb_ln_b_, &embed_proj_,
                                &rel_embeddings_, &rel_ln_w_, &rel_ln_b_, &pool_w_, &pool_b_, &out_w_, &out_b_})
        if (t->defined()) n += t->numel();
    for (const auto& l : layers_)
        for (const at::Tensor* t : {&l.q_w, &l.q_b, &l.k_w, &l.k_b, &l.v_w, &l.v_b, &l.o_w, &l.o_b, &l.attn_ln_w,
                                    &l.attn_ln_b, &l.ff1_w, &l.ff1_b, &l.ff2_w, &l.ff2_b, &l.out_ln_w, &l.out_ln_b,
                                    &l.pos_key_w, &l.pos_key_b, &l.pos_query_w, &l.pos_query_b})
            if (t->defined()) n += t->numel();
    return n;
}

// ------------------------------------------------------------------- forward

// transformers' build_relative_position: q - k, log-bucketed when
// position_buckets > 0 (make_log_bucket_position, in float32 as there).
at::Tensor encoder_classifier::relative_positions(int64_t T) const {
    at::Tensor ids = at::arange(T, at::kLong);
    at::Tensor rel = ids.unsqueeze(1) - ids.unsqueeze(0);  // (T, T) q - k
    const int64_t bucket_size = config.position_buckets, max_position = config.max_relative_positions;
    if (bucket_size > 0 && max_position > 0) {
        at::Tensor sign = at::sign(rel);
        const int64_t mid = bucket_size / 2;
        at::Tensor abs_pos = at::where((rel < mid).logical_and(rel > -mid), at::full_like(rel, mid - 1), at::abs(rel));
        at::Tensor log_pos =
            at::ceil(at::log(abs_pos / (double)mid) /
                     at::log(at::scalar_tensor((float)((double)(max_position - 1) / (double)mid), at::kFloat)) *
                     (double)(mid - 1)) +
            (double)mid;  // float32
        at::Tensor bucket = at::where(abs_pos <= mid, rel.to(log_pos.scalar_type()), log_pos * sign);
        rel = bucket.to(at::kLong);
    }
    return rel;
}

at::Tensor encoder_classifier::hidden_states(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                             const at::Tensor& token_type_ids) const {
    const encoder_config& c = config;
    if (input_ids.dim() != 2) fail("encoder: input_ids must be (B, T), got ", shape_string(input_ids.sizes()));
    const int64_t B = input_ids.size(0), T = input_ids.size(1), H = c.num_heads, D = c.head_dim;
    at::Tensor ids = input_ids.to(at::kLong);
    at::Tensor mask = attention_mask.defined() ? attention_mask.to(at::kLong) : at::ones_like(ids);
    at::Tensor types = token_type_ids.defined() ? token_type_ids.to(at::kLong) : at::zeros_like(ids);
    if (mask.sizes() != ids.sizes() || types.sizes() != ids.sizes())
        fail("encoder: attention_mask and token_type_ids must have the shape of input_ids ", shape_string(ids.sizes()));
    if (ids.numel() && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= c.vocab_size))
        fail("encoder: input_ids hold ids outside the vocabulary [0, ", c.vocab_size, ")");
    // Without a token-type table (deberta-v3, distilbert) the segments are unused, as in transformers.
    if (token_type_.defined() && types.numel() &&
        (types.min().item<int64_t>() < 0 || types.max().item<int64_t>() >= c.type_vocab_size))
        fail("encoder: token_type_ids must be in [0, ", c.type_vocab_size, ") for this model (type_vocab_size)");

    // Embeddings.
    at::Tensor x = at::embedding(word_, ids);  // (B, T, E)
    if (position_.defined()) {
        at::Tensor positions;
        if (c.model_type == "roberta") {
            at::Tensor real = ids.ne(c.pad_token_id).to(at::kLong);
            positions = at::cumsum(real, 1) * real + c.pad_token_id;  // pad_token_id + 1, + 2, ...
        } else {
            positions = at::arange(T, at::kLong).unsqueeze(0).expand({B, T});
        }
        if (T > 0 && positions.max().item<int64_t>() >= c.max_position_embeddings)
            fail("encoder: a row of ", T, " tokens needs position ", positions.max().item<int64_t>(),
                 " but the model has max_position_embeddings = ", c.max_position_embeddings,
                 " (at most ", c.max_position_embeddings - (c.model_type == "roberta" ? c.pad_token_id + 1 : 0),
                 " tokens); shorten the text");
        x = x + at::embedding(position_, positions);
    }
    if (token_type_.defined()) x = x + at::embedding(token_type_, types);
    if (embed_proj_.defined()) x = dense(x, embed_proj_, {});
    x = at::layer_norm(x, {c.hidden_size}, emb_ln_w_, emb_ln_b_, c.layer_norm_eps);  // (B, T, C)
    const bool deberta = c.model_type == "deberta-v2";
    if (deberta) x = x * mask.unsqueeze(2).to(x.scalar_type());

    // Attention masks: keys (bert family) or query x key (deberta), true = attend.
    at::Tensor keep = deberta ? (mask.unsqueeze(2) * mask.unsqueeze(1)).unsqueeze(1).to(at::kBool)  // (B, 1, T, T)
                              : mask.view({B, 1, 1, T}).to(at::kBool);                              // (B, 1, 1, T)
    at::Tensor blocked = keep.logical_not();
    // torch.finfo(dtype).min, as transformers masks.
    const double lowest = x.scalar_type() == at::kBFloat16 ? -3.3895313892515355e38
                                                           : (double)std::numeric_limits<float>::lowest();

    // DeBERTa's relative positions and embeddings, shared by every layer.
    at::Tensor c2p_index, p2c_index, rel;
    int64_t scale_factor = 1;
    if (deberta && c.relative_attention) {
        const int64_t S = c.att_span();
        at::Tensor rp = relative_positions(T);  // (T, T)
        c2p_index = at::clamp(rp + S, 0, 2 * S - 1).view({1, 1, T, T}).expand({B, H, T, T});
        p2c_index = at::clamp(-rp + S, 0, 2 * S - 1).view({1, 1, T, T}).expand({B, H, T, T});
        rel = rel_embeddings_;
        if (c.norm_rel_layer_norm) rel = at::layer_norm(rel, {c.hidden_size}, rel_ln_w_, rel_ln_b_, c.layer_norm_eps);
        rel = rel.slice(0, 0, 2 * S);  // (2S, C)
        scale_factor += (c.c2p ? 1 : 0) + (c.p2c ? 1 : 0);
    }

    for (const layer_weights& l : layers_) {
        at::Tensor q = split_heads(dense(x, l.q_w, l.q_b), H);  // (B, H, T, D)
        at::Tensor k = split_heads(dense(x, l.k_w, l.k_b), H);
        at::Tensor v = split_heads(dense(x, l.v_w, l.v_b), H);
        at::Tensor scores;  // (B, H, T, T)
        if (c.model_type == "distilbert") {
            scores = at::matmul(q / std::sqrt((double)D), k.transpose(-1, -2));
        } else if (deberta) {
            // Computed in float32 as transformers' scale tensor is, then cast.
            const double scale = std::sqrt((double)((float)D * (float)scale_factor));
            scores = at::matmul(q, k.transpose(-1, -2) / scale);
            if (c.relative_attention) {
                const int64_t S2 = rel.size(0);
                at::Tensor pos_key, pos_query;  // (H, 2S, D)
                auto heads = [&](const at::Tensor& y) { return y.view({S2, H, D}).permute({1, 0, 2}); };
                if (c.share_att_key) {
                    pos_key = heads(dense(rel, l.k_w, l.k_b));
                    pos_query = heads(dense(rel, l.q_w, l.q_b));
                } else {
                    if (c.c2p) pos_key = heads(dense(rel, l.pos_key_w, l.pos_key_b));
                    if (c.p2c) pos_query = heads(dense(rel, l.pos_query_w, l.pos_query_b));
                }
                if (c.c2p) {
                    at::Tensor c2p = at::matmul(q, pos_key.transpose(-1, -2));  // (B, H, T, 2S)
                    scores = scores + at::gather(c2p, 3, c2p_index) / scale;
                }
                if (c.p2c) {
                    at::Tensor p2c = at::matmul(k, pos_query.transpose(-1, -2));  // (B, H, T_k, 2S)
                    scores = scores + at::gather(p2c, 3, p2c_index).transpose(-1, -2) / scale;
                }
            }
        } else {
            scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt((double)D);
        }
        scores = scores.masked_fill(blocked, lowest);
        at::Tensor probs = at::softmax(scores, -1);
        at::Tensor context = at::matmul(probs, v).permute({0, 2, 1, 3}).reshape({B, T, c.hidden_size});  // (B, T, C)
        at::Tensor attn = at::layer_norm(dense(context, l.o_w, l.o_b) + x, {c.hidden_size}, l.attn_ln_w,
                                         l.attn_ln_b, c.layer_norm_eps);
        at::Tensor ff = dense(activation(c.hidden_act, dense(attn, l.ff1_w, l.ff1_b)), l.ff2_w, l.ff2_b);
        x = at::layer_norm(ff + attn, {c.hidden_size}, l.out_ln_w, l.out_ln_b, c.layer_norm_eps);
    }
    return x;
}

at::Tensor encoder_classifier::logits(const at::Tensor& ids, const at::Tensor& attention_mask,
                                      const at::Tensor& token_type_ids) const {
    at::Tensor mask = attention_mask.defined() ? attention_mask : at::ones_like(ids);
    if (ids.dim() == 2 && ids.size(1) > 0 && mask.sizes() == ids.sizes() &&
        !(mask.select(1, 0) != 0).all().item<bool>())
        fail("encoder: every row's first token must be real (right padding, attention_mask 1 at column 0): the "
             "classifier reads the first token");
    at::Tensor hidden = hidden_states(ids, mask, token_type_ids);     // (B, T, C)
    at::Tensor first = hidden.select(1, 0).to(at::kFloat);             // (B, C)
    at::Tensor pooled = dense(first, pool_w_, pool_b_);               // (B, P)
    if (config.model_type == "distilbert") pooled = at::relu(pooled);
    else if (config.model_type == "deberta-v2") pooled = activation(config.pooler_hidden_act, pooled);
    else pooled = at::tanh(pooled);
    return dense(pooled, out_w_, out_b_);                             // (B, L)
}

std::vector<std::vector<double>> encoder_classifier::logits_rows(const std::vector<encoder_row>& rows,
                                                                 int64_t batch_size,
                                                                 const std::string& progress_label) const {
    if (batch_size < 1) fail("encoder: batch_size must be >= 1, got ", batch_size);
    for (size_t i = 0; i < rows.size(); ++i) {
        if (rows[i].ids.empty()) fail("encoder: row ", i + 1, " has no tokens");
        if (rows[i].type_ids.size() != rows[i].ids.size() && !rows[i].type_ids.empty())
            fail("encoder: row ", i + 1, " has ", rows[i].type_ids.size(), " token_type_ids for ", rows[i].ids.size(),
                 " input_ids");
        for (int32_t id : rows[i].ids)
            if (id < 0 || id >= config.vocab_size)
                fail("encoder: row ", i + 1, " holds token id ", id, ", outside the model's vocabulary [0, ",
                     config.vocab_size, ")");
    }
    // Rows of similar length share a batch (less padding).
    std::vector<size_t> order(rows.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return rows[a].ids.size() < rows[b].ids.size(); });
    std::unique_ptr<progress> bar;
    if (!progress_label.empty() && !rows.empty()) bar = std::make_unique<progress>(progress_label, (long)rows.size(), "rows");

    c10::InferenceMode no_grad;
    std::vector<std::vector<double>> out(rows.size());
    for (size_t begin = 0; begin < order.size(); begin += (size_t)batch_size) {
        const size_t end = std::min(order.size(), begin + (size_t)batch_size);
        size_t longest = 0;
        for (size_t k = begin; k < end; ++k) longest = std::max(longest, rows[order[k]].ids.size());
        const int64_t B = (int64_t)(end - begin), T = (int64_t)longest;
        at::Tensor ids = at::full({B, T}, config.pad_token_id, at::kLong);  // right-padded
        at::Tensor mask = at::zeros({B, T}, at::kLong), types = at::zeros({B, T}, at::kLong);
        auto id = ids.accessor<int64_t, 2>();
        auto mk = mask.accessor<int64_t, 2>();
        auto ty = types.accessor<int64_t, 2>();
        for (int64_t b = 0; b < B; ++b) {
            const encoder_row& row = rows[order[begin + b]];
            for (size_t t = 0; t < row.ids.size(); ++t) {
                id[b][t] = row.ids[t];
                mk[b][t] = 1;
                ty[b][t] = row.type_ids.empty() ? 0 : row.type_ids[t];
            }
        }
        at::Tensor batch_logits = logits(ids, mask, types).to(at::kDouble).contiguous();  // (B, L)
        const double* p = batch_logits.data_ptr<double>();
        const int64_t L = batch_logits.size(1);
        for (int64_t b = 0; b < B; ++b) {
            const size_t i = order[begin + b];
            out[i].assign(p + b * L, p + (b + 1) * L);
            for (double v : out[i])
                if (!std::isfinite(v))
                    fail("encoder: the logits of row ", i + 1, " are not finite",
                         dtype == at::kBFloat16 ? "; try dtype = \"fp32\"" : "");
        }
        if (bar) bar->update((long)end);
    }
    if (bar) bar->finish();
    return out;
}

std::vector<encoder_row> encoder_classifier::tokenize(const std::vector<std::string>& texts,
                                                      const std::vector<std::string>& text_pairs) const {
    if (!tok)
        fail("encoder: ", path.empty() ? std::string("this model") : path,
             " has no tokenizer: pass token ids ({ input_ids = ... }) or load it with { tokenizer = dir }");
    if (!text_pairs.empty() && text_pairs.size() != texts.size())
        fail("encoder: ", texts.size(), " texts but ", text_pairs.size(), " text pairs");
    std::vector<encoder_row> rows(texts.size());
    // RoBERTa's and DistilBERT's tokenizers return no token_type_ids: their models get zeros.
    const bool segments = config.model_type != "roberta" && config.model_type != "distilbert";
    for (size_t i = 0; i < texts.size(); ++i) {
        tok->encode_with_types(texts[i], text_pairs.empty() ? nullptr : &text_pairs[i], true, rows[i].ids,
                               rows[i].type_ids);
        if (!segments) rows[i].type_ids.assign(rows[i].ids.size(), 0);
    }
    return rows;
}

// ------------------------------------------------------------------- loading

std::shared_ptr<encoder_classifier> encoder_classifier::load(const std::string& dir, at::ScalarType dtype,
                                                             const std::string& tokenizer_dir) {
    if (dtype != at::kFloat && dtype != at::kBFloat16) fail("encoder: compute dtype must be fp32 or bf16");
    if (!is_directory(dir)) fail("encoder classifier: \"", dir, "\" is not a directory");
    const std::string config_path = path_join(dir, "config.json");
    if (!file_exists(config_path)) fail(dir, ": no config.json (expected a Hugging Face *ForSequenceClassification directory)");
    encoder_config config = parse_encoder_config(read_file(config_path), config_path);

    std::shared_ptr<tokenizer> tok;
    const std::string tdir = tokenizer_dir.empty() ? dir : tokenizer_dir;
    if (tokenizer::has_files(tdir) || !tokenizer_dir.empty()) {
        try {
            tok = tokenizer::load(tdir);
        } catch (const error& e) {
            fail(tdir, ": the classifier's tokenizer does not load: ", e.what());
        }
    }

    tensor_list tensors;
    std::string where;
    const std::string single = path_join(dir, "model.safetensors");
    const std::string index = path_join(dir, "model.safetensors.index.json");
    std::vector<std::unique_ptr<safetensors_file>> files;
    if (file_exists(single)) {
        where = single;
        files.push_back(std::make_unique<safetensors_file>(single));
    } else if (file_exists(index)) {
        where = index;
        std::set<std::string> shards;
        for (const auto& entry : read_shard_index(index)) shards.insert(entry.second);
        for (const auto& shard : shards) files.push_back(std::make_unique<safetensors_file>(path_join(dir, shard)));
    } else {
        fail(dir, ": no model.safetensors or model.safetensors.index.json",
             file_exists(path_join(dir, "pytorch_model.bin"))
                 ? " (it has pytorch_model.bin: convert it with transformers' save_pretrained(dir, "
                   "safe_serialization=True))"
                 : "");
    }
    for (const auto& f : files)
        for (const auto& name : f->names()) {
            const std::string& type = f->entry(name).dtype;
            if (type != "F32" && type != "BF16" && type != "F16") {
                if (ends_with(name, "position_ids")) continue;  // an integer buffer some checkpoints keep
                fail(f->path(), ": tensor \"", name, "\" has dtype ", type, "; weights must be F32, BF16 or F16");
            }
            tensors.emplace_back(name, f->load(name));
        }
    auto m = from_tensors(config, tensors, dtype, where);
    m->tok = tok;
    m->path = dir;
    log_info("encoder: loaded ", config.architecture, " from ", dir, " (", m->parameter_count() / 1e6,
             "M parameters, ", dtype_name(dtype), ", ", config.num_labels, " label(s))");
    return m;
}

}  // namespace cai

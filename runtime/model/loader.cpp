// Loading a Hugging Face directory: config.json, model.safetensors or the
// sharded model.safetensors.index.json, generation_config.json and the
// tokenizer. Every expected tensor must be present with its exact shape,
// and every tensor in the files must be one the model uses.
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/strings.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/weight_memory.h"
#include "tokenizer/tokenizer.h"

namespace cai {
namespace {

// Where tensors come from: a safetensors set or an in-memory list.
struct tensor_source {
    std::string where;
    std::function<std::vector<std::string>()> names;
    std::function<std::vector<int64_t>(const std::string&)> shape;
    std::function<at::Tensor(const std::string&, at::ScalarType)> load;
};

// The names transformers gives to stale buffers some checkpoints still carry.
bool ignorable(const std::string& name) {
    const std::string suffix = "rotary_emb.inv_freq";
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::shared_ptr<model> build(const model_config& c, const tensor_source& src, at::ScalarType dtype) {
    auto m = std::make_shared<model>();
    m->config = c;
    m->dtype = dtype;
    const int64_t C = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
    const int64_t q_out = c.num_heads * c.head_dim, kv_out = c.num_kv_heads * c.head_dim;

    std::set<std::string> available;
    for (const auto& n : src.names()) available.insert(n);
    std::set<std::string> used;
    // Matrices go to 2 MiB pages (decode streams them once per token); vectors stay where they are.
    const bool huge_pages = huge_pages_wanted();
    weight_memory matrices;

    auto take = [&](const std::string& name, std::vector<int64_t> shape) {
        if (!available.count(name))
            fail(src.where, ": missing tensor \"", name, "\" (expected shape ", shape_string(shape), ")");
        std::vector<int64_t> got = src.shape(name);
        if (got != shape)
            fail(src.where, ": tensor \"", name, "\" has shape ", shape_string(got), ", expected ", shape_string(shape));
        used.insert(name);
        at::Tensor t = src.load(name, dtype);
        return huge_pages && shape.size() == 2 ? matrices.place(t) : t.contiguous();
    };
    auto take_linear = [&](const std::string& prefix, int64_t out, int64_t in, bool bias) {
        linear l;
        l.weight = take(prefix + ".weight", {out, in});
        if (bias) l.bias = take(prefix + ".bias", {out});
        return l;
    };
    auto take_norm = [&](const std::string& name, int64_t size) {
        rms_norm n;
        n.weight = take(name, {size});
        n.eps = c.rms_norm_eps;
        n.one_plus = c.norm_one_plus;
        return n;
    };

    m->embed_tokens = take("model.embed_tokens.weight", {V, C});
    for (int64_t i = 0; i < c.num_layers; ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        decoder_layer l;
        l.input_norm = take_norm(p + "input_layernorm.weight", C);
        l.post_attention_norm = take_norm(p + "post_attention_layernorm.weight", C);
        if (c.sandwich_norms) {
            l.pre_feedforward_norm = take_norm(p + "pre_feedforward_layernorm.weight", C);
            l.post_feedforward_norm = take_norm(p + "post_feedforward_layernorm.weight", C);
        }
        if (c.qk_norm) {
            l.q_norm = take_norm(p + "self_attn.q_norm.weight", c.head_dim);
            l.k_norm = take_norm(p + "self_attn.k_norm.weight", c.head_dim);
        }
        l.q_proj = take_linear(p + "self_attn.q_proj", q_out, C, c.qkv_bias);
        l.k_proj = take_linear(p + "self_attn.k_proj", kv_out, C, c.qkv_bias);
        l.v_proj = take_linear(p + "self_attn.v_proj", kv_out, C, c.qkv_bias);
        l.o_proj = take_linear(p + "self_attn.o_proj", C, q_out, c.o_bias);
        l.gate_proj = take_linear(p + "mlp.gate_proj", I, C, c.mlp_bias);
        l.up_proj = take_linear(p + "mlp.up_proj", I, C, c.mlp_bias);
        l.down_proj = take_linear(p + "mlp.down_proj", C, I, c.mlp_bias);
        l.sliding = c.layer_sliding[i];
        l.local_rope = c.local_rope && c.layer_local_rope[i];
        m->layers.push_back(std::move(l));
    }
    m->final_norm = take_norm("model.norm.weight", C);
    if (c.tie_word_embeddings) {
        m->lm_head.weight = m->embed_tokens;
        // Some tied checkpoints still store a copy; transformers ties over it.
        if (available.count("lm_head.weight")) {
            std::vector<int64_t> got = src.shape("lm_head.weight");
            if (got != std::vector<int64_t>{V, C})
                fail(src.where, ": tensor \"lm_head.weight\" has shape ", shape_string(got), ", expected ",
                     shape_string({V, C}));
            used.insert("lm_head.weight");
        }
    } else {
        if (!available.count("lm_head.weight"))
            fail(src.where, ": missing tensor \"lm_head.weight\" (config.json has tie_word_embeddings = false)");
        m->lm_head.weight = take("lm_head.weight", {V, C});
    }
    for (const auto& name : available)
        if (!used.count(name) && !ignorable(name))
            fail(src.where, ": unexpected tensor \"", name, "\" for model_type ", c.model_type, " with ",
                 c.num_layers, " layers");
    m->inv_freq = rope_inv_freq(c);
    if (c.local_rope) m->inv_freq_local = rope_inv_freq(c, /*local=*/true);
    m->eos_ids = c.eos_token_ids;
    return m;
}

// The safetensors files of a directory, single or sharded.
struct shard_set {
    std::vector<std::unique_ptr<safetensors_file>> files;
    std::map<std::string, const safetensors_file*> owner;
    std::string where;
};

void open_shards(const std::string& dir, shard_set& set) {
    const std::string single = path_join(dir, "model.safetensors");
    const std::string index = path_join(dir, "model.safetensors.index.json");
    auto add = [&](const std::string& path) {
        set.files.push_back(std::make_unique<safetensors_file>(path));
        const safetensors_file* f = set.files.back().get();
        for (const auto& name : f->names()) {
            auto it = set.owner.find(name);
            if (it != set.owner.end())
                fail(set.where, ": tensor \"", name, "\" appears in both ", it->second->path(), " and ", path);
            set.owner[name] = f;
        }
    };
    if (file_exists(single)) {
        set.where = single;
        add(single);
        return;
    }
    if (!file_exists(index))
        fail(dir, ": no model.safetensors or model.safetensors.index.json (only safetensors checkpoints load)");
    set.where = index;
    std::map<std::string, std::string> weight_map = read_shard_index(index);
    std::set<std::string> shard_names;
    for (const auto& entry : weight_map) shard_names.insert(entry.second);
    for (const auto& shard : shard_names) {
        std::string path = path_join(dir, shard);
        if (!file_exists(path)) fail(index, ": shard \"", shard, "\" does not exist in ", dir);
        add(path);
    }
    for (const auto& [name, shard] : weight_map) {
        auto it = set.owner.find(name);
        if (it == set.owner.end() || it->second->path() != path_join(dir, shard))
            fail(index, ": tensor \"", name, "\" is mapped to ", shard, " but that shard does not contain it");
    }
}

void add_unique(std::vector<int64_t>& ids, int64_t id) {
    if (id < 0) return;
    for (int64_t x : ids)
        if (x == id) return;
    ids.push_back(id);
}

}  // namespace

std::shared_ptr<model> model::from_tensors(const model_config& config,
                                           const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                           at::ScalarType dtype, const std::string& where) {
    std::map<std::string, at::Tensor> by_name;
    for (const auto& [name, t] : tensors) {
        if (by_name.count(name)) fail(where, ": tensor \"", name, "\" appears twice");
        by_name[name] = t;
    }
    tensor_source src;
    src.where = where;
    src.names = [&] {
        std::vector<std::string> out;
        for (const auto& kv : by_name) out.push_back(kv.first);
        return out;
    };
    src.shape = [&](const std::string& n) { return by_name.at(n).sizes().vec(); };
    src.load = [&](const std::string& n, at::ScalarType t) { return by_name.at(n).detach().to(t).clone(); };
    return build(config, src, dtype);
}

at::ScalarType checkpoint_dtype(const model_config& config, const std::string& where) {
    if (config.torch_dtype == "bfloat16") return at::kBFloat16;
    if (config.torch_dtype == "float16")
        log_info("model: ", where, " says torch_dtype float16; computing in float32 (cairun computes in fp32 or "
                 "bf16: pass dtype = \"bf16\" for bf16)");
    return at::kFloat;
}

namespace {
bool has_tokenizer_files(const std::string& dir) { return tokenizer::has_files(dir); }
}  // namespace

std::shared_ptr<model> model::load(const std::string& dir, at::ScalarType requested, bool with_tokenizer,
                                   const std::string& tokenizer_dir) {
    if (requested != at::kFloat && requested != at::kBFloat16 && requested != at::ScalarType::Undefined)
        fail("model: compute dtype must be fp32 or bf16");
    if (!is_directory(dir)) fail("model: \"", dir, "\" is not a directory (expected a Hugging Face model directory)");
    const std::string config_path = path_join(dir, "config.json");
    if (!file_exists(config_path)) fail(dir, ": no config.json");
    model_config config = parse_model_config(read_file(config_path), config_path);
    // Like transformers' dtype="auto": the checkpoint's own dtype unless the caller names one.
    const at::ScalarType dtype =
        requested == at::ScalarType::Undefined ? checkpoint_dtype(config, config_path) : requested;

    // The tokenizer before the weights: a wrong tokenizer directory fails fast.
    std::shared_ptr<tokenizer> tok;
    std::string tok_from;
    if (with_tokenizer && !tokenizer_dir.empty()) {
        if (!is_directory(tokenizer_dir))
            fail("model: tokenizer = \"", tokenizer_dir, "\" is not a directory (expected a directory with "
                 "tokenizer.json or tokenizer.model)");
        tok = tokenizer::load(tokenizer_dir);
        tok_from = tokenizer_dir;
    } else if (with_tokenizer && has_tokenizer_files(dir)) {
        tok = tokenizer::load(dir);
        tok_from = dir;
    }

    shard_set shards;
    open_shards(dir, shards);
    tensor_source src;
    src.where = shards.where;
    src.names = [&] {
        std::vector<std::string> out;
        for (const auto& kv : shards.owner) out.push_back(kv.first);
        return out;
    };
    src.shape = [&](const std::string& n) { return shards.owner.at(n)->entry(n).shape; };
    src.load = [&](const std::string& n, at::ScalarType t) {
        const safetensors_file* f = shards.owner.at(n);
        const std::string& stored = f->entry(n).dtype;
        if (stored != "F32" && stored != "BF16" && stored != "F16")
            fail(f->path(), ": tensor \"", n, "\" has dtype ", stored, "; weights must be F32, BF16 or F16");
        return f->load(n, t);
    };
    std::shared_ptr<model> m = build(config, src, dtype);
    m->path = dir;

    const std::string gen_path = path_join(dir, "generation_config.json");
    if (file_exists(gen_path))
        for (int64_t id : parse_generation_eos(read_file(gen_path), gen_path)) add_unique(m->eos_ids, id);
    if (tok) {
        m->tok = tok;
        m->tokenizer_path = tok_from;
        add_unique(m->eos_ids, m->tok->eos_id);
        // A special token named in tokenizer_config.json but missing from the
        // vocabulary gets the next free id (as transformers appends it), which
        // the model has no embedding for: say so now, not at the first batch.
        const std::pair<const char*, int32_t> specials[] = {
            {"bos_token", tok->bos_id}, {"eos_token", tok->eos_id}, {"pad_token", tok->pad_id}};
        for (const auto& [name, id] : specials)
            if (id >= config.vocab_size)
                fail(path_join(tok_from, "tokenizer_config.json"), ": ", name, " has id ", id,
                     ", outside the model's vocabulary (vocab_size ", config.vocab_size, " in config.json): the name "
                     "is not in the tokenizer's vocabulary, or the tokenizer belongs to another model");
    }
    log_info("model: loaded ", config.model_type, " from ", dir, " (", m->parameter_count() / 1e6, "M parameters, ",
             dtype_name(dtype), tok ? "" : ", no tokenizer", ")");
    return m;
}

}  // namespace cai

// Reward models (*ForSequenceClassification): a Llama-family backbone from
// model::from_tensors plus the one-row score head, pooled at each row's
// last real token. See reward.h for how this follows transformers.
#include "model/reward.h"

#include <c10/core/InferenceMode.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/strings.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tokenizer/tokenizer.h"

namespace cai {
namespace {

using tensor_list = std::vector<std::pair<std::string, at::Tensor>>;

const std::string suffix = "ForSequenceClassification";

// One safetensors file mapped read-only, its tensors handed out as views of
// the map: the backbone copies each tensor once into its compute dtype, so
// the checkpoint is never held twice in memory (only in the page cache).
class mapped_file {
public:
    explicit mapped_file(const std::string& path) : meta(path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) fail(path, ": cannot open: ", std::strerror(errno));
        struct stat st;
        if (::fstat(fd_, &st) != 0 || st.st_size < 8) fail(path, ": cannot read the safetensors header");
        size_ = (size_t)st.st_size;
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
        if (p == MAP_FAILED) fail(path, ": cannot map: ", std::strerror(errno));
        map_ = static_cast<const uint8_t*>(p);
        uint64_t header_len = 0;
        std::memcpy(&header_len, map_, 8);  // little-endian, checked by safetensors_file
        data_start_ = 8 + (size_t)header_len;
    }
    ~mapped_file() {
        if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
        if (fd_ >= 0) ::close(fd_);
    }
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;

    // The stored tensor without a copy (a copy when it is not aligned to its element size).
    at::Tensor view(const std::string& name) const {
        const safetensors_entry& e = meta.entry(name);
        if (e.dtype != "F32" && e.dtype != "BF16" && e.dtype != "F16")
            fail(meta.path(), ": tensor \"", name, "\" has dtype ", e.dtype, "; weights must be F32, BF16 or F16");
        at::ScalarType type = safetensors_dtype_to_scalar(e.dtype);
        const uint8_t* p = map_ + data_start_ + e.begin;
        if ((uintptr_t)p % at::elementSize(type) != 0) return meta.load(name);
        return at::from_blob(const_cast<uint8_t*>(p), e.shape, at::TensorOptions().dtype(type));
    }

    safetensors_file meta;

private:
    int fd_ = -1;
    const uint8_t* map_ = nullptr;
    size_t size_ = 0;
    size_t data_start_ = 0;
};

// model.safetensors, or the shards named by model.safetensors.index.json.
std::vector<std::unique_ptr<mapped_file>> open_checkpoint(const std::string& dir, std::string& where) {
    std::vector<std::unique_ptr<mapped_file>> files;
    const std::string single = path_join(dir, "model.safetensors");
    const std::string index = path_join(dir, "model.safetensors.index.json");
    if (file_exists(single)) {
        where = single;
        files.push_back(std::make_unique<mapped_file>(single));
        return files;
    }
    if (!file_exists(index)) {
        std::string hint = file_exists(path_join(dir, "pytorch_model.bin"))
                               ? " (it has pytorch_model.bin: convert it with transformers' "
                                 "save_pretrained(dir, safe_serialization=True))"
                               : "";
        fail(dir, ": no model.safetensors or model.safetensors.index.json; a reward model loads from safetensors",
             hint);
    }
    where = index;
    std::set<std::string> shards;
    for (const auto& entry : read_shard_index(index)) shards.insert(entry.second);
    for (const auto& shard : shards) {
        std::string path = path_join(dir, shard);
        if (!file_exists(path)) fail(index, ": shard \"", shard, "\" does not exist in ", dir);
        files.push_back(std::make_unique<mapped_file>(path));
    }
    return files;
}

}  // namespace

bool names_reward_architecture(const std::string& json_text, const std::string& where) {
    nlohmann::json j = parse_json(json_text, where);
    return j.is_object() && j.contains("architectures") && j["architectures"].is_array() &&
           !j["architectures"].empty() && j["architectures"][0].is_string() &&
           ends_with(j["architectures"][0].get<std::string>(), suffix);
}

reward_head_config parse_reward_config(const std::string& json_text, const std::string& where) {
    nlohmann::json j = parse_json(json_text, where);
    if (!j.is_object()) fail(where, ": expected a JSON object");
    reward_head_config head;
    if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].empty() ||
        !j["architectures"][0].is_string())
        fail(where, ": field \"architectures\" must be a list naming a *", suffix,
             " class (e.g. [\"LlamaForSequenceClassification\"]); a reward model is saved by "
             "AutoModelForSequenceClassification with num_labels = 1");
    head.architecture = j["architectures"][0].get<std::string>();
    if (!ends_with(head.architecture, suffix))
        fail(where, ": architectures[0] is \"", head.architecture, "\"; a reward model is a *", suffix,
             " checkpoint (e.g. LlamaForSequenceClassification). A causal LM is not a reward model: score "
             "with its log-probabilities (cai.scoring.logprob) or as a judge instead");
    const json_fields fields{j, where};
    if (fields.present("num_labels")) {
        head.num_labels = fields.integer("num_labels", 0);
    } else if (j.contains("id2label") && j["id2label"].is_object()) {
        head.num_labels = (int64_t)j["id2label"].size();
    } else {
        head.num_labels = 2;  // transformers' PretrainedConfig default
    }
    if (head.num_labels != 1)
        fail(where, ": num_labels is ", head.num_labels,
             (j.contains("num_labels") || j.contains("id2label") ? "" : " (transformers' default: neither num_labels "
                                                                         "nor id2label is given)"),
             "; a reward model has exactly one output. Set \"num_labels\": 1 (id2label {\"0\": \"LABEL_0\"}) "
             "only if score.weight has one row");
    return head;
}

std::shared_ptr<reward_model> reward_model::from_tensors(const model_config& config, const tensor_list& tensors,
                                                         at::ScalarType dtype, const std::string& where) {
    auto rm = std::make_shared<reward_model>();
    rm->head = parse_reward_config(config.json, "config.json");
    const int64_t C = config.hidden_size;

    tensor_list backbone_tensors;
    at::Tensor score;
    for (const auto& [name, t] : tensors) {
        if (name == "score.weight") {
            score = t;
        } else if (name == "lm_head.weight") {
            fail(where, ": unexpected tensor \"lm_head.weight\": a *", suffix,
                 " checkpoint has no language-model head (is this a causal LM with a reward-model config.json?)");
        } else if (starts_with(name, "score.")) {
            fail(where, ": unexpected tensor \"", name, "\": the reward head is one bias-free linear layer, "
                 "\"score.weight\" only");
        } else {
            backbone_tensors.emplace_back(name, t);
        }
    }
    if (!score.defined())
        fail(where, ": missing tensor \"score.weight\" (the reward head, shape ", shape_string({1, C}),
             "); save the model with AutoModelForSequenceClassification so the head is included");
    if (score.sizes() != at::IntArrayRef({1, C}))
        fail(where, ": tensor \"score.weight\" has shape ", shape_string(score.sizes()), ", expected ",
             shape_string({1, C}), " (num_labels = 1, hidden_size = ", C, ")");

    // The backbone needs no LM head: tied to the embeddings, it costs nothing.
    model_config backbone_config = config;
    backbone_config.tie_word_embeddings = true;
    rm->backbone = model::from_tensors(backbone_config, backbone_tensors, dtype, where);
    rm->score_weight = score.detach().to(at::kFloat).clone();  // (1, C)
    return rm;
}

std::shared_ptr<reward_model> reward_model::from_causal(std::shared_ptr<model> lm, uint64_t seed) {
    if (!lm) fail("reward model: no language model to build on");
    static const std::map<std::string, std::string> families = {
        {"llama", "Llama"},   {"mistral", "Mistral"}, {"qwen2", "Qwen2"},          {"qwen3", "Qwen3"},
        {"gemma", "Gemma"},   {"gemma2", "Gemma2"},   {"gemma3_text", "Gemma3Text"},
    };
    std::string architecture;
    nlohmann::json j = lm->config.json.empty() ? nlohmann::json::object() : parse_json(lm->config.json, "config.json");
    if (j.is_object() && j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
        j["architectures"][0].is_string() && ends_with(j["architectures"][0].get<std::string>(), "ForCausalLM")) {
        const std::string causal = j["architectures"][0].get<std::string>();
        architecture = causal.substr(0, causal.size() - std::string("ForCausalLM").size()) + suffix;
    } else {
        auto it = families.find(lm->config.model_type);
        if (it == families.end())
            fail("reward model: no *", suffix, " class is known for model_type "", lm->config.model_type, """);
        architecture = it->second + suffix;
    }
    auto rm = std::make_shared<reward_model>();
    rm->backbone = std::move(lm);
    rm->head.architecture = architecture;
    rm->head.num_labels = 1;
    rm->path = "";
    const int64_t C = rm->backbone->config.hidden_size;
    rng draw(rng::derive(seed, 0x73636f7265ull));  // "score"
    std::vector<float> w((size_t)C);
    for (auto& v : w) v = (float)(0.02 * draw.normal());
    rm->score_weight = at::tensor(w, at::kFloat).view({1, C});
    return rm;
}

std::string reward_model::config_json(at::ScalarType dtype) const {
    const model_config& c = backbone->config;
    nlohmann::ordered_json j = c.json.empty() ? nlohmann::ordered_json::object()
                                              : nlohmann::ordered_json::parse(c.json);
    j["architectures"] = nlohmann::ordered_json::array({head.architecture});
    j["num_labels"] = 1;
    j["id2label"] = {{"0", "LABEL_0"}};
    j["label2id"] = {{"LABEL_0", 0}};
    if (!j.contains("pad_token_id") || j["pad_token_id"].is_null()) {
        // transformers pools at the last token that is not pad_token_id and
        // needs one for batches; the EOS id is what TRL's examples set.
        if (!backbone->eos_ids.empty()) j["pad_token_id"] = backbone->eos_ids.front();
    }
    j["torch_dtype"] = dtype == at::kBFloat16 ? "bfloat16" : "float32";
    if (j.contains("dtype")) j["dtype"] = j["torch_dtype"];
    return j.dump(2) + "\n";
}

std::shared_ptr<reward_model> reward_model::load(const std::string& dir, at::ScalarType requested) {
    if (requested != at::kFloat && requested != at::kBFloat16 && requested != at::ScalarType::Undefined)
        fail("reward model: compute dtype must be fp32 or bf16");
    if (!is_directory(dir))
        fail("reward model: \"", dir, "\" is not a directory (expected a Hugging Face *", suffix, " directory)");
    const std::string config_path = path_join(dir, "config.json");
    if (!file_exists(config_path)) fail(dir, ": no config.json (expected a Hugging Face *", suffix, " directory)");
    const std::string text = read_file(config_path);
    parse_reward_config(text, config_path);
    model_config config = parse_model_config(text, config_path);
    const at::ScalarType dtype =
        requested == at::ScalarType::Undefined ? checkpoint_dtype(config, config_path) : requested;

    // The tokenizer first: it is cheap, and a reward model is useless without it.
    std::shared_ptr<tokenizer> tok;
    try {
        tok = tokenizer::load(dir);
    } catch (const error& e) {
        fail(dir, ": the reward model's tokenizer does not load: ", e.what(),
             ". Save the tokenizer next to the weights (tokenizer.save_pretrained(dir)): tokenizer.json or "
             "tokenizer.model, with tokenizer_config.json");
    }

    std::string where;
    auto files = open_checkpoint(dir, where);
    tensor_list tensors;
    std::map<std::string, std::string> owner;
    for (const auto& f : files)
        for (const auto& name : f->meta.names()) {
            auto it = owner.find(name);
            if (it != owner.end())
                fail(where, ": tensor \"", name, "\" appears in both ", it->second, " and ", f->meta.path());
            owner[name] = f->meta.path();
            tensors.emplace_back(name, f->view(name));
        }
    // transformers drops these stale buffers; so do we.
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                 [](const auto& kv) { return ends_with(kv.first, "rotary_emb.inv_freq"); }),
                  tensors.end());

    auto rm = from_tensors(config, tensors, dtype, where);
    tensors.clear();  // the views go before their maps
    rm->path = dir;
    rm->backbone->path = dir;
    rm->backbone->tok = tok;
    log_info("reward model: loaded ", rm->head.architecture, " from ", dir, " (",
             rm->backbone->parameter_count() / 1e6, "M parameters, ", dtype_name(dtype), ")");
    return rm;
}

at::Tensor reward_model::score_ids(const at::Tensor& ids, const at::Tensor& attention_mask) const {
    if (ids.dim() != 2) fail("reward model: ids must be (B, T), got shape ", shape_string(ids.sizes()));
    at::Tensor mask = attention_mask.defined() ? attention_mask.to(at::kLong) : at::ones_like(ids, at::kLong);
    if (mask.sizes() != ids.sizes())
        fail("reward model: attention_mask has shape ", shape_string(mask.sizes()), " but ids have ",
             shape_string(ids.sizes()));
    if (!(mask.sum(1) > 0).all().item<bool>()) fail("reward model: every row needs at least one real token");
    const int64_t B = ids.size(0), T = ids.size(1);

    at::Tensor hidden = backbone->hidden_states(ids, mask);                       // (B, T, C)
    const int64_t C = hidden.size(2);
    at::Tensor columns = at::arange(T, at::kLong).unsqueeze(0) * mask;            // (B, T), 0 at padding
    at::Tensor last = columns.argmax(1);                                          // (B) last real column
    at::Tensor pooled = hidden.gather(1, last.view({B, 1, 1}).expand({B, 1, C}))  // (B, 1, C)
                            .squeeze(1);                                          // (B, C)
    at::Tensor scores = at::matmul(pooled.to(at::kFloat), score_weight.t());     // (B, 1)
    return scores.squeeze(1);                                                     // (B)
}

std::vector<double> reward_model::score_rows(const std::vector<std::vector<int32_t>>& rows,
                                             int64_t batch_size) const {
    if (batch_size < 1) fail("reward model: batch_size must be >= 1, got ", batch_size);
    const int64_t V = backbone->config.vocab_size, pad = backbone->config.pad_token_id;
    size_t ends_in_pad = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
        if (rows[i].empty()) fail("reward model: text ", i + 1, " has no tokens");
        for (int32_t id : rows[i])
            if (id < 0 || id >= V)
                fail("reward model: text ", i + 1, " holds token id ", id, ", outside the model's vocabulary [0, ",
                     V, ") (config.json vocab_size does not cover the tokenizer)");
        if (pad >= 0 && rows[i].back() == pad) ++ends_in_pad;
    }
    if (ends_in_pad)
        log_warn("reward model: ", ends_in_pad, " text(s) end in pad_token_id ", pad,
                 "; transformers would pool at the last token that is not the pad token, "
                 "we pool at the last real token");

    // Rows of similar length share a batch (less padding); each row's score
    // does not depend on its neighbours.
    std::vector<size_t> order(rows.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return rows[a].size() < rows[b].size(); });

    c10::InferenceMode no_grad;
    std::vector<double> out(rows.size());
    for (size_t begin = 0; begin < order.size(); begin += (size_t)batch_size) {
        const size_t end = std::min(order.size(), begin + (size_t)batch_size);
        size_t longest = 0;
        for (size_t k = begin; k < end; ++k) longest = std::max(longest, rows[order[k]].size());
        const int64_t B = (int64_t)(end - begin), T = (int64_t)longest;
        at::Tensor ids = at::zeros({B, T}, at::kLong), mask = at::zeros({B, T}, at::kLong);  // left-padded
        auto id = ids.accessor<int64_t, 2>();
        auto mk = mask.accessor<int64_t, 2>();
        for (int64_t b = 0; b < B; ++b) {
            const auto& row = rows[order[begin + b]];
            const int64_t offset = T - (int64_t)row.size();
            for (size_t t = 0; t < row.size(); ++t) {
                id[b][offset + t] = row[t];
                mk[b][offset + t] = 1;
            }
        }
        at::Tensor scores = score_ids(ids, mask).to(at::kDouble).contiguous();  // (B)
        const double* s = scores.data_ptr<double>();
        for (int64_t b = 0; b < B; ++b) {
            const size_t i = order[begin + b];
            if (!std::isfinite(s[b]))
                fail("reward model: the score of text ", i + 1, " is not finite (", s[b], ")",
                     backbone->dtype == at::kBFloat16 ? "; try dtype = \"fp32\"" : "");
            out[i] = s[b];
        }
    }
    return out;
}

std::vector<double> reward_model::score_texts(const std::vector<std::string>& texts, int64_t batch_size) const {
    if (!backbone->tok) fail("reward model: no tokenizer loaded (built from tensors); score token ids instead");
    return score_rows(backbone->tok->encode_batch(texts, true), batch_size);
}

}  // namespace cai

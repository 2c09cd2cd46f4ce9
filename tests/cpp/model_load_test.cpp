// runtime/model loading: HF directories (single and sharded), config
// defaults, and every error path naming what is wrong.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <stdlib.h>

#include <string>

#include "core/error.h"
#include "core/fs.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "model/safetensors.h"
#include "model/weight_memory.h"

namespace {

using tensor_list = std::vector<std::pair<std::string, at::Tensor>>;

const std::string llama_json = R"({"model_type":"llama","vocab_size":32,"hidden_size":8,"intermediate_size":12,
  "num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":1,"eos_token_id":2})";

std::string temp_dir() {
    char tmpl[] = "/tmp/cai_model_load_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

tensor_list tensors_for(const std::string& json) {
    return cai::random_model_tensors(cai::parse_model_config(json), 3);
}

std::string load_error(const std::string& dir) {
    try {
        cai::model::load(dir, at::kFloat, false);
    } catch (const cai::error& e) {
        return e.what();
    }
    return "";
}

std::string config_error(const std::string& json) {
    try {
        cai::parse_model_config(json);
    } catch (const cai::error& e) {
        return e.what();
    }
    return "";
}

tensor_list without(tensor_list t, const std::string& name) {
    tensor_list out;
    for (auto& kv : t)
        if (kv.first != name) out.push_back(kv);
    return out;
}

}  // namespace

TEST_CASE("load: a written directory loads and equals the in-memory model") {
    std::string dir = temp_dir();
    tensor_list t = tensors_for(llama_json);
    cai::write_model_dir(dir, llama_json, t);
    cai::write_file_atomic(cai::path_join(dir, "generation_config.json"), R"({"eos_token_id":[2,5]})");
    auto m = cai::model::load(dir, at::kFloat, false);
    auto ref = cai::model::from_tensors(cai::parse_model_config(llama_json), t, at::kFloat, "mem");
    at::Tensor ids = at::tensor({1, 4, 9}, at::kLong).view({1, 3});
    REQUIRE(at::equal(m->forward(ids), ref->forward(ids)));
    REQUIRE(m->eos_ids == std::vector<int64_t>{2, 5});
    REQUIRE(m->config.num_kv_heads == 1);
    REQUIRE(m->config.head_dim == 4);
}

TEST_CASE("weight_memory: copies stay exact and outlive the allocator") {
    at::Tensor small = at::randn({3, 5}), large = at::randn({700, 800}).to(at::kBFloat16), vec = at::randn({7});
    at::Tensor a, b, c, d;
    {
        cai::weight_memory memory(int64_t(2) << 20);  // one 2 MiB block: `large` (1.1 MB) gets its own
        a = memory.place(small);
        b = memory.place(large);
        c = memory.place(vec);
        d = memory.place(small.t());  // a non-contiguous source is copied contiguous
    }
    REQUIRE(at::equal(a, small));
    REQUIRE(at::equal(b, large));
    REQUIRE(b.scalar_type() == at::kBFloat16);
    REQUIRE(at::equal(c, vec));
    REQUIRE(at::equal(d, small.t()));
    REQUIRE(d.is_contiguous());
    REQUIRE(reinterpret_cast<uintptr_t>(a.data_ptr()) % 64 == 0);
    REQUIRE(reinterpret_cast<uintptr_t>(c.data_ptr()) % 64 == 0);
    a.add_(1);  // weights are trained in place
    REQUIRE(at::equal(a, small + 1));
    REQUIRE(at::equal(c, vec));
}

TEST_CASE("load: matrices in huge-page memory give the same model as ordinary memory") {
    tensor_list t = tensors_for(llama_json);
    auto in_blocks = cai::model::from_tensors(cai::parse_model_config(llama_json), t, at::kFloat, "mem");
    setenv("CAI_HUGE_PAGES", "0", 1);
    auto ordinary = cai::model::from_tensors(cai::parse_model_config(llama_json), t, at::kFloat, "mem");
    unsetenv("CAI_HUGE_PAGES");
    at::Tensor ids = at::tensor({1, 4, 9}, at::kLong).view({1, 3});
    REQUIRE(at::equal(in_blocks->forward(ids), ordinary->forward(ids)));
}

TEST_CASE("load: bf16 weights load into fp32 compute exactly") {
    std::string dir = temp_dir();
    tensor_list t = tensors_for(llama_json);
    cai::write_model_dir(dir, llama_json, t, at::kBFloat16);
    auto m = cai::model::load(dir, at::kFloat, false);
    REQUIRE(m->embed_tokens.scalar_type() == at::kFloat);
    REQUIRE(at::equal(m->embed_tokens, t[0].second.to(at::kBFloat16).to(at::kFloat)));
}

TEST_CASE("load: a sharded checkpoint loads like the single file") {
    std::string dir = temp_dir();
    tensor_list t = tensors_for(llama_json);
    cai::write_file_atomic(cai::path_join(dir, "config.json"), llama_json);
    tensor_list first(t.begin(), t.begin() + 5), second(t.begin() + 5, t.end());
    cai::save_safetensors(cai::path_join(dir, "model-00001-of-00002.safetensors"), first);
    cai::save_safetensors(cai::path_join(dir, "model-00002-of-00002.safetensors"), second);
    std::string map;
    for (size_t i = 0; i < t.size(); ++i)
        map += (i ? "," : "") + ("\"" + t[i].first + "\":\"model-0000" + (i < 5 ? "1" : "2") + "-of-00002.safetensors\"");
    std::string index = R"({"metadata":{},"weight_map":{)" + map + "}}";
    cai::write_file_atomic(cai::path_join(dir, "model.safetensors.index.json"), index);
    auto m = cai::model::load(dir, at::kFloat, false);
    auto ref = cai::model::from_tensors(cai::parse_model_config(llama_json), t, at::kFloat, "mem");
    at::Tensor ids = at::tensor({1, 4, 9}, at::kLong).view({1, 3});
    REQUIRE(at::equal(m->forward(ids), ref->forward(ids)));

    // An index that points a tensor at the wrong shard is an error naming both.
    std::string wrong = index;
    wrong.replace(wrong.find("00001-of"), 5, "00002");
    cai::write_file_atomic(cai::path_join(dir, "model.safetensors.index.json"), wrong);
    REQUIRE_THAT(load_error(dir), Catch::Contains("model.embed_tokens.weight") &&
                                      Catch::Contains("does not contain it"));
    cai::write_file_atomic(cai::path_join(dir, "model.safetensors.index.json"),
                           R"({"weight_map":{"x":"model-00009.safetensors"}})");
    REQUIRE_THAT(load_error(dir), Catch::Contains("shard \"model-00009.safetensors\" does not exist"));
}

TEST_CASE("load: missing, unexpected and misshapen tensors are errors naming them") {
    cai::model_config c = cai::parse_model_config(llama_json);
    tensor_list t = tensors_for(llama_json);
    auto from = [&](const tensor_list& list) {
        try {
            cai::model::from_tensors(c, list, at::kFloat, "model.safetensors");
        } catch (const cai::error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    REQUIRE_THAT(from(without(t, "model.layers.1.mlp.up_proj.weight")),
                 Catch::Contains("missing tensor \"model.layers.1.mlp.up_proj.weight\"") && Catch::Contains("[12, 8]"));
    REQUIRE_THAT(from(without(t, "lm_head.weight")), Catch::Contains("missing tensor \"lm_head.weight\""));
    tensor_list extra = t;
    extra.emplace_back("model.layers.2.mlp.up_proj.weight", at::zeros({12, 8}));
    REQUIRE_THAT(from(extra), Catch::Contains("unexpected tensor \"model.layers.2.mlp.up_proj.weight\""));
    tensor_list bad = t;
    for (auto& kv : bad)
        if (kv.first == "model.layers.0.self_attn.k_proj.weight") kv.second = at::zeros({8, 8});
    REQUIRE_THAT(from(bad), Catch::Contains("\"model.layers.0.self_attn.k_proj.weight\" has shape [8, 8], expected [4, 8]"));
    tensor_list stale = t;
    stale.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", at::zeros({2}));
    REQUIRE(from(stale).empty());  // stale rotary buffers are ignored

    // Tied models have no lm_head.weight; qwen2 needs its q/k/v biases.
    std::string tied = R"({"model_type":"llama","vocab_size":32,"hidden_size":8,"intermediate_size":12,
      "num_hidden_layers":1,"num_attention_heads":2,"tie_word_embeddings":true})";
    auto tied_tensors = tensors_for(tied);
    for (auto& kv : tied_tensors) REQUIRE(kv.first != "lm_head.weight");
    auto m = cai::model::from_tensors(cai::parse_model_config(tied), tied_tensors, at::kFloat, "x");
    REQUIRE(m->lm_head.weight.is_same(m->embed_tokens));
    std::string qwen = R"({"model_type":"qwen2","vocab_size":32,"hidden_size":8,"intermediate_size":12,
      "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":2})";
    cai::model_config qc = cai::parse_model_config(qwen);
    REQUIRE(qc.qkv_bias);
    REQUIRE_FALSE(qc.o_bias);
    REQUIRE_THROWS_WITH(cai::model::from_tensors(qc, without(cai::random_model_tensors(qc, 1),
                                                             "model.layers.0.self_attn.v_proj.bias"),
                                                 at::kFloat, "q"),
                        Catch::Contains("missing tensor \"model.layers.0.self_attn.v_proj.bias\""));
}

TEST_CASE("load: directory errors name the file") {
    std::string dir = temp_dir();
    REQUIRE_THAT(load_error(cai::path_join(dir, "nope")), Catch::Contains("is not a directory"));
    REQUIRE_THAT(load_error(dir), Catch::Contains("no config.json"));
    cai::write_file_atomic(cai::path_join(dir, "config.json"), llama_json);
    REQUIRE_THAT(load_error(dir), Catch::Contains("no model.safetensors or model.safetensors.index.json"));
    cai::write_model_dir(dir, llama_json, tensors_for(llama_json));
    std::string path = cai::path_join(dir, "model.safetensors");
    std::string bytes = cai::read_file(path);
    cai::write_file_atomic(path, bytes.substr(0, bytes.size() - 10));
    REQUIRE_THAT(load_error(dir), Catch::Contains("truncated") && Catch::Contains("lm_head.weight"));
}

TEST_CASE("config: architecture defaults and field errors") {
    REQUIRE_THAT(config_error(R"({"model_type":"gpt2"})"), Catch::Contains("model_type \"gpt2\" is not supported"));
    REQUIRE_THAT(config_error(R"({"hidden_size":8})"), Catch::Contains("\"model_type\" is missing"));
    REQUIRE_THAT(config_error(R"({"model_type":"llama","rope_theta":"abc"})"),
                 Catch::Contains("field \"rope_theta\" must be a number, got \"abc\""));
    REQUIRE_THAT(config_error(R"({"model_type":"llama","rope_scaling":{"type":"yarn","factor":2}})"),
                 Catch::Contains("\"yarn\" is not supported"));
    REQUIRE_THAT(config_error(R"({"model_type":"llama","rope_scaling":{"rope_type":"llama3","factor":8}})"),
                 Catch::Contains("\"low_freq_factor\" is required"));
    REQUIRE_THAT(config_error(R"({"model_type":"llama","num_attention_heads":6,"num_key_value_heads":4})"),
                 Catch::Contains("multiple of num_key_value_heads"));
    REQUIRE_THAT(config_error(R"({"model_type":"llama","hidden_act":"swiglu9"})"),
                 Catch::Contains("activation \"swiglu9\" is not supported"));

    cai::model_config g = cai::parse_model_config(R"({"model_type":"gemma","hidden_size":16,"num_attention_heads":4,"num_key_value_heads":1})");
    REQUIRE(g.tie_word_embeddings);
    REQUIRE(g.head_dim == 256);
    REQUIRE(g.hidden_act == "gelu_pytorch_tanh");
    REQUIRE(g.norm_one_plus);
    cai::model_config g2 = cai::parse_model_config(
        R"({"model_type":"gemma2","num_hidden_layers":4,"final_logit_softcapping":null})");
    REQUIRE(g2.attn_logit_softcapping == 50.0);
    REQUIRE(g2.final_logit_softcapping == 0);
    REQUIRE(g2.attn_scale == Approx(1.0 / 16));
    REQUIRE(g2.layer_sliding == std::vector<bool>{true, false, true, false});
    REQUIRE(g2.sliding_window == 4096);
    cai::model_config l = cai::parse_model_config(
        R"({"model_type":"llama","rope_parameters":{"rope_type":"linear","factor":4.0,"rope_theta":500000}})");
    REQUIRE(l.rope_type == "linear");
    REQUIRE(l.rope_factor == 4.0);
    REQUIRE(l.rope_theta == 500000);
    REQUIRE_FALSE(l.tie_word_embeddings);
    REQUIRE(l.num_kv_heads == l.num_heads);
    cai::model_config q = cai::parse_model_config(
        R"({"model_type":"qwen2","num_hidden_layers":4,"use_sliding_window":true,"sliding_window":8,"max_window_layers":2})");
    REQUIRE(q.layer_sliding == std::vector<bool>{false, false, true, true});
}

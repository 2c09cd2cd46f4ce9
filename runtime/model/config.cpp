#include "model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "core/strings.h"

namespace cai {
namespace {

using json = nlohmann::json;

// The fields of one rope parameter object (rope_scaling, rope_parameters or
// one layer type's entry): rope_type (or type), its factors, and rope_theta
// when the object carries it.
void read_rope_object(const json& scaling, const std::string& where, const std::string& field, model_config& c) {
    if (!scaling.is_object()) fail(where, ": field \"", field, "\" must be an object, got ", scaling.dump());
    std::string sub_where = where + ": " + field;
    json_fields s{scaling, sub_where};
    if (s.present("rope_theta")) c.rope_theta = s.number("rope_theta", c.rope_theta);
    if (field == "rope_scaling" && !s.present("rope_type") && !s.present("type"))
        fail(sub_where, ": field \"rope_type\" is missing (default, linear or llama3)");
    std::string type = s.string("rope_type", s.string("type", "default"));
    c.rope_type = type;
    if (type == "default") return;
    if (type == "linear") {
        if (!s.present("factor")) fail(sub_where, ": field \"factor\" is required for rope_type \"linear\"");
        c.rope_factor = s.number("factor", 1.0);
    } else if (type == "llama3") {
        for (const char* key : {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
            if (!s.present(key)) fail(sub_where, ": field \"", key, "\" is required for rope_type \"llama3\"");
        c.rope_factor = s.number("factor", 1.0);
        c.rope_low_freq_factor = s.number("low_freq_factor", 1.0);
        c.rope_high_freq_factor = s.number("high_freq_factor", 4.0);
        c.rope_original_max_position_embeddings = s.positive("original_max_position_embeddings", 8192);
        if (c.rope_high_freq_factor == c.rope_low_freq_factor)
            fail(sub_where, ": high_freq_factor and low_freq_factor must differ");
    } else {
        fail(where, ": ", field, " type \"", type, "\" is not supported (supported: default, linear, llama3)");
    }
    if (!(c.rope_factor > 0)) fail(sub_where, ": field \"factor\" must be > 0");
}

void read_rope(const json& j, const std::string& where, double default_theta, model_config& c) {
    // transformers >= 5 writes "rope_parameters" (with rope_theta inside); older
    // versions write "rope_theta" and an optional "rope_scaling".
    json_fields r{j, where};
    c.rope_theta = r.number("rope_theta", default_theta);
    if (r.present("rope_parameters")) {
        read_rope_object(j["rope_parameters"], where, "rope_parameters", c);
    } else if (r.present("rope_scaling")) {
        read_rope_object(j["rope_scaling"], where, "rope_scaling", c);
    }
}

// Gemma 3: full-attention layers rotate with rope_theta and rope_scaling,
// sliding layers with rope_local_base_freq and no scaling (transformers < 5);
// transformers >= 5 writes rope_parameters = { full_attention = {...},
// sliding_attention = {...} } instead.
void read_gemma3_rope(const json& j, const std::string& where, model_config& c) {
    json_fields r{j, where};
    c.local_rope = true;
    c.rope_local_theta = r.number("rope_local_base_freq", 10000.0);
    const bool per_type = r.present("rope_parameters") && j["rope_parameters"].is_object() &&
                          (j["rope_parameters"].contains("full_attention") ||
                           j["rope_parameters"].contains("sliding_attention"));
    if (!per_type) {
        read_rope(j, where, 1000000.0, c);
        return;
    }
    const json& params = j["rope_parameters"];
    c.rope_theta = r.number("rope_theta", 1000000.0);
    for (const auto& [key, value] : params.items())
        if (key != "full_attention" && key != "sliding_attention")
            fail(where, ": rope_parameters: unexpected key \"", key,
                 "\" (expected \"full_attention\" and \"sliding_attention\")");
    if (params.contains("full_attention") && !params["full_attention"].is_null())
        read_rope_object(params["full_attention"], where, "rope_parameters.full_attention", c);
    if (params.contains("sliding_attention") && !params["sliding_attention"].is_null()) {
        const json& local = params["sliding_attention"];
        model_config l;
        l.rope_theta = c.rope_local_theta;
        read_rope_object(local, where, "rope_parameters.sliding_attention", l);
        if (l.rope_type != "default")
            fail(where, ": rope_parameters.sliding_attention: rope_type \"", l.rope_type,
                 "\" is not supported for the sliding layers (supported: default)");
        c.rope_local_theta = l.rope_theta;
    }
}

// The checkpoint's dtype: torch_dtype (transformers < 5) or dtype.
std::string read_torch_dtype(const json& j, const std::string& where) {
    json_fields r{j, where};
    const char* key = r.present("dtype") ? "dtype" : "torch_dtype";
    if (!r.present(key)) return "";
    std::string name = r.string(key, "");
    if (starts_with(name, "torch.")) name = name.substr(6);
    if (name == "float" ) name = "float32";
    if (name == "bfloat16" || name == "float32" || name == "float16") return name;
    fail(where, ": field \"", key, "\" must be \"float32\", \"bfloat16\" or \"float16\", got \"", name, "\"");
}

}  // namespace

model_config parse_model_config(const std::string& json_text, const std::string& where) {
    json j = parse_json(json_text, where);
    if (!j.is_object()) fail(where, ": expected a JSON object");
    json_fields r{j, where};
    model_config c;
    c.json = json_text;
    if (!r.present("model_type")) fail(where, ": field \"model_type\" is missing");
    c.model_type = r.string("model_type", "");
    const std::string& t = c.model_type;
    bool llama = t == "llama", mistral = t == "mistral", qwen2 = t == "qwen2", qwen3 = t == "qwen3", gemma = t == "gemma",
         gemma2 = t == "gemma2", gemma3 = t == "gemma3_text";
    if (t == "gemma3")
        fail(where, ": model_type \"gemma3\" is the multimodal Gemma 3 (Gemma3ForConditionalGeneration); only its text "
             "model loads (model_type \"gemma3_text\", Gemma3ForCausalLM, e.g. google/gemma-3-1b-it)");
    if (!(llama || mistral || qwen2 || qwen3 || gemma || gemma2 || gemma3))
        fail(where, ": model_type \"", t,
             "\" is not supported (supported: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text)");
    const bool any_gemma = gemma || gemma2 || gemma3;

    // Defaults are those of transformers' LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config, GemmaConfig,
    // Gemma2Config and Gemma3TextConfig.
    c.vocab_size = r.positive("vocab_size", (qwen2 || qwen3) ? 151936 : gemma3 ? 262208 : (gemma || gemma2) ? 256000 : 32000);
    c.hidden_size = r.positive("hidden_size", gemma ? 3072 : (gemma2 || gemma3) ? 2304 : 4096);
    c.intermediate_size = r.positive("intermediate_size", llama               ? 11008
                                                          : mistral           ? 14336
                                                          : (qwen2 || qwen3)  ? 22016
                                                          : gemma             ? 24576
                                                                              : 9216);
    c.num_layers = r.positive("num_hidden_layers", gemma ? 28 : (gemma2 || gemma3) ? 26 : 32);
    // Per-layer tables are sized from it before any weight is read.
    if (c.num_layers > 100000)
        fail(where, ": field \"num_hidden_layers\" must be at most 100000, got ", c.num_layers);
    c.num_heads = r.positive("num_attention_heads", gemma ? 16 : (gemma2 || gemma3) ? 8 : 32);
    int64_t kv_default = llama ? c.num_heads : mistral ? 8 : (qwen2 || qwen3) ? 32 : gemma ? 16 : 4;
    if ((llama || qwen2) && !r.present("num_key_value_heads")) kv_default = c.num_heads;
    // Qwen3Config: an explicit null means num_attention_heads, an absent field its default of 32.
    if (qwen3 && j.contains("num_key_value_heads") && j["num_key_value_heads"].is_null()) kv_default = c.num_heads;
    c.num_kv_heads = r.positive("num_key_value_heads", kv_default);
    if (c.num_heads % c.num_kv_heads != 0)
        fail(where, ": num_attention_heads (", c.num_heads, ") must be a multiple of num_key_value_heads (",
             c.num_kv_heads, ")");
    const bool fixed_head_dim = any_gemma || qwen3;  // their configs default head_dim to a constant
    const bool derived_head_dim = !r.present("head_dim") && !fixed_head_dim;  // hidden_size / num_attention_heads
    if (derived_head_dim && c.hidden_size % c.num_heads != 0)
        fail(where, ": hidden_size (", c.hidden_size, ") is not divisible by num_attention_heads (", c.num_heads,
             ") and no head_dim is given");
    int64_t head_dim_default = any_gemma ? 256 : qwen3 ? 128 : c.hidden_size / c.num_heads;
    c.head_dim = r.positive("head_dim", head_dim_default);
    if (c.head_dim % 2 != 0) {
        if (derived_head_dim)
            fail(where, ": head_dim = hidden_size / num_attention_heads = ", c.hidden_size, " / ", c.num_heads, " = ",
                 c.head_dim, " must be even for rotary embeddings");
        fail(where, ": head_dim must be even for rotary embeddings, got ", c.head_dim);
    }
    c.max_position_embeddings = r.positive("max_position_embeddings", gemma3 ? 131072 : qwen3 ? 32768 : 8192);
    c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);

    // Gemma reads hidden_activation; a config without it falls back to
    // hidden_act, then to the tanh-approximated GELU the models use.
    const char* act_field = any_gemma && r.present("hidden_activation") ? "hidden_activation" : "hidden_act";
    c.hidden_act = r.string(act_field, any_gemma ? "gelu_pytorch_tanh" : "silu");
    const char* acts[] = {"silu", "swish", "gelu", "gelu_pytorch_tanh", "gelu_new", "relu"};
    bool known = false;
    for (const char* a : acts) known = known || c.hidden_act == a;
    if (!known)
        fail(where, ": field \"", act_field, "\": activation \"", c.hidden_act,
             "\" is not supported (supported: silu, gelu, gelu_pytorch_tanh, gelu_new, relu)");

    if (gemma3)
        read_gemma3_rope(j, where, c);
    else
        read_rope(j, where, 10000.0, c);
    // Checked here, not discovered later as NaN logits.
    if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
        fail(where, ": field \"rope_theta\" must be a positive number, got ", c.rope_theta);
    if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps))
        fail(where, ": field \"rms_norm_eps\" must be a positive number, got ", c.rms_norm_eps);

    bool attention_bias = r.boolean("attention_bias", false);
    c.qkv_bias = qwen2 ? true : (mistral ? false : attention_bias);
    c.o_bias = (llama || qwen3 || any_gemma) ? attention_bias : false;
    c.mlp_bias = llama ? r.boolean("mlp_bias", false) : false;
    c.tie_word_embeddings = r.boolean("tie_word_embeddings", any_gemma);
    c.qk_norm = qwen3 || gemma3;

    c.norm_one_plus = any_gemma;
    c.scale_embeddings = any_gemma;
    c.sandwich_norms = gemma2 || gemma3;
    c.attn_scale = 1.0 / std::sqrt((double)c.head_dim);
    if (gemma2 || gemma3) {
        double scalar = r.number("query_pre_attn_scalar", 256);
        if (!(scalar > 0)) fail(where, ": field \"query_pre_attn_scalar\" must be > 0");
        c.attn_scale = std::pow(scalar, -0.5);
    }
    if (gemma2) {
        // Explicit null turns soft-capping off; absent means the Gemma2Config default.
        c.attn_logit_softcapping = j.contains("attn_logit_softcapping") ? r.number("attn_logit_softcapping", 0) : 50.0;
        c.final_logit_softcapping =
            j.contains("final_logit_softcapping") ? r.number("final_logit_softcapping", 0) : 30.0;
    }
    if (gemma3) {
        // Gemma3TextConfig defaults both to null. transformers' Gemma 3 attention never passes
        // attn_logit_softcapping to its attention function, so the scores are not capped whatever
        // the config says; the final logits are.
        r.number("attn_logit_softcapping", 0);  // type-checked, not used
        c.final_logit_softcapping = r.number("final_logit_softcapping", 0);
        if (r.boolean("use_bidirectional_attention", false))
            fail(where, ": use_bidirectional_attention = true (an embedding model) is not supported; "
                 "cairun runs Gemma 3 as a causal language model");
    }
    if (c.attn_logit_softcapping < 0 || c.final_logit_softcapping < 0)
        fail(where, ": soft-capping values must be positive");

    // Sliding-window attention and which layers use it.
    c.layer_sliding.assign(c.num_layers, false);
    if (mistral || gemma2) {
        c.sliding_window = j.contains("sliding_window") ? r.integer("sliding_window", 0) : 4096;
        for (int64_t i = 0; i < c.num_layers; ++i) c.layer_sliding[i] = mistral ? true : (i % 2 == 0);
    } else if (gemma3) {
        c.sliding_window = j.contains("sliding_window") ? r.integer("sliding_window", 0) : 4096;
        // Without layer_types, every sliding_window_pattern-th layer is global (Gemma3TextConfig).
        int64_t pattern = r.positive("sliding_window_pattern", 6);
        for (int64_t i = 0; i < c.num_layers; ++i) c.layer_sliding[i] = (i + 1) % pattern != 0;
    } else if ((qwen2 || qwen3) && r.boolean("use_sliding_window", false)) {
        c.sliding_window = r.integer("sliding_window", 4096);
        int64_t first = r.integer("max_window_layers", 28);
        for (int64_t i = 0; i < c.num_layers; ++i) c.layer_sliding[i] = i >= first;
    }
    if (r.present("layer_types")) {
        const json& types = j["layer_types"];
        if (!types.is_array() || (int64_t)types.size() != c.num_layers)
            fail(where, ": field \"layer_types\" must be a list of ", c.num_layers, " strings");
        for (int64_t i = 0; i < c.num_layers; ++i) {
            std::string lt = types[i].is_string() ? types[i].get<std::string>() : "";
            if (lt != "sliding_attention" && lt != "full_attention")
                fail(where, ": layer_types[", i, "] must be \"sliding_attention\" or \"full_attention\", got ",
                     types[i].dump());
            c.layer_sliding[i] = lt == "sliding_attention";
        }
    }
    // Gemma 3 picks a layer's rotary base by its type, whether or not a window is set.
    c.layer_local_rope.assign(c.num_layers, false);
    if (c.local_rope) c.layer_local_rope = c.layer_sliding;
    if (c.sliding_window < 0) fail(where, ": field \"sliding_window\" must be >= 0");
    if (c.sliding_window == 0) c.layer_sliding.assign(c.num_layers, false);

    c.eos_token_ids = r.int_or_list("eos_token_id");
    c.bos_token_id = r.integer("bos_token_id", -1);
    c.pad_token_id = r.integer("pad_token_id", -1);
    c.torch_dtype = read_torch_dtype(j, where);
    return c;
}

std::vector<int64_t> parse_generation_eos(const std::string& json_text, const std::string& where) {
    json j = parse_json(json_text, where);
    if (!j.is_object()) fail(where, ": expected a JSON object");
    return json_fields{j, where}.int_or_list("eos_token_id");
}

}  // namespace cai

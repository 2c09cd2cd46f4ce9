#!/usr/bin/python3
"""Golden logits for tests/cpp/model_golden_test.cpp.

Writes, for each architecture below, a tiny random checkpoint in the layout
transformers' save_pretrained() gives (config.json with its real field names,
model.safetensors in bfloat16 as the released checkpoints are) and
golden.safetensors: a batch of token ids with a full, a left-padded and a
right-padded row, its attention_mask, the position_ids transformers'
generate() derives from the mask, and the logits of a float32 forward pass
("logits") and of a bfloat16 one ("logits_bf16").

The forward pass below is a plain transcription of transformers'
modeling_llama.py, modeling_qwen3.py and modeling_gemma3.py (eager attention,
masks from masking_utils, rope init functions from modeling_rope_utils),
function for function, so that it can run where transformers cannot be
installed. Only Debian's python3-torch is needed:

    /usr/bin/python3 tests/data/models/make_golden.py

Same output on every run (torch.manual_seed).
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- configs

QWEN3 = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 391,
    "eos_token_id": 393,
    "head_dim": 16,  # != hidden_size / num_attention_heads, as in the real models
    "hidden_act": "silu",
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 48,
    "max_position_embeddings": 40960,
    "max_window_layers": 1,
    "model_type": "qwen3",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": 3,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "use_cache": True,
    "use_sliding_window": True,  # layer 1 (>= max_window_layers) attends to 3 positions
    "vocab_size": 400,  # tests/data/tokenizers/qwen2 fits
}

GEMMA3 = {
    "architectures": ["Gemma3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": None,
    "bos_token_id": 2,
    "cache_implementation": "hybrid",
    "eos_token_id": [1, 106],
    "final_logit_softcapping": 4.0,
    "head_dim": 16,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 24,
    "initializer_range": 0.02,
    "intermediate_size": 40,
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_attention_heads": 2,
    "num_hidden_layers": 4,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 12,
    "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000.0,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "rope_theta": 1000000.0,
    "sliding_window": 4,
    "sliding_window_pattern": 3,  # layers 0, 1 local, 2 global, 3 local
    "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0",
    "use_cache": True,
    "vocab_size": 64,
}

LLAMA32 = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "head_dim": 16,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 96,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0",
    "use_cache": True,
    "vocab_size": 64,
}


class Config:
    def __init__(self, d):
        self.__dict__.update(d)


def tied(arch, cfg):  # tie_word_embeddings defaults to True in Gemma3TextConfig, False in the others
    return getattr(cfg, "tie_word_embeddings", arch == "gemma3")


# ------------------------------------------------------- modeling_rope_utils


def default_rope(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def rope_inv_freq(cfg, base, scaling):
    inv_freq = default_rope(base, cfg.head_dim)
    if scaling is None or scaling.get("rope_type", scaling.get("type")) == "default":
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return inv_freq / scaling["factor"]
    assert kind == "llama3"
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rotary(inv_freq, x, position_ids):
    # <Arch>RotaryEmbedding.forward (attention_scaling is 1 for these rope types)
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


# ------------------------------------------------------------------- norms


def llama_rms_norm(x, weight, eps):  # LlamaRMSNorm, Qwen3RMSNorm
    input_dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


def gemma_rms_norm(x, weight, eps):  # Gemma3RMSNorm
    output = x.float()
    output = output * torch.rsqrt(output.pow(2).mean(-1, keepdim=True) + eps)
    output = output * (1.0 + weight.float())
    return output.type_as(x)


# ------------------------------------------------------------------- masks


def attention_mask_4d(attention_mask, dtype, sliding_window=None):
    # masking_utils: causal_mask_function, sliding_window_overlay (kv_idx > q_idx - sliding_window)
    # and padding_mask_function, over cache positions 0..T-1; eager gets 0 / finfo.min.
    B, T = attention_mask.shape
    q_idx = torch.arange(T)[:, None]
    kv_idx = torch.arange(T)[None, :]
    allowed = kv_idx <= q_idx
    if sliding_window is not None:
        allowed = allowed & (kv_idx > q_idx - sliding_window)
    allowed = allowed[None, None, :, :] & attention_mask.bool()[:, None, None, :]
    min_dtype = torch.finfo(dtype).min
    return torch.where(allowed, torch.tensor(0.0, dtype=dtype), torch.tensor(min_dtype, dtype=dtype))


# ----------------------------------------------------------- the layers


def repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def eager_attention_forward(query, key, value, attention_mask, scaling, groups, softcap=None):
    key_states = repeat_kv(key, groups)
    value_states = repeat_kv(value, groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if softcap is not None:
        attn_weights = attn_weights / softcap
        attn_weights = torch.tanh(attn_weights)
        attn_weights = attn_weights * softcap
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask[:, :, :, : key_states.shape[-2]]
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_output = torch.matmul(attn_weights, value_states)
    return attn_output.transpose(1, 2).contiguous()


def linear(x, w, name):
    return F.linear(x, w[name + ".weight"], w.get(name + ".bias"))


def attention(arch, cfg, w, p, x, cos, sin, mask):
    input_shape = x.shape[:-1]
    hidden_shape = (*input_shape, -1, cfg.head_dim)
    q = linear(x, w, p + "self_attn.q_proj").view(hidden_shape)
    k = linear(x, w, p + "self_attn.k_proj").view(hidden_shape)
    v = linear(x, w, p + "self_attn.v_proj").view(hidden_shape).transpose(1, 2)
    if arch == "qwen3":  # Qwen3Attention: q_norm/k_norm on the (B, T, heads, D) view, then transpose
        q = llama_rms_norm(q, w[p + "self_attn.q_norm.weight"], cfg.rms_norm_eps).transpose(1, 2)
        k = llama_rms_norm(k, w[p + "self_attn.k_norm.weight"], cfg.rms_norm_eps).transpose(1, 2)
        scaling = cfg.head_dim ** -0.5
    elif arch == "gemma3":  # Gemma3Attention: transpose, then q_norm/k_norm
        q = gemma_rms_norm(q.transpose(1, 2), w[p + "self_attn.q_norm.weight"], cfg.rms_norm_eps)
        k = gemma_rms_norm(k.transpose(1, 2), w[p + "self_attn.k_norm.weight"], cfg.rms_norm_eps)
        scaling = cfg.query_pre_attn_scalar ** -0.5
    else:
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        scaling = cfg.head_dim ** -0.5
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    # Gemma3Attention does not pass attn_logit_softcapping to the attention function.
    out = eager_attention_forward(q, k, v, mask, scaling, cfg.num_attention_heads // cfg.num_key_value_heads)
    return linear(out.reshape(*input_shape, -1).contiguous(), w, p + "self_attn.o_proj")


def mlp(cfg, w, p, x, act):
    return linear(act(linear(x, w, p + "mlp.gate_proj")) * linear(x, w, p + "mlp.up_proj"), w, p + "mlp.down_proj")


def forward(arch, cfg, w, input_ids, attention_mask, position_ids):
    dtype = w["model.embed_tokens.weight"].dtype
    x = F.embedding(input_ids, w["model.embed_tokens.weight"])
    if arch == "gemma3":  # Gemma3TextScaledWordEmbedding: the scale rounded to the weights' dtype
        x = x * torch.tensor(cfg.hidden_size ** 0.5).to(dtype)

    if arch == "gemma3":
        layer_types = getattr(cfg, "layer_types", None) or [
            "sliding_attention" if bool((i + 1) % cfg.sliding_window_pattern) else "full_attention"
            for i in range(cfg.num_hidden_layers)
        ]
        global_freq = rope_inv_freq(cfg, cfg.rope_theta, cfg.rope_scaling)
        local_freq = rope_inv_freq(cfg, cfg.rope_local_base_freq, None)
        rope = {"full_attention": rotary(global_freq, x, position_ids),
                "sliding_attention": rotary(local_freq, x, position_ids)}
        window = cfg.sliding_window
    else:
        if arch == "qwen3":
            window = cfg.sliding_window if cfg.use_sliding_window else None
            layer_types = ["sliding_attention" if window is not None and i >= cfg.max_window_layers
                           else "full_attention" for i in range(cfg.num_hidden_layers)]
        else:
            window, layer_types = None, ["full_attention"] * cfg.num_hidden_layers
        r = rotary(rope_inv_freq(cfg, cfg.rope_theta, cfg.rope_scaling), x, position_ids)
        rope = {"full_attention": r, "sliding_attention": r}
    masks = {"full_attention": attention_mask_4d(attention_mask, dtype),
             "sliding_attention": attention_mask_4d(attention_mask, dtype, window)}

    for i in range(cfg.num_hidden_layers):
        p = "model.layers.%d." % i
        cos, sin = rope[layer_types[i]]
        mask = masks[layer_types[i]]
        if arch == "gemma3":  # Gemma3DecoderLayer: sandwich norms
            norm = lambda h, name: gemma_rms_norm(h, w[p + name + ".weight"], cfg.rms_norm_eps)
            residual = x
            h = attention(arch, cfg, w, p, norm(x, "input_layernorm"), cos, sin, mask)
            x = residual + norm(h, "post_attention_layernorm")
            residual = x
            h = mlp(cfg, w, p, norm(x, "pre_feedforward_layernorm"), lambda t: F.gelu(t, approximate="tanh"))
            x = residual + norm(h, "post_feedforward_layernorm")
        else:
            norm = lambda h, name: llama_rms_norm(h, w[p + name + ".weight"], cfg.rms_norm_eps)
            residual = x
            x = residual + attention(arch, cfg, w, p, norm(x, "input_layernorm"), cos, sin, mask)
            residual = x
            x = residual + mlp(cfg, w, p, norm(x, "post_attention_layernorm"), F.silu)

    x = (gemma_rms_norm if arch == "gemma3" else llama_rms_norm)(x, w["model.norm.weight"], cfg.rms_norm_eps)
    head = w["model.embed_tokens.weight"] if tied(arch, cfg) else w["lm_head.weight"]
    logits = F.linear(x, head)
    if arch == "gemma3" and cfg.final_logit_softcapping is not None:
        logits = logits / cfg.final_logit_softcapping
        logits = torch.tanh(logits)
        logits = logits * cfg.final_logit_softcapping
    return logits


# ---------------------------------------------------------- checkpoints


def random_weights(arch, cfg, gen):
    C, I, D = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    H, Hkv, V = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size
    gemma = arch == "gemma3"
    w = {}

    def mat(name, *shape, std=None):  # unit-variance outputs for unit-variance inputs
        w[name] = torch.randn(*shape, generator=gen) * (std if std is not None else shape[1] ** -0.5)

    def norm(name, n):  # random around the identity: 1 + noise, or Gemma's (1 + w) with w = noise
        w[name] = (0.0 if gemma else 1.0) + torch.randn(n, generator=gen) * 0.2

    mat("model.embed_tokens.weight", V, C, std=2 * C ** -0.5)
    for i in range(cfg.num_hidden_layers):
        p = "model.layers.%d." % i
        norm(p + "input_layernorm.weight", C)
        norm(p + "post_attention_layernorm.weight", C)
        if gemma:
            norm(p + "pre_feedforward_layernorm.weight", C)
            norm(p + "post_feedforward_layernorm.weight", C)
        mat(p + "self_attn.q_proj.weight", H * D, C)
        mat(p + "self_attn.k_proj.weight", Hkv * D, C)
        mat(p + "self_attn.v_proj.weight", Hkv * D, C)
        mat(p + "self_attn.o_proj.weight", C, H * D)
        if arch in ("qwen3", "gemma3"):
            norm(p + "self_attn.q_norm.weight", D)
            norm(p + "self_attn.k_norm.weight", D)
        mat(p + "mlp.gate_proj.weight", I, C)
        mat(p + "mlp.up_proj.weight", I, C)
        mat(p + "mlp.down_proj.weight", C, I)
    norm("model.norm.weight", C)
    if not tied(arch, cfg):
        mat("lm_head.weight", V, C)
    # The checkpoint holds bfloat16 values; every forward starts from them.
    return {k: v.to(torch.bfloat16) for k, v in w.items()}


ST_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64"}


def save_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        if t.dtype == torch.bfloat16:  # raw bits, little-endian
            data = t.view(torch.int16).numpy().tobytes()
        else:
            data = t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def batch(vocab, gen, T=10, left=3, right=4):
    # Row 0 full, row 1 left-padded (as cairun batches prompts), row 2 right-padded.
    ids = torch.randint(0, vocab, (3, T), generator=gen)
    mask = torch.ones(3, T, dtype=torch.int64)
    mask[1, :left] = 0
    mask[2, T - right:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    # What generate() passes: cumsum - 1, padding at 1.
    position_ids = mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(mask == 0, 1)
    return ids, mask, position_ids


def write(name, arch, config, seed):
    gen = torch.Generator().manual_seed(seed)
    cfg = Config(config)
    weights = random_weights(arch, cfg, gen)
    ids, mask, position_ids = batch(cfg.vocab_size, gen)
    with torch.no_grad():
        logits = forward(arch, cfg, {k: v.float() for k, v in weights.items()}, ids, mask, position_ids)
        logits_bf16 = forward(arch, cfg, weights, ids, mask, position_ids).float()
    real = mask.bool()
    print("%-12s |logits| max %.3f  std %.3f  bf16 vs fp32 max diff %.4f" % (
        name, logits[real].abs().max(), logits[real].std(), (logits - logits_bf16)[real].abs().max()))
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    save_safetensors(os.path.join(out, "model.safetensors"), weights, {"format": "pt"})
    save_safetensors(os.path.join(out, "golden.safetensors"),
                     {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids,
                      "logits": logits.contiguous(), "logits_bf16": logits_bf16.contiguous()})


if __name__ == "__main__":
    torch.set_num_threads(1)
    write("qwen3", "qwen3", QWEN3, 1)
    write("gemma3_text", "gemma3", GEMMA3, 2)
    write("llama3_2", "llama", LLAMA32, 3)

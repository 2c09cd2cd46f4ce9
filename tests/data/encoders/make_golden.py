#!/usr/bin/python3
"""Tiny random encoder classifiers and their golden logits.

Writes, for each case below, tests/data/encoders/<case>/config.json (the
field names of transformers' BertConfig, RobertaConfig, DistilBertConfig and
DebertaV2Config) and model.safetensors (the key names of the matching
*ForSequenceClassification class), plus golden.json: a batch of token ids
with a right-padded row and the float32 logits of that batch.

transformers cannot be installed here, so the reference below is a plain
PyTorch re-statement of transformers' eval-mode forward passes
(modeling_bert.py, modeling_roberta.py, modeling_distilbert.py,
modeling_deberta_v2.py), step by step in the same order and dtype.

Run with Debian's python3-torch (apt-get install python3-torch):
    /usr/bin/python3 tests/data/encoders/make_golden.py
The output is deterministic (torch.manual_seed per case).
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- safetensors

def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------- helpers

ACT = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
}


def linear(w, name, x, bias=True):
    return F.linear(x, w[name + ".weight"], w[name + ".bias"] if bias else None)


def layer_norm(w, name, x, eps):
    return F.layer_norm(x, (x.shape[-1],), w[name + ".weight"], w[name + ".bias"], eps)


def transpose_for_scores(x, heads):
    # (B, T, H*D) -> (B, H, T, D), as BertSelfAttention.transpose_for_scores
    b, t, _ = x.shape
    return x.view(b, t, heads, -1).permute(0, 2, 1, 3)


# ------------------------------------------------------------ bert / roberta

def bert_family_forward(cfg, w, input_ids, attention_mask, token_type_ids, prefix):
    B, T = input_ids.shape
    # BertEmbeddings / RobertaEmbeddings
    if prefix == "roberta.":
        # create_position_ids_from_input_ids(input_ids, padding_idx)
        pad = cfg["pad_token_id"]
        mask = input_ids.ne(pad).int()
        incremental_indices = torch.cumsum(mask, dim=1).type_as(mask) * mask
        position_ids = incremental_indices.long() + pad
    else:
        position_ids = torch.arange(T).expand(1, -1)
    embeddings = F.embedding(input_ids, w[prefix + "embeddings.word_embeddings.weight"])
    embeddings = embeddings + F.embedding(token_type_ids, w[prefix + "embeddings.token_type_embeddings.weight"])
    embeddings = embeddings + F.embedding(position_ids, w[prefix + "embeddings.position_embeddings.weight"])
    hidden = layer_norm(w, prefix + "embeddings.LayerNorm", embeddings, cfg["layer_norm_eps"])
    # get_extended_attention_mask: (1 - mask) * finfo.min, broadcast over heads and queries
    ext = attention_mask[:, None, None, :].to(hidden.dtype)
    ext = (1.0 - ext) * torch.finfo(hidden.dtype).min
    H = cfg["num_attention_heads"]
    D = cfg["hidden_size"] // H
    for i in range(cfg["num_hidden_layers"]):
        p = f"{prefix}encoder.layer.{i}."
        q = transpose_for_scores(linear(w, p + "attention.self.query", hidden), H)
        k = transpose_for_scores(linear(w, p + "attention.self.key", hidden), H)
        v = transpose_for_scores(linear(w, p + "attention.self.value", hidden), H)
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores / math.sqrt(D)
        scores = scores + ext
        probs = F.softmax(scores, dim=-1)
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(B, T, -1)
        attn = layer_norm(w, p + "attention.output.LayerNorm", linear(w, p + "attention.output.dense", context) + hidden,
                          cfg["layer_norm_eps"])
        inter = ACT[cfg["hidden_act"]](linear(w, p + "intermediate.dense", attn))
        hidden = layer_norm(w, p + "output.LayerNorm", linear(w, p + "output.dense", inter) + attn, cfg["layer_norm_eps"])
    first = hidden[:, 0]
    if prefix == "bert.":
        pooled = torch.tanh(linear(w, "bert.pooler.dense", first))  # BertPooler
        return linear(w, "classifier", pooled)
    x = torch.tanh(linear(w, "classifier.dense", first))  # RobertaClassificationHead
    return linear(w, "classifier.out_proj", x)


# ---------------------------------------------------------------- distilbert

def distilbert_forward(cfg, w, input_ids, attention_mask):
    B, T = input_ids.shape
    position_ids = torch.arange(T).unsqueeze(0).expand_as(input_ids)
    x = F.embedding(input_ids, w["distilbert.embeddings.word_embeddings.weight"])
    x = x + F.embedding(position_ids, w["distilbert.embeddings.position_embeddings.weight"])
    x = layer_norm(w, "distilbert.embeddings.LayerNorm", x, 1e-12)
    H = cfg["n_heads"]
    D = cfg["dim"] // H
    mask = (attention_mask == 0).view(B, 1, 1, T).expand(B, H, T, T)
    for i in range(cfg["n_layers"]):
        p = f"distilbert.transformer.layer.{i}."
        q = transpose_for_scores(linear(w, p + "attention.q_lin", x), H)
        k = transpose_for_scores(linear(w, p + "attention.k_lin", x), H)
        v = transpose_for_scores(linear(w, p + "attention.v_lin", x), H)
        q = q / math.sqrt(D)
        scores = torch.matmul(q, k.transpose(2, 3))
        scores = scores.masked_fill(mask, torch.tensor(torch.finfo(scores.dtype).min))
        weights = F.softmax(scores, dim=-1)
        context = torch.matmul(weights, v).transpose(1, 2).reshape(B, -1, H * D)
        sa = linear(w, p + "attention.out_lin", context)
        sa = layer_norm(w, p + "sa_layer_norm", sa + x, 1e-12)
        ffn = linear(w, p + "ffn.lin2", ACT[cfg["activation"]](linear(w, p + "ffn.lin1", sa)))
        x = layer_norm(w, p + "output_layer_norm", ffn + sa, 1e-12)
    pooled = x[:, 0]
    pooled = F.relu(linear(w, "pre_classifier", pooled))
    return linear(w, "classifier", pooled)


# ---------------------------------------------------------------- deberta-v2

def make_log_bucket_position(relative_pos, bucket_size, max_position):
    sign = torch.sign(relative_pos)
    mid = bucket_size // 2
    abs_pos = torch.where((relative_pos < mid) & (relative_pos > -mid), torch.tensor(mid - 1).type_as(relative_pos),
                          torch.abs(relative_pos))
    log_pos = torch.ceil(torch.log(abs_pos / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    bucket_pos = torch.where(abs_pos <= mid, relative_pos.type_as(log_pos), log_pos * sign)
    return bucket_pos


def build_relative_position(query_size, key_size, bucket_size=-1, max_position=-1):
    q_ids = torch.arange(0, query_size)
    k_ids = torch.arange(0, key_size)
    rel_pos_ids = q_ids[:, None] - k_ids[None, :]
    if bucket_size > 0 and max_position > 0:
        rel_pos_ids = make_log_bucket_position(rel_pos_ids, bucket_size, max_position)
    rel_pos_ids = rel_pos_ids.to(torch.long)
    rel_pos_ids = rel_pos_ids[:query_size, :]
    return rel_pos_ids.unsqueeze(0)


def deberta_forward(cfg, w, input_ids, attention_mask, token_type_ids):
    B, T = input_ids.shape
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    eps = cfg["layer_norm_eps"]
    pos_att_type = cfg.get("pos_att_type") or []
    if isinstance(pos_att_type, str):
        pos_att_type = [x.strip() for x in pos_att_type.lower().split("|")]
    share_att_key = cfg.get("share_att_key", False)
    max_relative_positions = cfg.get("max_relative_positions", -1)
    if max_relative_positions < 1:
        max_relative_positions = cfg["max_position_embeddings"]
    position_buckets = cfg.get("position_buckets", -1)
    pos_ebd_size = position_buckets if position_buckets > 0 else max_relative_positions
    norm_rel_ebd = [x.strip() for x in cfg.get("norm_rel_ebd", "none").lower().split("|")]

    # DebertaV2Embeddings
    e = "deberta.embeddings."
    embeddings = F.embedding(input_ids, w[e + "word_embeddings.weight"])
    if cfg.get("position_biased_input", True):
        position_ids = torch.arange(T).expand(1, -1)
        embeddings = embeddings + F.embedding(position_ids, w[e + "position_embeddings.weight"])
    if cfg["type_vocab_size"] > 0:
        embeddings = embeddings + F.embedding(token_type_ids, w[e + "token_type_embeddings.weight"])
    if cfg.get("embedding_size", C) != C:
        embeddings = F.linear(embeddings, w[e + "embed_proj.weight"])
    embeddings = layer_norm(w, e + "LayerNorm", embeddings, eps)
    mask = attention_mask.unsqueeze(2).to(embeddings.dtype)
    hidden = embeddings * mask

    # DebertaV2Encoder
    ext = attention_mask.unsqueeze(1).unsqueeze(2)
    att_mask = ext * ext.squeeze(-2).unsqueeze(-1)  # (B, 1, T, T)
    relative_pos = build_relative_position(T, T, bucket_size=position_buckets, max_position=max_relative_positions)
    rel_embeddings = w["deberta.encoder.rel_embeddings.weight"]
    if "layer_norm" in norm_rel_ebd:
        rel_embeddings = layer_norm(w, "deberta.encoder.LayerNorm", rel_embeddings, eps)

    def tfs(x):  # DisentangledSelfAttention.transpose_for_scores: (B, T, H*D) -> (B*H, T, D)
        x = x.view(x.size()[:-1] + (H, -1))
        return x.permute(0, 2, 1, 3).contiguous().view(-1, x.size(1), x.size(-1))

    for i in range(cfg["num_hidden_layers"]):
        p = f"deberta.encoder.layer.{i}.attention.self."
        query_layer = tfs(linear(w, p + "query_proj", hidden))
        key_layer = tfs(linear(w, p + "key_proj", hidden))
        value_layer = tfs(linear(w, p + "value_proj", hidden))
        scale_factor = 1 + ("c2p" in pos_att_type) + ("p2c" in pos_att_type)
        scale = torch.sqrt(torch.tensor(query_layer.size(-1), dtype=torch.float) * scale_factor)
        attention_scores = torch.bmm(query_layer, key_layer.transpose(-1, -2) / scale.to(dtype=query_layer.dtype))
        # disentangled_attention_bias
        rp = relative_pos.unsqueeze(1)  # dim 3 -> 4
        att_span = pos_ebd_size
        rel = rel_embeddings[0:att_span * 2, :].unsqueeze(0)
        if share_att_key:
            pos_query_layer = tfs(linear(w, p + "query_proj", rel)).repeat(query_layer.size(0) // H, 1, 1)
            pos_key_layer = tfs(linear(w, p + "key_proj", rel)).repeat(query_layer.size(0) // H, 1, 1)
        else:
            if "c2p" in pos_att_type:
                pos_key_layer = tfs(linear(w, p + "pos_key_proj", rel)).repeat(query_layer.size(0) // H, 1, 1)
            if "p2c" in pos_att_type:
                pos_query_layer = tfs(linear(w, p + "pos_query_proj", rel)).repeat(query_layer.size(0) // H, 1, 1)
        score = 0
        if "c2p" in pos_att_type:
            s = torch.sqrt(torch.tensor(pos_key_layer.size(-1), dtype=torch.float) * scale_factor)
            c2p_att = torch.bmm(query_layer, pos_key_layer.transpose(-1, -2))
            c2p_pos = torch.clamp(rp + att_span, 0, att_span * 2 - 1)
            c2p_att = torch.gather(c2p_att, dim=-1,
                                   index=c2p_pos.squeeze(0).expand([query_layer.size(0), query_layer.size(1), rp.size(-1)]))
            score += c2p_att / s.to(dtype=c2p_att.dtype)
        if "p2c" in pos_att_type:
            s = torch.sqrt(torch.tensor(pos_query_layer.size(-1), dtype=torch.float) * scale_factor)
            r_pos = rp
            p2c_pos = torch.clamp(-r_pos + att_span, 0, att_span * 2 - 1)
            p2c_att = torch.bmm(key_layer, pos_query_layer.transpose(-1, -2))
            p2c_att = torch.gather(p2c_att, dim=-1,
                                   index=p2c_pos.squeeze(0).expand([query_layer.size(0), key_layer.size(-2),
                                                                    key_layer.size(-2)])).transpose(-1, -2)
            score += p2c_att / s.to(dtype=p2c_att.dtype)
        attention_scores = attention_scores + score
        attention_scores = attention_scores.view(-1, H, attention_scores.size(-2), attention_scores.size(-1))
        # XSoftmax
        rmask = ~(att_mask.to(torch.bool))
        probs = attention_scores.masked_fill(rmask, torch.tensor(torch.finfo(attention_scores.dtype).min))
        probs = torch.softmax(probs, -1)
        probs = probs.masked_fill(rmask, 0)
        context = torch.bmm(probs.view(-1, probs.size(-2), probs.size(-1)), value_layer)
        context = context.view(-1, H, context.size(-2), context.size(-1)).permute(0, 2, 1, 3).contiguous()
        context = context.view(context.size()[:-2] + (-1,))
        q = f"deberta.encoder.layer.{i}."
        attn = layer_norm(w, q + "attention.output.LayerNorm", linear(w, q + "attention.output.dense", context) + hidden, eps)
        inter = ACT[cfg["hidden_act"]](linear(w, q + "intermediate.dense", attn))
        hidden = layer_norm(w, q + "output.LayerNorm", linear(w, q + "output.dense", inter) + attn, eps)
    # ContextPooler
    context_token = hidden[:, 0]
    pooled = ACT[cfg.get("pooler_hidden_act", "gelu")](linear(w, "pooler.dense", context_token))
    return linear(w, "classifier", pooled)


# --------------------------------------------------------------------- cases

def rand(*shape, std=0.2):
    return torch.randn(*shape) * std


def layer_norm_params(w, name, n):
    w[name + ".weight"] = 1 + rand(n, std=0.1)
    w[name + ".bias"] = rand(n, std=0.1)


def linear_params(w, name, out, inp, bias=True):
    w[name + ".weight"] = rand(out, inp, std=1 / math.sqrt(inp))
    if bias:
        w[name + ".bias"] = rand(out, std=0.1)


def bert_weights(cfg, prefix, head):
    C, F_, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    w = {}
    w[prefix + "embeddings.word_embeddings.weight"] = rand(V, C, std=0.5)
    w[prefix + "embeddings.position_embeddings.weight"] = rand(cfg["max_position_embeddings"], C, std=0.5)
    w[prefix + "embeddings.token_type_embeddings.weight"] = rand(cfg["type_vocab_size"], C, std=0.5)
    layer_norm_params(w, prefix + "embeddings.LayerNorm", C)
    for i in range(cfg["num_hidden_layers"]):
        p = f"{prefix}encoder.layer.{i}."
        for n in ("query", "key", "value"):
            linear_params(w, p + "attention.self." + n, C, C)
        linear_params(w, p + "attention.output.dense", C, C)
        layer_norm_params(w, p + "attention.output.LayerNorm", C)
        linear_params(w, p + "intermediate.dense", F_, C)
        linear_params(w, p + "output.dense", C, F_)
        layer_norm_params(w, p + "output.LayerNorm", C)
    L = len(cfg["id2label"])
    if head == "bert":
        linear_params(w, "bert.pooler.dense", C, C)
        linear_params(w, "classifier", L, C)
    else:
        linear_params(w, "classifier.dense", C, C)
        linear_params(w, "classifier.out_proj", L, C)
        linear_params(w, "roberta.pooler.dense", C, C)  # saved by some checkpoints, unused by the head
    return w


def distilbert_weights(cfg):
    C, F_, V = cfg["dim"], cfg["hidden_dim"], cfg["vocab_size"]
    w = {}
    w["distilbert.embeddings.word_embeddings.weight"] = rand(V, C, std=0.5)
    w["distilbert.embeddings.position_embeddings.weight"] = rand(cfg["max_position_embeddings"], C, std=0.5)
    layer_norm_params(w, "distilbert.embeddings.LayerNorm", C)
    for i in range(cfg["n_layers"]):
        p = f"distilbert.transformer.layer.{i}."
        for n in ("q_lin", "k_lin", "v_lin", "out_lin"):
            linear_params(w, p + "attention." + n, C, C)
        layer_norm_params(w, p + "sa_layer_norm", C)
        linear_params(w, p + "ffn.lin1", F_, C)
        linear_params(w, p + "ffn.lin2", C, F_)
        layer_norm_params(w, p + "output_layer_norm", C)
    linear_params(w, "pre_classifier", C, C)
    linear_params(w, "classifier", len(cfg["id2label"]), C)
    return w


def deberta_weights(cfg):
    C, F_, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    E = cfg.get("embedding_size", C)
    pos_att_type = cfg["pos_att_type"]
    if isinstance(pos_att_type, str):
        pos_att_type = [x.strip() for x in pos_att_type.lower().split("|")]
    w = {}
    e = "deberta.embeddings."
    w[e + "word_embeddings.weight"] = rand(V, E, std=0.5)
    if cfg.get("position_biased_input", True):
        w[e + "position_embeddings.weight"] = rand(cfg["max_position_embeddings"], E, std=0.5)
    if cfg["type_vocab_size"] > 0:
        w[e + "token_type_embeddings.weight"] = rand(cfg["type_vocab_size"], E, std=0.5)
    if E != C:
        w[e + "embed_proj.weight"] = rand(C, E, std=1 / math.sqrt(E))
    layer_norm_params(w, e + "LayerNorm", C)
    mrp = cfg.get("max_relative_positions", -1)
    if mrp < 1:
        mrp = cfg["max_position_embeddings"]
    span = cfg["position_buckets"] if cfg.get("position_buckets", -1) > 0 else mrp
    w["deberta.encoder.rel_embeddings.weight"] = rand(2 * span, C, std=0.5)
    if "layer_norm" in cfg.get("norm_rel_ebd", "none"):
        layer_norm_params(w, "deberta.encoder.LayerNorm", C)
    for i in range(cfg["num_hidden_layers"]):
        p = f"deberta.encoder.layer.{i}."
        for n in ("query_proj", "key_proj", "value_proj"):
            linear_params(w, p + "attention.self." + n, C, C)
        if not cfg.get("share_att_key", False):
            if "c2p" in pos_att_type:
                linear_params(w, p + "attention.self.pos_key_proj", C, C)
            if "p2c" in pos_att_type:
                linear_params(w, p + "attention.self.pos_query_proj", C, C)
        linear_params(w, p + "attention.output.dense", C, C)
        layer_norm_params(w, p + "attention.output.LayerNorm", C)
        linear_params(w, p + "intermediate.dense", F_, C)
        linear_params(w, p + "output.dense", C, F_)
        layer_norm_params(w, p + "output.LayerNorm", C)
    P = cfg.get("pooler_hidden_size", C)
    linear_params(w, "pooler.dense", P, C)
    linear_params(w, "classifier", len(cfg["id2label"]), P)
    return w


def labels(names):
    return {str(i): n for i, n in enumerate(names)}, {n: i for i, n in enumerate(names)}


def batch(vocab, T, short, pad, types_second_half):
    """Three rows: full, right-padded to `short` real tokens, full; ids avoid pad."""
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, vocab, (3, T), generator=g)
    mask = torch.ones(3, T, dtype=torch.long)
    mask[1, short:] = 0
    ids[1, short:] = pad
    types = torch.zeros(3, T, dtype=torch.long)
    if types_second_half:
        types[0, T // 2:] = 1
        types[1, short // 2:short] = 1
    return ids, mask, types


def write_case(name, cfg, weights, ids, mask, types, logits):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save_safetensors(os.path.join(d, "model.safetensors"), weights)
    golden = {
        "made_by": "tests/data/encoders/make_golden.py (torch " + torch.__version__ + ")",
        "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "token_type_ids": types.tolist(),
        "logits": [[float(x) for x in row] for row in logits.tolist()],
    }
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print(name, [round(x, 4) for x in logits.flatten().tolist()])


def main():
    torch.set_grad_enabled(False)
    V = 99

    torch.manual_seed(1)
    id2label, label2id = labels(["negative", "neutral", "positive"])
    cfg = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": V,
           "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
           "hidden_act": "gelu", "max_position_embeddings": 64, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
           "pad_token_id": 0, "position_embedding_type": "absolute", "id2label": id2label, "label2id": label2id,
           "problem_type": "single_label_classification", "torch_dtype": "float32"}
    w = bert_weights(cfg, "bert.", "bert")
    ids, mask, types = batch(V, 20, 9, 0, True)
    write_case("bert", cfg, w, ids, mask, types, bert_family_forward(cfg, w, ids, mask, types, "bert."))

    torch.manual_seed(2)
    id2label, label2id = labels(["LABEL_0"])
    cfg = {"architectures": ["RobertaForSequenceClassification"], "model_type": "roberta", "vocab_size": V,
           "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
           "hidden_act": "gelu", "max_position_embeddings": 66, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
           "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "id2label": id2label, "label2id": label2id,
           "torch_dtype": "float32"}
    w = bert_weights(cfg, "roberta.", "roberta")
    ids, mask, types = batch(V, 20, 9, 1, False)
    write_case("roberta", cfg, w, ids, mask, types, bert_family_forward(cfg, w, ids, mask, types, "roberta."))

    torch.manual_seed(3)
    id2label, label2id = labels(["safe", "unsafe"])
    cfg = {"architectures": ["DistilBertForSequenceClassification"], "model_type": "distilbert", "vocab_size": V,
           "dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 37, "activation": "gelu",
           "max_position_embeddings": 64, "sinusoidal_pos_embds": False, "pad_token_id": 0,
           "id2label": id2label, "label2id": label2id, "torch_dtype": "float32"}
    w = distilbert_weights(cfg)
    ids, mask, types = batch(V, 20, 9, 0, False)
    write_case("distilbert", cfg, w, ids, mask, types, distilbert_forward(cfg, w, ids, mask))

    # DeBERTa-v3 style (as microsoft/deberta-v3-*): log-bucketed relative
    # positions, shared attention keys, LayerNormed relative embeddings, no
    # absolute positions, no token types; one label (a reward model).
    torch.manual_seed(4)
    id2label, label2id = labels(["LABEL_0"])
    cfg = {"architectures": ["DebertaV2ForSequenceClassification"], "model_type": "deberta-v2", "vocab_size": V,
           "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
           "hidden_act": "gelu", "max_position_embeddings": 64, "type_vocab_size": 0, "layer_norm_eps": 1e-7,
           "relative_attention": True, "max_relative_positions": -1, "position_buckets": 8,
           "pos_att_type": ["p2c", "c2p"], "share_att_key": True, "norm_rel_ebd": "layer_norm",
           "position_biased_input": False, "pooler_hidden_size": 32, "pooler_hidden_act": "gelu",
           "pooler_dropout": 0, "pad_token_id": 0, "id2label": id2label, "label2id": label2id,
           "torch_dtype": "float32"}
    w = deberta_weights(cfg)
    ids, mask, types = batch(V, 24, 10, 0, False)
    write_case("deberta_v3", cfg, w, ids, mask, types, deberta_forward(cfg, w, ids, mask, types))

    # DeBERTa-v2 style: separate position projections, clamped (not
    # bucketed) relative positions, absolute positions and token types, an
    # embedding projection, the "c2p|p2c" string form, two labels.
    torch.manual_seed(5)
    id2label, label2id = labels(["NEGATIVE", "POSITIVE"])
    cfg = {"architectures": ["DebertaV2ForSequenceClassification"], "model_type": "deberta-v2", "vocab_size": V,
           "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
           "hidden_act": "gelu", "max_position_embeddings": 64, "type_vocab_size": 2, "layer_norm_eps": 1e-7,
           "relative_attention": True, "max_relative_positions": 6, "position_buckets": -1,
           "pos_att_type": "c2p|p2c", "share_att_key": False, "norm_rel_ebd": "none",
           "position_biased_input": True, "embedding_size": 24, "pooler_hidden_size": 32,
           "pooler_hidden_act": "gelu", "pad_token_id": 0, "id2label": id2label, "label2id": label2id,
           "torch_dtype": "float32"}
    w = deberta_weights(cfg)
    ids, mask, types = batch(V, 20, 9, 0, True)
    write_case("deberta_v2", cfg, w, ids, mask, types, deberta_forward(cfg, w, ids, mask, types))


if __name__ == "__main__":
    main()

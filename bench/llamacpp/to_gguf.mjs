// Writes a Hugging Face Llama directory (config.json + model.safetensors, F32
// or BF16) as a GGUF v3 file llama.cpp loads, so that both runtimes decode the
// very same weights.
//
//   node to_gguf.mjs MODEL_DIR OUT.gguf f32|bf16|q8_0
//
// q8_0: every matrix but token_embd in llama.cpp's Q8_0 blocks (32 weights,
// an f16 scale max|x| / 127 and round(x / scale) as int8), the embeddings and
// norms in float32: the weights cairun's int8 decode reads, quantized the
// llama.cpp way.
//
// The layout follows llama.cpp's own converter: tensors renamed to GGUF names,
// q/k rows permuted from Hugging Face's rotate-half order to GGML's adjacent
// pairs, 1-D tensors (the norms) kept in float32 (for bf16 they are rounded
// through bf16 first, so the values equal what cairun computes with). The
// vocabulary is synthetic (<unk>, <s>, </s>, the 256 byte pieces, then
// "▁t<i>"): the benchmark feeds token ids, never text. Only plain llama
// configurations are accepted; anything else is an error naming the field.
import fs from "node:fs";
import path from "node:path";

const [modelDir, outPath, outType] = process.argv.slice(2);
if (!modelDir || !outPath || !["f32", "bf16", "q8_0"].includes(outType)) {
    console.error("usage: node to_gguf.mjs MODEL_DIR OUT.gguf f32|bf16|q8_0");
    process.exit(2);
}

function fail(message) {
    console.error(`to_gguf: ${message}`);
    process.exit(1);
}

// --- config.json ---
const configPath = path.join(modelDir, "config.json");
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
function field(name, check, what) {
    const v = config[name];
    if (!check(v)) fail(`${configPath}: field "${name}" must be ${what}, got ${JSON.stringify(v)}`);
    return v;
}
const positive = (v) => Number.isInteger(v) && v > 0;
field("model_type", (v) => v === "llama", '"llama"');
const vocab = field("vocab_size", positive, "a positive integer");
const hidden = field("hidden_size", positive, "a positive integer");
const ffn = field("intermediate_size", positive, "a positive integer");
const layers = field("num_hidden_layers", positive, "a positive integer");
const heads = field("num_attention_heads", positive, "a positive integer");
const kvHeads = field("num_key_value_heads", positive, "a positive integer");
const eps = field("rms_norm_eps", (v) => typeof v === "number" && v > 0, "a positive number");
const theta = field("rope_theta", (v) => typeof v === "number" && v > 0, "a positive number");
const context = field("max_position_embeddings", positive, "a positive integer");
field("tie_word_embeddings", (v) => v === false, "false");
field("rope_scaling", (v) => v === undefined || v === null, "absent (llama without rope scaling only)");
field("hidden_act", (v) => v === undefined || v === "silu", '"silu"');
if (hidden % heads !== 0) fail(`${configPath}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
const headDim = hidden / heads;

// --- model.safetensors ---
const stPath = path.join(modelDir, "model.safetensors");
const st = fs.readFileSync(stPath);
const headerLen = Number(st.readBigUInt64LE(0));
if (8 + headerLen > st.length) fail(`${stPath}: header length ${headerLen} runs past the file`);
const header = JSON.parse(st.subarray(8, 8 + headerLen).toString("utf8"));
const dataStart = 8 + headerLen;

// Returns the tensor as float32 values (row-major) and its shape.
function tensor(name) {
    const info = header[name];
    if (!info) fail(`${stPath}: tensor "${name}" is missing`);
    const [begin, end] = info.data_offsets;
    const count = info.shape.reduce((a, b) => a * b, 1);
    const bytes = st.subarray(dataStart + begin, dataStart + end);
    const out = new Float32Array(count);
    if (info.dtype === "F32") {
        if (bytes.length !== count * 4) fail(`${stPath}: "${name}" has ${bytes.length} bytes for ${count} F32 values`);
        for (let i = 0; i < count; ++i) out[i] = bytes.readFloatLE(i * 4);
    } else if (info.dtype === "BF16") {
        if (bytes.length !== count * 2) fail(`${stPath}: "${name}" has ${bytes.length} bytes for ${count} BF16 values`);
        const u = new Uint32Array(out.buffer);
        for (let i = 0; i < count; ++i) u[i] = bytes.readUInt16LE(i * 2) << 16;
    } else {
        fail(`${stPath}: "${name}" has dtype ${info.dtype}; F32 or BF16 expected`);
    }
    return {data: out, shape: info.shape};
}

// float32 -> bf16 bits, round to nearest even (what at::Tensor::to(kBFloat16) does).
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function bf16Bits(x) {
    f32[0] = x;
    const u = u32[0];
    if ((u & 0x7f800000) === 0x7f800000 && (u & 0x007fffff) !== 0) return (u >>> 16) | 0x40;  // NaN stays NaN
    return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

// Hugging Face keeps each head's rotary halves apart ([x0..x(d/2-1) | x(d/2)..]);
// GGML's rope rotates adjacent pairs: interleave the halves of every head's rows.
function permuteRows(t, nHead) {
    const [rows, cols] = t.shape;
    const d = rows / nHead, half = d / 2;
    const out = new Float32Array(t.data.length);
    for (let h = 0; h < nHead; ++h)
        for (let i = 0; i < half; ++i)
            for (let j = 0; j < 2; ++j) {
                const src = (h * d + j * half + i) * cols, dst = (h * d + 2 * i + j) * cols;
                out.set(t.data.subarray(src, src + cols), dst);
            }
    return {data: out, shape: t.shape};
}

const tensors = [];  // {name, shape (HF order), data, type: "f32"|"bf16"}
function add(ggufName, t) {
    const oneDim = t.shape.length === 1;
    let data = t.data;
    if (outType === "bf16" && oneDim) {  // stored f32, valued as bf16
        data = Float32Array.from(data, (x) => {
            u32[0] = bf16Bits(x) << 16;
            return f32[0];
        });
    }
    let type = "f32";
    if (!oneDim && outType === "bf16") type = "bf16";
    if (!oneDim && outType === "q8_0" && ggufName !== "token_embd.weight") {
        if (t.shape[1] % 32 !== 0) fail(`${ggufName}: rows of ${t.shape[1]} values; Q8_0 needs a multiple of 32`);
        type = "q8_0";
    }
    tensors.push({name: ggufName, shape: t.shape, data, type});
}

// float32 -> IEEE half bits, round to nearest even (finite, normal or subnormal range).
function f16Bits(x) {
    f32[0] = x;
    const u = u32[0], sign = (u >>> 16) & 0x8000;
    let exp = ((u >>> 23) & 0xff) - 127 + 15, mant = u & 0x7fffff;
    if (exp >= 31) return sign | 0x7c00;
    if (exp <= 0) {
        if (exp < -10) return sign;
        mant |= 0x800000;
        const shift = 14 - exp;
        let half = mant >>> shift;
        const rest = mant & ((1 << shift) - 1), mid = 1 << (shift - 1);
        if (rest > mid || (rest === mid && (half & 1))) half += 1;
        return sign | half;
    }
    let half = (exp << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half += 1;
    return sign | half;
}
// A matrix as Q8_0 blocks: per 32 values 2 bytes of f16 scale and 32 int8.
function q8_0Bytes(data) {
    const blocks = data.length / 32, out = Buffer.alloc(blocks * 34);
    for (let b = 0; b < blocks; ++b) {
        let amax = 0;
        for (let i = 0; i < 32; ++i) amax = Math.max(amax, Math.abs(data[b * 32 + i]));
        const d = amax / 127, id = d > 0 ? 1 / d : 0;
        out.writeUInt16LE(f16Bits(d), b * 34);
        for (let i = 0; i < 32; ++i) out.writeInt8(Math.round(data[b * 32 + i] * id), b * 34 + 2 + i);
    }
    return out;
}
add("token_embd.weight", tensor("model.embed_tokens.weight"));
for (let i = 0; i < layers; ++i) {
    const p = `model.layers.${i}.`, b = `blk.${i}.`;
    add(b + "attn_norm.weight", tensor(p + "input_layernorm.weight"));
    add(b + "attn_q.weight", permuteRows(tensor(p + "self_attn.q_proj.weight"), heads));
    add(b + "attn_k.weight", permuteRows(tensor(p + "self_attn.k_proj.weight"), kvHeads));
    add(b + "attn_v.weight", tensor(p + "self_attn.v_proj.weight"));
    add(b + "attn_output.weight", tensor(p + "self_attn.o_proj.weight"));
    add(b + "ffn_norm.weight", tensor(p + "post_attention_layernorm.weight"));
    add(b + "ffn_gate.weight", tensor(p + "mlp.gate_proj.weight"));
    add(b + "ffn_up.weight", tensor(p + "mlp.up_proj.weight"));
    add(b + "ffn_down.weight", tensor(p + "mlp.down_proj.weight"));
}
add("output_norm.weight", tensor("model.norm.weight"));
add("output.weight", tensor("lm_head.weight"));

// --- GGUF v3 ---
const T = {u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9};
const GGML = {f32: 0, q8_0: 8, bf16: 30};
const ALIGN = 32;
const parts = [];
const u32b = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const u64b = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const strb = (s) => { const t = Buffer.from(s, "utf8"); return Buffer.concat([u64b(t.length), t]); };
const kv = [];
function put(key, type, value) {
    const body = [strb(key), u32b(T[type])];
    if (type === "u32") body.push(u32b(value));
    else if (type === "f32") { const b = Buffer.alloc(4); b.writeFloatLE(value); body.push(b); }
    else if (type === "bool") body.push(Buffer.from([value ? 1 : 0]));
    else if (type === "str") body.push(strb(value));
    kv.push(Buffer.concat(body));
}
function putArray(key, elemType, values) {
    const body = [strb(key), u32b(T.arr), u32b(T[elemType]), u64b(values.length)];
    if (elemType === "str") for (const v of values) body.push(strb(v));
    else {
        const b = Buffer.alloc(values.length * 4);
        values.forEach((v, i) => (elemType === "f32" ? b.writeFloatLE(v, i * 4) : b.writeInt32LE(v, i * 4)));
        body.push(b);
    }
    kv.push(Buffer.concat(body));
}
put("general.architecture", "str", "llama");
put("general.name", "str", path.basename(path.resolve(modelDir)));
put("general.file_type", "u32", outType === "bf16" ? 32 : outType === "q8_0" ? 7 : 0);
put("general.alignment", "u32", ALIGN);
put("llama.vocab_size", "u32", vocab);
put("llama.context_length", "u32", context);
put("llama.embedding_length", "u32", hidden);
put("llama.feed_forward_length", "u32", ffn);
put("llama.block_count", "u32", layers);
put("llama.attention.head_count", "u32", heads);
put("llama.attention.head_count_kv", "u32", kvHeads);
put("llama.attention.layer_norm_rms_epsilon", "f32", eps);
put("llama.rope.freq_base", "f32", theta);
put("llama.rope.dimension_count", "u32", headDim);
if (vocab < 259) fail(`${configPath}: vocab_size ${vocab} is below the 259 pieces of the synthetic vocabulary`);
const pieces = [], scores = [], types = [];
for (let i = 0; i < vocab; ++i) {
    if (i < 3) { pieces.push(["<unk>", "<s>", "</s>"][i]); types.push(i === 0 ? 2 : 3); }
    else if (i < 259) { pieces.push(`<0x${(i - 3).toString(16).toUpperCase().padStart(2, "0")}>`); types.push(6); }
    else { pieces.push(`\u2581t${i}`); types.push(1); }
    scores.push(i < 259 ? 0 : -i);
}
put("tokenizer.ggml.model", "str", "llama");
putArray("tokenizer.ggml.tokens", "str", pieces);
putArray("tokenizer.ggml.scores", "f32", scores);
putArray("tokenizer.ggml.token_type", "i32", types);
put("tokenizer.ggml.unknown_token_id", "u32", 0);
put("tokenizer.ggml.bos_token_id", "u32", 1);
put("tokenizer.ggml.eos_token_id", "u32", 2);
put("tokenizer.ggml.add_bos_token", "bool", false);

const pad = (n) => (ALIGN - (n % ALIGN)) % ALIGN;
const infos = [];
let offset = 0;
for (const t of tensors) {
    const bytes = t.type === "q8_0" ? (t.data.length / 32) * 34 : t.data.length * (t.type === "bf16" ? 2 : 4);
    const dims = [...t.shape].reverse();  // GGML lists the fastest-moving dimension first
    infos.push(Buffer.concat([strb(t.name), u32b(dims.length), ...dims.map(u64b), u32b(GGML[t.type]), u64b(offset)]));
    t.offset = offset;
    offset += bytes + pad(bytes);
}
const head = Buffer.concat([Buffer.from("GGUF", "ascii"), u32b(3), u64b(tensors.length), u64b(kv.length), ...kv, ...infos]);
parts.push(head, Buffer.alloc(pad(head.length)));
for (const t of tensors) {
    let b;
    if (t.type === "q8_0") {
        b = q8_0Bytes(t.data);
    } else if (t.type === "bf16") {
        b = Buffer.alloc(t.data.length * 2);
        for (let i = 0; i < t.data.length; ++i) b.writeUInt16LE(bf16Bits(t.data[i]), i * 2);
    } else {
        b = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    }
    parts.push(b, Buffer.alloc(pad(b.length)));
}

// Complete or absent: write beside the target, then rename.
const tmp = `${outPath}.tmp-${process.pid}`;
const fd = fs.openSync(tmp, "w");
try {
    for (const p of parts) fs.writeSync(fd, p);
    fs.fsyncSync(fd);
} finally {
    fs.closeSync(fd);
}
fs.renameSync(tmp, outPath);
console.log(`to_gguf: ${outPath} (${outType}, ${tensors.length} tensors, ${(offset / 1e6).toFixed(0)} MB of weights)`);

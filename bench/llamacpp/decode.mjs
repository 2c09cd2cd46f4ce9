// llama.cpp's side of the side-by-side decode benchmark, through
// node-llama-cpp's prebuilt CPU binaries: prefill DIR/prompt.txt, compare the
// last position's logits with cairun's (DIR/cairun_<dtype>.logits, when
// present), then time greedy decode steps; the best of 3 runs of prefill and
// decode, printed in the format bench_kernels decode prints.
//
//   node decode.mjs MODEL_DIR MODEL.gguf f32|bf16|int8 THREADS   (int8: a Q8_0 file)
import fs from "node:fs";
import path from "node:path";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [modelDir, ggufPath, dtype, threadsArg] = process.argv.slice(2);
const threads = Number(threadsArg);
if (!modelDir || !ggufPath || !["f32", "bf16", "int8"].includes(dtype) || !(threads > 0)) {
    console.error("usage: node decode.mjs MODEL_DIR MODEL.gguf f32|bf16|int8 THREADS");
    process.exit(2);
}
const promptPath = path.join(modelDir, "prompt.txt");
const prompt = fs.readFileSync(promptPath, "utf8").trim().split(/\s+/).map(Number);
if (prompt.length === 0 || prompt.some((t) => !Number.isInteger(t))) {
    console.error(`decode: ${promptPath}: expected whitespace-separated token ids`);
    process.exit(1);
}
const steps = 32;

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: threads});
const model = await llama.loadModel({modelPath: ggufPath, useMmap: true});
const greedy = {temperature: 0};

let best = Infinity, bestPrefill = Infinity, tokens = [], logits = null;
for (let run = 0; run < 3; ++run) {
    const context = await model.createContext({
        contextSize: prompt.length + steps + 16, batchSize: prompt.length, threads, flashAttention: false, sequences: 1});
    const sequence = context.getSequence();
    const last = [prompt.at(-1), {generateNext: {token: true, logits: run === 0, options: greedy}}];
    const p0 = process.hrtime.bigint();
    const out = await sequence.controlledEvaluate([...prompt.slice(0, -1), last]);
    bestPrefill = Math.min(bestPrefill, Number(process.hrtime.bigint() - p0) / 1e9);
    const first = out[prompt.length - 1].next;
    if (run === 0) logits = first.logits;
    const generated = [first.token];
    const t0 = process.hrtime.bigint();
    for await (const token of sequence.evaluate([first.token], greedy)) {
        generated.push(token);
        if (generated.length > steps) break;
    }
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9 / steps);
    tokens = generated;
    await context.dispose();
}

// Logit agreement with cairun on the same prompt, relative to the logits' spread.
const oursPath = path.join(modelDir, `cairun_${dtype}.logits`);
let agreement = "";
if (fs.existsSync(oursPath)) {
    const buf = fs.readFileSync(oursPath);
    const ours = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    let maxDiff = 0, maxAbs = 0;
    for (const [token, value] of logits) {
        maxDiff = Math.max(maxDiff, Math.abs(value - ours[token]));
        maxAbs = Math.max(maxAbs, Math.abs(ours[token]));
    }
    agreement = ` logits_max_abs_diff ${maxDiff.toExponential(2)} logits_max_abs ${maxAbs.toExponential(2)}`;
}
console.log(`llama.cpp ${dtype} threads ${threads} decode_tok_s ${(1 / best).toFixed(2)} ` +
            `prefill_tok_s ${(prompt.length / bestPrefill).toFixed(1)}${agreement} tokens ${tokens.join(" ")}`);
await model.dispose();
await llama.dispose();

// The decode and layer kernels fused vs the plain ATen path (kernels switched
// off), as ratios measured in one process: each kernel on its own, then the
// whole decode step (batch 1 and 4) and prefill of a random ~100M Llama in
// fp32 and bf16. Decode tokens/s are also shown as a fraction of the bound
// bandwidth / bytes of weights streamed per step, with the read bandwidth
// measured here too.
//
//   build/bench_kernels            kernels and the model
//   build/bench_kernels ops        kernels only
//   build/bench_kernels model      the model only
//   build/bench_kernels int8       int8 weights against bf16 and fp32: decode speed and logit error
//
// Side by side with llama.cpp on the same weights (bench/llamacpp/run.sh):
//   build/bench_kernels export DIR          the ~100M Llama as an HF directory + DIR/prompt.txt
//   build/bench_kernels prefill DIR DTYPE LEN BATCH REPS [cache]  a steady prefill to profile
//   build/bench_kernels steps DIR DTYPE BATCH STEPS REPS       a steady decode to profile
//   build/bench_kernels sweep DIR f32|bf16|int8  prefill 64/512 and decode at 1/4/16/32 sequences, as
//                                           llama-bench and llama-batched-bench time them (native.sh)
//   build/bench_kernels decode DIR f32|bf16|int8 decode tok/s of that directory loaded as users
//                                           load it; greedy tokens and DIR/cairun_<dtype>.logits
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu.h"
#include "kernels/gate.h"
#include "kernels/matvec.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary.h"
#include "core/fs.h"
#include "generate/generate.h"
#include "machine.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"

namespace {

using cai::kernels::scoped_enabled;

// Best-of timings of fn with the kernels on and off; prints and returns plain / fused.
template <class F>
double compare(const char* name, F&& fn, int repeats = 20) {
    double fused, plain;
    {
        scoped_enabled on(true);
        fn();
        fused = bench::best_time(fn, repeats);
    }
    {
        scoped_enabled off(false);
        fn();
        plain = bench::best_time(fn, repeats);
    }
    std::printf("  %-44s fused %9.1f us  plain %9.1f us  %5.2fx\n", name, fused * 1e6, plain * 1e6, plain / fused);
    return plain / fused;
}

void bench_ops() {
    std::printf("kernels (fused vs plain ATen):\n");
    for (at::ScalarType type : {at::kFloat, at::kBFloat16}) {
        const std::string t = cai::dtype_name(type);
        auto opts = at::TensorOptions().dtype(type);
        at::Tensor w = at::randn({2048, 768}, opts), w2 = at::randn({2048, 768}, opts);
        at::Tensor wq = at::randn({768, 768}, opts), wk = at::randn({256, 768}, opts), wv = at::randn({256, 768}, opts);
        for (int64_t rows : {1, 4}) {
            at::Tensor x = at::randn({rows, 768}, opts);
            compare((t + " matvec 768->2048, rows " + std::to_string(rows)).c_str(), [&] {
                if (cai::kernels::matvec_applies(x, w)) cai::kernels::matvec_forward(x, w);
                else at::linear(x, w);
            });
            compare((t + " fused gate+up 2x(768->2048), rows " + std::to_string(rows)).c_str(), [&] {
                if (cai::kernels::matvec_applies(x, w)) cai::kernels::matvec_forward_many(x, {w, w2});
                else at::linear(x, w), at::linear(x, w2);
            });
        }
        {
            at::Tensor x = at::randn({1, 768}, opts);
            compare((t + " fused qkv 768->768+256+256, rows 1").c_str(), [&] {
                if (cai::kernels::matvec_applies(x, wq)) cai::kernels::matvec_forward_many(x, {wq, wk, wv});
                else at::linear(x, wq), at::linear(x, wk), at::linear(x, wv);
            });
        }
        {  // decode attention over 512 cached slots, GQA 12/4, D 64
            const int64_t S = 512, H = 12, Hkv = 4, D = 64;
            at::Tensor q = at::randn({1, 1, H, D}, opts);
            at::Tensor kc = at::randn({1, S, Hkv, D}, opts), vc = at::randn({1, S, Hkv, D}, opts);
            at::Tensor pos = at::full({1, 1}, S - 1, at::kLong), filled = at::full({1}, S, at::kLong);
            cai::kernels::attention_options o;
            o.key_len = S;
            o.scale = 0.125;
            compare((t + " attention decode, 512 slots, 12/4 heads").c_str(), [&] {
                if (cai::kernels::attention_decode_applies(q, kc)) {
                    cai::kernels::attention_decode_forward(q, kc, vc, pos, filled, o);
                    return;
                }
                at::Tensor keys = kc.transpose(1, 2), values = vc.transpose(1, 2);  // (1, Hkv, S, D)
                at::Tensor gq = q.transpose(1, 2).reshape({1, Hkv, H / Hkv, D});
                at::Tensor scores = at::matmul(gq, keys.transpose(-1, -2)) * 0.125;
                at::Tensor mask = at::ones({1, 1, 1, S}, at::kBool);
                scores = scores.masked_fill(at::logical_not(mask), -1e30);
                at::Tensor wts = at::softmax(scores, -1, at::kFloat).to(type);
                at::matmul(wts, values).reshape({1, 1, H * D});
            });
        }
        for (int64_t rows : {1, 2048}) {
            at::Tensor x = at::randn({rows, 768}, opts), nw = at::randn({768}, opts);
            compare((t + " rms_norm forward, rows " + std::to_string(rows)).c_str(), [&] {
                if (cai::kernels::rms_norm_applies(x, nw)) {
                    cai::kernels::rms_norm_forward(x, nw, 1e-6, false);
                    return;
                }
                at::Tensor x32 = x.to(at::kFloat);
                at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, true) + 1e-6);
                (nw * normed.to(type));
            });
            at::Tensor g = at::randn({rows, 2048}, opts), u = at::randn({rows, 2048}, opts);
            compare((t + " swiglu gate forward, rows " + std::to_string(rows)).c_str(), [&] {
                if (cai::kernels::gate_applies(g, u)) cai::kernels::gate_forward(g, u, cai::kernels::gate_act::silu);
                else at::silu(g) * u;
            });
            at::Tensor qr = at::randn({1, rows, 12, 64}, opts), cs = at::randn({1, rows, 64}, opts),
                       sn = at::randn({1, rows, 64}, opts);
            compare((t + " rotary q, tokens " + std::to_string(rows)).c_str(), [&] {
                if (cai::kernels::rotary_applies(qr, cs)) {
                    cai::kernels::rotary_forward(qr, cs, sn);
                    return;
                }
                at::Tensor c = cs.unsqueeze(2), s = sn.unsqueeze(2);
                at::Tensor rot = at::cat({-qr.narrow(-1, 32, 32), qr.narrow(-1, 0, 32)}, -1);
                qr* c + rot * s;
            });
        }
        {  // training: forward + backward of rms_norm and the gate over 2048 tokens
            c10::InferenceMode off_inference(false);
            at::Tensor x = at::randn({2048, 768}, opts).requires_grad_(), nw = at::randn({768}, opts).requires_grad_();
            compare((t + " rms_norm forward+backward, rows 2048").c_str(), [&] {
                at::Tensor y;
                if (cai::kernels::rms_norm_applies(x, nw)) {
                    y = cai::kernels::rms_norm(x, nw, 1e-6, false);
                } else {
                    at::Tensor x32 = x.to(at::kFloat);
                    y = nw * (x32 * at::rsqrt(x32.pow(2).mean(-1, true) + 1e-6)).to(type);
                }
                torch::autograd::grad({y.sum()}, {x, nw});
            }, 5);
            at::Tensor g = at::randn({2048, 2048}, opts).requires_grad_(), u = at::randn({2048, 2048}, opts).requires_grad_();
            compare((t + " swiglu gate forward+backward, rows 2048").c_str(), [&] {
                at::Tensor y = cai::kernels::gate_applies(g, u) ? cai::kernels::gate(g, u, cai::kernels::gate_act::silu)
                                                                : at::silu(g) * u;
                torch::autograd::grad({y.sum()}, {g, u});
            }, 5);
        }
    }
}

const char* llama_100m = R"({"model_type":"llama","vocab_size":32000,"hidden_size":768,"intermediate_size":2048,
      "num_hidden_layers":8,"num_attention_heads":12,"num_key_value_heads":4,"rms_norm_eps":1e-06,
      "rope_theta":10000.0,"max_position_embeddings":2048,"tie_word_embeddings":false,"hidden_act":"silu"})";

const int64_t prompt_len = 64, decode_steps = 16;

// The greedy token of each row's last logits, picked as cai::generate picks:
// from the logits in float32 (ATen's argmax over bf16 takes ~4x as long).
at::Tensor greedy(const at::Tensor& logits) { return logits.to(at::kFloat).argmax(-1); }

// Seconds per decode step (batch rows each) after a prefill of prompt_len tokens.
double decode_step_seconds(const cai::model& m, const at::Tensor& ids) {
    double best = 1e30;
    for (int rep = 0; rep < 2; ++rep) {
        cai::kv_cache cache = m.new_cache(ids.size(0), prompt_len + decode_steps);
        m.hidden_states(ids, {}, &cache);
        at::Tensor next = ids.narrow(1, prompt_len - 1, 1).contiguous();
        auto t0 = std::chrono::steady_clock::now();
        for (int64_t s = 0; s < decode_steps; ++s) next = greedy(m.forward(next, {}, &cache));
        best = std::min(best, bench::seconds_since(t0) / decode_steps);
    }
    return best;
}

void bench_model() {
    cai::model_config c = cai::parse_model_config(llama_100m);
    auto tensors = cai::random_model_tensors(c, 1);
    std::printf("\n~100M Llama (fused vs plain; bound = read bandwidth / bytes of weights streamed per step,\n"
                "bandwidth measured between the decode runs; best of 3 rounds of bandwidth, fused, plain):\n");
    std::printf("%-5s %-16s %12s %12s %7s %9s %14s\n", "dtype", "step", "fused tok/s", "plain tok/s", "ratio", "GB/s",
                "fused / bound");
    for (at::ScalarType type : {at::kFloat, at::kBFloat16}) {
        auto m = cai::model::from_tensors(c, tensors, type, "100m");
        const double elem = type == at::kFloat ? 4 : 2;
        // Every weight but the embedding table is read once per decode step.
        const double streamed = (double)(m->parameter_count() - m->embed_tokens.numel()) * elem;
        for (int64_t batch : {1, 4}) {
            at::Tensor ids = at::randint(c.vocab_size, {batch, prompt_len}, at::kLong);
            // The memory bandwidth other machines' work leaves us moves by tens of percent
            // within a minute: measure it between the runs, and keep the best of each.
            double fused = 1e30, plain = 1e30, bandwidth = 0;
            for (int round = 0; round < 3; ++round) {
                bandwidth = std::max(bandwidth, bench::memory_bandwidth_gbs(int64_t(512) << 20));
                {
                    scoped_enabled on(true);
                    fused = std::min(fused, decode_step_seconds(*m, ids));
                }
                {
                    scoped_enabled off(false);
                    plain = std::min(plain, decode_step_seconds(*m, ids));
                }
            }
            const double bound = bandwidth * 1e9 / streamed;
            std::printf("%-5s decode batch %-3lld %12.1f %12.1f %6.2fx %9.1f %13.0f%%\n", cai::dtype_name(type).c_str(),
                        (long long)batch, batch / fused, batch / plain, plain / fused, bandwidth, 100.0 / fused / bound);
        }
        at::Tensor ids = at::randint(c.vocab_size, {1, prompt_len}, at::kLong);
        double fused, plain;
        {
            scoped_enabled on(true);
            m->forward(ids);
            fused = bench::best_time([&] { m->forward(ids); }, 2);
        }
        {
            scoped_enabled off(false);
            m->forward(ids);
            plain = bench::best_time([&] { m->forward(ids); }, 2);
        }
        std::printf("%-5s prefill %-8lld %12.0f %12.0f %6.2fx\n", cai::dtype_name(type).c_str(), (long long)prompt_len,
                    prompt_len / fused, prompt_len / plain, plain / fused);
        std::printf("      %s: %.0f MB streamed per decode step\n", cai::dtype_name(type).c_str(), streamed / 1e6);
    }
}

// Logits of `ids` under a and b compared: max |difference|, mean KL(a || b)
// over positions and how often their argmax agrees.
void compare_logits(const char* what, const cai::model& a, const cai::model& b, const at::Tensor& ids) {
    at::Tensor la = a.forward(ids).to(at::kFloat)[0], lb = b.forward(ids).to(at::kFloat)[0];  // (T, V)
    const double max_diff = (la - lb).abs().max().item<double>(), max_logit = la.abs().max().item<double>();
    at::Tensor pa = at::log_softmax(la, -1), pb = at::log_softmax(lb, -1);
    const double kl = (pa.exp() * (pa - pb)).sum(-1).mean().item<double>();
    const double agree = (la.argmax(-1) == lb.argmax(-1)).to(at::kFloat).mean().item<double>();
    std::printf("  %-26s max |dlogit| %.4f (max |logit| %.2f)  mean KL %.2e  argmax agrees %.1f%%\n", what, max_diff,
                max_logit, kl, 100 * agree);
}

// int8 weights (cai.model.load(dir, { weights = "int8" })) against the float
// ones on the ~100M Llama: decode tok/s at batch 1 and 4, alternated in one
// process, against the bound (bandwidth / bytes streamed per step), and the
// logit error over a 64-token prompt.
void bench_int8() {
    cai::model_config c = cai::parse_model_config(llama_100m);
    auto tensors = cai::random_model_tensors(c, 1);
    auto f32 = cai::model::from_tensors(c, tensors, at::kFloat, "100m");
    auto bf16 = cai::model::from_tensors(c, tensors, at::kBFloat16, "100m");
    auto i8 = cai::model::from_tensors(c, tensors, at::kFloat, "100m");
    i8->quantize_int8();
    auto i8b = cai::model::from_tensors(c, tensors, at::kBFloat16, "100m");
    i8b->quantize_int8();
    // Streamed per decode step: the projections and lm_head (int8: 1 byte a weight and a float scale per row).
    auto streamed = [&](const cai::model& m, double elem) {
        double bytes = m.lm_head.quantized() ? (double)m.lm_head.weight_q.numel() + 4.0 * m.lm_head.weight_scale.numel()
                                             : (double)m.lm_head.weight.numel() * elem;
        for (const auto& l : m.layers)
            for (const cai::linear* p : {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj})
                bytes += p->quantized() ? (double)p->weight_q.numel() + 4.0 * p->weight_scale.numel()
                                        : (double)p->weight.numel() * elem;
        return bytes;
    };
    struct variant { const char* name; const cai::model* m; double bytes; };
    std::vector<variant> vs = {{"bf16", bf16.get(), streamed(*bf16, 2)},
                               {"int8 (bf16 compute)", i8b.get(), streamed(*i8b, 2)},
                               {"fp32", f32.get(), streamed(*f32, 4)},
                               {"int8 (fp32 compute)", i8.get(), streamed(*i8, 4)}};
    std::printf("\n~100M Llama, int8 weights (alternated, best of 3 rounds; bound = bandwidth / bytes streamed):\n");
    std::printf("%-20s %-9s %10s %9s %10s %9s\n", "weights", "batch", "tok/s", "vs bf16", "MB/step", "of bound");
    for (int64_t batch : {1, 4}) {
        at::Tensor ids = at::randint(c.vocab_size, {batch, prompt_len}, at::kLong);
        std::vector<double> best(vs.size(), 1e30);
        double bandwidth = 0;
        for (int round = 0; round < 3; ++round) {
            bandwidth = std::max(bandwidth, bench::memory_bandwidth_gbs(int64_t(512) << 20));
            for (size_t i = 0; i < vs.size(); ++i) best[i] = std::min(best[i], decode_step_seconds(*vs[i].m, ids));
        }
        for (size_t i = 0; i < vs.size(); ++i) {
            const double bound = bandwidth * 1e9 / vs[i].bytes;
            std::printf("%-20s %-9lld %10.1f %8.2fx %10.0f %8.0f%%\n", vs[i].name, (long long)batch, batch / best[i],
                        best[0] / best[i], vs[i].bytes / 1e6, 100.0 / best[i] / bound);
        }
    }
    for (int64_t len : {int64_t(64), int64_t(512)}) {
        at::Tensor ids = at::randint(c.vocab_size, {1, len}, at::kLong);
        std::vector<double> best(vs.size(), 1e30);
        for (int round = 0; round < 2; ++round)
            for (size_t i = 0; i < vs.size(); ++i)
                best[i] = std::min(best[i], bench::best_time([&] { vs[i].m->hidden_states(ids); }, 1));
        for (size_t i = 0; i < vs.size(); ++i)
            std::printf("%-20s prefill %-4lld %10.0f tok/s %8.2fx\n", vs[i].name, (long long)len, len / best[i],
                        best[0] / best[i]);
    }
    // The products alone, one row of x: the head and an MLP-sized matrix.
    std::printf("one product, batch 1 (best of 50; GB/s of weights read):\n");
    for (auto [N, K] : {std::pair<int64_t, int64_t>{32000, 768}, {2048, 768}, {768, 2048}}) {
        at::Tensor w = at::randn({N, K}) * 0.02, x = at::randn({1, K});
        at::Tensor wb = w.to(at::kBFloat16), xb = x.to(at::kBFloat16);
        auto [q, scale] = cai::kernels::int8_quantize_rows(w);
        const double tb = bench::best_time([&] { cai::kernels::matvec_forward(xb, wb); }, 50);
        const double tq = bench::best_time([&] { cai::kernels::matvec_i8_forward_many(xb, {q}, {scale}); }, 50);
        std::printf("  %5lld x %-5lld bf16 %7.1f us %6.1f GB/s   int8 %7.1f us %6.1f GB/s   %.2fx\n", (long long)N,
                    (long long)K, tb * 1e6, N * K * 2 / tb / 1e9, tq * 1e6, N * K / tq / 1e9, tb / tq);
    }
    at::Tensor ids = at::randint(c.vocab_size, {1, prompt_len}, at::kLong);
    std::printf("logits over a %lld-token prompt against fp32:\n", (long long)prompt_len);
    compare_logits("bf16", *f32, *bf16, ids);
    compare_logits("int8 (fp32 compute)", *f32, *i8, ids);
    compare_logits("int8 (bf16 compute)", *f32, *i8b, ids);
}

// The model of bench_model as a loadable HF directory, and a seeded 64-token prompt.
void export_model(const std::string& dir) {
    cai::model_config c = cai::parse_model_config(llama_100m);
    cai::write_model_dir(dir, llama_100m, cai::random_model_tensors(c, 1), at::kFloat);
    at::manual_seed(1);
    at::Tensor ids = at::randint(3, c.vocab_size, {prompt_len}, at::TensorOptions().dtype(at::kLong));
    std::ostringstream text;
    for (int64_t i = 0; i < prompt_len; ++i) text << (i ? " " : "") << ids[i].item<int64_t>();
    cai::write_file_atomic(dir + "/prompt.txt", text.str() + "\n");
    std::printf("export: %s (config.json, model.safetensors fp32, prompt.txt)\n", dir.c_str());
}

// dir loaded as users load it: f32, bf16, or int8 (the projections and head
// as cai.model.load(dir, { weights = "int8" }) makes them, fp32 compute).
std::shared_ptr<cai::model> load_as(const std::string& dir, const std::string& dtype_arg, const char* mode) {
    if (dtype_arg != "f32" && dtype_arg != "bf16" && dtype_arg != "int8")
        throw std::runtime_error(std::string(mode) + ": dtype must be f32, bf16 or int8");
    auto m = cai::model::load(dir, dtype_arg == "bf16" ? at::kBFloat16 : at::kFloat, false);
    if (dtype_arg == "int8") m->quantize_int8();
    return m;
}

// Loads dir as users do, prefills prompt.txt, writes the last position's logits
// (float32) to dir/cairun_<dtype>.logits, then times greedy decode steps; the
// best of 3 runs of prefill and decode, printed in one line for
// bench/llamacpp/run.sh to read.
void decode_dir(const std::string& dir, const std::string& dtype_arg) {
    auto m = load_as(dir, dtype_arg, "decode");
    std::ifstream in(dir + "/prompt.txt");
    std::vector<int64_t> prompt;
    for (int64_t id; in >> id;) prompt.push_back(id);
    if (!in.eof() || prompt.empty())
        throw std::runtime_error(dir + "/prompt.txt: expected whitespace-separated token ids (bench_kernels export writes it)");
    const int64_t steps = 32;
    at::Tensor ids = at::tensor(prompt, at::kLong).unsqueeze(0);
    double best = 1e30, best_prefill = 1e30;
    std::vector<int64_t> tokens;
    for (int run = 0; run < 3; ++run) {
        cai::kv_cache cache = m->new_cache(1, ids.size(1) + steps + 1);
        auto p0 = std::chrono::steady_clock::now();
        at::Tensor last = m->forward(ids, {}, &cache).select(1, ids.size(1) - 1).to(at::kFloat).contiguous();
        best_prefill = std::min(best_prefill, bench::seconds_since(p0));
        if (run == 0) {
            std::string bytes((const char*)last.data_ptr<float>(), last.numel() * sizeof(float));
            cai::write_file_atomic(dir + "/cairun_" + dtype_arg + ".logits", bytes);
        }
        at::Tensor next = last.argmax(-1, true);
        tokens.assign(1, next.item<int64_t>());
        auto t0 = std::chrono::steady_clock::now();
        for (int64_t s = 0; s < steps; ++s) {
            next = greedy(m->forward(next, {}, &cache));
            tokens.push_back(next.item<int64_t>());
        }
        best = std::min(best, bench::seconds_since(t0) / steps);
    }
    std::printf("cairun %s decode_tok_s %.2f prefill_tok_s %.1f tokens", dtype_arg.c_str(), 1.0 / best,
                ids.size(1) / best_prefill);
    for (int64_t t : tokens) std::printf(" %lld", (long long)t);
    std::printf("\n");
}

// The shapes llama.cpp's llama-bench and llama-batched-bench time, on dir
// loaded as users load it (dtype f32, bf16 or int8): prefill of 64 and 512
// tokens (one sequence, the last position's logits), 16 sequences of 64 and
// 512 tokens prefilled by the engine (tok/s over all, as llama-batched-bench's
// S_PP), and greedy decode of 32 tokens after a 64-token prompt for 1, 4, 16
// and 32 sequences at once (tok/s over all sequences, as its S_TG). Best of 3;
// one line each.
void sweep_dir(const std::string& dir, const std::string& dtype_arg) {
    auto m = load_as(dir, dtype_arg, "sweep");
    const int64_t V = m->config.vocab_size;
    at::manual_seed(3);
    for (int64_t len : {int64_t(64), int64_t(512)}) {
        at::Tensor ids = at::randint(3, V, {1, len}, at::kLong);
        double best = 1e30;
        for (int run = 0; run < 3; ++run) {
            auto t0 = std::chrono::steady_clock::now();
            at::Tensor h = m->hidden_states(ids);
            greedy(m->logits_from_hidden(h.narrow(1, len - 1, 1)));
            best = std::min(best, bench::seconds_since(t0));
        }
        std::printf("cairun %s prefill %lld tok_s %.1f\n", dtype_arg.c_str(), (long long)len, len / best);
    }
    // 16 prompts of 64 and of 512 tokens through the engine (m:generate): its
    // prefill chunks (512 tokens a step) and one greedy token each, as
    // llama-batched-bench's S_PP counts prompt tokens over all sequences.
    for (int64_t len : {int64_t(64), int64_t(512)}) {
        std::vector<std::vector<int32_t>> prompts(16);
        for (auto& p : prompts) {
            at::Tensor ids = at::randint(3, V, {len}, at::kLong);
            for (int64_t i = 0; i < len; ++i) p.push_back((int32_t)ids[i].item<int64_t>());
        }
        cai::generate_options o;
        o.max_new_tokens = 1;
        o.batch_size = 16;
        o.prefix_cache = false;
        o.show_progress = false;
        double best = 1e30;
        for (int run = 0; run < 3; ++run) {
            auto t0 = std::chrono::steady_clock::now();
            cai::generate(*m, prompts, o);
            best = std::min(best, bench::seconds_since(t0));
        }
        std::printf("cairun %s prefill16 %lld tok_s %.1f\n", dtype_arg.c_str(), (long long)len, 16 * len / best);
    }
    const int64_t steps = 32;
    for (int64_t batch : {1, 4, 16, 32}) {
        at::Tensor ids = at::randint(3, V, {batch, prompt_len}, at::kLong);
        double best = 1e30;
        for (int run = 0; run < 3; ++run) {
            cai::kv_cache cache = m->new_cache(batch, prompt_len + steps + 1);
            at::Tensor next = greedy(m->forward(ids, {}, &cache).narrow(1, prompt_len - 1, 1));
            auto t0 = std::chrono::steady_clock::now();
            for (int64_t s = 0; s < steps; ++s) next = greedy(m->forward(next, {}, &cache));
            best = std::min(best, bench::seconds_since(t0));
        }
        std::printf("cairun %s decode %lld tok_s %.1f\n", dtype_arg.c_str(), (long long)batch, batch * steps / best);
    }
}

// Prefill of BATCH x LEN random tokens, REPS times, into a cache (as the
// engine) or without one (as the sweep's prefill): a steady workload to run
// under a profiler (perf record build/bench_kernels prefill ...).
void prefill_dir(const std::string& dir, const std::string& dtype_arg, int64_t len, int64_t batch, int reps,
                 bool use_cache) {
    auto m = load_as(dir, dtype_arg, "prefill");
    at::Tensor ids = at::randint(3, m->config.vocab_size, {batch, len}, at::kLong);
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        cai::kv_cache cache = m->new_cache(batch, len + 1);
        auto t0 = std::chrono::steady_clock::now();
        at::Tensor h = m->hidden_states(ids, {}, use_cache ? &cache : nullptr);
        greedy(m->logits_from_hidden(h.narrow(1, len - 1, 1)));
        best = std::min(best, bench::seconds_since(t0));
    }
    std::printf("cairun %s prefill%s %lld x %lld tok_s %.1f\n", dtype_arg.c_str(), use_cache ? " (cache)" : "",
                (long long)batch, (long long)len,
                batch * len / best);
}

// Greedy decode of STEPS tokens for BATCH sequences after a 64-token prompt,
// REPS times: the decode of the sweep as a steady workload to profile.
void decode_steps_dir(const std::string& dir, const std::string& dtype_arg, int64_t batch, int64_t steps, int reps) {
    auto m = load_as(dir, dtype_arg, "steps");
    at::Tensor ids = at::randint(3, m->config.vocab_size, {batch, prompt_len}, at::kLong);
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        cai::kv_cache cache = m->new_cache(batch, prompt_len + steps + 1);
        at::Tensor h = m->hidden_states(ids, {}, &cache);
        at::Tensor next = greedy(m->logits_from_hidden(h.narrow(1, prompt_len - 1, 1)));
        auto t0 = std::chrono::steady_clock::now();
        for (int64_t s = 0; s < steps; ++s) next = greedy(m->forward(next, {}, &cache));
        best = std::min(best, bench::seconds_since(t0));
    }
    std::printf("cairun %s decode %lld tok_s %.1f\n", dtype_arg.c_str(), (long long)batch, batch * steps / best);
}

}  // namespace

int main(int argc, char** argv) {
    bench::use_openblas_avx512_kernels(argv);
    const std::string only = argc > 1 ? argv[1] : "";
    c10::InferenceMode no_grad;
    try {
        if (only == "export" && argc == 3) return export_model(argv[2]), 0;
        if (only == "decode" && argc == 4) return decode_dir(argv[2], argv[3]), 0;
        if (only == "sweep" && argc == 4) return sweep_dir(argv[2], argv[3]), 0;
        if (only == "steps" && argc == 7)
            return decode_steps_dir(argv[2], argv[3], std::stoll(argv[4]), std::stoll(argv[5]), std::stoi(argv[6])), 0;
        if (only == "prefill" && (argc == 7 || argc == 8))
            return prefill_dir(argv[2], argv[3], std::stoll(argv[4]), std::stoll(argv[5]), std::stoi(argv[6]),
                               argc == 8 && std::string(argv[7]) == "cache"), 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_kernels: %s\n", e.what());
        return 1;
    }
    if (only == "export" || only == "decode" || only == "sweep") {
        std::fprintf(stderr, "usage: bench_kernels export DIR | bench_kernels decode|sweep DIR f32|bf16|int8\n");
        return 2;
    }
    std::printf("machine: threads %d (matrix-vector products: %d), kernels isa %s%s\n", at::get_num_threads(),
                cai::kernels::matvec_threads(),
                cai::kernels::isa_name(cai::kernels::cpu_isa()),
                cai::kernels::cpu_has_avx512_bf16() ? " (+avx512_bf16)" : "");
    if (only.empty() || only == "ops") bench_ops();
    if (only.empty() || only == "model") bench_model();
    if (only.empty() || only == "int8") bench_int8();
    return 0;
}

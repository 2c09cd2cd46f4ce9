// The training kernels fused vs plain, as ratios from one run:
//   1. linear_logprob (fused head: linear + log-softmax + gather) vs the plain
//      at::linear + log_softmax + gather, forward + backward into the hidden
//      states, 1024 tokens, C = 768, V = 32k and 150k: time and peak memory;
//   2. the DPO loss fused over the batch vs the ATen composition;
//   3. the causal attention (kernels/attention.h) vs the masked bmm/softmax
//      chain, forward + backward at the training steps' shape;
//   4. whole SFT and DPO training steps (forward + backward, no optimizer
//      update; LoRA r = 16 all-linear, and full fine-tuning) on a ~110M
//      random Llama with V = 16k and with V = 128k, all kernels on
//      (kernels::set_enabled(true)) vs all off: tokens/s and peak memory.
// Speeds come from one child process (this binary re-executed) that
// alternates fused and plain calls, so both see the same load on a shared
// machine; peak memory from one child per variant, so each peak is its own:
// "step peak" is the growth of peak resident memory during the first call
// above what the process held before it (model and inputs; the peak is reset
// first through /proc/self/clear_refs), "process peak" the whole VmHWM.
//
//   bench_kernels_train           everything (a few minutes on 2 cores)
//   bench_kernels_train --quick   linear_logprob at 32k, the DPO loss, attention, the V = 16k LoRA steps
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <unistd.h>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu.h"
#include "kernels/linear_logprob.h"
#include "machine.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "train/dpo.h"
#include "train/dpo_loss.h"
#include "train/dpo_loss_fused.h"
#include "train/lora.h"
#include "train/sft.h"

namespace {

// A field of /proc/self/status in kB: "VmHWM:" (peak resident) or "VmRSS:".
long status_kb(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
    return 0;
}

// Resets VmHWM to the current resident size (Linux: "5" > clear_refs).
bool reset_peak() {
    std::ofstream out("/proc/self/clear_refs");
    out << "5";
    out.flush();
    return bool(out);
}

struct measured {
    double per_s = 0;     // tokens (or calls) per second
    long step_kb = 0;     // VmHWM growth during the measured calls
    long process_kb = 0;  // VmHWM
};

// Peak memory of fn's first call (the first call allocates what later ones reuse).
template <class F>
measured measure_memory(F&& fn) {
    // Setup (random weights and their temporaries) may have peaked higher
    // than the step will: start the peak from what is resident now.
    const bool reset = reset_peak();
    const long base = reset ? status_kb("VmRSS:") : status_kb("VmHWM:");
    fn();
    measured m;
    m.process_kb = status_kb("VmHWM:");
    m.step_kb = m.process_kb - base;
    return m;
}

// Units per second of fn(true) (fused) and fn(false) (plain), calls
// interleaved so both see the same load on a shared machine: one warm-up
// each, then the best of `repeats` alternating rounds.
template <class F>
std::pair<double, double> measure_speed(F&& fn, double units, int repeats) {
    fn(true);
    fn(false);
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < repeats; ++r)
        for (int fused = 1; fused >= 0; --fused) {
            auto t0 = std::chrono::steady_clock::now();
            fn(fused == 1);
            best[fused] = std::min(best[fused], bench::seconds_since(t0));
        }
    return {units / best[1], units / best[0]};
}

// --- 1. linear_logprob -------------------------------------------------------

// mode: "fused" or "plain" (peak memory of that variant), or "time" (both).
measured child_linear_logprob(const std::string& mode, int64_t V) {
    const int64_t N = 1024, C = 768;
    at::manual_seed(1);
    at::Tensor hidden = at::randn({N, C}) * 0.5;
    at::Tensor weight = at::randn({V, C}) * 0.05;
    at::Tensor targets = at::randint(0, V, {N}, at::kLong);
    auto call = [&](bool fused) {
        at::Tensor h = hidden.clone().requires_grad_(true);
        at::Tensor lp = fused ? cai::kernels::linear_logprob(h, weight, targets)
                              : cai::kernels::linear_logprob_plain(h, weight, targets);
        lp.sum().backward();
    };
    if (mode != "time") return measure_memory([&] { call(mode == "fused"); });
    auto [fused, plain] = measure_speed(call, double(N), 3);
    measured m;
    m.per_s = fused;
    m.step_kb = (long)plain;  // the plain speed rides in the second field
    return m;
}

// --- 3. attention ------------------------------------------------------------

// Forward + backward of one layer's attention at the SFT step's shape:
// B 4, T 128, 12 query and 4 key/value heads of 64; k and v are views of one
// projection as in the model. Best of a few rounds, fused and plain interleaved.
void bench_attention() {
    const int64_t B = 4, T = 128, H = 12, Hkv = 4, D = 64;
    at::manual_seed(5);
    at::Tensor q0 = at::randn({B, T, H, D}), kv0 = at::randn({B, T, 2 * Hkv, D});
    at::Tensor valid = at::ones({B, T}, at::kBool);
    at::Tensor positions = at::arange(T, at::kLong).repeat({B, 1});
    at::Tensor upstream = at::randn({B, T, H * D});
    cai::kernels::attention_options o;
    o.scale = 1.0 / std::sqrt((double)D);
    const at::Tensor mask = cai::kernels::causal_mask(valid, positions, 0);
    auto run = [&](bool fused) {
        at::Tensor q = q0.clone().requires_grad_(true), kv = kv0.clone().requires_grad_(true);
        at::Tensor k = kv.narrow(2, 0, Hkv), v = kv.narrow(2, Hkv, Hkv);
        at::Tensor out = fused ? cai::kernels::causal_attention(q, k, v, valid, positions, o)
                               : cai::kernels::attention_plain(q, k.transpose(1, 2), v.transpose(1, 2), mask, o);
        (out * upstream).sum().backward();
    };
    run(true);
    run(false);
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < 20; ++r)
        for (int fused = 1; fused >= 0; --fused) {
            auto t0 = std::chrono::steady_clock::now();
            run(fused == 1);
            best[fused] = std::min(best[fused], bench::seconds_since(t0));
        }
    std::printf("attention B %lld T %lld heads %lld/%lld D %lld, forward + backward: fused %6.2f ms | plain %6.2f ms | "
                "speed %.2fx\n",
                (long long)B, (long long)T, (long long)H, (long long)Hkv, (long long)D, best[1] * 1e3, best[0] * 1e3,
                best[0] / best[1]);
    std::fflush(stdout);
}

// --- 4. training steps -------------------------------------------------------

const char* config_for(const std::string& size) {
    if (size == "v128k")  // ~110M transformer + a 128k vocabulary (tied head)
        return R"({"model_type":"llama","vocab_size":128000,"hidden_size":768,"intermediate_size":2048,
                   "num_hidden_layers":12,"num_attention_heads":12,"num_key_value_heads":4,"tie_word_embeddings":true})";
    return R"({"model_type":"llama","vocab_size":16000,"hidden_size":768,"intermediate_size":2048,
               "num_hidden_layers":12,"num_attention_heads":12,"num_key_value_heads":4})";
}

// kind: sft_lora, sft_full, dpo_lora, dpo_full; mode: "fused" (all kernels
// on) or "plain" (all off) for peak memory, or "time" for both speeds.
measured child_step(const std::string& kind, const std::string& size, const std::string& mode) {
    bool fused = mode == "fused";
    cai::kernels::set_enabled(fused);
    cai::model_config c = cai::parse_model_config(config_for(size));
    auto m = cai::model::from_tensors(c, cai::random_model_tensors(c, 1, 0.02), at::kFloat, "bench");
    const bool full = kind.find("full") != std::string::npos;
    const bool dpo = kind.rfind("dpo", 0) == 0;
    if (!full) {
        cai::lora_options lo;
        lo.r = 16;
        lo.alpha = 32;
        lo.targets = {"all-linear"};
        lo.seed = 2;
        cai::lora_add(*m, lo);
        cai::lora_set_training(*m, true);
    }
    cai::trainable_parameters(*m, full);
    const int64_t B = 4, T = 128, V = c.vocab_size;
    const size_t start = T / 2;  // prompt | response boundary
    at::manual_seed(3);
    at::Tensor ids = at::randint(3, V, {B, T}, at::kLong);  // (B, T)
    at::Tensor ids2 = at::cat({ids, ids.flip(1)}, 0);      // (2B, T): chosen rows, then rejected rows
    std::vector<cai::sft_tokens> sft_rows(B);
    std::vector<cai::dpo_tokens> dpo_rows(2 * B);
    for (int64_t b = 0; b < 2 * B; ++b) {
        std::vector<int32_t> row(T);
        for (int64_t t = 0; t < T; ++t) row[t] = (int32_t)ids2[b][t].item<int64_t>();
        if (b < B) sft_rows[b] = {row, start, false};
        dpo_rows[b] = {row, start};
    }
    std::vector<const cai::sft_tokens*> sft_ptrs;
    for (auto& r : sft_rows) sft_ptrs.push_back(&r);
    std::vector<const cai::dpo_tokens*> dpo_ptrs;
    for (auto& r : dpo_rows) dpo_ptrs.push_back(&r);

    // Summed completion log-probs (2B) as the trainer computes them: with the
    // kernels on the fused head over the completion positions only, off the full logits.
    auto completion_logps = [&]() -> at::Tensor { return cai::completion_logps(*m, dpo_ptrs, false); };
    auto step = [&] {
        cai::kernels::set_enabled(fused);
        if (!dpo) {
            cai::sft_loss(*m, sft_ptrs).backward();
            return;
        }
        at::Tensor ref;
        {
            at::NoGradGuard g;
            if (!full) m->set_lora_enabled(false);
            ref = completion_logps();  // full fine-tuning: the same weights stand in for a reference copy
            if (!full) m->set_lora_enabled(true);
        }
        at::Tensor pol = completion_logps();
        cai::dpo_loss_result r =
            fused ? cai::dpo_loss_fused(pol.slice(0, 0, B), pol.slice(0, B), ref.slice(0, 0, B), ref.slice(0, B),
                                                 0.1, "sigmoid")
                  : cai::dpo_loss_forward(pol.slice(0, 0, B), pol.slice(0, B), ref.slice(0, 0, B), ref.slice(0, B), 0.1,
                                          "sigmoid");
        r.losses.mean().backward();
    };
    if (mode != "time") return measure_memory(step);
    auto [fused_speed, plain_speed] = measure_speed(
        [&](bool on) {
            fused = on;
            step();
        },
        double(dpo ? 2 * B * T : B * T), 2);
    measured out;
    out.per_s = fused_speed;
    out.step_kb = (long)plain_speed;  // the plain speed rides in the second field
    return out;
}

// --- children and the parent ------------------------------------------------

measured run_child(const std::string& args) {
    char self[4096] = {0};
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    measured m;
    if (n <= 0) return m;
    std::string cmd = std::string(self, (size_t)n) + " --child " + args;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p || std::fscanf(p, "%lf %ld %ld", &m.per_s, &m.step_kb, &m.process_kb) != 3)
        std::fprintf(stderr, "bench_kernels_train: child \"%s\" failed\n", args.c_str());
    if (p) pclose(p);
    return m;
}

// Speeds from one interleaved "time" child, peaks from one child per variant.
void report(const std::string& what, const std::string& args_before, const std::string& args_after) {
    measured speed = run_child(args_before + " time" + args_after);
    measured fused = run_child(args_before + " fused" + args_after);
    measured plain = run_child(args_before + " plain" + args_after);
    const double fused_speed = speed.per_s, plain_speed = (double)speed.step_kb;
    std::printf("%-16s fused %7.0f tok/s, step peak %6.0f MiB (process %6.0f) | plain %7.0f tok/s, step peak %6.0f MiB "
                "(process %6.0f) | speed %.2fx, step peak %.2fx, process peak %.2fx\n",
                what.c_str(), fused_speed, fused.step_kb / 1024.0, fused.process_kb / 1024.0, plain_speed,
                plain.step_kb / 1024.0, plain.process_kb / 1024.0, plain_speed > 0 ? fused_speed / plain_speed : 0.0,
                plain.step_kb > 0 ? double(fused.step_kb) / double(plain.step_kb) : 0.0,
                plain.process_kb > 0 ? double(fused.process_kb) / double(plain.process_kb) : 0.0);
    std::fflush(stdout);
}

void bench_dpo_loss() {
    const int64_t N = 64;
    at::manual_seed(4);
    at::Tensor pc = at::randn({N}) - 20, pr = at::randn({N}) - 21, rc = at::randn({N}) - 20, rr = at::randn({N}) - 20;
    for (const char* type : {"sigmoid", "ipo", "aot_pair", "discopop"}) {
        auto run = [&](bool fused) {
            at::Tensor c = pc.clone().requires_grad_(true), r = pr.clone().requires_grad_(true);
            std::map<std::string, double> metrics;
            if (fused) {
                cai::dpo_loss_fused(c, r, rc, rr, 0.1, type, 0.0, false, 0.05, &metrics).losses.mean().backward();
            } else {
                cai::dpo_loss_result res = cai::dpo_loss_forward(c, r, rc, rr, 0.1, type);
                res.losses.mean().backward();
                metrics = cai::dpo_metrics(res, c, r);
            }
        };
        const int calls = 200;
        double tf = bench::best_time([&] { for (int i = 0; i < calls; ++i) run(true); }, 3) / calls;
        double tp = bench::best_time([&] { for (int i = 0; i < calls; ++i) run(false); }, 3) / calls;
        std::printf("dpo loss %-12s %lld pairs, loss + backward + metrics: fused %7.1f us | plain %7.1f us | speed %.2fx\n",
                    type, (long long)N, tf * 1e6, tp * 1e6, tp / tf);
    }
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    bench::use_openblas_avx512_kernels(argv);
    if (argc >= 3 && std::strcmp(argv[1], "--child") == 0) {
        const std::string what = argv[2];
        measured m;
        if (what == "lp" && argc == 5)
            m = child_linear_logprob(argv[3], std::atol(argv[4]));
        else if (what == "step" && argc == 6)
            m = child_step(argv[3], argv[4], argv[5]);
        else
            return 2;
        std::printf("%.3f %ld %ld\n", m.per_s, m.step_kb, m.process_kb);
        return 0;
    }
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    // Both paths' GEMMs are OpenBLAS's: its kernel choice sets how much of a
    // step the fused kernels can change (AVX2 Haswell kernels run the GEMMs
    // at about half the AVX-512 SkylakeX kernels' speed here).
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    std::printf("kernels: %s%s; OpenBLAS kernels: %s\n", cai::kernels::isa_name(cai::kernels::cpu_isa()),
                cai::kernels::cpu_has_avx512_bf16() ? " + avx512_bf16" : "", coretype ? coretype : "its own choice");
    std::printf("linear_logprob: 1024 tokens, C 768, fp32, forward + backward into the hidden states\n");
    for (int64_t V : quick ? std::vector<int64_t>{32000} : std::vector<int64_t>{32000, 150000}) {
        const std::string v = std::to_string(V);
        report("V " + v, "lp", " " + v);
    }
    bench_dpo_loss();
    bench_attention();
    std::printf("training steps: batch 4 x 128 tokens (DPO: 4 pairs, 8 rows, reference forward included), "
                "forward + backward, fp32; fused = all kernels on, plain = all off\n");
    std::vector<std::string> sizes = {"v16k"};
    if (!quick) sizes.push_back("v128k");
    for (const auto& size : sizes)
        for (const char* kind : {"sft_lora", "dpo_lora", "sft_full", "dpo_full"}) {
            if (quick && std::strstr(kind, "full")) continue;
            report(size + " " + kind, "step " + std::string(kind) + " " + size, "");
        }
    return 0;
}

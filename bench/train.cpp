// SFT and DPO training steps (forward + backward of one micro-batch, LoRA
// r = 16 on all linears; no optimizer update) through the trainers' own loss
// code, beside the same step written as plain ATen ops (full-logits
// cross-entropy for SFT; full log_softmax + gather + -logsigmoid for DPO).
// Each variant runs in a child process (this binary re-executed) so its peak
// resident memory (VmHWM, model included) is its own. Prints tokens/s and
// peak memory of each, and the ratios cai / plain.
//
//   bench_train            ~25M-parameter random Llama (under a minute)
//   bench_train --100m     also ~100M
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "machine.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"
#include "train/dpo.h"
#include "train/dpo_loss.h"
#include "train/lora.h"
#include "train/sft.h"

namespace {

long vm_hwm_kb() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    return 0;
}

const char* config_for(const std::string& size) {
    if (size == "100m")  // ~110M parameters
        return R"({"model_type":"llama","vocab_size":16000,"hidden_size":768,"intermediate_size":2048,
                   "num_hidden_layers":12,"num_attention_heads":12,"num_key_value_heads":4})";
    // ~27M parameters
    return R"({"model_type":"llama","vocab_size":8000,"hidden_size":512,"intermediate_size":1376,
               "num_hidden_layers":6,"num_attention_heads":8,"num_key_value_heads":4})";
}

// Runs one variant; prints "tokens_per_s step_peak_kb".
int child(const std::string& variant, const std::string& size) {
    cai::model_config c = cai::parse_model_config(config_for(size));
    auto m = cai::model::from_tensors(c, cai::random_model_tensors(c, 1, 0.02), at::kFloat, "bench");
    cai::lora_options lo;
    lo.r = 16;
    lo.alpha = 32;
    lo.targets = {"all-linear"};
    lo.seed = 2;
    cai::lora_add(*m, lo);
    cai::lora_set_training(*m, true);
    const int64_t B = 4, T = 128, V = c.vocab_size;
    at::manual_seed(3);
    at::Tensor ids = at::randint(3, V, {B, T}, at::kLong);  // (B, T)
    const size_t start = T / 2;                             // prompt | response boundary
    std::vector<cai::sft_tokens> sft_rows(B);
    std::vector<cai::dpo_tokens> dpo_rows(2 * B);
    for (int64_t b = 0; b < B; ++b) {
        std::vector<int32_t> row(T);
        for (int64_t t = 0; t < T; ++t) row[t] = (int32_t)ids[b][t].item<int64_t>();
        sft_rows[b] = {row, start, false};
        dpo_rows[b] = {row, start};
        dpo_rows[B + b] = {row, start};
    }
    at::Tensor ids2 = at::cat({ids, ids.flip(1)}, 0);  // (2B, T): chosen rows, then rejected rows
    for (int64_t b = 0; b < B; ++b) {
        std::vector<int32_t> row(T);
        for (int64_t t = 0; t < T; ++t) row[t] = (int32_t)ids2[B + b][t].item<int64_t>();
        dpo_rows[B + b] = {row, start};
    }
    std::vector<const cai::sft_tokens*> sft_ptrs;
    for (auto& r : sft_rows) sft_ptrs.push_back(&r);
    std::vector<const cai::dpo_tokens*> dpo_ptrs;
    for (auto& r : dpo_rows) dpo_ptrs.push_back(&r);
    at::Tensor targets = ids.slice(1, 1).clone();  // (B, T-1)
    targets.slice(1, 0, (int64_t)start - 1).fill_(-100);

    auto step = [&] {
        if (variant == "sft_cai") {
            cai::sft_loss(*m, sft_ptrs).backward();
        } else if (variant == "sft_plain") {
            at::Tensor logits = m->forward(ids);  // (B, T, V)
            at::cross_entropy_loss(logits.slice(1, 0, T - 1).reshape({-1, V}), targets.reshape({-1})).backward();
        } else {
            at::Tensor ref;
            {
                at::NoGradGuard g;
                m->set_lora_enabled(false);
                ref = variant == "dpo_cai" ? cai::completion_logps(*m, dpo_ptrs, false)
                                           : at::log_softmax(m->forward(ids2).slice(1, 0, T - 1), -1)
                                                 .gather(2, ids2.slice(1, 1).unsqueeze(2))
                                                 .squeeze(2)
                                                 .slice(1, (int64_t)start - 1)
                                                 .sum(1);
                m->set_lora_enabled(true);
            }
            if (variant == "dpo_cai") {
                at::Tensor pol = cai::completion_logps(*m, dpo_ptrs, false);
                auto r = cai::dpo_loss_forward(pol.slice(0, 0, B), pol.slice(0, B), ref.slice(0, 0, B), ref.slice(0, B),
                                               0.1, "sigmoid", 0.0);
                r.losses.mean().backward();
            } else {
                at::Tensor logits = m->forward(ids2);  // (2B, T, V)
                at::Tensor pol = at::log_softmax(logits.slice(1, 0, T - 1), -1)
                                     .gather(2, ids2.slice(1, 1).unsqueeze(2))
                                     .squeeze(2)
                                     .slice(1, (int64_t)start - 1)
                                     .sum(1);
                at::Tensor d = (pol - ref);
                (-at::log_sigmoid(0.1 * (d.slice(0, 0, B) - d.slice(0, B)))).mean().backward();
            }
        }
    };
    step();  // warm up
    const long base_kb = vm_hwm_kb();
    const double t = bench::best_time(step, size == "100m" ? 2 : 3);
    const double tokens = double(variant.rfind("dpo", 0) == 0 ? 2 * B * T : B * T);
    (void)base_kb;
    std::printf("%.1f %ld\n", tokens / t, vm_hwm_kb());
    return 0;
}

std::pair<double, long> run_child(const std::string& variant, const std::string& size) {
    char self[4096] = {0};
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);  // popen runs a shell: name ourselves
    if (n <= 0) return {0, 0};
    std::string cmd = std::string(self, (size_t)n) + " --child " + variant + " " + size;
    FILE* p = popen(cmd.c_str(), "r");
    double tps = 0;
    long kb = 0;
    if (!p || std::fscanf(p, "%lf %ld", &tps, &kb) != 2) std::fprintf(stderr, "bench_train: child %s failed\n", variant.c_str());
    if (p) pclose(p);
    return {tps, kb};
}

}  // namespace

int main(int argc, char** argv) {
    bench::use_openblas_avx512_kernels(argv);
    if (argc == 4 && std::strcmp(argv[1], "--child") == 0) return child(argv[2], argv[3]);
    std::vector<std::string> sizes = {"25m"};
    if (argc > 1 && std::strcmp(argv[1], "--100m") == 0) sizes.push_back("100m");
    std::printf("train step: batch 4 x 128 tokens (DPO: 4 pairs, 8 rows), LoRA r=16 all-linear, forward+backward, fp32 CPU\n");
    for (const auto& size : sizes)
        for (const char* kind : {"sft", "dpo"}) {
            auto cai_r = run_child(std::string(kind) + "_cai", size);
            auto plain = run_child(std::string(kind) + "_plain", size);
            std::printf("%-4s %-4s  cai %8.0f tok/s peak %6.0f MiB | plain ATen %8.0f tok/s peak %6.0f MiB | "
                        "ratio speed %.2fx, peak memory %.2fx\n",
                        size.c_str(), kind, cai_r.first, cai_r.second / 1024.0, plain.first, plain.second / 1024.0,
                        plain.first > 0 ? cai_r.first / plain.first : 0.0,
                        plain.second > 0 ? double(cai_r.second) / double(plain.second) : 0.0);
        }
    return 0;
}

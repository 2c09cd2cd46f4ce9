// Prefill and decode throughput of random Llama models (~25M and ~100M
// parameters) at batch 1 and 16, fp32 and bf16, printed beside this
// machine's measured GEMM GFLOP/s and memory read bandwidth, with the decode
// bound those imply (batch x bandwidth / weight bytes).
//
//   build/bench_model            both sizes
//   build/bench_model 25m        one size
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cstdio>
#include <string>

#include "machine.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random.h"

namespace {

struct size_spec {
    const char* name;
    const char* json;
};

const size_spec sizes[] = {
    {"25m", R"({"model_type":"llama","vocab_size":8192,"hidden_size":512,"intermediate_size":1536,
      "num_hidden_layers":5,"num_attention_heads":8,"num_key_value_heads":8})"},
    {"100m", R"({"model_type":"llama","vocab_size":32000,"hidden_size":768,"intermediate_size":2048,
      "num_hidden_layers":8,"num_attention_heads":12,"num_key_value_heads":4})"},
};

const int64_t prompt_len = 64, decode_steps = 16;

// Seconds for decode_steps cached single-token steps after a prefill (prefill not timed).
double decode_seconds(const cai::model& m, const at::Tensor& ids) {
    cai::kv_cache cache = m.new_cache(ids.size(0), prompt_len + decode_steps);
    m.hidden_states(ids, {}, &cache);
    at::Tensor next = ids.narrow(1, prompt_len - 1, 1).contiguous();
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < decode_steps; ++s) next = m.forward(next, {}, &cache).argmax(-1);
    return bench::seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
    bench::use_openblas_avx512_kernels(argv);
    std::string only = argc > 1 ? argv[1] : "";
    c10::InferenceMode no_grad;
    const double bandwidth = bench::memory_bandwidth_gbs();
    bench::print_machine();
    std::printf("%-6s %-5s %6s %14s %14s %14s\n", "model", "dtype", "batch", "prefill tok/s", "decode tok/s",
                "decode bound");
    for (const auto& spec : sizes) {
        if (!only.empty() && only != spec.name) continue;
        cai::model_config c = cai::parse_model_config(spec.json);
        auto tensors = cai::random_model_tensors(c, 1);
        for (at::ScalarType type : {at::kFloat, at::kBFloat16}) {
            auto m = cai::model::from_tensors(c, tensors, type, spec.name);
            const double params = (double)m->parameter_count();
            const double weight_bytes = params * (type == at::kFloat ? 4 : 2);
            for (int64_t batch : {1, 16}) {
                at::Tensor ids = at::randint(c.vocab_size, {batch, prompt_len}, at::kLong);
                m->forward(ids.narrow(1, 0, 8));  // warm up
                double prefill = bench::best_time([&] { m->forward(ids); }, 2);
                double decode = std::min(decode_seconds(*m, ids), decode_seconds(*m, ids));
                std::printf("%-6s %-5s %6lld %14.0f %14.0f %14.0f\n", spec.name, cai::dtype_name(type).c_str(),
                            (long long)batch, batch * prompt_len / prefill, batch * decode_steps / decode,
                            batch * bandwidth * 1e9 / weight_bytes);
            }
            std::printf("       %s: %.1fM parameters, %.0f MB of weights, ~%.2f GFLOP per prefill token\n",
                        cai::dtype_name(type).c_str(), params / 1e6, weight_bytes / 1e6, 2 * params / 1e9);
        }
    }
    return 0;
}

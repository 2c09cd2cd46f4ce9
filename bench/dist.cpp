// Data-parallel LoRA SFT through the real launch path: the same recipe run
// by `cairun` (one process) and by `cairun --nproc 2` (two ranks on
// loopback, Gloo all-reduce of the gradients every step), on a random
// Llama with the GPT-2 tokenizer of tests/data. Prints training tokens/s
// of each (timed around cai.train.sft on rank 0) and the ratio 2 / 1, plus
// the wall time of each command (process start and rendezvous included).
//
//   bench_dist [--steps N] [--hidden H]
//
// On a 2-core machine expect little gain: each rank gets half the cores
// (OMP_NUM_THREADS=1) and the all-reduce adds a little; the point is that
// the launch path works and costs little. With more cores per rank (or
// machines) the throughput grows with the ranks.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace {

const char* const recipe = R"LUA(
local cai = require "cai"
local args = cai.args{ role = "train", root = "", tokenizer = "", steps = 6, hidden = 256 }
local function copy(from, to)
  local f = assert(io.open(from, "rb")); local bytes = f:read("*a"); f:close()
  local g = assert(io.open(to, "wb")); g:write(bytes); g:close()
end
if args.role == "make" then
  cai.model.random(args.root .. "/model", {
    model_type = "llama", vocab_size = cai.tokenizer.load(args.tokenizer):vocab_size(), hidden_size = args.hidden,
    intermediate_size = math.floor(args.hidden * 8 / 3), num_hidden_layers = 4, num_attention_heads = 8,
    num_key_value_heads = 4, rms_norm_eps = 1e-5 }, { seed = 1 })
  copy(args.tokenizer .. "/tokenizer.json", args.root .. "/model/tokenizer.json")
  copy(args.tokenizer .. "/tokenizer_config.json", args.root .. "/model/tokenizer_config.json")
  return
end
local words = { "the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "in", "parks", "and", "birds", "sang" }
local rng = cai.rng(3)
local function sentence(n)
  local t = {}
  for i = 1, n do t[i] = words[rng:int(1, #words)] end
  return table.concat(t, " ")
end
local batch = 8
local data = {}
for i = 1, batch * args.steps do data[i] = { prompt = sentence(20), response = " " .. sentence(40) } end
local m = cai.model.load(args.root .. "/model")
m:add_lora{ r = 16, alpha = 32, seed = 2, dropout = 0, targets = "all-linear" }
local tokens = 0
for _, r in ipairs(data) do tokens = tokens + #m.tokenizer:encode(r.prompt .. r.response) end
local out = args.root .. "/run-" .. cai.dist.world_size()
os.execute("rm -rf '" .. out .. "'")
cai.dist.barrier()
local t0 = cai.clock()
cai.train.sft{ model = m, data = data, out = out, max_steps = args.steps, batch_size = batch, learning_rate = 1e-4,
               logging_steps = args.steps, progress = false, resume = false }
local seconds = cai.clock() - t0
if cai.dist.is_main() then print(string.format("tokens_per_s %.1f", tokens / seconds)) end
)LUA";

std::string here() {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return ".";
    exe[n] = '\0';
    std::string s(exe);
    return s.substr(0, s.rfind('/'));
}

// Runs a command; returns its "tokens_per_s X" (0 if absent) and wall seconds.
std::pair<double, double> run(const std::string& cmd) {
    auto t0 = std::chrono::steady_clock::now();
    FILE* p = popen(cmd.c_str(), "r");
    double tps = 0;
    char line[512];
    while (p && std::fgets(line, sizeof line, p)) std::sscanf(line, "tokens_per_s %lf", &tps);
    int rc = p ? pclose(p) : -1;
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rc != 0) std::fprintf(stderr, "bench_dist: failed (%d): %s\n", rc, cmd.c_str());
    return {tps, wall};
}

}  // namespace

int main(int argc, char** argv) {
    int steps = 6, hidden = 256;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
        if (!std::strcmp(argv[i], "--hidden")) hidden = std::atoi(argv[i + 1]);
    }
    const std::string dir = here();
    const std::string cairun = dir + "/cairun";
    std::string tokenizer = dir + "/../tests/data/tokenizers/gpt2";
    if (access((tokenizer + "/tokenizer.json").c_str(), R_OK) != 0) tokenizer = "tests/data/tokenizers/gpt2";
    if (access((tokenizer + "/tokenizer.json").c_str(), R_OK) != 0) {
        std::fprintf(stderr, "bench_dist: run from the repository root (needs tests/data/tokenizers/gpt2)\n");
        return 1;
    }
    char root_template[] = "/tmp/bench_dist.XXXXXX";
    const char* root = mkdtemp(root_template);
    if (!root) return 1;
    const std::string script = std::string(root) + "/sft.lua";
    std::ofstream(script) << recipe;
    const std::string common = " " + script + " root=" + root + " steps=" + std::to_string(steps) +
                               " hidden=" + std::to_string(hidden);
    const std::string env = "CAI_LOG=warn ";
    run(env + cairun + common + " role=make tokenizer=" + tokenizer);
    std::printf("LoRA SFT, random Llama (hidden %d, 4 layers, GPT-2 vocabulary), %d steps of 8 x ~60 tokens, "
                "%u cores\n", hidden, steps, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    auto one = run(env + cairun + common);
    auto two = run(env + cairun + " --nproc 2" + common);
    std::printf("1 process  %8.0f tok/s  (command %.1f s)\n", one.first, one.second);
    std::printf("2 ranks    %8.0f tok/s  (command %.1f s)\n", two.first, two.second);
    std::printf("ratio 2 ranks / 1 process: %.2fx tokens/s\n", one.first > 0 ? two.first / one.first : 0.0);
    std::string cleanup = std::string("rm -rf '") + root + "'";
    if (std::system(cleanup.c_str()) != 0) return 1;
    return 0;
}

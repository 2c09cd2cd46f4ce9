// The process group behind dist.h: TCPStore rendezvous + ProcessGroupGloo.
#include "dist/dist.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/log.h"
#include "core/strings.h"

namespace cai {
namespace dist {
namespace {

struct group_state {
    launch_env env;
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

group_state& state() {
    static group_state s;
    return s;
}

int alone_depth = 0;  // live dist::alone scopes

long parse_int_env(const char* name, const char* value, long lo, long hi) {
    char* end = nullptr;
    long v = std::strtol(value, &end, 10);
    if (!*value || *end || v < lo || v > hi)
        fail("dist: environment variable ", name, "=\"", value, "\" must be an integer in [", lo, ", ", hi, "]");
    return v;
}

// Runs a c10d call; its failure becomes a cai::error that names this rank and the operation.
template <class F>
void guarded(const std::string& what, F&& f) {
    const group_state& s = state();
    try {
        f();
    } catch (const std::exception& e) {
        std::string msg = e.what();
        size_t nl = msg.find('\n');  // c10 errors append a backtrace after the first line
        if (nl != std::string::npos) msg = msg.substr(0, nl);
        fail("dist: rank ", s.env.rank, " of ", s.env.world_size, ": ", what, " failed: ", msg,
             " (a rank that stopped, or no answer within ", s.env.timeout_s, " s (CAI_DIST_TIMEOUT), ends here)");
    }
}

void wait_for(const c10::intrusive_ptr<c10d::Work>& work) { work->wait(); }

// Every collective starts by gathering each rank's point (a fixed-size
// record: whether it is a rank-0 write, and its name), so ranks at different
// points meet in the same operation and can say so, rather than feeding one
// rank's barrier to another's all-reduce (which Gloo answers with "Connection
// reset by peer" or a hang). A rank-0 write (m:save, m:save_lora) reached by
// some ranks only is refused on every rank at once, naming both points.
void check_point(const std::string& what, bool main_write) {
    group_state& s = state();
    const int n = s.env.world_size;
    constexpr int64_t size = 192;
    c10::InferenceMode normal_tensors(false);  // Gloo fills them from its own threads
    at::Tensor mine = at::zeros({size}, at::kByte);
    uint8_t* p = mine.data_ptr<uint8_t>();
    p[0] = main_write ? 1 : 0;
    std::memcpy(p + 1, what.data(), std::min<size_t>(what.size(), size - 2));
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < n; ++r) out[0].push_back(at::empty({size}, at::kByte));
    guarded(what, [&] {
        std::vector<at::Tensor> in = {mine};
        wait_for(s.pg->allgather(out, in));
    });
    int writer = -1, other = -1;
    for (int r = 0; r < n; ++r) {
        if (out[0][r].data_ptr<uint8_t>()[0]) writer = writer < 0 ? r : writer;
        else other = other < 0 ? r : other;
    }
    if (writer < 0 || other < 0) return;
    auto name_of = [&](int r) {
        const char* q = reinterpret_cast<const char*>(out[0][r].data_ptr<uint8_t>()) + 1;
        return std::string(q, strnlen(q, size - 1));
    };
    fail("dist: rank ", writer, " is ", name_of(writer), " while rank ", other, " is at ", name_of(other),
         ": saving a model or adapter (m:save, m:save_lora) is collective in a data-parallel job; call it on every "
         "rank, not inside `if cai.dist.is_main() then ... end` (rank 0 writes, the others wait for it)");
}

bool is_loopback(const std::string& addr) {
    return addr == "localhost" || starts_with(addr, "127.") || addr == "::1";
}

}  // namespace

launch_env read_launch_env(bool* present) {
    launch_env env;
    const char* rank = std::getenv("RANK");
    const char* world = std::getenv("WORLD_SIZE");
    *present = rank && world;
    if (!*present) return env;
    env.world_size = (int)parse_int_env("WORLD_SIZE", world, 1, 1 << 20);
    env.rank = (int)parse_int_env("RANK", rank, 0, env.world_size - 1);
    if (const char* v = std::getenv("LOCAL_RANK")) env.local_rank = (int)parse_int_env("LOCAL_RANK", v, 0, 1 << 20);
    if (const char* v = std::getenv("MASTER_ADDR")) env.master_addr = v;
    if (env.master_addr.empty()) fail("dist: environment variable MASTER_ADDR is empty");
    if (const char* v = std::getenv("MASTER_PORT")) env.master_port = (int)parse_int_env("MASTER_PORT", v, 1, 65535);
    if (const char* v = std::getenv("CAI_DIST_TIMEOUT")) {
        char* end = nullptr;
        double t = std::strtod(v, &end);
        if (!*v || *end || !(t > 0)) fail("dist: CAI_DIST_TIMEOUT=\"", v, "\" must be a positive number of seconds");
        env.timeout_s = t;
    }
    return env;
}

void init(const launch_env& env) {
    group_state& s = state();
    if (s.pg) fail("dist: this process already joined a job (rank ", s.env.rank, " of ", s.env.world_size, ")");
    s.env = env;
    if (env.world_size <= 1) return;
    const auto timeout = std::chrono::milliseconds((int64_t)(env.timeout_s * 1000));
    log_debug("dist: rank ", env.rank, " of ", env.world_size, " joining ", env.master_addr, ":", env.master_port);
    // torchrun's agent may serve the store on MASTER_PORT itself (it says so
    // with TORCHELASTIC_USE_AGENT_STORE=True); then every rank is a client,
    // under the agent's per-attempt prefix, as PyTorch's env:// does.
    const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    const bool agent_store = agent && std::string(agent) == "True";
    const char* attempt = std::getenv("TORCHELASTIC_RESTART_COUNT");
    const std::string prefix = agent_store ? "/worker/attempt_" + std::string(attempt ? attempt : "0") + "/cai" : "cai";
    guarded("rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port), [&] {
        c10d::TCPStoreOptions so;
        so.port = (uint16_t)env.master_port;
        so.isServer = env.rank == 0 && !agent_store;
        so.numWorkers = (size_t)env.world_size;
        so.waitWorkers = !agent_store;  // clients count themselves in; the server waits for all
        so.timeout = timeout;
        auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
        s.store = c10::make_intrusive<c10d::PrefixStore>(prefix, tcp);
        auto options = c10d::ProcessGroupGloo::Options::create(timeout);
        if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"))
            options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
        else if (is_loopback(env.master_addr))
            options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        else
            options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        s.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s.store, env.rank, env.world_size, options);
    });
    log_info("dist: rank ", env.rank, " of ", env.world_size, " ready (gloo, rendezvous ", env.master_addr, ":",
             env.master_port, ")");
}

bool init_from_env() {
    bool present = false;
    launch_env env = read_launch_env(&present);
    if (!present) return false;
    init(env);
    return true;
}

void shutdown(bool ok) {
    group_state& s = state();
    if (!s.pg) return;
    if (ok) barrier("the final barrier");
    s.pg.reset();
    s.store.reset();
}

bool active() { return state().pg && alone_depth == 0; }
int rank() { return alone_depth > 0 ? 0 : state().env.rank; }
int world_size() { return active() ? state().env.world_size : 1; }

alone::alone() { ++alone_depth; }
alone::~alone() { --alone_depth; }
int local_rank() { return state().env.local_rank; }

void barrier(const std::string& what) {
    group_state& s = state();
    if (!active()) return;
    check_point(what, false);
    guarded(what, [&] { wait_for(s.pg->barrier()); });
}

void check_main_write(const std::string& what) {
    if (!active()) return;
    check_point(what, true);
}

void all_reduce_sum(at::Tensor& t, const std::string& what) {
    group_state& s = state();
    if (!active()) return;
    if (!t.is_contiguous()) fail("dist: all_reduce_sum of ", what, ": the tensor must be contiguous");
    check_point("all_reduce of " + what, false);
    at::Tensor buffer;
    {
        // Gloo writes the result from its own threads, outside any
        // InferenceMode of the caller: it needs a normal tensor.
        c10::InferenceMode normal_tensors(false);
        buffer = t.is_inference() ? t.clone() : t;
        guarded("all_reduce of " + what, [&] {
            std::vector<at::Tensor> ts = {buffer};
            c10d::AllreduceOptions o;
            o.reduceOp = c10d::ReduceOp::SUM;
            wait_for(s.pg->allreduce(ts, o));
        });
    }
    if (!buffer.is_same(t)) t.copy_(buffer);
}

void all_reduce_sum(std::vector<double>& values, const std::string& what) {
    if (!active() || values.empty()) return;
    at::Tensor t = at::from_blob(values.data(), {(int64_t)values.size()}, at::kDouble).clone();
    all_reduce_sum(t, what);
    const double* p = t.data_ptr<double>();
    for (size_t i = 0; i < values.size(); ++i) values[i] = p[i];
}

std::vector<std::string> all_gather_bytes(const std::string& mine, const std::string& what) {
    group_state& s = state();
    if (!active()) return {mine};
    const int n = s.env.world_size;
    c10::InferenceMode normal_tensors(false);  // Gloo fills them from its own threads
    // (all_reduce_sum of the lengths checks that every rank is here.)
    // Lengths first, then every rank's bytes padded to the longest.
    at::Tensor lengths = at::zeros({n}, at::kLong);
    lengths[s.env.rank] = (int64_t)mine.size();
    all_reduce_sum(lengths, what + " (lengths)");
    const int64_t longest = std::max<int64_t>(1, lengths.max().item<int64_t>());
    at::Tensor padded = at::zeros({longest}, at::kByte);
    if (!mine.empty()) std::memcpy(padded.data_ptr<uint8_t>(), mine.data(), mine.size());
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < n; ++r) out[0].push_back(at::empty({longest}, at::kByte));
    guarded("all_gather of " + what, [&] {
        std::vector<at::Tensor> in = {padded};
        wait_for(s.pg->allgather(out, in));
    });
    std::vector<std::string> result;
    for (int r = 0; r < n; ++r) {
        const auto* p = reinterpret_cast<const char*>(out[0][r].data_ptr<uint8_t>());
        result.emplace_back(p, (size_t)lengths[r].item<int64_t>());
    }
    return result;
}

shard shard_of(size_t n, int rank, int world_size) {
    const size_t w = (size_t)std::max(1, world_size), r = (size_t)rank;
    const size_t base = n / w, extra = n % w;
    shard s;
    s.begin = r * base + std::min(r, extra);
    s.end = s.begin + base + (r < extra ? 1 : 0);
    return s;
}

void all_reduce_gradients(const std::vector<at::Tensor>& params) {
    if (!active()) return;
    // One flat CPU buffer per gradient dtype, in parameter order.
    std::map<at::ScalarType, std::vector<size_t>> by_dtype;
    for (size_t i = 0; i < params.size(); ++i) {
        const at::Tensor& p = params[i];
        if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
        by_dtype[p.grad().scalar_type()].push_back(i);
    }
    for (const auto& [dtype, indexes] : by_dtype) {
        std::vector<at::Tensor> flat;
        for (size_t i : indexes) flat.push_back(params[i].grad().reshape({-1}).to(at::kCPU));
        at::Tensor buffer = at::cat(flat).contiguous();
        all_reduce_sum(buffer, "gradients");
        int64_t offset = 0;
        for (size_t i : indexes) {
            at::Tensor g = params[i].grad();
            const int64_t n = g.numel();
            g.copy_(buffer.narrow(0, offset, n).view(g.sizes()));
            offset += n;
        }
    }
}

}  // namespace dist
}  // namespace cai

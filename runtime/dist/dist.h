// Data-parallel runs over libtorch's c10d process groups (Gloo on CPU).
//
// A process is one rank of a job when RANK and WORLD_SIZE are in its
// environment (set by `cairun --nproc N`, torchrun or a cluster launcher,
// with MASTER_ADDR / MASTER_PORT for the TCPStore rendezvous). Without them
// nothing here costs anything: rank() is 0, world_size() 1 and every
// collective returns at once, so single-process code needs no branch.
//
// Collectives are blocking and have a timeout (CAI_DIST_TIMEOUT seconds,
// default 600); a peer that dies or hangs makes them throw cai::error naming
// this rank and the operation, never wait forever.
//
// The c10d headers stay in dist.cpp: this header is cheap to include.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cai {
namespace dist {

struct launch_env {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;
    std::string master_addr = "127.0.0.1";
    int master_port = 29500;
    double timeout_s = 600;
};

// The launch variables of this process; present is false when RANK or
// WORLD_SIZE is absent. Malformed values are an error naming the variable.
launch_env read_launch_env(bool* present);

// Joins the job: TCPStore rendezvous (rank 0 serves it), then a Gloo
// process group. world_size 1 sets nothing up.
void init(const launch_env& env);
// init(read_launch_env()) when the environment names a job; returns whether it did.
bool init_from_env();
// Leaves the job (after a barrier when ok); safe to call when never initialised.
void shutdown(bool ok = true);

bool active();  // a process group with world_size > 1 is set up (and not alone)
int rank();
int world_size();

// While one lives, this process acts as a single process (rank 0 of 1): no
// sharding, no collectives, and it writes its outputs. For work one rank
// does by itself while the others wait at a barrier (building a cache).
struct alone {
    alone();
    ~alone();
    alone(const alone&) = delete;
    alone& operator=(const alone&) = delete;
};
int local_rank();
inline bool is_main() { return rank() == 0; }

// Every rank waits for all others; `what` names the point in errors.
void barrier(const std::string& what = "barrier");
// Rank 0 writes (a file or directory every rank may read next) while the
// others wait; in one process it just writes. Every rank must call it.
// A write reached by rank 0 alone (`if cai.dist.is_main() then m:save_lora(d)
// end`) fails at once on every rank with a message saying so.
void check_main_write(const std::string& what);
template <class Write>
void main_writes(const std::string& what, Write&& write) {
    check_main_write(what);
    if (is_main()) write();
    barrier(what);
}
// Sums over ranks, in place. t: any shape, CPU; floating or integer dtype.
void all_reduce_sum(at::Tensor& t, const std::string& what);
// values[i] summed over ranks, in place (float64).
void all_reduce_sum(std::vector<double>& values, const std::string& what);
// Every rank's bytes, in rank order.
std::vector<std::string> all_gather_bytes(const std::string& mine, const std::string& what);

// This rank's contiguous share [begin, end) of n items: the first n % world
// ranks get one more, so concatenating the shares in rank order gives 0..n-1.
struct shard {
    size_t begin = 0, end = 0;
    size_t size() const { return end - begin; }
    bool contains(size_t i) const { return i >= begin && i < end; }
};
shard shard_of(size_t n, int rank, int world_size);
inline shard shard_of(size_t n) { return shard_of(n, rank(), world_size()); }

// Sums the gradients of params over ranks, in place (an undefined gradient
// counts as zeros and is defined afterwards). One buffer per dtype.
void all_reduce_gradients(const std::vector<at::Tensor>& params);

}  // namespace dist
}  // namespace cai

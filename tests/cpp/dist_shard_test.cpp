// runtime/dist without a job: the shares of a list (a table worked out by
// hand, and that they tile the list), the launch environment and its
// errors, and that every collective is a no-op in a single process.
// Multi-rank behaviour is tested through cairun --nproc
// (tests/lua/dist_*_spec.lua, tests/cli/dist_test.sh).
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <stdlib.h>

#include <string>
#include <utility>
#include <vector>

#include "dist/dist.h"
#include "test_util.h"

using cai::dist::shard_of;
using test_util::error_of;

namespace {

// Sets environment variables for one scope and restores them after.
struct scoped_env {
    std::vector<std::pair<std::string, std::string>> saved;
    std::vector<std::string> unset_after;
    scoped_env(std::initializer_list<std::pair<const char*, const char*>> vars) {
        for (const auto& [name, value] : vars) {
            if (const char* old = getenv(name))
                saved.emplace_back(name, old);
            else
                unset_after.push_back(name);
            if (value)
                setenv(name, value, 1);
            else
                unsetenv(name);
        }
    }
    ~scoped_env() {
        for (const auto& [name, value] : saved) setenv(name.c_str(), value.c_str(), 1);
        for (const auto& name : unset_after) unsetenv(name.c_str());
    }
};

}  // namespace

TEST_CASE("shard_of: contiguous shares, the first n % world one longer") {
    struct row {
        size_t n;
        int world, rank;
        size_t begin, end;
    };
    const std::vector<row> table = {
        {7, 2, 0, 0, 4}, {7, 2, 1, 4, 7},                    // uneven
        {1, 2, 0, 0, 1}, {1, 2, 1, 1, 1},                    // a rank with nothing
        {0, 3, 2, 0, 0},                                     // empty list
        {10, 3, 0, 0, 4}, {10, 3, 1, 4, 7}, {10, 3, 2, 7, 10},
        {6, 1, 0, 0, 6},                                     // one process: everything
    };
    for (const auto& r : table) {
        INFO("n " << r.n << " world " << r.world << " rank " << r.rank);
        auto s = shard_of(r.n, r.rank, r.world);
        CHECK(s.begin == r.begin);
        CHECK(s.end == r.end);
    }
    // The shares in rank order tile 0..n-1 and differ in size by at most 1.
    for (size_t n = 0; n <= 20; ++n)
        for (int world = 1; world <= 5; ++world) {
            size_t next = 0, lo = n, hi = 0;
            for (int rank = 0; rank < world; ++rank) {
                auto s = shard_of(n, rank, world);
                REQUIRE(s.begin == next);
                next = s.end;
                lo = std::min(lo, s.size());
                hi = std::max(hi, s.size());
            }
            CHECK(next == n);
            CHECK(hi - lo <= 1);
        }
}

TEST_CASE("read_launch_env: torchrun's variables, and errors naming the variable") {
    bool present = true;
    {
        scoped_env env{{"RANK", nullptr}, {"WORLD_SIZE", nullptr}};
        cai::dist::read_launch_env(&present);
        CHECK_FALSE(present);
    }
    {
        scoped_env env{{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.0.0.1"},
                       {"MASTER_PORT", "29511"}, {"CAI_DIST_TIMEOUT", "2.5"}};
        auto e = cai::dist::read_launch_env(&present);
        CHECK(present);
        CHECK(e.rank == 1);
        CHECK(e.world_size == 4);
        CHECK(e.local_rank == 1);
        CHECK(e.master_addr == "10.0.0.1");
        CHECK(e.master_port == 29511);
        CHECK(e.timeout_s == 2.5);
    }
    {
        scoped_env env{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", nullptr}, {"MASTER_PORT", nullptr},
                       {"CAI_DIST_TIMEOUT", nullptr}};
        auto e = cai::dist::read_launch_env(&present);
        CHECK(e.master_addr == "127.0.0.1");
        CHECK(e.master_port == 29500);
        CHECK(e.timeout_s == 600);
    }
    auto error_with = [&](std::initializer_list<std::pair<const char*, const char*>> vars) {
        scoped_env env(vars);
        return error_of([&] { cai::dist::read_launch_env(&present); });
    };
    CHECK_THAT(error_with({{"RANK", "2"}, {"WORLD_SIZE", "2"}}),
               Catch::Contains("RANK=\"2\" must be an integer in [0, 1]"));
    CHECK_THAT(error_with({{"RANK", "0"}, {"WORLD_SIZE", "x"}}), Catch::Contains("WORLD_SIZE=\"x\""));
    CHECK_THAT(error_with({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}),
               Catch::Contains("MASTER_PORT=\"70000\""));
    CHECK_THAT(error_with({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"CAI_DIST_TIMEOUT", "-1"}}),
               Catch::Contains("CAI_DIST_TIMEOUT=\"-1\" must be a positive number of seconds"));
}

TEST_CASE("a single process: rank 0 of 1 and every collective returns its input") {
    cai::dist::launch_env one;  // world_size 1: nothing is set up
    cai::dist::init(one);
    CHECK_FALSE(cai::dist::active());
    CHECK(cai::dist::rank() == 0);
    CHECK(cai::dist::world_size() == 1);
    CHECK(cai::dist::is_main());
    cai::dist::barrier("test");
    std::vector<double> v = {1.5, -2};
    cai::dist::all_reduce_sum(v, "test");
    CHECK(v == std::vector<double>{1.5, -2});
    auto all = cai::dist::all_gather_bytes(std::string("a\0b", 3), "test");
    REQUIRE(all.size() == 1);
    CHECK(all[0] == std::string("a\0b", 3));
    at::Tensor p = at::ones({2, 3}).set_requires_grad(true);
    cai::dist::all_reduce_gradients({p});
    CHECK_FALSE(p.grad().defined());  // untouched: no job, no reduction
    {
        cai::dist::alone scope;
        CHECK(cai::dist::world_size() == 1);
        CHECK(cai::dist::is_main());
    }
    cai::dist::shutdown();
}

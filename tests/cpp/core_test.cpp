// runtime/core: rng streams, atomic writes, progress formatting.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/rng.h"

TEST_CASE("rng: same seed gives the same stream, different seeds differ") {
    cai::rng a(42), b(42), c(43);
    for (int i = 0; i < 100; ++i) {
        uint64_t x = a.next_u64();
        REQUIRE(x == b.next_u64());
        (void)c;
    }
    cai::rng d(42), e(43);
    int same = 0;
    for (int i = 0; i < 100; ++i) same += d.next_u64() == e.next_u64();
    REQUIRE(same == 0);
}

TEST_CASE("rng: uniform, integer and normal have the right ranges and moments") {
    cai::rng r(7);
    double sum = 0, sum_sq = 0;
    int counts[3] = {0, 0, 0};
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
        double u = r.uniform();
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
        counts[r.integer(0, 2)]++;
        double z = r.normal();
        sum += z;
        sum_sq += z * z;
    }
    for (int c : counts) REQUIRE(std::abs(c / double(n) - 1.0 / 3) < 0.01);
    REQUIRE(std::abs(sum / n) < 0.01);
    REQUIRE(std::abs(sum_sq / n - 1.0) < 0.02);
}

TEST_CASE("rng: weighted_index follows the weights and refuses bad ones") {
    cai::rng r(1);
    std::vector<double> w = {1, 0, 3};
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 40000; ++i) counts[r.weighted_index(w)]++;
    REQUIRE(counts[1] == 0);
    REQUIRE(std::abs(counts[2] / 40000.0 - 0.75) < 0.01);
    REQUIRE_THROWS_AS(r.weighted_index({0, 0}), cai::error);
    REQUIRE_THROWS_AS(r.weighted_index({1, -1}), cai::error);
}

TEST_CASE("rng::derive gives distinct, reproducible sub-stream seeds") {
    REQUIRE(cai::rng::derive(1, 2) == cai::rng::derive(1, 2));
    REQUIRE(cai::rng::derive(1, 2) != cai::rng::derive(1, 3));
    REQUIRE(cai::rng::derive(1, 2) != cai::rng::derive(2, 2));
    REQUIRE(cai::rng::derive(1, 2, 0) != cai::rng::derive(1, 2, 1));
}

TEST_CASE("write_file_atomic writes whole files and leaves no temporaries") {
    char tmpl[] = "/tmp/cai_fs_XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    std::string dir = tmpl;
    std::string path = dir + "/a/b/out.txt";
    cai::write_file_atomic(path, "hello\n");
    REQUIRE(cai::read_file(path) == "hello\n");
    cai::write_file_atomic(path, "replaced");
    REQUIRE(cai::read_file(path) == "replaced");
    REQUIRE(!cai::file_exists(path + ".tmp." + std::to_string(getpid())));
    REQUIRE_THROWS_WITH(cai::read_file(dir + "/missing"), Catch::Contains(dir + "/missing"));
    std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("progress formats durations") {
    REQUIRE(cai::progress::format_duration(0) == "0:00");
    REQUIRE(cai::progress::format_duration(61) == "1:01");
    REQUIRE(cai::progress::format_duration(3725) == "1:02:05");
    REQUIRE(cai::progress::format_duration(-1) == "?");
}

TEST_CASE("fail joins its parts into the message") {
    REQUIRE_THROWS_WITH(cai::fail("config.json: field \"", "x", "\" must be ", 3), "config.json: field \"x\" must be 3");
}

// Small helpers shared by the Catch2 tests.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"

namespace test_util {

// The message of the cai::error that f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const cai::error& e) {
        return e.what();
    }
    return "";
}

// A fresh directory under /tmp, removed when the test program ends.
inline std::string temp_dir() {
    struct made_dirs {
        std::vector<std::string> paths;
        ~made_dirs() {
            std::error_code ec;
            for (const auto& p : paths) std::filesystem::remove_all(p, ec);
        }
    };
    static made_dirs made;
    char tmpl[] = "/tmp/cai_test_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    made.paths.push_back(tmpl);
    return tmpl;
}

}  // namespace test_util

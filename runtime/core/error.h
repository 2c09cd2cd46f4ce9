// cai::error and cai::fail: the one exception type the runtime throws.
// Every message says what failed, where (file, field, tensor) and what was
// expected; the Lua boundary turns it into a Lua error unchanged.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace cai {

struct error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// fail("config.json: field \"", name, "\" must be a number") builds the
// message from its parts and throws cai::error.
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
    std::ostringstream message;
    (message << ... << parts);
    throw error(message.str());
}

}  // namespace cai

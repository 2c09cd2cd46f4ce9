// The page of `cairun serve`, compiled into libcai from runtime/serve/web/
// by cmake/embed.cmake (like the Lua library).
#pragma once

#include "serve/server.h"

namespace cai::serve {

extern const web_file web_files[];  // ends with a null name

}  // namespace cai::serve

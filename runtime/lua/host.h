// The embedding API of libcai: a Lua state with the cai library, strict
// globals and a traceback handler. cairun is a thin main over this; other
// programs embed the runtime the same way.
//
//     cai::host h;
//     h.set_args({"steps=10"});
//     h.register_function("my_fn", my_lua_cfunction);   // global my_fn
//     int rc = h.run_file("recipe.lua");                // 0 on success
#pragma once

#include <lua.hpp>

#include <string>
#include <vector>

namespace cai {

class host {
public:
    host();
    ~host();
    host(const host&) = delete;
    host& operator=(const host&) = delete;

    lua_State* state() { return L_; }

    // key=value arguments that cai.args(defaults) reads.
    void set_args(const std::vector<std::string>& args);
    // Declares a global function visible to recipes (strict globals allow it).
    void register_function(const std::string& name, lua_CFunction fn);

    // Run a recipe file or a chunk of code. On error the message
    // ("file:line: message" + traceback) goes to stderr and 1 is returned;
    // after a recipe stopped on Ctrl-C (train/interrupt.h), its message and 130.
    int run_file(const std::string& path);
    int run_string(const std::string& code, const std::string& chunkname = "=(command line)");

    // The last error message (with traceback), empty after success.
    const std::string& last_error() const { return last_error_; }

private:
    int run_loaded(int load_status);

    lua_State* L_;
    std::string last_error_;
};

// The command-line host: `cairun FILE.lua key=value ...`, -e, --help, --version.
int cli_main(int argc, char** argv);

}  // namespace cai

extern "C" int cai_main(int argc, char** argv);

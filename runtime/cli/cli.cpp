// `cairun FILE.lua key=value ...`: the command line over cai::host.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cli/launch.h"
#include "core/error.h"
#include "core/log.h"
#include "dist/dist.h"
#include "core/run_dir.h"
#include "lua/host.h"
#include "train/interrupt.h"

namespace cai {
namespace {

const char* const usage_text =
    "usage: cairun [options] RECIPE.lua [key=value ...]\n"
    "       cairun RECIPE.lua --help       list the recipe's arguments, defaults and comments\n"
    "       cairun [options] -e 'lua code' [key=value ...]\n"
    "       cairun report RUN_DIR          rebuild RUN_DIR/report.html\n"
    "       cairun report RUN_DIR RUN_DIR... [--out FILE]\n"
    "                                     one page comparing several runs (default comparison.html)\n"
    "       cairun [--nproc N] sweep RECIPE.lua key=v1,v2 ... [out=DIR]\n"
    "                                      run RECIPE for every cell of the grid and compare (docs/recipes.md)\n"
    "       cairun serve RUN_DIR... [--port N] [--host ADDR] [--judgments FILE]\n"
    "       cairun serve [RUN_DIR...] --prompts FILE.jsonl --model NAME=PATH [--model NAME=PATH ...]\n"
    "                                      compare runs (or models answering a prompts file) and judge answers\n"
    "                                      blind in a local web page (docs/serve.md)\n"
    "\n"
    "Runs a Lua recipe with the cai library (require \"cai\"). key=value arguments\n"
    "override the defaults a recipe declares with cai.args{...}.\n"
    "\n"
    "options:\n"
    "  -e CODE            run CODE instead of a recipe file\n"
    "  --nproc N          run N ranks of a data-parallel job on this machine (see docs/distributed.md)\n"
    "  --log-level LEVEL  debug, info, warn or error (default: info, or $CAI_LOG)\n"
    "  -h, --help         show this help\n"
    "  --version          show the version\n"
    "\n"
    "environment:\n"
    "  CAI_LUA_PATH       read the cai Lua library from this lua/ folder instead of the embedded copy\n"
    "  CAI_LOG            default log level\n"
    "  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT\n"
    "                     join a data-parallel job as torchrun starts it (c10d, Gloo)\n"
    "  CAI_DIST_TIMEOUT   seconds a rank waits for the others before failing (default 600)\n"
    "  OPENBLAS_CORETYPE  set automatically to SkylakeX on AVX-512 machines unless given\n";

}  // namespace

int cli_main(int argc, char** argv) {
    // Past a file-size limit (ulimit -f) a write fails with EFBIG and the
    // error names the file, instead of SIGXFSZ killing the run mid-write.
    std::signal(SIGXFSZ, SIG_IGN);
    std::string code, recipe;
    bool have_code = false;
    std::vector<std::string> args;
    std::vector<std::string> rank_argv = {argv[0]};  // the command line without --nproc
    int nproc = 0;
    int i = 1;
    for (; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--nproc") {
            char* end = nullptr;
            long n = i + 1 < argc ? std::strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || !*argv[i + 1] || *end || n < 1 || n > 1024) {
                std::fprintf(stderr, "cairun: --nproc needs a number of ranks (1 to 1024)\n");
                return 2;
            }
            nproc = (int)n;
            ++i;
            continue;
        }
        if (a == "-h" || a == "--help") {
            std::fputs(usage_text, stdout);
            return 0;
        }
        if (a == "--version") {
            std::printf("cairun %s\n", CAI_VERSION);
            return 0;
        }
        if (a == "-e") {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "cairun: -e needs a string of Lua code\n");
                return 2;
            }
            code = argv[++i];
            rank_argv.insert(rank_argv.end(), {"-e", code});
            have_code = true;
            continue;
        }
        if (a == "--log-level") {
            log_level level;
            if (i + 1 >= argc || !parse_log_level(argv[i + 1], &level)) {
                std::fprintf(stderr, "cairun: --log-level needs one of debug, info, warn, error\n");
                return 2;
            }
            set_log_level(level);
            rank_argv.insert(rank_argv.end(), {"--log-level", argv[i + 1]});
            ++i;
            continue;
        }
        if (a.size() > 1 && a[0] == '-') {
            std::fprintf(stderr, "cairun: unknown option '%s' (see cairun --help)\n", a.c_str());
            return 2;
        }
        break;
    }
    for (int k = i; k < argc; ++k) rank_argv.emplace_back(argv[k]);
    if (!have_code && i < argc && std::string(argv[i]) == "report") {
        // The report is built by the Lua library: one run directory, or several
        // for a comparison page (--out FILE); it reads its own arguments.
        if (i + 1 == argc) {
            std::fprintf(stderr, "cairun: usage: cairun report RUN_DIR, or cairun report RUN_DIR RUN_DIR... [--out FILE]\n");
            return 2;
        }
        code = "print(require('cai.report').main(require('cai._core').argv()))";
        have_code = true;
        for (++i; i < argc; ++i) args.emplace_back(argv[i]);
    }
    if (!have_code && i < argc && std::string(argv[i]) == "sweep") {
        // The grid is run by the Lua library; each cell is a cairun of its own,
        // with --nproc N passed on to it (the sweep itself is one process).
        code = "require('cai.sweep').main(require('cai._core').argv())";
        have_code = true;
        for (++i; i < argc; ++i) args.emplace_back(argv[i]);
        if (nproc > 1) args.push_back("nproc=" + std::to_string(nproc));
        nproc = 0;
    }
    if (!have_code && i < argc && std::string(argv[i]) == "serve") {
        // The page's data and the judgments are the Lua library's (cai.serve);
        // the HTTP server under it is runtime/serve.
        code = "require('cai.serve').main(require('cai._core').argv())";
        have_code = true;
        for (++i; i < argc; ++i) args.emplace_back(argv[i]);
    }
    if (!have_code) {
        if (i >= argc) {
            std::fputs(usage_text, stderr);
            return 2;
        }
        recipe = argv[i++];
    }
    for (; i < argc; ++i) args.emplace_back(argv[i]);
    // `cairun RECIPE.lua --help`: the recipe's arguments, read from its cai.args{...} without running it.
    if (!have_code) {
        for (const auto& a : args)
            if (a == "--help" || a == "-h") {
                code = "io.write(require('cai.args').help(cai.args{ recipe = '' }.recipe))";
                have_code = true;
                args = {"recipe=" + recipe};
                nproc = 0;
                break;
            }
    }

    try {
        if (nproc > 1) {
            return launch::launch_ranks(nproc, rank_argv);
        }
        dist::init_from_env();  // a rank of a job when RANK/WORLD_SIZE are set; nothing otherwise
        set_command_line(std::vector<std::string>(argv, argv + argc));
        // Ctrl-C: a running trainer or generation stage saves and stops the
        // recipe (status 130); anywhere else the process exits at once.
        install_run_interrupt_handler();
        int rc = 1;
        {
            host h;
            h.set_args(args);
            rc = have_code ? h.run_string(code) : h.run_file(recipe);
            // A recipe that ran to its end finished its run (run.json), unless a stage did not finish.
            if (rc == 0 && !stop_recorded())
                rc = h.run_string("local r = package.loaded['cai.run']\n"
                                  "if r and r.current() then r.current():_ended() end", "=(end of run)");
            else if (rc != 0 && !stop_recorded()) {
                // A recipe that stopped on an error: run.json says so, with the error's first line.
                lua_State* L = h.state();
                const std::string message = h.last_error();
                lua_pushstring(L, "_cai_run_error");
                lua_pushlstring(L, message.data(), message.size());
                lua_rawset(L, LUA_GLOBALSINDEX);  // past the strict-globals guard
                h.run_string("local r = package.loaded['cai.run']\n"
                             "if r and r.current() then r.current():_failed(_cai_run_error) end", "=(failed run)");
            }
        }
        if (rc == 0 && stop_recorded()) {
            // The recipe caught the stop and went on: it still did not finish.
            std::fprintf(stderr, "%s\n", stop_message().c_str());
            rc = 130;
        }
        dist::shutdown(rc == 0);
        return rc;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cairun: %s\n", e.what());
        dist::shutdown(false);
        return 1;
    }
}

}  // namespace cai

extern "C" int cai_main(int argc, char** argv) { return cai::cli_main(argc, argv); }

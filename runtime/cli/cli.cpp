// `cairun FILE.lua key=value ...`: the command line over cai::host.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "dist/dist.h"
#include "lua/host.h"

namespace cai {
namespace {

const char* const usage_text =
    "usage: cairun [options] RECIPE.lua [key=value ...]\n"
    "       cairun [options] -e 'lua code' [key=value ...]\n"
    "       cairun report RUN_DIR          rebuild RUN_DIR/report.html\n"
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

// A TCP port on loopback that is free now (the kernel's choice).
int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("cairun --nproc: cannot open a socket: ", std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        int saved = errno;
        ::close(fd);
        fail("cairun --nproc: cannot find a free port on 127.0.0.1: ", std::strerror(saved));
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

volatile sig_atomic_t launcher_signal = 0;
extern "C" void on_launcher_signal(int sig) { launcher_signal = sig; }

std::string describe_exit(int status) {
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        const char* name = strsignal(sig);
        return "exited with signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
    }
    return "exited with status " + std::to_string(WEXITSTATUS(status));
}

// `cairun --nproc N ...`: runs this same command N times as ranks 0..N-1 of
// a job on loopback, as torchrun would. When a rank fails, the others are
// stopped and the launcher names it; its exit status is the failed rank's.
int launch_ranks(int nproc, const std::vector<std::string>& args) {
    const int port = free_port();
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    std::vector<char*> child_argv;
    for (const auto& a : args) child_argv.push_back(const_cast<char*>(a.c_str()));
    child_argv.push_back(nullptr);
    // Ctrl-C reaches every rank from the terminal (they stop together at a
    // step); a TERM to the launcher is passed on.
    struct sigaction ignore {}, forward {};
    ignore.sa_handler = SIG_IGN;
    forward.sa_handler = on_launcher_signal;
    sigemptyset(&forward.sa_mask);
    sigaction(SIGINT, &ignore, nullptr);
    sigaction(SIGTERM, &forward, nullptr);
    std::fflush(nullptr);
    std::vector<pid_t> pids(nproc, -1);
    for (int r = 0; r < nproc; ++r) {
        pid_t pid = ::fork();
        if (pid < 0) fail("cairun --nproc: fork failed: ", std::strerror(errno));
        if (pid == 0) {
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            setenv("RANK", std::to_string(r).c_str(), 1);
            setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
            setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
            setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
            // As torchrun: the ranks share the cores instead of each taking all.
            setenv("OMP_NUM_THREADS", std::to_string(std::max(1u, cores / (unsigned)nproc)).c_str(), 0);
            ::execv("/proc/self/exe", child_argv.data());
            std::fprintf(stderr, "cairun --nproc: cannot start rank %d: %s\n", r, std::strerror(errno));
            ::_exit(127);
        }
        pids[r] = pid;
    }
    int running = nproc, rc = 0;
    bool stopping = false;
    auto stop_deadline = std::chrono::steady_clock::time_point::max();
    auto stop_others = [&](int sig) {
        for (pid_t p : pids)
            if (p > 0) ::kill(p, sig);
    };
    while (running > 0) {
        if (launcher_signal && !stopping) {
            stop_others(launcher_signal);
            stopping = true;
            rc = 128 + launcher_signal;
            stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        }
        if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
            stop_others(SIGKILL);
            stop_deadline = std::chrono::steady_clock::time_point::max();
        }
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid == 0 || (pid < 0 && errno == EINTR)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
        }
        if (pid < 0) break;
        int rank = -1;
        for (int r = 0; r < nproc; ++r)
            if (pids[r] == pid) rank = r;
        if (rank < 0) continue;
        pids[rank] = -1;
        --running;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (ok) continue;
        // Every rank that failed by itself is named (the first one reaped is
        // not always the cause); ranks the launcher stopped are not.
        const bool stopped_here =
            stopping && WIFSIGNALED(status) && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGKILL);
        if (stopped_here) continue;
        std::fprintf(stderr, "cairun: rank %d of %d %s%s\n", rank, nproc, describe_exit(status).c_str(),
                     stopping ? "" : "; stopping the other ranks");
        if (stopping) continue;
        rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        stopping = true;
        stop_others(SIGTERM);
        stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    }
    return rc;
}

}  // namespace

int cli_main(int argc, char** argv) {
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
        if (i + 2 != argc) {
            std::fprintf(stderr, "cairun: usage: cairun report RUN_DIR\n");
            return 2;
        }
        // The report is built by the Lua library; the run directory is its argument.
        code = "local path = require('cai.report').build(cai.args{ run = '' }.run)\nprint(path)";
        have_code = true;
        args.push_back(std::string("run=") + argv[i + 1]);
        i = argc;
    }
    if (!have_code) {
        if (i >= argc) {
            std::fputs(usage_text, stderr);
            return 2;
        }
        recipe = argv[i++];
    }
    for (; i < argc; ++i) args.emplace_back(argv[i]);

    try {
        if (nproc > 1) {
            if (std::getenv("RANK") && std::getenv("WORLD_SIZE"))
                fail("--nproc: this process is already rank ", std::getenv("RANK"), " of a job (RANK is set); "
                     "use either --nproc or a launcher's environment, not both");
            return launch_ranks(nproc, rank_argv);
        }
        dist::init_from_env();  // a rank of a job when RANK/WORLD_SIZE are set; nothing otherwise
        int rc = 1;
        {
            host h;
            h.set_args(args);
            rc = have_code ? h.run_string(code) : h.run_file(recipe);
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

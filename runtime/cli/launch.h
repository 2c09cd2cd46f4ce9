// `cairun --nproc N ...`: the launcher of a data-parallel job on this
// machine, as torchrun would start it. Header-only so the thin main runs it
// before libcai (and libtorch) is loaded; cli.cpp uses it for embedders.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace cai {
namespace launch {

// A TCP port on loopback that is free now (the kernel's choice).
inline int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        std::fprintf(stderr, "cairun --nproc: cannot open a socket: %s\n", std::strerror(errno));
        return -1;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        int saved = errno;
        ::close(fd);
        std::fprintf(stderr, "cairun --nproc: cannot find a free port on 127.0.0.1: %s\n", std::strerror(saved));
        return -1;
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

inline volatile sig_atomic_t launcher_signal = 0;
inline void on_launcher_signal(int sig) { launcher_signal = sig; }

inline std::string describe_exit(int status) {
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        const char* name = strsignal(sig);
        return "exited with signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
    }
    return "exited with status " + std::to_string(WEXITSTATUS(status));
}

// `cairun --nproc N ...`: runs this same command N times as ranks 0..N-1 of
// a job on loopback, as torchrun would. When a rank fails, the others are
// stopped and the launcher names every rank that failed by itself; its exit
// status is the first failed rank's.
inline int launch_ranks(int nproc, const std::vector<std::string>& args) {
    if (std::getenv("RANK") && std::getenv("WORLD_SIZE")) {
        std::fprintf(stderr, "cairun: --nproc: this process is already rank %s of a job (RANK is set); use either "
                     "--nproc or a launcher's environment, not both\n", std::getenv("RANK"));
        return 2;
    }
    const int port = free_port();
    if (port < 0) return 1;
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
        if (pid < 0) {
            std::fprintf(stderr, "cairun --nproc: fork failed: %s\n", std::strerror(errno));
            for (pid_t p : pids)
                if (p > 0) ::kill(p, SIGKILL);
            return 1;
        }
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
    // After the first failure the others get a short grace to exit by
    // themselves: a rank whose own exit closed its connections is often
    // reaped after the peer that failed on that closed connection, and it
    // must still be named with its own status. Then they are stopped (TERM,
    // and KILL after 5 s).
    constexpr auto grace = std::chrono::seconds(3);
    constexpr auto never = std::chrono::steady_clock::time_point::max();
    int running = nproc, rc = 0;
    bool failed = false, signalled = false;
    auto term_at = never, kill_at = never;
    auto signal_all = [&](int sig) {
        for (pid_t p : pids)
            if (p > 0) ::kill(p, sig);
        signalled = true;
    };
    while (running > 0) {
        const auto now = std::chrono::steady_clock::now();
        if (launcher_signal && !signalled) {
            signal_all(launcher_signal);
            if (!failed) rc = 128 + launcher_signal;
            failed = true;
            term_at = never;
            kill_at = now + std::chrono::seconds(10);
        }
        if (now > term_at) {
            signal_all(SIGTERM);
            term_at = never;
            kill_at = now + std::chrono::seconds(5);
        }
        if (now > kill_at) {
            signal_all(SIGKILL);
            kill_at = never;
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
            signalled && WIFSIGNALED(status) && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGKILL);
        if (stopped_here) continue;
        std::fprintf(stderr, "cairun: rank %d of %d %s%s\n", rank, nproc, describe_exit(status).c_str(),
                     failed ? "" : "; stopping the other ranks");
        if (failed) continue;
        rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        failed = true;
        term_at = now + grace;
    }
    return rc;
}

}  // namespace launch
}  // namespace cai

#include "train/interrupt.h"

#include <signal.h>

#include <mutex>

namespace cai {
namespace {

volatile sig_atomic_t interrupted = 0;
std::mutex guard;
int depth = 0;  // nested installs (a trainer inside a trainer's callback)
struct sigaction previous {};

extern "C" void on_sigint(int) { interrupted = 1; }

void arm() {
    struct sigaction action {};
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;  // the second Ctrl-C gets the default action
    sigaction(SIGINT, &action, depth == 0 ? &previous : nullptr);
}

}  // namespace

void install_interrupt_handler() {
    std::lock_guard<std::mutex> lock(guard);
    if (depth == 0) {
        interrupted = 0;
        arm();
    }
    ++depth;
}

void uninstall_interrupt_handler() {
    std::lock_guard<std::mutex> lock(guard);
    if (depth == 0) return;
    if (--depth == 0) sigaction(SIGINT, &previous, nullptr);
}

bool interrupt_requested() { return interrupted != 0; }

void clear_interrupt() {
    std::lock_guard<std::mutex> lock(guard);
    interrupted = 0;
    // SA_RESETHAND removed the handler on the first signal: put it back.
    if (depth > 0) {
        struct sigaction action {};
        action.sa_handler = on_sigint;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESETHAND;
        sigaction(SIGINT, &action, nullptr);
    }
}

void request_interrupt() { interrupted = 1; }

}  // namespace cai

#include "train/interrupt.h"

#include <signal.h>

#include <atomic>

namespace cai {
namespace {

volatile sig_atomic_t interrupted = 0;
std::atomic<bool> installed{false};

extern "C" void on_sigint(int) { interrupted = 1; }

}  // namespace

void install_interrupt_handler() {
    if (installed.exchange(true)) return;
    struct sigaction action {};
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;  // the second Ctrl-C gets the default action
    sigaction(SIGINT, &action, nullptr);
}

bool interrupt_requested() { return interrupted != 0; }

void clear_interrupt() {
    interrupted = 0;
    // SA_RESETHAND removed the handler on the first signal: put it back.
    if (installed.exchange(false)) install_interrupt_handler();
}

void request_interrupt() { interrupted = 1; }

}  // namespace cai

#include "train/interrupt.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <mutex>

#include "core/signals.h"

namespace cai {
namespace {

volatile sig_atomic_t interrupted = 0;
volatile sig_atomic_t stages = 0;      // stages running that poll the flag
volatile sig_atomic_t run_wide = 0;    // cairun installed the handler for the whole process
std::mutex guard;
int depth = 0;  // nested installs (a trainer inside a trainer's callback)
struct sigaction previous {};
std::string stopped_message;
bool stopped = false;

void say(const char* text) {
    ssize_t ignored = ::write(2, text, std::strlen(text));
    (void)ignored;
}

extern "C" void on_sigint(int) {
    if (interrupted || stages == 0) {
        // A second Ctrl-C, or nothing that could stop cleanly: exit now.
        // Files are written to temporary names and renamed, so none is half-written.
        say(interrupted ? "\ncairun: interrupted again; exiting now\n" : "\ncairun: interrupted; exiting\n");
        ::_exit(130);
    }
    interrupted = 1;
    say("\ncairun: Ctrl-C: saving and stopping after the current step (press it again to exit at once)\n");
}

// On an alternate stack (core/signals.h): the handler returns into compute kernels.
void arm(struct sigaction* save) { install_signal_handler(SIGINT, on_sigint, save); }

}  // namespace

void install_interrupt_handler() {
    std::lock_guard<std::mutex> lock(guard);
    if (depth == 0) {
        interrupted = 0;
        if (!run_wide) arm(&previous);
    }
    ++depth;
    stages = depth;
}

void uninstall_interrupt_handler() {
    std::lock_guard<std::mutex> lock(guard);
    if (depth == 0) return;
    --depth;
    stages = depth;
    if (depth == 0 && !run_wide) sigaction(SIGINT, &previous, nullptr);
}

bool interrupt_requested() { return interrupted != 0; }

void clear_interrupt() {
    std::lock_guard<std::mutex> lock(guard);
    interrupted = 0;
}

void request_interrupt() { interrupted = 1; }

void install_run_interrupt_handler() {
    std::lock_guard<std::mutex> lock(guard);
    if (run_wide) return;
    run_wide = 1;
    arm(nullptr);
}

void record_stop(const std::string& message) {
    std::lock_guard<std::mutex> lock(guard);
    stopped = true;
    stopped_message = message;
}

bool stop_recorded() {
    std::lock_guard<std::mutex> lock(guard);
    return stopped;
}

std::string stop_message() {
    std::lock_guard<std::mutex> lock(guard);
    return stopped_message;
}

}  // namespace cai

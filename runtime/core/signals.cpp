#include "core/signals.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace cai {
namespace {

// This thread's alternate signal stack, made once and never freed: a handler
// may run on it at any time after, process exit included (a thread_local
// buffer would be freed while sigaltstack still points at it).
void ensure_alternate_stack() {
    thread_local char* stack = nullptr;
    if (stack) return;
    stack_t current {};
    if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return;  // one is set already
    // A signal frame with AVX-512 state is several KiB; the handlers only set flags and write a line.
    const size_t size = std::max<size_t>(SIGSTKSZ, 64 * 1024);
    char* memory = new char[size];
    stack_t s {};
    s.ss_sp = memory;
    s.ss_size = size;
    s.ss_flags = 0;
    if (sigaltstack(&s, nullptr) != 0) {
        const int err = errno;
        delete[] memory;
        fail("cannot set an alternate signal stack: ", std::strerror(err));
    }
    stack = memory;
}

}  // namespace

void install_signal_handler(int sig, void (*handler)(int), struct sigaction* previous) {
    ensure_alternate_stack();
    struct sigaction action {};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_ONSTACK;
    if (sigaction(sig, &action, previous) != 0) fail("cannot install a handler for signal ", sig, ": ", std::strerror(errno));
}

}  // namespace cai

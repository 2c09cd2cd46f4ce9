// Signal handlers that return (Ctrl-C sets a flag, the server's stop) must
// not write their frame on the interrupted thread's stack: oneDNN's JIT-built
// sgemm keeps data below the stack pointer, past the red zone, and a signal
// frame written there corrupts the heap (reproduced on every run of a gemm
// loop hit by a signal). install_signal_handler runs the handler on an
// alternate stack of the calling thread (SA_ONSTACK); the kernel delivers a
// signal sent to the process to its main thread unless that thread blocks it,
// so handlers are installed from the main thread.
#pragma once

#include <signal.h>

namespace cai {

// sigaction(sig, handler) on this thread's alternate signal stack (made on first use);
// previous (may be null) receives the old action.
void install_signal_handler(int sig, void (*handler)(int), struct sigaction* previous);

}  // namespace cai

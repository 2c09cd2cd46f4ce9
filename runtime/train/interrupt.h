// Ctrl-C. A stage that can stop cleanly (a trainer, a generation stage)
// installs the handler while it runs: the first SIGINT sets a flag that the
// stage polls between steps (it saves its checkpoint and returns); a second
// SIGINT exits at once with status 130 (every file the runtime writes is
// complete or absent, so nothing is half-written).
//
// cairun installs the handler for the whole recipe (install_run_interrupt_handler):
// Ctrl-C while no such stage runs exits at once with status 130 too. When a
// stage has stopped, the recipe records the stop (record_stop) and raises;
// the host then prints the stop's message and exits with status 130, so no
// later stage runs on a partial result.
#pragma once

#include <string>

namespace cai {

void install_interrupt_handler();    // a stage starts; nested calls are counted (the flag is cleared at the first)
void uninstall_interrupt_handler();  // the last one restores the previous handler (unless run-wide)
bool interrupt_requested();
void clear_interrupt();              // after the stage has handled it
void request_interrupt();            // what the handler does (tests, embedding hosts)

// cairun: a handler for the whole process (Ctrl-C outside a stage exits 130).
void install_run_interrupt_handler();

// The recipe stopped after an interrupt: the message says what was saved and
// how to continue. The host exits with status 130 and prints it.
void record_stop(const std::string& message);
bool stop_recorded();
std::string stop_message();

}  // namespace cai

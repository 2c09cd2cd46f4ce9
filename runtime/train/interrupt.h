// Ctrl-C during training: the first SIGINT sets a flag that the training
// loop polls between steps (save a checkpoint, then exit cleanly); a second
// SIGINT is not caught, so it ends the process at once. The handler is
// installed only while a trainer runs; outside training Ctrl-C acts as usual.
#pragma once

namespace cai {

void install_interrupt_handler();    // clears the flag; nested calls are counted
void uninstall_interrupt_handler();  // the last one restores the previous handler
bool interrupt_requested();
void clear_interrupt();              // after the trainer has handled it; re-arms the handler
void request_interrupt();            // what the handler does (tests, embedding hosts)

}  // namespace cai

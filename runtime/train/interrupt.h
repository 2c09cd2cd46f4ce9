// Ctrl-C during training: the first SIGINT sets a flag that the training
// loop polls between steps (save a checkpoint, then exit cleanly); a second
// SIGINT is not caught, so it ends the process at once.
#pragma once

namespace cai {

void install_interrupt_handler();  // idempotent
bool interrupt_requested();
void clear_interrupt();            // e.g. after the trainer has handled it
void request_interrupt();          // what the handler does (tests, embedding hosts)

}  // namespace cai

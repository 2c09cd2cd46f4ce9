// Run directories: one run at a time (a lock naming its holder), the
// temporaries a killed process leaves, fingerprints of inputs, the command
// line and the peak memory a run records.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cai {

// Takes <dir>/.lock (flock, held until the process exits) and writes this
// process's pid into it. Another live run holding it is an error naming its
// pid; a lock left by a dead process is taken over (the kernel released it).
// Locking the same directory twice in one process is a no-op.
void lock_run_dir(const std::string& dir);

// Removes "<name>.tmp.<pid>" files and directories (and "<name>.old.<pid>",
// which a replace left behind: it is renamed back to <name> when <name> is
// missing) under dir, recursively when asked. With only_dead, those of a live
// process are kept; this process's own are always kept. Returns what it
// removed or restored, as "removed PATH" / "restored PATH".
std::vector<std::string> clean_temporaries(const std::string& dir, bool recursive, bool only_dead);

// A hex fingerprint of a file or of a directory's files (not recursive,
// hidden files and temporaries skipped): the bytes of files up to 64 MiB;
// of bigger ones (model weights) the size and 64 blocks spread over them.
std::string path_fingerprint(const std::string& path);

// 32 hex digits of a non-cryptographic 128-bit hash of text.
std::string hash_hex(const std::string& text);

// The process's peak resident memory in bytes (getrusage).
int64_t peak_rss_bytes();

// The command line as the user typed it (cairun sets it; empty otherwise).
void set_command_line(const std::vector<std::string>& argv);
const std::vector<std::string>& command_line();

}  // namespace cai

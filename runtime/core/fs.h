// Small file helpers. Everything the runtime writes goes through
// write_file_atomic: the file is complete under its name or absent.
#pragma once

#include <string>

namespace cai {

std::string read_file(const std::string& path);  // throws naming the path
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
void make_directories(const std::string& path);  // mkdir -p
std::string path_join(const std::string& a, const std::string& b);
std::string path_dirname(const std::string& path);

// Writes all of content to fd (retrying short writes); false, with errno
// set, when a write fails.
bool write_all(int fd, const std::string& content);

// Writes to "<path>.tmp.<pid>", flushes, fsyncs, then renames over path
// (the temporary is removed when any step fails). An existing device or pipe
// (/dev/null, a FIFO) is written in place instead; an empty path or a
// directory is an error.
void write_file_atomic(const std::string& path, const std::string& content);

// Renames a finished temporary file or directory into place.
void rename_into_place(const std::string& from, const std::string& to);

// Appends one line (a '\n' is added) to a log file that several processes
// share: under an exclusive flock, in one write with O_APPEND, then fsync.
// A torn last line (a writer that died mid-write) is cut off first, so
// the file is always whole lines. The directory must exist.
void append_line_locked(const std::string& path, const std::string& line);

// The whole file read under a shared flock (no append is half seen), or
// "" when it does not exist.
std::string read_file_locked(const std::string& path);

}  // namespace cai

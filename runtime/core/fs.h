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

// Writes to "<path>.tmp.<pid>", flushes, fsyncs, then renames over path.
void write_file_atomic(const std::string& path, const std::string& content);

// Renames a finished temporary file or directory into place.
void rename_into_place(const std::string& from, const std::string& to);

}  // namespace cai

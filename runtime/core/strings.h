// Small string helpers every layer uses.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>

namespace cai {

inline bool starts_with(const std::string& s, const std::string& prefix) {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// "[2, 3, 4]" for a shape (a std::vector<int64_t>, an at::IntArrayRef, ...), as errors print it.
template <class Shape>
std::string shape_string(const Shape& shape) {
    std::string s = "[";
    for (const auto& d : shape) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
    return s + "]";
}
// "6.0 KiB", "12.5 MiB", "3.1 GiB": a byte count for messages.
inline std::string format_bytes(double bytes) {
    char text[32];
    if (bytes < 1024.0 * 1024.0) std::snprintf(text, sizeof text, "%.1f KiB", bytes / 1024.0);
    else if (bytes < 1024.0 * 1024.0 * 1024.0) std::snprintf(text, sizeof text, "%.1f MiB", bytes / (1024.0 * 1024.0));
    else std::snprintf(text, sizeof text, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    return text;
}

inline std::string shape_string(std::initializer_list<int64_t> shape) {
    return shape_string<std::initializer_list<int64_t>>(shape);
}

}  // namespace cai

// Small string helpers every layer uses.
#pragma once

#include <cstdint>
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
inline std::string shape_string(std::initializer_list<int64_t> shape) {
    return shape_string<std::initializer_list<int64_t>>(shape);
}

}  // namespace cai

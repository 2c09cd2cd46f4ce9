// Levelled logging to stderr. The level comes from CAI_LOG (debug, info,
// warn, error) or set_log_level; recipes reach it through cai.log.
#pragma once

#include <sstream>
#include <string>

namespace cai {

enum class log_level { debug = 0, info = 1, warn = 2, error = 3 };

void set_log_level(log_level level);
log_level current_log_level();
bool parse_log_level(const std::string& name, log_level* out);
void log_message(log_level level, const std::string& message);

template <class... Parts>
void log_at(log_level level, const Parts&... parts) {
    if (level < current_log_level()) return;
    std::ostringstream message;
    (message << ... << parts);
    log_message(level, message.str());
}

template <class... Parts> void log_debug(const Parts&... p) { log_at(log_level::debug, p...); }
template <class... Parts> void log_info(const Parts&... p) { log_at(log_level::info, p...); }
template <class... Parts> void log_warn(const Parts&... p) { log_at(log_level::warn, p...); }
template <class... Parts> void log_error(const Parts&... p) { log_at(log_level::error, p...); }

}  // namespace cai

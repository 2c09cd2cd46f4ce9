#include "core/log.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>
#include <unistd.h>

namespace cai {
namespace {

log_level level_from_environment() {
    log_level level = log_level::info;
    if (const char* env = std::getenv("CAI_LOG")) parse_log_level(env, &level);
    return level;
}

log_level& level_slot() {
    static log_level level = level_from_environment();
    return level;
}

std::mutex& log_mutex() {
    static std::mutex m;
    return m;
}

}  // namespace

void set_log_level(log_level level) { level_slot() = level; }
log_level current_log_level() { return level_slot(); }

bool parse_log_level(const std::string& name, log_level* out) {
    if (name == "debug") *out = log_level::debug;
    else if (name == "info") *out = log_level::info;
    else if (name == "warn" || name == "warning") *out = log_level::warn;
    else if (name == "error") *out = log_level::error;
    else return false;
    return true;
}

namespace {

// False on ranks other than 0 of a data-parallel job unless CAI_LOG_RANKS=all:
// their info and warnings are not printed (errors always are).
bool log_this_rank() {
    // In a job of several ranks only rank 0 speaks (below errors), as one
    // process would; CAI_LOG_RANKS=all asks every rank to, each line tagged.
    static const bool speaks = [] {
        const char* rank = std::getenv("RANK");
        const char* ranks = std::getenv("CAI_LOG_RANKS");
        return !rank || std::string(rank) == "0" || (ranks && std::string(ranks) == "all");
    }();
    return speaks;
}

}  // namespace

void log_message(log_level level, const std::string& message) {
    if (level < log_level::error && !log_this_rank()) return;
    static const char* names[] = {"debug", "info", "warn", "error"};
    static const char* colors[] = {"\033[2m", "\033[36m", "\033[33m", "\033[31m"};
    std::time_t now = std::time(nullptr);
    char stamp[16];
    std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&now));
    bool tty = ::isatty(2);
    const char* rank = std::getenv("RANK");
    const char* ranks = std::getenv("CAI_LOG_RANKS");
    const bool all = ranks && std::string(ranks) == "all";
    const std::string tag =
        rank && std::getenv("WORLD_SIZE") && (all || std::string(rank) != "0") ? std::string("[rank ") + rank + "] " : "";
    std::lock_guard<std::mutex> lock(log_mutex());
    int i = static_cast<int>(level);
    if (tty)
        std::fprintf(stderr, "\r\033[K%s%s %-5s\033[0m %s%s\n", colors[i], stamp, names[i], tag.c_str(),
                     message.c_str());
    else
        std::fprintf(stderr, "%s %-5s %s%s\n", stamp, names[i], tag.c_str(), message.c_str());
    std::fflush(stderr);
}

}  // namespace cai

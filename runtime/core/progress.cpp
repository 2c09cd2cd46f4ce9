#include "core/progress.h"

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include "core/log.h"

namespace cai {

progress::progress(std::string label, long total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total) {
    const char* force = std::getenv("CAI_PROGRESS");
    tty_ = force ? std::string(force) == "1" : ::isatty(2) != 0;
    // Not on a terminal: a plain log line at every tenth of the way instead of a bar.
    lines_ = !tty_ && !(force && std::string(force) == "0");
    start_ = last_draw_ = std::chrono::steady_clock::now();
}

progress::~progress() { finish(); }

double progress::elapsed_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string progress::format_duration(double seconds) {
    if (seconds < 0 || seconds != seconds || seconds > 1e7) return "?";
    long s = static_cast<long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

void progress::update(long done, const std::string& extra) {
    done_ = done;
    if (!extra.empty()) extra_ = extra;
    auto now = std::chrono::steady_clock::now();
    if (tty_ && (now - last_draw_ > std::chrono::milliseconds(100) || done_ >= total_)) {
        last_draw_ = now;
        draw(false);
    }
    if (lines_ && total_ > 0 && done_ < total_) {
        const long tenth = done_ * 10 / total_;
        if (tenth > last_tenth_) {
            last_tenth_ = tenth;
            write_line(false);
        }
    }
}

void progress::write_line(bool final_line) {
    const double elapsed = elapsed_seconds();
    const double rate = elapsed > 0 ? done_ / elapsed : 0;
    std::string text = label_ + " " + std::to_string(done_) + "/" + std::to_string(total_) + " " + unit_ + " (" +
                       format_duration(elapsed);
    if (final_line) text += ", done";
    else if (rate > 0) text += ", ETA " + format_duration((total_ - done_) / rate);
    text += ")";
    if (!extra_.empty()) text += " " + extra_;
    log_info(text);
}

void progress::advance(long n, const std::string& extra) { update(done_ + n, extra); }

void progress::finish() {
    if (finished_) return;
    finished_ = true;
    if (tty_) draw(true);
    if (lines_ && done_ > 0) write_line(true);
}

void progress::draw(bool final_line) {
    double elapsed = elapsed_seconds();
    double rate = elapsed > 0 ? done_ / elapsed : 0;
    const int width = 24;
    int filled = total_ > 0 ? static_cast<int>(width * std::min<double>(1.0, double(done_) / total_)) : 0;
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::string eta = rate > 0 && total_ > done_ ? format_duration((total_ - done_) / rate) : format_duration(0);
    std::fprintf(stderr, "\r\033[K%s [%s] %ld/%ld %.2f %s/s %s %s %s%s", label_.c_str(), bar.c_str(), done_,
                 total_, rate, unit_.c_str(), format_duration(elapsed).c_str(),
                 final_line ? "done" : ("ETA " + eta).c_str(), extra_.c_str(), final_line ? "\n" : "");
    std::fflush(stderr);
}

}  // namespace cai

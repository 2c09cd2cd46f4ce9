// A progress bar with rate and ETA on a terminal. When stderr is not a TTY
// (nohup, Slurm, CI) it writes a plain info line at every tenth of the way
// and at the end instead ("generate: critiques 40/100 prompts (0:12, ETA 0:18)");
// CAI_PROGRESS=0 silences it, CAI_PROGRESS=1 forces the bar. Updated per
// batch, never per token.
#pragma once

#include <chrono>
#include <string>

namespace cai {

class progress {
public:
    progress(std::string label, long total, std::string unit = "it");
    ~progress();
    void update(long done, const std::string& extra = "");  // absolute position
    void advance(long n = 1, const std::string& extra = "");
    void finish();
    long done() const { return done_; }
    double elapsed_seconds() const;

    // "3.2 it/s", "ETA 1:02" formatting, exposed for tests.
    static std::string format_duration(double seconds);

private:
    void draw(bool final_line);
    void write_line(bool final_line);

    std::string label_, unit_, extra_;
    long total_ = 0, done_ = 0;
    bool tty_ = false, lines_ = false, finished_ = false;
    long last_tenth_ = 0;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace cai

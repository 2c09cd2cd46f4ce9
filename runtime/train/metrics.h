// metrics.jsonl: one JSON object per log step, {"step": N, "loss": ..., ...},
// appended with a single write() on an O_APPEND file so a line is never torn
// by a crash or a concurrent reader. Non-finite values are written as null.
// In a data-parallel run only rank 0 writes (append and truncate_after are
// no-ops on the other ranks).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cai {

class tensorboard_writer;

class metrics_log {
public:
    explicit metrics_log(std::string path);  // creates parent directories; the file on first append
    ~metrics_log();

    // Also writes each line as TensorBoard scalars into dir (report_to =
    // "tensorboard"); the event file is rebuilt from metrics.jsonl at the
    // first line after this call or after truncate_after, so both agree.
    void report_to_tensorboard(const std::string& dir);

    // {"step": step, key: value, ...} in the given order; returns that line
    // (JSON text, no newline), on every rank.
    std::string append(int64_t step, const std::vector<std::pair<std::string, double>>& values);
    // On resume from a checkpoint at `step`: drops lines logged after it
    // (rewrites the file atomically), so the log reads as if never stopped.
    void truncate_after(int64_t step);
    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::unique_ptr<tensorboard_writer> tensorboard_;
};

// Complete lines appended to a log since byte `offset`, which moves past
// them; only the new part is read, so a long run never re-reads its log.
std::vector<std::string> read_new_lines(const std::string& path, uint64_t& offset);

// A metric as the progress bar shows it ("%.4g").
std::string format_metric(double v);

}  // namespace cai

#include "train/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "dist/dist.h"
#include "train/tensorboard.h"

namespace cai {

metrics_log::metrics_log(std::string path) : path_(std::move(path)) {
    const std::string dir = path_dirname(path_);
    if (!dir.empty()) make_directories(dir);
}

metrics_log::~metrics_log() = default;

void metrics_log::report_to_tensorboard(const std::string& dir) {
    tensorboard_ = std::make_unique<tensorboard_writer>(dir);
}

std::string metrics_log::append(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
    nlohmann::ordered_json line;
    line["step"] = step;
    for (const auto& kv : values) {
        if (kv.first == "step") fail(path_, ": metric name \"step\" is reserved");
        if (std::isfinite(kv.second))
            line[kv.first] = kv.second;
        else
            line[kv.first] = nullptr;
    }
    std::string text = line.dump();
    if (!dist::is_main()) return text;  // in a data-parallel run rank 0 writes the log
    if (tensorboard_ && !tensorboard_->is_open()) tensorboard_->open(path_);
    text += "\n";
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) fail(path_, ": cannot open for appending: ", std::strerror(errno));
    ssize_t written = ::write(fd, text.data(), text.size());
    int saved = errno;
    ::close(fd);
    if (written != (ssize_t)text.size())
        fail(path_, ": cannot append a metrics line: ", written < 0 ? std::strerror(saved) : "short write");
    if (tensorboard_) tensorboard_->append(step, values);
    text.pop_back();
    return text;
}

void metrics_log::truncate_after(int64_t step) {
    if (tensorboard_) tensorboard_ = std::make_unique<tensorboard_writer>(path_dirname(tensorboard_->path()));
    if (!dist::is_main() || !file_exists(path_)) return;
    std::istringstream in(read_file(path_));
    std::string kept, line;
    int64_t line_number = 0;
    while (std::getline(in, line)) {
        ++line_number;
        if (line.empty()) continue;
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const std::exception&) {
            // A torn last line from a crash (only possible if something else wrote it): drop it.
            continue;
        }
        if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
            fail(path_, ":", line_number, ": each line must be an object with an integer \"step\"");
        if (j["step"].get<int64_t>() <= step) kept += line + "\n";
    }
    write_file_atomic(path_, kept);
}

std::vector<std::string> read_new_lines(const std::string& path, uint64_t& offset) {
    std::vector<std::string> lines;
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    if (ec || size <= offset) return lines;
    std::ifstream in(path, std::ios::binary);
    in.seekg((std::streamoff)offset);
    std::string line;
    while (std::getline(in, line)) {
        if (in.eof()) break;  // a line without its newline is not complete yet
        offset += line.size() + 1;
        lines.push_back(line);
    }
    return lines;
}

std::string format_metric(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf;
}

}  // namespace cai

#include "train/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/strings.h"

namespace cai {
namespace {

const uint32_t* crc32c_table() {
    static uint32_t table[256];
    static const bool ready = [] {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        return true;
    }();
    (void)ready;
    return table;
}

void put_fixed(std::string& out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7F) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

// A length-delimited field (wire type 2).
void put_bytes(std::string& out, int field, const std::string& bytes) {
    put_varint(out, (uint64_t)field << 3 | 2);
    put_varint(out, bytes.size());
    out += bytes;
}

void put_double(std::string& out, int field, double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    put_varint(out, (uint64_t)field << 3 | 1);
    put_fixed(out, bits, 8);
}

void put_float(std::string& out, int field, float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    put_varint(out, (uint64_t)field << 3 | 5);
    put_fixed(out, bits, 4);
}

double now_seconds() {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

void append_all(const std::string& path, const std::string& bytes) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) fail(path, ": cannot open for appending: ", std::strerror(errno));
    ssize_t written = ::write(fd, bytes.data(), bytes.size());
    int saved = errno;
    ::close(fd);
    if (written != (ssize_t)bytes.size())
        fail(path, ": cannot append a TensorBoard event: ", written < 0 ? std::strerror(saved) : "short write");
}

}  // namespace

uint32_t crc32c(const std::string& data) {
    const uint32_t* table = crc32c_table();
    uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : data) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const std::string& data) {
    const uint32_t c = crc32c(data);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(const std::string& data) {
    std::string length;
    put_fixed(length, data.size(), 8);
    std::string out = length;
    put_fixed(out, masked_crc32c(length), 4);
    out += data;
    put_fixed(out, masked_crc32c(data), 4);
    return out;
}

std::string event_file_version(double wall_time) {
    std::string event;
    put_double(event, 1, wall_time);
    put_bytes(event, 3, "brain.Event:2");
    return event;
}

std::string event_scalars(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& values) {
    std::string summary;
    for (const auto& [tag, v] : values) {
        std::string value;
        put_bytes(value, 1, tag);
        put_float(value, 2, v);
        put_bytes(summary, 1, value);
    }
    std::string event;
    put_double(event, 1, wall_time);
    put_varint(event, 2 << 3 | 0);
    put_varint(event, static_cast<uint64_t>(step));
    put_bytes(event, 5, summary);
    return event;
}

std::string tensorboard_tag(const std::string& metric) {
    if (starts_with(metric, "eval_")) return "eval/" + metric.substr(5);
    return "train/" + metric;
}

tensorboard_writer::tensorboard_writer(std::string dir)
    : dir_(std::move(dir)), path_(path_join(dir_, "events.out.tfevents.cairun")) {}

void tensorboard_writer::open(const std::string& metrics_jsonl) {
    make_directories(dir_);
    const double now = now_seconds();
    std::string content = tfrecord(event_file_version(now));
    if (file_exists(metrics_jsonl)) {
        std::istringstream in(read_file(metrics_jsonl));
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty()) continue;
            nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
            if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
            std::vector<std::pair<std::string, float>> values;
            for (auto it = j.begin(); it != j.end(); ++it)
                if (it.key() != "step" && it.value().is_number())
                    values.emplace_back(tensorboard_tag(it.key()), it.value().get<float>());
            content += tfrecord(event_scalars(now, j["step"].get<int64_t>(), values));
        }
    }
    write_file_atomic(path_, content);
    open_ = true;
}

void tensorboard_writer::append(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
    std::vector<std::pair<std::string, float>> scalars;
    for (const auto& [name, v] : values)
        if (std::isfinite(v)) scalars.emplace_back(tensorboard_tag(name), static_cast<float>(v));
    append_all(path_, tfrecord(event_scalars(now_seconds(), step, scalars)));
}

}  // namespace cai

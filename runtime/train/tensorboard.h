// TensorBoard event files (report_to = "tensorboard"): the metrics lines of
// metrics.jsonl, also written as scalar summaries that TensorBoard reads.
//
// The file is a TFRecord stream: each record is
//   uint64 length (little-endian), uint32 masked_crc32c(length bytes),
//   length bytes of data, uint32 masked_crc32c(data)
// with masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xa282ead8, c = CRC-32C.
// Each record's data is an Event protobuf: wall_time (1, double), step (2,
// int64), and either file_version (3, "brain.Event:2", the first record) or
// summary (5): repeated Value (1) { tag (1, string), simple_value (2, float) }.
// Tags follow transformers' TensorBoard callback: "train/loss", and
// "eval/loss" for a metric logged as "eval_loss".
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cai {

// CRC-32C (Castagnoli) of data, and TFRecord's masked form of it.
uint32_t crc32c(const std::string& data);
uint32_t masked_crc32c(const std::string& data);

// One TFRecord record around data.
std::string tfrecord(const std::string& data);

// Serialized Event messages.
std::string event_file_version(double wall_time);
std::string event_scalars(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& values);

// The TensorBoard tag of a metrics.jsonl key ("loss" -> "train/loss", "eval_loss" -> "eval/loss").
std::string tensorboard_tag(const std::string& metric);

// Writes dir/events.out.tfevents.cairun. open() rewrites the file (temp
// name, then rename) from the lines already in metrics.jsonl, so it always
// holds the same steps as metrics.jsonl (after a resume, too); append()
// then adds one record per metrics line with a single write().
class tensorboard_writer {
public:
    explicit tensorboard_writer(std::string dir);
    void open(const std::string& metrics_jsonl);
    void append(int64_t step, const std::vector<std::pair<std::string, double>>& values);
    bool is_open() const { return open_; }
    const std::string& path() const { return path_; }

private:
    std::string dir_, path_;
    bool open_ = false;
};

}  // namespace cai

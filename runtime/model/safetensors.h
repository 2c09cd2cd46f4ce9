// The safetensors format (Hugging Face): an 8-byte little-endian header
// length, a JSON header {"name": {"dtype", "shape", "data_offsets"}, ...,
// "__metadata__": {...}}, then the raw little-endian tensor bytes.
//
// safetensors_file maps a file read-only and checks every entry against the
// file before anything is read: a truncated or inconsistent file is an error
// naming the file and the tensor. save_safetensors writes one atomically.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cai {

struct safetensors_entry {
    std::string name;
    std::string dtype;          // "F32", "BF16", "F16", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

class safetensors_file {
public:
    explicit safetensors_file(const std::string& path);
    ~safetensors_file();
    safetensors_file(const safetensors_file&) = delete;
    safetensors_file& operator=(const safetensors_file&) = delete;

    const std::string& path() const { return path_; }
    std::vector<std::string> names() const;  // sorted
    bool has(const std::string& name) const { return entries_.count(name) != 0; }
    const safetensors_entry& entry(const std::string& name) const;  // throws naming the tensor
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    // A fresh tensor (owning its memory) with the entry's values converted to `as`.
    at::Tensor load(const std::string& name, at::ScalarType as) const;
    // The same, in the stored dtype.
    at::Tensor load(const std::string& name) const;

private:
    std::string path_;
    int fd_ = -1;
    const uint8_t* map_ = nullptr;
    size_t size_ = 0;
    size_t data_start_ = 0;
    std::map<std::string, safetensors_entry> entries_;
    std::map<std::string, std::string> metadata_;
};

// Writes tensors (any CPU dtype safetensors knows) in the given order.
// Names must be unique; the file is complete under `path` or absent.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// "F32" <-> at::kFloat, ...; unknown names/types throw.
at::ScalarType safetensors_dtype_to_scalar(const std::string& dtype);
std::string scalar_to_safetensors_dtype(at::ScalarType type);

// model.safetensors.index.json: its "weight_map" {tensor name: shard file
// name}, each shard a plain file name in the index's directory (checked).
std::map<std::string, std::string> read_shard_index(const std::string& index_path);

}  // namespace cai

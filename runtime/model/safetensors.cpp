#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"

namespace cai {
namespace {

struct dtype_info {
    const char* name;
    at::ScalarType type;
    size_t size;
};

const dtype_info dtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},  {"BF16", at::kBFloat16, 2},
    {"I64", at::kLong, 8},   {"I32", at::kInt, 4},   {"I16", at::kShort, 2}, {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},    {"BOOL", at::kBool, 1},
};

const dtype_info* find_dtype(const std::string& name) {
    for (const auto& d : dtypes)
        if (name == d.name) return &d;
    return nullptr;
}

// Header values are non-negative integers; anything else is an error naming the tensor.
uint64_t header_uint(const nlohmann::json& v, const std::string& path, const std::string& name, const char* field) {
    if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0))
        fail(path, ": tensor \"", name, "\": ", field, " must hold non-negative integers, got ", v.dump());
    return v.get<uint64_t>();
}

}  // namespace

at::ScalarType safetensors_dtype_to_scalar(const std::string& dtype) {
    const dtype_info* d = find_dtype(dtype);
    if (!d) fail("safetensors: unsupported dtype \"", dtype, "\"");
    return d->type;
}

std::string scalar_to_safetensors_dtype(at::ScalarType type) {
    for (const auto& d : dtypes)
        if (d.type == type) return d.name;
    fail("safetensors: cannot store tensors of type ", c10::toString(type));
}

safetensors_file::safetensors_file(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail(path, ": cannot open: ", std::strerror(errno));
    struct stat st;
    if (::fstat(fd_, &st) != 0) {
        ::close(fd_);
        fail(path, ": cannot stat: ", std::strerror(errno));
    }
    size_ = static_cast<size_t>(st.st_size);
    try {
        if (size_ < 8) fail(path, ": not a safetensors file: ", size_, " bytes, the 8-byte header length is missing");
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
        if (p == MAP_FAILED) fail(path, ": cannot map: ", std::strerror(errno));
        map_ = static_cast<const uint8_t*>(p);

        uint64_t header_len = 0;
        for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | map_[i];
        if (header_len > size_ - 8)
            fail(path, ": truncated or not a safetensors file: header length ", header_len, " exceeds the file (",
                 size_, " bytes)");
        data_start_ = 8 + static_cast<size_t>(header_len);
        const uint64_t data_size = size_ - data_start_;

        // The header is JSON (nested no deeper than json_max_depth, each tensor named once); the
        // format pads it with spaces.
        const std::string header_text(reinterpret_cast<const char*>(map_ + 8), static_cast<size_t>(header_len));
        nlohmann::json header = parse_json(header_text, path + ": the safetensors header", true);
        if (!header.is_object()) fail(path, ": the safetensors header must be a JSON object");

        for (auto it = header.begin(); it != header.end(); ++it) {
            const std::string& name = it.key();
            const nlohmann::json& v = it.value();
            if (name == "__metadata__") {
                if (!v.is_object()) fail(path, ": \"__metadata__\" must be an object of strings");
                for (auto m = v.begin(); m != v.end(); ++m) {
                    if (!m.value().is_string()) fail(path, ": __metadata__ field \"", m.key(), "\" must be a string");
                    metadata_[m.key()] = m.value().get<std::string>();
                }
                continue;
            }
            if (!v.is_object()) fail(path, ": tensor \"", name, "\": entry must be an object");
            safetensors_entry e;
            e.name = name;
            if (!v.contains("dtype") || !v["dtype"].is_string())
                fail(path, ": tensor \"", name, "\": field \"dtype\" must be a string");
            e.dtype = v["dtype"].get<std::string>();
            const dtype_info* d = find_dtype(e.dtype);
            if (!d) fail(path, ": tensor \"", name, "\": unsupported dtype \"", e.dtype, "\"");
            if (!v.contains("shape") || !v["shape"].is_array())
                fail(path, ": tensor \"", name, "\": field \"shape\" must be a list of integers");
            uint64_t numel = 1;
            for (const auto& dim : v["shape"]) {
                uint64_t n = header_uint(dim, path, name, "shape");
                if (n != 0 && numel > UINT64_MAX / n) fail(path, ": tensor \"", name, "\": shape is too large");
                numel *= n;
                e.shape.push_back(static_cast<int64_t>(n));
            }
            const auto& offsets = v.contains("data_offsets") ? v["data_offsets"] : nlohmann::json();
            if (!offsets.is_array() || offsets.size() != 2)
                fail(path, ": tensor \"", name, "\": field \"data_offsets\" must be [begin, end]");
            e.begin = header_uint(offsets[0], path, name, "data_offsets");
            e.end = header_uint(offsets[1], path, name, "data_offsets");
            if (e.end < e.begin)
                fail(path, ": tensor \"", name, "\": data_offsets [", e.begin, ", ", e.end, "] end before they begin");
            if (e.end > data_size)
                fail(path, ": tensor \"", name, "\": data_offsets [", e.begin, ", ", e.end,
                     "] run past the end of the file (data section holds ", data_size,
                     " bytes); the file is truncated or corrupt");
            if (numel > UINT64_MAX / d->size || e.end - e.begin != numel * d->size)
                fail(path, ": tensor \"", name, "\": ", e.end - e.begin, " bytes of data but shape and dtype ", e.dtype,
                     " need ", numel * d->size);
            entries_[name] = std::move(e);
        }

        // The tensors cover the data section exactly, one after another, as the
        // format requires (the reference reader refuses anything else): no two
        // share bytes, and no byte is left over (a header length that is off by
        // a few bytes would otherwise shift every tensor silently).
        std::vector<const safetensors_entry*> sorted;
        for (const auto& kv : entries_)
            if (kv.second.end > kv.second.begin) sorted.push_back(&kv.second);
        std::sort(sorted.begin(), sorted.end(),
                  [](const safetensors_entry* a, const safetensors_entry* b) { return a->begin < b->begin; });
        uint64_t covered = 0;
        for (size_t i = 0; i < sorted.size(); ++i) {
            if (i > 0 && sorted[i]->begin < sorted[i - 1]->end)
                fail(path, ": tensors \"", sorted[i - 1]->name, "\" and \"", sorted[i]->name, "\" overlap in the file");
            if (sorted[i]->begin > covered)
                fail(path, ": bytes [", covered, ", ", sorted[i]->begin, ") of the data section belong to no tensor ",
                     "(before \"", sorted[i]->name, "\"); the header or its length is corrupt");
            covered = sorted[i]->end;
        }
        if (covered != data_size)
            fail(path, ": the tensors cover ", covered, " bytes but the data section holds ", data_size,
                 "; the header length or the file is corrupt");
    } catch (...) {
        if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
        ::close(fd_);
        map_ = nullptr;
        fd_ = -1;
        throw;
    }
}

safetensors_file::~safetensors_file() {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
    if (fd_ >= 0) ::close(fd_);
}

std::vector<std::string> safetensors_file::names() const {
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
}

const safetensors_entry& safetensors_file::entry(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) fail(path_, ": no tensor named \"", name, "\"");
    return it->second;
}

at::Tensor safetensors_file::load(const std::string& name) const {
    const safetensors_entry& e = entry(name);
    at::Tensor out = at::empty(e.shape, at::TensorOptions().dtype(safetensors_dtype_to_scalar(e.dtype)));
    // Copied, never aliased: offsets need not be aligned and the map closes with this object.
    std::memcpy(out.data_ptr(), map_ + data_start_ + e.begin, e.end - e.begin);
    return out;
}

at::Tensor safetensors_file::load(const std::string& name, at::ScalarType as) const {
    at::Tensor raw = load(name);
    return raw.scalar_type() == as ? raw : raw.to(as);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json meta = nlohmann::ordered_json::object();
        for (const auto& kv : metadata) meta[kv.first] = kv.second;
        header["__metadata__"] = meta;
    }
    std::vector<at::Tensor> contiguous;
    uint64_t offset = 0;
    for (const auto& [name, tensor] : tensors) {
        if (name == "__metadata__" || name.empty()) fail(path, ": invalid tensor name \"", name, "\"");
        if (header.contains(name)) fail(path, ": tensor \"", name, "\" appears twice");
        if (!tensor.defined()) fail(path, ": tensor \"", name, "\" is undefined");
        at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
        uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
        header[name] = {{"dtype", scalar_to_safetensors_dtype(t.scalar_type())},
                        {"shape", t.sizes().vec()},
                        {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
        contiguous.push_back(t);
    }
    std::string json = header.dump();
    while ((8 + json.size()) % 8 != 0) json.push_back(' ');  // align the data section to 8 bytes
    std::string out;
    out.reserve(8 + json.size() + offset);
    uint64_t n = json.size();
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    out += json;
    for (const auto& t : contiguous)
        out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
    write_file_atomic(path, out);
}

std::map<std::string, std::string> read_shard_index(const std::string& index_path) {
    nlohmann::json j = parse_json(read_file(index_path), index_path);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        fail(index_path, ": field \"weight_map\" must be an object {tensor: file}");
    std::map<std::string, std::string> weight_map;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string()) fail(index_path, ": weight_map[\"", it.key(), "\"] must be a file name");
        std::string shard = it.value().get<std::string>();
        if (shard.empty() || shard.find('/') != std::string::npos || shard == "..")
            fail(index_path, ": weight_map[\"", it.key(), "\"] names \"", shard, "\", not a file in the directory");
        weight_map[it.key()] = shard;
    }
    return weight_map;
}

}  // namespace cai

#include "train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/error.h"
#include "core/fs.h"
#include "model/safetensors.h"

namespace cai {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// step-N directories under out/checkpoints, (step, path), unordered.
std::vector<std::pair<int64_t, std::string>> complete_checkpoints(const std::string& out_dir) {
    std::vector<std::pair<int64_t, std::string>> found;
    const std::string root = path_join(out_dir, "checkpoints");
    if (!is_directory(root)) return found;
    static const std::regex step_name("step-([0-9]+)");
    for (const auto& entry : fs::directory_iterator(root)) {
        std::smatch m;
        const std::string name = entry.path().filename().string();
        if (!entry.is_directory() || !std::regex_match(name, m, step_name)) continue;
        if (!file_exists(path_join(entry.path().string(), "trainer_state.json"))) continue;
        found.emplace_back(std::stoll(m[1].str()), entry.path().string());
    }
    return found;
}

std::map<std::string, at::Tensor> load_all(const std::string& path) {
    safetensors_file file(path);
    std::map<std::string, at::Tensor> out;
    for (const auto& name : file.names()) out[name] = file.load(name);
    return out;
}

named_tensors in_saved_order(const std::string& path) {
    // safetensors_file lists names sorted; the order is irrelevant to callers, which look tensors up by name.
    named_tensors out;
    for (auto& kv : load_all(path)) out.emplace_back(kv.first, kv.second);
    return out;
}

named_tensors cpu_contiguous(const named_tensors& tensors) {
    named_tensors out;
    for (const auto& kv : tensors) out.emplace_back(kv.first, kv.second.detach().to(at::kCPU).contiguous());
    return out;
}

}  // namespace

std::string checkpoint_dir(const std::string& out_dir, int64_t step) {
    return path_join(path_join(out_dir, "checkpoints"), "step-" + std::to_string(step));
}

std::string save_checkpoint(const std::string& out_dir, const checkpoint_state& state) {
    if (state.step < 0) fail("save_checkpoint: step must be >= 0, got ", state.step);
    json metadata;
    try {
        metadata = json::parse(state.metadata);
    } catch (const std::exception& e) {
        fail("save_checkpoint: metadata is not valid JSON: ", e.what());
    }
    if (!metadata.is_object()) fail("save_checkpoint: metadata must be a JSON object");

    const std::string final_dir = checkpoint_dir(out_dir, state.step);
    const std::string tmp_dir = final_dir + ".tmp." + std::to_string(::getpid());
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
    make_directories(tmp_dir);
    // A write that fails (a full disk, a file-size limit) leaves no step-N.tmp directory behind.
    struct remove_unless_kept {
        const std::string& dir;
        bool keep = false;
        ~remove_unless_kept() { std::error_code e; if (!keep) fs::remove_all(dir, e); }
    } cleanup{tmp_dir};

    save_safetensors(path_join(tmp_dir, "tensors.safetensors"), cpu_contiguous(state.tensors));
    save_safetensors(path_join(tmp_dir, "optimizer.safetensors"), cpu_contiguous(state.optimizer));
    if (state.torch_rng.defined())
        save_safetensors(path_join(tmp_dir, "rng.safetensors"), {{"torch_cpu", state.torch_rng.contiguous()}});
    for (const auto& f : state.files) {
        if (f.first.empty() || f.first.find('/') != std::string::npos || f.first[0] == '.')
            fail("save_checkpoint: extra file name \"", f.first, "\" must be a plain file name");
        write_file_atomic(path_join(tmp_dir, f.first), f.second);
    }
    json trainer_state;
    trainer_state["format"] = 1;
    trainer_state["step"] = state.step;
    trainer_state["seed"] = state.seed;
    trainer_state["data"] = {{"epoch", state.data.epoch}, {"batch", state.data.batch}};
    trainer_state["metadata"] = metadata;
    // Written last: its presence marks a complete directory.
    write_file_atomic(path_join(tmp_dir, "trainer_state.json"), trainer_state.dump(2) + "\n");

    if (fs::exists(final_dir)) {
        const std::string old_dir = final_dir + ".old." + std::to_string(::getpid());
        fs::remove_all(old_dir, ec);
        rename_into_place(final_dir, old_dir);
        try {
            rename_into_place(tmp_dir, final_dir);
        } catch (...) {
            // The earlier checkpoint goes back under its name: a failed save never leaves none.
            std::error_code back;
            fs::rename(old_dir, final_dir, back);
            throw;
        }
        fs::remove_all(old_dir, ec);
    } else {
        rename_into_place(tmp_dir, final_dir);
    }
    cleanup.keep = true;
    return final_dir;
}

checkpoint_state load_checkpoint(const std::string& dir) {
    const std::string state_path = path_join(dir, "trainer_state.json");
    if (!file_exists(state_path))
        fail(dir, ": not a checkpoint (no trainer_state.json); pass a checkpoints/step-N directory");
    json s;
    try {
        s = json::parse(read_file(state_path));
    } catch (const cai::error&) {
        throw;
    } catch (const std::exception& e) {
        fail(state_path, ": invalid JSON: ", e.what());
    }
    auto integer_field = [&](const json& obj, const char* key, const std::string& where) -> int64_t {
        if (!obj.is_object() || !obj.contains(key) || !obj[key].is_number_integer())
            fail(state_path, ": field \"", where, "\" must be an integer");
        return obj[key].get<int64_t>();
    };
    if (integer_field(s, "format", "format") != 1)
        fail(state_path, ": format ", s["format"].dump(), " is not supported (expected 1)");
    checkpoint_state out;
    out.step = integer_field(s, "step", "step");
    if (!s.contains("seed") || !s["seed"].is_number_unsigned())
        fail(state_path, ": field \"seed\" must be a non-negative integer");
    out.seed = s["seed"].get<uint64_t>();
    if (!s.contains("data")) fail(state_path, ": field \"data\" is missing");
    out.data.epoch = integer_field(s["data"], "epoch", "data.epoch");
    out.data.batch = integer_field(s["data"], "batch", "data.batch");
    out.metadata = s.contains("metadata") ? s["metadata"].dump() : "{}";
    out.tensors = in_saved_order(path_join(dir, "tensors.safetensors"));
    out.optimizer = in_saved_order(path_join(dir, "optimizer.safetensors"));
    const std::string rng_path = path_join(dir, "rng.safetensors");
    if (file_exists(rng_path)) {
        safetensors_file f(rng_path);
        out.torch_rng = f.load("torch_cpu");
    }
    return out;
}

std::string latest_checkpoint(const std::string& out_dir) {
    auto found = complete_checkpoints(out_dir);
    if (found.empty()) return "";
    return std::max_element(found.begin(), found.end())->second;
}

void prune_checkpoints(const std::string& out_dir, int64_t keep_last) {
    if (keep_last < 1) fail("prune_checkpoints: keep_last must be >= 1, got ", keep_last);
    auto found = complete_checkpoints(out_dir);
    std::sort(found.begin(), found.end());
    for (int64_t i = 0; i + keep_last < (int64_t)found.size(); ++i) fs::remove_all(found[i].second);
}

at::Tensor torch_rng_state() {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
}

void set_torch_rng_state(const at::Tensor& state) {
    if (!state.defined() || state.scalar_type() != at::kByte)
        fail("set_torch_rng_state: expected a uint8 generator state tensor");
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
}

}  // namespace cai

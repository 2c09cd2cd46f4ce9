// sentencepiece, reached through libcai_spm.so (see spm_capi.h for why it
// is a separate, dlopen'ed library). spm_model is the C++ face of it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct cai_spm;

namespace cai {

class spm_model {
public:
    // path: a sentencepiece .model file. name: used in error messages.
    static std::shared_ptr<spm_model> load(const std::string& path);
    static std::shared_ptr<spm_model> from_bytes(const std::string& bytes, const std::string& name);
    // Runs sentencepiece's trainer with its flag syntax ("--input=a.txt --model_prefix=m ...").
    static void train(const std::string& args);

    ~spm_model();
    std::vector<int32_t> encode(const std::string& text) const;
    std::string decode(const std::vector<int32_t>& ids) const;
    int32_t piece_size() const;
    std::string id_to_piece(int32_t id) const;  // throws for an id out of range
    int32_t piece_to_id(const std::string& piece) const;  // unk id when absent
    bool is_control(int32_t id) const;
    bool is_unknown(int32_t id) const;
    bool is_byte(int32_t id) const;
    bool is_unused(int32_t id) const;
    int32_t unk_id() const;
    int32_t bos_id() const;  // -1 when the model has none
    int32_t eos_id() const;
    int32_t pad_id() const;
    std::string serialized() const;  // the model proto bytes

private:
    spm_model(cai_spm* handle, std::string name) : handle_(handle), name_(std::move(name)) {}
    int kind(int32_t id) const;

    cai_spm* handle_;
    std::string name_;
};

// Where libcai_spm.so was found (next to libcai.so, or $CAI_SPM_LIBRARY).
std::string spm_library_path();

}  // namespace cai

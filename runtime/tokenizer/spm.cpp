#include "tokenizer/spm.h"

#include <dlfcn.h>

#include <cstdlib>

#include "core/error.h"
#include "core/fs.h"
#include "tokenizer/spm_capi.h"

namespace cai {
namespace {

struct spm_api {
    std::string path;
    decltype(&cai_spm_train) train;
    decltype(&cai_spm_load) load;
    decltype(&cai_spm_load_bytes) load_bytes;
    decltype(&cai_spm_free) free;
    decltype(&cai_spm_encode) encode;
    decltype(&cai_spm_decode) decode;
    decltype(&cai_spm_piece_size) piece_size;
    decltype(&cai_spm_id_to_piece) id_to_piece;
    decltype(&cai_spm_piece_to_id) piece_to_id;
    decltype(&cai_spm_id_kind) id_kind;
    decltype(&cai_spm_special_id) special_id;
    decltype(&cai_spm_serialized) serialized;
};

std::string find_library() {
    if (const char* env = std::getenv("CAI_SPM_LIBRARY")) return env;
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&find_library), &info) && info.dli_fname)
        return path_join(path_dirname(info.dli_fname), "libcai_spm.so");
    return "libcai_spm.so";
}

template <class F>
void bind_symbol(void* lib, const std::string& path, const char* name, F* slot) {
    void* symbol = dlsym(lib, name);
    if (!symbol) fail(path, ": missing symbol ", name, " (rebuild cairun: libcai_spm.so is out of date)");
    *slot = reinterpret_cast<F>(symbol);
}

struct loaded_api {
    spm_api table;
    std::string error;
};

loaded_api load_api() {
    loaded_api out;
    spm_api& table = out.table;
    table.path = find_library();
    // RTLD_DEEPBIND: sentencepiece and its bundled protobuf resolve their
    // own symbols first, never libtorch's protobuf.
    void* lib = dlopen(table.path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!lib) {
        const char* e = dlerror();
        out.error = "cannot load the sentencepiece library " + table.path + ": " + (e ? e : "unknown error") +
                    " (it is built with cairun as libcai_spm.so; set CAI_SPM_LIBRARY to its path)";
        return out;
    }
    try {
        bind_symbol(lib, table.path, "cai_spm_train", &table.train);
        bind_symbol(lib, table.path, "cai_spm_load", &table.load);
        bind_symbol(lib, table.path, "cai_spm_load_bytes", &table.load_bytes);
        bind_symbol(lib, table.path, "cai_spm_free", &table.free);
        bind_symbol(lib, table.path, "cai_spm_encode", &table.encode);
        bind_symbol(lib, table.path, "cai_spm_decode", &table.decode);
        bind_symbol(lib, table.path, "cai_spm_piece_size", &table.piece_size);
        bind_symbol(lib, table.path, "cai_spm_id_to_piece", &table.id_to_piece);
        bind_symbol(lib, table.path, "cai_spm_piece_to_id", &table.piece_to_id);
        bind_symbol(lib, table.path, "cai_spm_id_kind", &table.id_kind);
        bind_symbol(lib, table.path, "cai_spm_special_id", &table.special_id);
        bind_symbol(lib, table.path, "cai_spm_serialized", &table.serialized);
    } catch (const std::exception& e) {
        out.error = e.what();
    }
    return out;
}

// Loaded once, on first use (a function-local static is thread-safe).
const spm_api& api() {
    static const loaded_api loaded = load_api();
    if (!loaded.error.empty()) fail(loaded.error);
    return loaded.table;
}

}  // namespace

std::string spm_library_path() { return api().path; }

std::shared_ptr<spm_model> spm_model::load(const std::string& path) {
    if (!file_exists(path)) fail(path, ": no such sentencepiece model file");
    char err[1024] = "";
    cai_spm* handle = api().load(path.c_str(), err, sizeof err);
    if (!handle) fail(path, ": not a valid sentencepiece model: ", err);
    return std::shared_ptr<spm_model>(new spm_model(handle, path));
}

std::shared_ptr<spm_model> spm_model::from_bytes(const std::string& bytes, const std::string& name) {
    char err[1024] = "";
    cai_spm* handle = api().load_bytes(bytes.data(), bytes.size(), err, sizeof err);
    if (!handle) fail(name, ": not a valid sentencepiece model: ", err);
    return std::shared_ptr<spm_model>(new spm_model(handle, name));
}

void spm_model::train(const std::string& args) {
    char err[2048] = "";
    if (api().train(args.c_str(), err, sizeof err) != 0) fail("sentencepiece training failed: ", err);
}

spm_model::~spm_model() {
    if (handle_) api().free(handle_);
}

std::vector<int32_t> spm_model::encode(const std::string& text) const {
    char err[1024] = "";
    std::vector<int32_t> ids(text.size() + 16);
    long n = api().encode(handle_, text.data(), text.size(), ids.data(), ids.size(), err, sizeof err);
    if (n < 0) fail(name_, ": encode failed: ", err);
    if (static_cast<size_t>(n) > ids.size()) {
        ids.resize(n);
        n = api().encode(handle_, text.data(), text.size(), ids.data(), ids.size(), err, sizeof err);
        if (n < 0) fail(name_, ": encode failed: ", err);
    }
    ids.resize(n);
    return ids;
}

std::string spm_model::decode(const std::vector<int32_t>& ids) const {
    for (int32_t id : ids)
        if (id < 0 || id >= piece_size()) fail(name_, ": decode: id ", id, " is outside the vocabulary [0, ", piece_size(), ")");
    char err[1024] = "";
    std::string out(ids.size() * 8 + 16, '\0');
    long n = api().decode(handle_, ids.data(), ids.size(), &out[0], out.size(), err, sizeof err);
    if (n < 0) fail(name_, ": decode failed: ", err);
    if (static_cast<size_t>(n) > out.size()) {
        out.resize(n);
        n = api().decode(handle_, ids.data(), ids.size(), &out[0], out.size(), err, sizeof err);
        if (n < 0) fail(name_, ": decode failed: ", err);
    }
    out.resize(n);
    return out;
}

int32_t spm_model::piece_size() const { return api().piece_size(handle_); }

std::string spm_model::id_to_piece(int32_t id) const {
    std::string out(64, '\0');
    long n = api().id_to_piece(handle_, id, &out[0], out.size());
    if (n < 0) fail(name_, ": id ", id, " is outside the vocabulary [0, ", piece_size(), ")");
    if (static_cast<size_t>(n) > out.size()) {
        out.resize(n);
        api().id_to_piece(handle_, id, &out[0], out.size());
    }
    out.resize(n);
    return out;
}

int32_t spm_model::piece_to_id(const std::string& piece) const {
    return api().piece_to_id(handle_, piece.data(), piece.size());
}

int spm_model::kind(int32_t id) const {
    int k = api().id_kind(handle_, id);
    if (k < 0) fail(name_, ": id ", id, " is outside the vocabulary [0, ", piece_size(), ")");
    return k;
}

bool spm_model::is_control(int32_t id) const { return kind(id) & CAI_SPM_CONTROL; }
bool spm_model::is_unknown(int32_t id) const { return kind(id) & CAI_SPM_UNKNOWN; }
bool spm_model::is_byte(int32_t id) const { return kind(id) & CAI_SPM_BYTE; }
bool spm_model::is_unused(int32_t id) const { return kind(id) & CAI_SPM_UNUSED; }
int32_t spm_model::unk_id() const { return api().special_id(handle_, CAI_SPM_UNK); }
int32_t spm_model::bos_id() const { return api().special_id(handle_, CAI_SPM_BOS); }
int32_t spm_model::eos_id() const { return api().special_id(handle_, CAI_SPM_EOS); }
int32_t spm_model::pad_id() const { return api().special_id(handle_, CAI_SPM_PAD); }

std::string spm_model::serialized() const {
    long n = api().serialized(handle_, nullptr, 0);
    if (n < 0) fail(name_, ": cannot serialize the model");
    std::string out(n, '\0');
    api().serialized(handle_, &out[0], out.size());
    return out;
}

}  // namespace cai

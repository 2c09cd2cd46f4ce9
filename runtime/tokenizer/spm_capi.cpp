// libcai_spm.so: sentencepiece behind the C ABI of spm_capi.h. Nothing else
// in the project includes sentencepiece headers. No exception leaves here.
#include "tokenizer/spm_capi.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <vector>

#define CAI_SPM_API extern "C" __attribute__((visibility("default")))

struct cai_spm {
    sentencepiece::SentencePieceProcessor processor;
};

namespace {

void set_error(char* err, size_t errlen, const std::string& message) {
    if (!err || errlen == 0) return;
    size_t n = std::min(errlen - 1, message.size());
    std::memcpy(err, message.data(), n);
    err[n] = '\0';
}

long copy_out(const std::string& s, char* out, size_t cap) {
    if (out && cap > 0) std::memcpy(out, s.data(), std::min(cap, s.size()));
    return static_cast<long>(s.size());
}

}  // namespace

CAI_SPM_API int cai_spm_train(const char* args, char* err, size_t errlen) {
    try {
        auto status = sentencepiece::SentencePieceTrainer::Train(args);
        if (!status.ok()) {
            set_error(err, errlen, status.ToString());
            return 1;
        }
        return 0;
    } catch (const std::exception& e) {
        set_error(err, errlen, e.what());
        return 1;
    }
}

namespace {

// Builds a processor with `load` (from a path or from bytes); null and a
// message in err when sentencepiece refuses the model.
template <class Load>
cai_spm* new_processor(char* err, size_t errlen, Load load) {
    try {
        auto* spm = new cai_spm;
        auto status = load(spm->processor);
        if (!status.ok()) {
            delete spm;
            set_error(err, errlen, status.ToString());
            return nullptr;
        }
        return spm;
    } catch (const std::exception& e) {
        set_error(err, errlen, e.what());
        return nullptr;
    }
}

}  // namespace

CAI_SPM_API cai_spm* cai_spm_load(const char* path, char* err, size_t errlen) {
    return new_processor(err, errlen, [&](sentencepiece::SentencePieceProcessor& p) { return p.Load(path); });
}

CAI_SPM_API cai_spm* cai_spm_load_bytes(const char* data, size_t size, char* err, size_t errlen) {
    return new_processor(err, errlen, [&](sentencepiece::SentencePieceProcessor& p) {
        return p.LoadFromSerializedProto(std::string(data, size));
    });
}

CAI_SPM_API void cai_spm_free(cai_spm* spm) { delete spm; }

CAI_SPM_API long cai_spm_encode(const cai_spm* spm, const char* text, size_t len, int32_t* ids, size_t cap,
                                char* err, size_t errlen) {
    try {
        std::vector<int> out;
        auto status = spm->processor.Encode(std::string(text, len), &out);
        if (!status.ok()) {
            set_error(err, errlen, status.ToString());
            return -1;
        }
        for (size_t i = 0; i < out.size() && i < cap; ++i) ids[i] = out[i];
        return static_cast<long>(out.size());
    } catch (const std::exception& e) {
        set_error(err, errlen, e.what());
        return -1;
    }
}

CAI_SPM_API long cai_spm_decode(const cai_spm* spm, const int32_t* ids, size_t n, char* out, size_t cap,
                                char* err, size_t errlen) {
    try {
        std::vector<int> in(ids, ids + n);
        std::string text;
        auto status = spm->processor.Decode(in, &text);
        if (!status.ok()) {
            set_error(err, errlen, status.ToString());
            return -1;
        }
        return copy_out(text, out, cap);
    } catch (const std::exception& e) {
        set_error(err, errlen, e.what());
        return -1;
    }
}

CAI_SPM_API int cai_spm_piece_size(const cai_spm* spm) { return spm->processor.GetPieceSize(); }

CAI_SPM_API long cai_spm_id_to_piece(const cai_spm* spm, int32_t id, char* out, size_t cap) {
    if (id < 0 || id >= spm->processor.GetPieceSize()) return -1;
    return copy_out(spm->processor.IdToPiece(id), out, cap);
}

CAI_SPM_API int32_t cai_spm_piece_to_id(const cai_spm* spm, const char* piece, size_t len) {
    return spm->processor.PieceToId(std::string(piece, len));
}

CAI_SPM_API int cai_spm_id_kind(const cai_spm* spm, int32_t id) {
    if (id < 0 || id >= spm->processor.GetPieceSize()) return -1;
    int kind = 0;
    if (spm->processor.IsControl(id)) kind |= CAI_SPM_CONTROL;
    if (spm->processor.IsUnknown(id)) kind |= CAI_SPM_UNKNOWN;
    if (spm->processor.IsByte(id)) kind |= CAI_SPM_BYTE;
    if (spm->processor.IsUnused(id)) kind |= CAI_SPM_UNUSED;
    return kind;
}

CAI_SPM_API int32_t cai_spm_special_id(const cai_spm* spm, int which) {
    switch (which) {
    case CAI_SPM_UNK: return spm->processor.unk_id();
    case CAI_SPM_BOS: return spm->processor.bos_id();
    case CAI_SPM_EOS: return spm->processor.eos_id();
    case CAI_SPM_PAD: return spm->processor.pad_id();
    default: return -1;
    }
}

CAI_SPM_API long cai_spm_serialized(const cai_spm* spm, char* out, size_t cap) {
    try {
        return copy_out(spm->processor.serialized_model_proto(), out, cap);
    } catch (...) {
        return -1;
    }
}

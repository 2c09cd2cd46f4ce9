/* The plain C ABI of libcai_spm.so, the only code that touches
 * sentencepiece. libcai loads it with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) so
 * sentencepiece's bundled protobuf never meets libtorch's (see DESIGN.md).
 *
 * Conventions: functions that can fail take (err, errlen) and write a
 * NUL-terminated message there. Functions that fill a buffer return the
 * full size needed (which may exceed cap: call again with a bigger buffer)
 * or -1 on failure. */
#ifndef CAI_SPM_CAPI_H
#define CAI_SPM_CAPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cai_spm cai_spm;

enum { CAI_SPM_UNK = 0, CAI_SPM_BOS = 1, CAI_SPM_EOS = 2, CAI_SPM_PAD = 3 };
enum { CAI_SPM_CONTROL = 1, CAI_SPM_UNKNOWN = 2, CAI_SPM_BYTE = 4, CAI_SPM_UNUSED = 8 };

int cai_spm_train(const char* args, char* err, size_t errlen);
cai_spm* cai_spm_load(const char* path, char* err, size_t errlen);
cai_spm* cai_spm_load_bytes(const char* data, size_t size, char* err, size_t errlen);
void cai_spm_free(cai_spm* spm);

long cai_spm_encode(const cai_spm* spm, const char* text, size_t len, int32_t* ids, size_t cap, char* err,
                    size_t errlen);
long cai_spm_decode(const cai_spm* spm, const int32_t* ids, size_t n, char* out, size_t cap, char* err,
                    size_t errlen);
int cai_spm_piece_size(const cai_spm* spm);
long cai_spm_id_to_piece(const cai_spm* spm, int32_t id, char* out, size_t cap);
int32_t cai_spm_piece_to_id(const cai_spm* spm, const char* piece, size_t len);
int cai_spm_id_kind(const cai_spm* spm, int32_t id);
int32_t cai_spm_special_id(const cai_spm* spm, int which);
long cai_spm_serialized(const cai_spm* spm, char* out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif

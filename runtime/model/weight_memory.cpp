#include "model/weight_memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace cai {

namespace {
constexpr int64_t huge_page = int64_t(2) << 20;

int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }
}  // namespace

// One anonymous mapping, aligned to 2 MiB so that every 2 MiB of it can be one page.
struct weight_memory::block {
    void* mapping = nullptr;
    size_t mapping_bytes = 0;
    char* data = nullptr;
    int64_t bytes = 0;

    explicit block(int64_t size) : bytes(round_up(size, huge_page)) {
        mapping_bytes = (size_t)(bytes + huge_page);
        mapping = mmap(nullptr, mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mapping == MAP_FAILED)
            fail("model: could not map ", bytes, " bytes for weights (", std::strerror(errno), ")");
        uintptr_t start = (uintptr_t)mapping;
        data = reinterpret_cast<char*>(round_up((int64_t)start, huge_page));
        // Only a hint: without transparent huge pages this fails and the memory keeps 4 KiB pages.
        madvise(data, (size_t)bytes, MADV_HUGEPAGE);
    }
    ~block() { munmap(mapping, mapping_bytes); }
    block(const block&) = delete;
    block& operator=(const block&) = delete;
};

weight_memory::weight_memory(int64_t block_bytes) : block_bytes_(round_up(std::max<int64_t>(block_bytes, 1), huge_page)) {}

at::Tensor weight_memory::place(const at::Tensor& t) {
    const int64_t bytes = (int64_t)t.nbytes();
    const int64_t aligned = round_up(std::max<int64_t>(bytes, 1), 64);
    std::shared_ptr<block> target;
    int64_t offset = 0;
    if (aligned > block_bytes_ / 2) {  // a large tensor gets its own block and leaves the current one open
        target = std::make_shared<block>(aligned);
    } else {
        if (!current_ || used_ + aligned > current_->bytes) {
            current_ = std::make_shared<block>(block_bytes_);
            used_ = 0;
        }
        target = current_;
        offset = used_;
        used_ += aligned;
    }
    void* p = target->data + offset;
    at::Tensor out = at::from_blob(p, t.sizes(), [target](void*) {}, t.options().device(at::kCPU));
    out.copy_(t);
    return out;
}

bool huge_pages_wanted() {
    const char* v = std::getenv("CAI_HUGE_PAGES");
    return !v || std::strcmp(v, "0") != 0;
}

}  // namespace cai

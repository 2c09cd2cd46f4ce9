// cairun: a thin main. It only arranges the process environment (OpenBLAS's
// kernels, glibc's reuse of freed memory), then loads
// libcai (which brings libtorch and OpenBLAS) and calls cai_main.
//
// OpenBLAS reads OPENBLAS_CORETYPE when it is loaded; Debian's build does
// not recognise recent CPUs and falls back to slow SSE3 kernels. So the
// variable must be set before libcai is loaded, which is why libcai is
// opened here with dlopen instead of being linked.
//
// `cairun --nproc N ...` is handled here too, before libcai is loaded: the
// launcher only starts and watches the ranks (launch.h), each of which is
// this program again without --nproc.
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "launch.h"
#include "memory_reuse.h"

static void choose_openblas_kernels(void) {
    if (getenv("OPENBLAS_CORETYPE")) return;  // the user's choice wins
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
}

// The command line without "--nproc N" (which may only come before the
// recipe or -e); nproc: N, 0 when absent, -1 when malformed (reported).
static std::vector<std::string> without_nproc(int argc, char** argv, int* nproc) {
    std::vector<std::string> rest = {argv[0]};
    *nproc = 0;
    int i = 1;
    for (; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--nproc") {
            char* end = NULL;
            long n = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || !*argv[i + 1] || *end || n < 1 || n > 1024) {
                fprintf(stderr, "cairun: --nproc needs a number of ranks (1 to 1024)\n");
                *nproc = -1;
                return rest;
            }
            *nproc = (int)n;
            ++i;
            continue;
        }
        rest.push_back(a);
        if ((a == "-e" || a == "--log-level") && i + 1 < argc) {
            rest.push_back(argv[++i]);
            continue;
        }
        if (a.size() > 1 && a[0] == '-') continue;
        break;  // the recipe; what follows is its arguments
    }
    for (++i; i < argc; ++i) rest.push_back(argv[i]);
    return rest;
}

int main(int argc, char** argv) {
    choose_openblas_kernels();
    keep_freed_memory();

    int nproc = 0;
    std::vector<std::string> args = without_nproc(argc, argv, &nproc);
    if (nproc < 0) return 2;
    if (nproc > 1) return cai::launch::launch_ranks(nproc, args);
    std::vector<char*> args_c;
    for (auto& a : args) args_c.push_back(&a[0]);
    args_c.push_back(NULL);

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "cairun: cannot find its own path\n");
        return 1;
    }
    exe[n] = '\0';
    const char* dir = dirname(exe);
    const char* candidates[] = {"%s/libcai.so", "%s/../lib/libcai.so"};
    void* lib = NULL;
    char path[PATH_MAX + 32];
    char errors[2048] = "";
    for (int i = 0; i < 2 && !lib; ++i) {
        snprintf(path, sizeof path, candidates[i], dir);
        lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
        if (!lib && access(path, F_OK) == 0) snprintf(errors, sizeof errors, "%s", dlerror());
    }
    if (!lib) {
        fprintf(stderr, "cairun: cannot load libcai.so next to %s%s%s\n", dir, errors[0] ? ": " : "", errors);
        return 1;
    }
    int (*cai_main)(int, char**) = (int (*)(int, char**))dlsym(lib, "cai_main");
    if (!cai_main) {
        fprintf(stderr, "cairun: %s has no cai_main: %s\n", path, dlerror());
        return 1;
    }
    return cai_main((int)args.size(), args_c.data());
}

// cairun: a thin main. It only arranges the process environment, then loads
// libcai (which brings libtorch and OpenBLAS) and calls cai_main.
//
// OpenBLAS reads OPENBLAS_CORETYPE when it is loaded; Debian's build does
// not recognise recent CPUs and falls back to slow SSE3 kernels. So the
// variable must be set before libcai is loaded, which is why libcai is
// opened here with dlopen instead of being linked.
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void choose_openblas_kernels(void) {
    if (getenv("OPENBLAS_CORETYPE")) return;  // the user's choice wins
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
}

int main(int argc, char** argv) {
    choose_openblas_kernels();

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
    return cai_main(argc, argv);
}

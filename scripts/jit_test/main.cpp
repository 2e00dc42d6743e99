// Loads one test library with dlopen (as bitsandbytes' Python loader does with ctypes) and runs it.
#include <cstdio>
#include <dlfcn.h>

int main(int argc, char** argv) {
    if (argc != 2) { std::fprintf(stderr, "usage: %s LIBRARY.so\n", argv[0]); return 64; }
    void* lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) { std::printf("%s: dlopen failed: %s\n", argv[1], dlerror()); return 65; }
    auto run = reinterpret_cast<int (*)(const char*)>(dlsym(lib, "jit_test_run"));
    if (!run) { std::printf("%s: no jit_test_run symbol\n", argv[1]); return 66; }
    return run(argv[1]);
}

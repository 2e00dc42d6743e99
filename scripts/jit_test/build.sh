#!/bin/sh
# Build the JIT test (needs nvcc; CUDA 13.0 here). Two libraries from the same sources:
#   librdc_ptx80.so  built like bitsandbytes' CMake build: separate compilation (-rdc=true), then a device link,
#                    for compute_80 only (PTX, no SASS): its only GPU code is relocatable PTX in __nv_relfatbin.
#   libsass80.so     control: whole-program compilation for sm_80 SASS only, no PTX.
# and the loader `jit_main`. Static cudart, so the GPU machine needs only the driver.
set -eu
cd "$(dirname "$0")"
OUT=${1:-build}
NVCC=${NVCC:-nvcc}
mkdir -p "$OUT"
PTX80="-gencode arch=compute_80,code=compute_80"
"$NVCC" -rdc=true -Xcompiler -fPIC $PTX80 -c helper.cu -o "$OUT/helper.o"
"$NVCC" -rdc=true -Xcompiler -fPIC $PTX80 -c kernel.cu -o "$OUT/kernel.o"
"$NVCC" -dlink -Xcompiler -fPIC $PTX80 "$OUT/helper.o" "$OUT/kernel.o" -o "$OUT/dlink.o"
CUDA_LIB=${CUDA_LIB:-/usr/local/cuda/lib64}
g++ -shared "$OUT/helper.o" "$OUT/kernel.o" "$OUT/dlink.o" -L"$CUDA_LIB" -lcudadevrt -lcudart_static -ldl -lrt -lpthread \
    -o "$OUT/librdc_ptx80.so"
cat helper.cu kernel.cu > "$OUT/whole.cu"
"$NVCC" -shared -Xcompiler -fPIC -cudart static -gencode arch=compute_80,code=sm_80 "$OUT/whole.cu" \
    -o "$OUT/libsass80.so"
g++ -O2 main.cpp -ldl -o "$OUT/jit_main"

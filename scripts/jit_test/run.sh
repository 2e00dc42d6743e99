#!/bin/sh
# Run the JIT test on a GPU machine (after build.sh): see README.md for what each case shows.
cd "$(dirname "$0")"
B=${1:-build}
echo "== machine"
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
nvidia-smi | grep -o "CUDA Version: [0-9.]*"
ldd --version | head -n 1
echo "== 1. librdc_ptx80.so (rdc + device link, relocatable compute_80 PTX only), JIT cache disabled"
CUDA_CACHE_DISABLE=1 "./$B/jit_main" "./$B/librdc_ptx80.so"; echo "exit $?"
echo "== 2. librdc_ptx80.so, JIT cache enabled: first process fills the cache, second reuses it"
export CUDA_CACHE_PATH="$PWD/$B/jit-cache"
rm -rf "$CUDA_CACHE_PATH"
"./$B/jit_main" "./$B/librdc_ptx80.so"; echo "exit $?"
"./$B/jit_main" "./$B/librdc_ptx80.so"; echo "exit $?"
unset CUDA_CACHE_PATH
echo "== 3. libsass80.so (control: sm_80 SASS only, no PTX)"
"./$B/jit_main" "./$B/libsass80.so"; echo "exit $?"
echo "== 4. librdc_ptx80.so with CUDA_DISABLE_PTX_JIT=1"
CUDA_DISABLE_PTX_JIT=1 "./$B/jit_main" "./$B/librdc_ptx80.so"; echo "exit $?"

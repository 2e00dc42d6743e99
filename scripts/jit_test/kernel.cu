// The library under test: one kernel calling a device function from helper.cu, and a C entry point that launches
// it, times the first and second launch, checks the result and reports the CUDA error text if any.
#include <chrono>
#include <cstdio>
#include <cuda_runtime.h>

extern __device__ float scale_and_shift(float x, float scale);

__global__ void scale_kernel(float* data, int n, float scale) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) data[i] = scale_and_shift(data[i], scale);
}

static double launch_ms(float* data, int n) {
    auto t0 = std::chrono::steady_clock::now();
    scale_kernel<<<(n + 255) / 256, 256>>>(data, n, 2.0f);
    cudaDeviceSynchronize();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

extern "C" int jit_test_run(const char* label) {
    const int n = 1 << 20;
    float* data = nullptr;
    cudaError_t err = cudaMalloc(&data, n * sizeof(float));
    if (err != cudaSuccess) { std::printf("%s: cudaMalloc failed: %s\n", label, cudaGetErrorString(err)); return 2; }
    cudaMemset(data, 0, n * sizeof(float));
    double first = launch_ms(data, n);
    err = cudaGetLastError();
    if (err != cudaSuccess) {
        std::printf("%s: FAILED first launch (%.1f ms): %s (%s)\n", label, first, cudaGetErrorName(err),
                    cudaGetErrorString(err));
        return 1;
    }
    double second = launch_ms(data, n);
    float host[4];
    cudaMemcpy(host, data, sizeof(host), cudaMemcpyDeviceToHost);
    // zeros -> 1 after the first launch -> 3 after the second (x * 2 + 1)
    bool ok = host[0] == 3.0f && host[3] == 3.0f;
    std::printf("%s: %s first launch %.1f ms, second launch %.3f ms, result %.1f (expected 3.0)\n", label,
                ok ? "RAN" : "WRONG RESULT", first, second, host[0]);
    cudaFree(data);
    return ok ? 0 : 3;
}

// A device function defined in its own translation unit: calling it from kernel.cu needs separate compilation
// (-rdc=true) and a device link, as bitsandbytes' kernels do.
__device__ float scale_and_shift(float x, float scale) { return x * scale + 1.0f; }

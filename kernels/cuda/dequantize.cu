// Dequantize Q8_0, Q4_0 and NF4 to f32, one thread per value; bit-identical to the CPU reference
// (the scale is decoded with integer operations, then one correctly rounded multiplication).
// Launch: blocks of 256 threads, enough blocks for n values.
#include "common.cuh"

extern "C" __global__ void dequantize_q8_0(const u8* src, float* dst, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const u8* b = src + (i / 32u) * 34u;
    float d = f16_to_f32((u32)b[0] | ((u32)b[1] << 8));
    dst[i] = __fmul_rn((float)(signed char)b[2 + i % 32u], d);
}

extern "C" __global__ void dequantize_q4_0(const u8* src, float* dst, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const u8* b = src + (i / 32u) * 18u;
    u32 j = i % 32u;
    float d = f16_to_f32((u32)b[0] | ((u32)b[1] << 8));
    u32 v = b[2 + (j % 16u)];
    u32 nibble = j >= 16u ? v >> 4 : v & 0xfu;
    dst[i] = __fmul_rn((float)((i32)nibble - 8), d);
}

extern "C" __global__ void dequantize_nf4(const u8* codes, const float* absmax, float* dst, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 v = codes[i / 2u];
    u32 code = (i & 1u) ? v & 0xfu : v >> 4;
    dst[i] = __fmul_rn(nf4_value(code), absmax[i / 64u]);
}

// Quantized weights (Q8_0, Q4_0, NF4, as stored in GGUF) times f32 activation rows:
// y[t·rows + r] = Σ_j W[r][j] · x[t·cols + j]. One block of 256 threads per (row, token) pair:
// threads stride over the row's blocks, then a tree reduction in shared memory. Sums are f32 in
// another order than the CPU's; tests compare with an f64 reference within 64 · 2^-24 · Σ|w·x|.
// Launch: grid = rows · tokens blocks, 256 threads each.
#include "common.cuh"

__device__ __forceinline__ void reduce_and_store(float acc, float* y, u32 rows, u32 r, u32 t) {
    __shared__ float partial[256];
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (u32 s = 128u; s > 0u; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] = __fadd_rn(partial[threadIdx.x], partial[threadIdx.x + s]);
        __syncthreads();
    }
    if (threadIdx.x == 0u) y[t * rows + r] = partial[0];
}

extern "C" __global__ void matmul_q8_0(const u8* w, const float* x, float* y, u32 rows, u32 cols) {
    u32 r = blockIdx.x % rows, t = blockIdx.x / rows, nb = cols / 32u;
    float acc = 0.0f;
    for (u32 b = threadIdx.x; b < nb; b += 256u) {
        const u8* blk = w + ((unsigned long long)r * nb + b) * 34u;
        const float* xb = x + (unsigned long long)t * cols + b * 32u;
        float d = f16_to_f32((u32)blk[0] | ((u32)blk[1] << 8));
        float s = 0.0f;
        for (u32 j = 0; j < 32u; j++) s = __fadd_rn(s, __fmul_rn((float)(signed char)blk[2 + j], xb[j]));
        acc = __fadd_rn(acc, __fmul_rn(s, d));
    }
    reduce_and_store(acc, y, rows, r, t);
}

extern "C" __global__ void matmul_q4_0(const u8* w, const float* x, float* y, u32 rows, u32 cols) {
    u32 r = blockIdx.x % rows, t = blockIdx.x / rows, nb = cols / 32u;
    float acc = 0.0f;
    for (u32 b = threadIdx.x; b < nb; b += 256u) {
        const u8* blk = w + ((unsigned long long)r * nb + b) * 18u;
        const float* xb = x + (unsigned long long)t * cols + b * 32u;
        float d = f16_to_f32((u32)blk[0] | ((u32)blk[1] << 8));
        float s = 0.0f;
        for (u32 j = 0; j < 16u; j++) {
            u32 v = blk[2 + j];
            s = __fadd_rn(s, __fmul_rn((float)((i32)(v & 0xfu) - 8), xb[j]));
            s = __fadd_rn(s, __fmul_rn((float)((i32)(v >> 4) - 8), xb[j + 16u]));
        }
        acc = __fadd_rn(acc, __fmul_rn(s, d));
    }
    reduce_and_store(acc, y, rows, r, t);
}

extern "C" __global__ void matmul_nf4(const u8* codes, const float* absmax, const float* x, float* y, u32 rows, u32 cols) {
    u32 r = blockIdx.x % rows, t = blockIdx.x / rows, nb = cols / 64u;
    float acc = 0.0f;
    for (u32 b = threadIdx.x; b < nb; b += 256u) {
        unsigned long long blk = (unsigned long long)r * nb + b;
        const float* xb = x + (unsigned long long)t * cols + b * 64u;
        float s = 0.0f;
        for (u32 j = 0; j < 32u; j++) {
            u32 v = codes[blk * 32u + j];
            s = __fadd_rn(s, __fmul_rn(nf4_value(v >> 4), xb[2 * j]));
            s = __fadd_rn(s, __fmul_rn(nf4_value(v & 0xfu), xb[2 * j + 1]));
        }
        acc = __fadd_rn(acc, __fmul_rn(s, absmax[blk]));
    }
    reduce_and_store(acc, y, rows, r, t);
}

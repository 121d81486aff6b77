// Quantize f32 to Q8_0, Q4_0 (ggml's reference, x86 rounding: two roundings in x·id + 8.5) and NF4
// (bitsandbytes), one thread per block, byte-identical to the CPU reference: IEEE division and
// multiplication without contraction, ggml's NaN-sensitive maximum, x86's float → int results.
// Launch: blocks of 64 threads, one thread per 32-value (Q8_0, Q4_0) or 64-value (NF4) block.
#include "common.cuh"

extern "C" __global__ void quantize_q8_0(const float* x, u8* dst, u32 n_blocks) {
    u32 blk = blockIdx.x * blockDim.x + threadIdx.x;
    if (blk >= n_blocks) return;
    const float* xb = x + blk * 32u;
    u8* out = dst + blk * 34u;
    float amax = 0.0f;
    for (u32 j = 0; j < 32u; j++) {
        float a = fabsf(xb[j]);
        amax = amax > a ? amax : a; // ggml's MAX: a NaN |x| is taken, then loses to the next
    }
    float d = __fdiv_rn(amax, 127.0f);
    float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
    u32 h = f32_to_f16(d);
    out[0] = (u8)h;
    out[1] = (u8)(h >> 8);
    for (u32 j = 0; j < 32u; j++) {
        out[2 + j] = (u8)c_int(round_away(__fmul_rn(xb[j], id)));
    }
}

extern "C" __global__ void quantize_q4_0(const float* x, u8* dst, u32 n_blocks) {
    u32 blk = blockIdx.x * blockDim.x + threadIdx.x;
    if (blk >= n_blocks) return;
    const float* xb = x + blk * 32u;
    u8* out = dst + blk * 18u;
    float amax = 0.0f, max = 0.0f;
    for (u32 j = 0; j < 32u; j++) {
        float a = fabsf(xb[j]);
        if (amax < a) {
            amax = a;
            max = xb[j];
        }
    }
    float d = __fdiv_rn(max, -8.0f);
    float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
    u32 h = f32_to_f16(d);
    out[0] = (u8)h;
    out[1] = (u8)(h >> 8);
    for (u32 j = 0; j < 16u; j++) {
        // (int8_t)(x·id + 8.5), then MIN(15, ·) as a signed comparison, as ggml's C does.
        i32 lo = (signed char)c_int(__fadd_rn(__fmul_rn(xb[j], id), 8.5f));
        i32 hi = (signed char)c_int(__fadd_rn(__fmul_rn(xb[j + 16u], id), 8.5f));
        lo = lo < 15 ? lo : 15;
        hi = hi < 15 ? hi : 15;
        out[2 + j] = (u8)(((u32)lo & 0xffu) | (((u32)hi << 4) & 0xffu));
    }
}

extern "C" __global__ void quantize_nf4(const float* x, u8* codes, float* absmax, u32 n_blocks) {
    u32 blk = blockIdx.x * blockDim.x + threadIdx.x;
    if (blk >= n_blocks) return;
    const float* xb = x + blk * 64u;
    // fold(0, f32::max(m, |x|)): IEEE maxNum, a NaN operand loses, so m is never NaN.
    float m = 0.0f;
    for (u32 j = 0; j < 64u; j++) {
        float a = fabsf(xb[j]);
        if (a > m) m = a;
    }
    absmax[blk] = m;
    float inv = __fdiv_rn(1.0f, m > 1e-38f ? m : 1e-38f);
    for (u32 j = 0; j < 32u; j++) {
        float s0 = __fmul_rn(xb[2 * j], inv);
        float s1 = __fmul_rn(xb[2 * j + 1], inv);
        // clamp(s, -1, 1) keeps NaN, whose code is 0 (no threshold is below it).
        s0 = s0 < -1.0f ? -1.0f : (s0 > 1.0f ? 1.0f : s0);
        s1 = s1 < -1.0f ? -1.0f : (s1 > 1.0f ? 1.0f : s1);
        codes[blk * 32u + j] = (u8)((nf4_code(s0) << 4) | nf4_code(s1));
    }
}

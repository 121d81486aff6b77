// Helpers shared by ggufy's CUDA kernels. Only integer operations and the correctly rounded float
// intrinsics (__fmul_rn, __fdiv_rn, __fadd_rn: no FMA contraction, IEEE division), so results are
// the CPU reference's bit for bit on any GPU; compile with -ftz=false -prec-div=true -fmad=false.
// The same sources build as C++ against emulate/cuda_shim.h for the CPU emulation harness.
#pragma once

#ifndef GGUFY_CUDA_EMULATION
typedef unsigned char u8;
typedef unsigned int u32;
typedef int i32;
#endif

#define GGUFY_INT_MIN (-2147483647 - 1)

// An f16 (bits in the low half) as f32, exactly (subnormals included).
__device__ __forceinline__ float f16_to_f32(u32 h) {
    u32 sign = (h & 0x8000u) << 16;
    u32 e = (h >> 10) & 0x1fu;
    u32 m = h & 0x3ffu;
    u32 bits = sign;
    if (e == 0u) {
        if (m != 0u) {
            u32 shift = (u32)__clz(m) - 21u;
            bits = sign | ((113u - shift) << 23) | (((m << shift) & 0x3ffu) << 13);
        }
    } else if (e == 31u) {
        bits = sign | 0x7f800000u | (m << 13);
    } else {
        bits = sign | ((e + 112u) << 23) | (m << 13);
    }
    return __uint_as_float(bits);
}

// f32 → f16 bits, round to nearest even; NaN becomes sign | 0x7e00 (ggml's canonical NaN).
__device__ __forceinline__ u32 f32_to_f16(float f) {
    u32 b = __float_as_uint(f);
    u32 sign = (b >> 16) & 0x8000u;
    if ((b & 0x7fffffffu) > 0x7f800000u) return sign | 0x7e00u;
    u32 exp = (b >> 23) & 0xffu;
    u32 mant = b & 0x7fffffu;
    if (exp >= 143u) return sign | 0x7c00u;
    if (exp >= 113u) {
        u32 h = ((exp - 112u) << 10) | (mant >> 13);
        u32 rem = mant & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h += 1u;
        return sign | h;
    }
    if (exp < 102u) return sign;
    u32 m = mant | 0x800000u;
    u32 s = 126u - exp;
    u32 h = m >> s;
    u32 rem = m & ((1u << s) - 1u);
    u32 half = 1u << (s - 1u);
    if (rem > half || (rem == half && (h & 1u))) h += 1u;
    return sign | h;
}

__device__ __forceinline__ bool is_nan(float f) { return f != f; }

// C's (int)f as x86-64 computes it (cvttss2si): truncation, INT_MIN for NaN and out of range.
// CUDA's own conversion saturates instead, so the range is checked here.
__device__ __forceinline__ i32 c_int(float f) {
    if (is_nan(f) || !(f >= -2147483648.0f && f < 2147483648.0f)) return GGUFY_INT_MIN;
    return (i32)f;
}

// C's roundf: half away from zero.
__device__ __forceinline__ float round_away(float f) {
    float t = truncf(f);
    float frac = __fadd_rn(f, -t);
    if (frac >= 0.5f) return __fadd_rn(t, 1.0f);
    if (frac <= -0.5f) return __fadd_rn(t, -1.0f);
    return t;
}

// bitsandbytes' NF4 codebook and its decision thresholds (midpoints), as f32 bits.
__device__ __forceinline__ float nf4_value(u32 code) {
    const u32 table[16] = {
        0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
        0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u,
    };
    return __uint_as_float(table[code & 15u]);
}

__device__ __forceinline__ u32 nf4_code(float s) {
    const u32 thresholds[15] = {
        0xbf591cd8u, 0xbf1c5270u, 0xbeeb8480u, 0xbeadea76u, 0xbe703cecu,
        0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu, 0x3df64862u, 0x3e5067e0u,
        0x3e9582d4u, 0x3ec753f9u, 0x3f006d03u, 0x3f248dafu, 0x3f5c89d9u,
    };
    u32 c = 0u;
    for (u32 t = 0u; t < 15u; t++) {
        if (s > __uint_as_float(thresholds[t])) c += 1u;
    }
    return c;
}

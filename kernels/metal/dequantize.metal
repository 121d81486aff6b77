// Generated from kernels/wgsl/common.wgsl + dequantize.wgsl by naga 30 (crates/gpu/tests/metal.rs); do not edit.
// language: metal2.1
#include <metal_stdlib>
#include <simd/simd.h>

using metal::uint;

struct _mslBufferSizes {
    uint size0;
    uint size2;
    uint size3;
};

typedef uint type_1[1];
struct type_3 {
    float inner[16];
};
struct Params {
    uint n;
    uint groups_x;
};
typedef float type_4[1];

uint byte_at(
    uint i,
    device type_1 const& src,
    constant _mslBufferSizes& _buffer_sizes
) {
    uint _e5 = src[i >> 2u];
    return (_e5 >> ((i & 3u) * 8u)) & 255u;
}

float f16_to_f32_(
    uint h
) {
    uint bits = {};
    uint sign = (h & 32768u) << 16u;
    uint e = (h >> 10u) & 31u;
    uint m = h & 1023u;
    bits = sign;
    if (e == 0u) {
        if (m != 0u) {
            uint shift = metal::clz(m) - 21u;
            bits = (sign | ((113u - shift) << 23u)) | (((m << shift) & 1023u) << 13u);
        }
    } else {
        if (e == 31u) {
            bits = (sign | 2139095040u) | (m << 13u);
        } else {
            bits = (sign | ((e + 112u) << 23u)) | (m << 13u);
        }
    }
    uint _e45 = bits;
    return as_type<float>(_e45);
}

uint index(
    metal::uint3 wg_3,
    metal::uint3 lid_3,
    constant Params& params
) {
    uint _e5 = params.groups_x;
    return (((wg_3.y * _e5) + wg_3.x) * 256u) + lid_3.x;
}
uint naga_div(uint lhs, uint rhs) {
    return lhs / metal::select(rhs, 1u, rhs == 0u);
}

uint naga_mod(uint lhs, uint rhs) {
    return lhs % metal::select(rhs, 1u, rhs == 0u);
}


struct dequantize_q8_0_Input {
};
[[max_total_threads_per_threadgroup(256)]] kernel void dequantize_q8_0_(
  metal::uint3 wg [[threadgroup_position_in_grid]]
, metal::uint3 lid [[thread_position_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_4& dst [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    uint _e2 = index(wg, lid, params);
    uint _e5 = params.n;
    if (_e2 >= _e5) {
        return;
    }
    uint base = naga_div(_e2, 32u) * 34u;
    uint _e11 = byte_at(base, src, _buffer_sizes);
    uint _e14 = byte_at(base + 1u, src, _buffer_sizes);
    float _e18 = f16_to_f32_(_e11 | (_e14 << 8u));
    uint _e24 = byte_at((base + 2u) + naga_mod(_e2, 32u), src, _buffer_sizes);
    int q = (static_cast<int>(_e24) << 24u) >> 24u;
    dst[_e2] = static_cast<float>(q) * _e18;
    return;
}


struct dequantize_q4_0_Input {
};
[[max_total_threads_per_threadgroup(256)]] kernel void dequantize_q4_0_(
  metal::uint3 wg_1 [[threadgroup_position_in_grid]]
, metal::uint3 lid_1 [[thread_position_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_4& dst [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    uint _e2 = index(wg_1, lid_1, params);
    uint _e5 = params.n;
    if (_e2 >= _e5) {
        return;
    }
    uint base_1 = naga_div(_e2, 32u) * 18u;
    uint j = naga_mod(_e2, 32u);
    uint _e13 = byte_at(base_1, src, _buffer_sizes);
    uint _e16 = byte_at(base_1 + 1u, src, _buffer_sizes);
    float _e20 = f16_to_f32_(_e13 | (_e16 << 8u));
    uint _e26 = byte_at((base_1 + 2u) + naga_mod(j, 16u), src, _buffer_sizes);
    uint nibble = (j >= 16u) ? (_e26 >> 4u) : (_e26 & 15u);
    dst[_e2] = static_cast<float>(as_type<int>(as_type<uint>(static_cast<int>(nibble)) - as_type<uint>(8))) * _e20;
    return;
}


struct dequantize_nf4_Input {
};
[[max_total_threads_per_threadgroup(256)]] kernel void dequantize_nf4_(
  metal::uint3 wg_2 [[threadgroup_position_in_grid]]
, metal::uint3 lid_2 [[thread_position_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_4 const& scales [[user(fake0)]]
, device type_4& dst [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    type_3 NF4_ = type_3 {{-1.0, -0.6961928, -0.52507305, -0.3949175, -0.28444138, -0.18477343, -0.091050036, 0.0, 0.0795803, 0.1609302, 0.2461123, 0.33791524, 0.44070983, 0.562617, 0.72295684, 1.0}};
    uint _e2 = index(wg_2, lid_2, params);
    uint _e5 = params.n;
    if (_e2 >= _e5) {
        return;
    }
    uint _e9 = byte_at(naga_div(_e2, 2u), src, _buffer_sizes);
    uint code = ((_e2 & 1u) == 1u) ? (_e9 & 15u) : (_e9 >> 4u);
    float _e23 = NF4_.inner[code];
    float _e28 = scales[naga_div(_e2, 64u)];
    dst[_e2] = _e23 * _e28;
    return;
}

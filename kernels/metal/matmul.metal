// Generated from kernels/wgsl/common.wgsl + matmul.wgsl by naga 30 (crates/gpu/tests/metal.rs); do not edit.
// language: metal2.1
#include <metal_stdlib>
#include <simd/simd.h>

using metal::uint;

struct _mslBufferSizes {
    uint size0;
    uint size2;
    uint size3;
    uint size4;
};

typedef uint type_1[1];
struct type_3 {
    float inner[16];
};
struct Params {
    uint rows;
    uint cols;
    uint tokens;
    uint groups_x;
};
typedef float type_4[1];
struct type_5 {
    float inner[256];
};

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

uint pair(
    metal::uint3 wg_3,
    constant Params& params
) {
    uint _e4 = params.groups_x;
    return (wg_3.y * _e4) + wg_3.x;
}

uint naga_mod(uint lhs, uint rhs) {
    return lhs % metal::select(rhs, 1u, rhs == 0u);
}

uint naga_div(uint lhs, uint rhs) {
    return lhs / metal::select(rhs, 1u, rhs == 0u);
}

void finish(
    uint lid_3,
    uint p,
    float acc_3,
    device type_4& y,
    constant Params& params,
    threadgroup type_5& partial,
    constant _mslBufferSizes& _buffer_sizes
) {
    uint s_3 = 128u;
    bool local = {};
    partial.inner[lid_3] = acc_3;
    metal::threadgroup_barrier(metal::mem_flags::mem_threadgroup);
    uint2 loop_bound = uint2(4294967295u);
    bool loop_init = true;
    while(true) {
        if (metal::all(loop_bound == uint2(0u))) { break; }
        loop_bound -= uint2(loop_bound.y == 0u, 1u);
        if (!loop_init) {
            uint _e21 = s_3;
            s_3 = _e21 >> 1u;
        }
        loop_init = false;
        uint _e7 = s_3;
        if (_e7 > 0u) {
        } else {
            break;
        }
        {
            uint _e10 = s_3;
            if (lid_3 < _e10) {
                float _e14 = partial.inner[lid_3];
                uint _e16 = s_3;
                float _e19 = partial.inner[lid_3 + _e16];
                partial.inner[lid_3] = _e14 + _e19;
            }
            metal::threadgroup_barrier(metal::mem_flags::mem_threadgroup);
        }
    }
    if (lid_3 == 0u) {
        uint _e30 = params.rows;
        uint _e33 = params.tokens;
        local = p < (_e30 * _e33);
    } else {
        local = false;
    }
    bool _e37 = local;
    if (_e37) {
        uint _e40 = params.rows;
        uint r = naga_mod(p, _e40);
        uint _e44 = params.rows;
        uint t = naga_div(p, _e44);
        uint _e49 = params.rows;
        float _e55 = partial.inner[0];
        y[(t * _e49) + r] = _e55;
        return;
    } else {
        return;
    }
}

struct matmul_q8_0_Input {
};
[[max_total_threads_per_threadgroup(256)]] kernel void matmul_q8_0_(
  metal::uint3 wg [[threadgroup_position_in_grid]]
, uint lid [[thread_index_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_4 const& x [[user(fake0)]]
, device type_4& y [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, threadgroup type_5& partial
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    if (lid == 0u) {
        partial = {};
    }
    metal::threadgroup_barrier(metal::mem_flags::mem_threadgroup);
    float acc = 0.0;
    uint b = {};
    float s = {};
    uint j = {};
    uint _e2 = pair(wg, params);
    uint _e7 = params.rows;
    uint _e10 = params.tokens;
    if (_e2 < (_e7 * _e10)) {
        uint _e15 = params.rows;
        uint r_1 = naga_mod(_e2, _e15);
        uint _e19 = params.rows;
        uint t_1 = naga_div(_e2, _e19);
        uint _e23 = params.cols;
        uint nb = naga_div(_e23, 32u);
        b = lid;
        uint2 loop_bound_1 = uint2(4294967295u);
        bool loop_init_1 = true;
        while(true) {
            if (metal::all(loop_bound_1 == uint2(0u))) { break; }
            loop_bound_1 -= uint2(loop_bound_1.y == 0u, 1u);
            if (!loop_init_1) {
                uint _e83 = b;
                b = _e83 + 256u;
            }
            loop_init_1 = false;
            uint _e27 = b;
            if (_e27 < nb) {
            } else {
                break;
            }
            {
                uint _e30 = b;
                uint base = ((r_1 * nb) + _e30) * 34u;
                uint _e34 = byte_at(base, src, _buffer_sizes);
                uint _e37 = byte_at(base + 1u, src, _buffer_sizes);
                float _e41 = f16_to_f32_(_e34 | (_e37 << 8u));
                s = 0.0;
                j = 0u;
                uint2 loop_bound_2 = uint2(4294967295u);
                bool loop_init_2 = true;
                while(true) {
                    if (metal::all(loop_bound_2 == uint2(0u))) { break; }
                    loop_bound_2 -= uint2(loop_bound_2.y == 0u, 1u);
                    if (!loop_init_2) {
                        uint _e77 = j;
                        j = _e77 + 1u;
                    }
                    loop_init_2 = false;
                    uint _e46 = j;
                    if (_e46 < 32u) {
                    } else {
                        break;
                    }
                    {
                        uint _e51 = j;
                        uint _e53 = byte_at((base + 2u) + _e51, src, _buffer_sizes);
                        int q = (static_cast<int>(_e53) << 24u) >> 24u;
                        float _e59 = s;
                        uint _e64 = params.cols;
                        uint _e66 = b;
                        uint _e70 = j;
                        float _e73 = x[((t_1 * _e64) + (_e66 * 32u)) + _e70];
                        s = _e59 + (static_cast<float>(q) * _e73);
                    }
                }
                float _e79 = acc;
                float _e80 = s;
                acc = _e79 + (_e80 * _e41);
            }
        }
    }
    float _e86 = acc;
    finish(lid, _e2, _e86, y, params, partial, _buffer_sizes);
    return;
}


struct matmul_q4_0_Input {
};
[[max_total_threads_per_threadgroup(256)]] kernel void matmul_q4_0_(
  metal::uint3 wg_1 [[threadgroup_position_in_grid]]
, uint lid_1 [[thread_index_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_4 const& x [[user(fake0)]]
, device type_4& y [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, threadgroup type_5& partial
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    if (lid_1 == 0u) {
        partial = {};
    }
    metal::threadgroup_barrier(metal::mem_flags::mem_threadgroup);
    float acc_1 = 0.0;
    uint b_1 = {};
    float s_1 = {};
    uint j_1 = {};
    uint _e2 = pair(wg_1, params);
    uint _e7 = params.rows;
    uint _e10 = params.tokens;
    if (_e2 < (_e7 * _e10)) {
        uint _e15 = params.rows;
        uint r_2 = naga_mod(_e2, _e15);
        uint _e19 = params.rows;
        uint t_2 = naga_div(_e2, _e19);
        uint _e23 = params.cols;
        uint nb_1 = naga_div(_e23, 32u);
        b_1 = lid_1;
        uint2 loop_bound_3 = uint2(4294967295u);
        bool loop_init_3 = true;
        while(true) {
            if (metal::all(loop_bound_3 == uint2(0u))) { break; }
            loop_bound_3 -= uint2(loop_bound_3.y == 0u, 1u);
            if (!loop_init_3) {
                uint _e99 = b_1;
                b_1 = _e99 + 256u;
            }
            loop_init_3 = false;
            uint _e27 = b_1;
            if (_e27 < nb_1) {
            } else {
                break;
            }
            {
                uint _e30 = b_1;
                uint base_1 = ((r_2 * nb_1) + _e30) * 18u;
                uint _e34 = byte_at(base_1, src, _buffer_sizes);
                uint _e37 = byte_at(base_1 + 1u, src, _buffer_sizes);
                float _e41 = f16_to_f32_(_e34 | (_e37 << 8u));
                uint _e44 = params.cols;
                uint _e46 = b_1;
                uint xb = (t_2 * _e44) + (_e46 * 32u);
                s_1 = 0.0;
                j_1 = 0u;
                uint2 loop_bound_4 = uint2(4294967295u);
                bool loop_init_4 = true;
                while(true) {
                    if (metal::all(loop_bound_4 == uint2(0u))) { break; }
                    loop_bound_4 -= uint2(loop_bound_4.y == 0u, 1u);
                    if (!loop_init_4) {
                        uint _e93 = j_1;
                        j_1 = _e93 + 1u;
                    }
                    loop_init_4 = false;
                    uint _e54 = j_1;
                    if (_e54 < 16u) {
                    } else {
                        break;
                    }
                    {
                        uint _e59 = j_1;
                        uint _e61 = byte_at((base_1 + 2u) + _e59, src, _buffer_sizes);
                        float _e62 = s_1;
                        uint _e70 = j_1;
                        float _e73 = x[xb + _e70];
                        s_1 = _e62 + (static_cast<float>(as_type<int>(as_type<uint>(static_cast<int>(_e61 & 15u)) - as_type<uint>(8))) * _e73);
                        float _e76 = s_1;
                        uint _e84 = j_1;
                        float _e89 = x[(xb + _e84) + 16u];
                        s_1 = _e76 + (static_cast<float>(as_type<int>(as_type<uint>(static_cast<int>(_e61 >> 4u)) - as_type<uint>(8))) * _e89);
                    }
                }
                float _e95 = acc_1;
                float _e96 = s_1;
                acc_1 = _e95 + (_e96 * _e41);
            }
        }
    }
    float _e102 = acc_1;
    finish(lid_1, _e2, _e102, y, params, partial, _buffer_sizes);
    return;
}


struct matmul_nf4_Input {
};
[[max_total_threads_per_threadgroup(256)]] kernel void matmul_nf4_(
  metal::uint3 wg_2 [[threadgroup_position_in_grid]]
, uint lid_2 [[thread_index_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_4 const& scales [[user(fake0)]]
, device type_4 const& x [[user(fake0)]]
, device type_4& y [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, threadgroup type_5& partial
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    type_3 NF4_ = type_3 {{-1.0, -0.6961928, -0.52507305, -0.3949175, -0.28444138, -0.18477343, -0.091050036, 0.0, 0.0795803, 0.1609302, 0.2461123, 0.33791524, 0.44070983, 0.562617, 0.72295684, 1.0}};
    if (lid_2 == 0u) {
        partial = {};
    }
    metal::threadgroup_barrier(metal::mem_flags::mem_threadgroup);
    float acc_2 = 0.0;
    uint b_2 = {};
    float s_2 = {};
    uint j_2 = {};
    uint _e2 = pair(wg_2, params);
    uint _e7 = params.rows;
    uint _e10 = params.tokens;
    if (_e2 < (_e7 * _e10)) {
        uint _e15 = params.rows;
        uint r_3 = naga_mod(_e2, _e15);
        uint _e19 = params.rows;
        uint t_3 = naga_div(_e2, _e19);
        uint _e23 = params.cols;
        uint nb_2 = naga_div(_e23, 64u);
        b_2 = lid_2;
        uint2 loop_bound_5 = uint2(4294967295u);
        bool loop_init_5 = true;
        while(true) {
            if (metal::all(loop_bound_5 == uint2(0u))) { break; }
            loop_bound_5 -= uint2(loop_bound_5.y == 0u, 1u);
            if (!loop_init_5) {
                uint _e94 = b_2;
                b_2 = _e94 + 256u;
            }
            loop_init_5 = false;
            uint _e27 = b_2;
            if (_e27 < nb_2) {
            } else {
                break;
            }
            {
                uint _e30 = b_2;
                uint blk = (r_3 * nb_2) + _e30;
                uint _e34 = params.cols;
                uint _e36 = b_2;
                uint xb_1 = (t_3 * _e34) + (_e36 * 64u);
                s_2 = 0.0;
                j_2 = 0u;
                uint2 loop_bound_6 = uint2(4294967295u);
                bool loop_init_6 = true;
                while(true) {
                    if (metal::all(loop_bound_6 == uint2(0u))) { break; }
                    loop_bound_6 -= uint2(loop_bound_6.y == 0u, 1u);
                    if (!loop_init_6) {
                        uint _e85 = j_2;
                        j_2 = _e85 + 1u;
                    }
                    loop_init_6 = false;
                    uint _e44 = j_2;
                    if (_e44 < 32u) {
                    } else {
                        break;
                    }
                    {
                        uint _e49 = j_2;
                        uint _e51 = byte_at((blk * 32u) + _e49, src, _buffer_sizes);
                        float _e52 = s_2;
                        float _e57 = NF4_.inner[_e51 >> 4u];
                        uint _e60 = j_2;
                        float _e64 = x[xb_1 + (2u * _e60)];
                        s_2 = _e52 + (_e57 * _e64);
                        float _e67 = s_2;
                        float _e72 = NF4_.inner[_e51 & 15u];
                        uint _e75 = j_2;
                        float _e81 = x[(xb_1 + (2u * _e75)) + 1u];
                        s_2 = _e67 + (_e72 * _e81);
                    }
                }
                float _e87 = acc_2;
                float _e88 = s_2;
                float _e91 = scales[blk];
                acc_2 = _e87 + (_e88 * _e91);
            }
        }
    }
    float _e97 = acc_2;
    finish(lid_2, _e2, _e97, y, params, partial, _buffer_sizes);
    return;
}

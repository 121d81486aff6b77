// Generated from kernels/wgsl/common.wgsl + quantize.wgsl by naga 30 (crates/gpu/tests/metal.rs); do not edit.
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
    uint n_blocks;
    uint groups_x;
};
struct type_8 {
    uint inner[17];
};
struct type_10 {
    uint inner[15];
};
constant uint SIGN = 2147483648u;
constant uint MANT = 8388607u;
constant uint INF = 2139095040u;
constant uint QNAN = 2143289344u;
constant int INT_MIN_ = (-2147483647 - 1);

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
    uint sign_1 = (h & 32768u) << 16u;
    uint e_2 = (h >> 10u) & 31u;
    uint m_1 = h & 1023u;
    bits = sign_1;
    if (e_2 == 0u) {
        if (m_1 != 0u) {
            uint shift_1 = metal::clz(m_1) - 21u;
            bits = (sign_1 | ((113u - shift_1) << 23u)) | (((m_1 << shift_1) & 1023u) << 13u);
        }
    } else {
        if (e_2 == 31u) {
            bits = (sign_1 | 2139095040u) | (m_1 << 13u);
        } else {
            bits = (sign_1 | ((e_2 + 112u) << 23u)) | (m_1 << 13u);
        }
    }
    uint _e45 = bits;
    return as_type<float>(_e45);
}

bool is_nan(
    uint b_1
) {
    return (b_1 & 2147483647u) > INF;
}

bool is_inf(
    uint b_2
) {
    return (b_2 & 2147483647u) == INF;
}

bool is_zero(
    uint b_3
) {
    return (b_3 & 2147483647u) == 0u;
}

metal::uint2 unpack(
    uint b_4
) {
    uint exp = (b_4 >> 23u) & 255u;
    if (exp == 0u) {
        uint m_2 = b_4 & MANT;
        uint shift_2 = metal::clz(m_2) - 8u;
        return metal::uint2(m_2 << shift_2, 33u - shift_2);
    }
    return metal::uint2((b_4 & MANT) | 8388608u, exp + 32u);
}

uint pack(
    uint sign,
    int e,
    uint sig,
    bool sticky
) {
    uint shift = 8u;
    uint mant = {};
    uint rem = {};
    uint half_ = {};
    bool local = {};
    bool local_1 = {};
    bool local_2 = {};
    uint ex = {};
    int biased = as_type<int>(as_type<uint>(e) + as_type<uint>(158));
    if (biased >= 255) {
        return sign | INF;
    }
    if (biased <= 0) {
        shift = static_cast<uint>(as_type<int>(as_type<uint>(9) - as_type<uint>(biased)));
    }
    uint _e17 = shift;
    if (_e17 >= 33u) {
        return sign;
    }
    uint _e23 = shift;
    if (_e23 == 32u) {
        mant = 0u;
        rem = sig;
        half_ = 2147483648u;
    } else {
        uint _e28 = shift;
        mant = sig >> _e28;
        uint _e31 = shift;
        rem = sig & ((1u << _e31) - 1u);
        uint _e37 = shift;
        half_ = 1u << (_e37 - 1u);
    }
    uint _e41 = rem;
    uint _e42 = half_;
    if (!((_e41 > _e42))) {
        uint _e47 = rem;
        uint _e48 = half_;
        if (_e47 == _e48) {
            if (!(sticky)) {
                uint _e55 = mant;
                local_2 = (_e55 & 1u) == 1u;
            } else {
                local_2 = true;
            }
            bool _e61 = local_2;
            local_1 = _e61;
        } else {
            local_1 = false;
        }
        bool _e63 = local_1;
        local = _e63;
    } else {
        local = true;
    }
    bool up = local;
    uint _e66 = mant;
    mant = _e66 + (up ? 1u : 0u);
    if (biased <= 0) {
        uint _e73 = mant;
        return sign | _e73;
    }
    ex = static_cast<uint>(biased);
    uint _e77 = mant;
    if (_e77 == 16777216u) {
        mant = 8388608u;
        uint _e81 = ex;
        ex = _e81 + 1u;
        uint _e84 = ex;
        if (_e84 >= 255u) {
            return sign | INF;
        }
    }
    uint _e89 = ex;
    uint _e93 = mant;
    return (sign | (_e89 << 23u)) | (_e93 & MANT);
}

uint mul_rn(
    uint a,
    uint b_5
) {
    bool local_3 = {};
    bool local_4 = {};
    bool local_5 = {};
    bool local_6 = {};
    uint k_3 = 15u;
    uint sign_2 = (a ^ b_5) & SIGN;
    bool _e5 = is_nan(a);
    if (!(_e5)) {
        bool _e9 = is_nan(b_5);
        local_3 = _e9;
    } else {
        local_3 = true;
    }
    bool _e11 = local_3;
    if (_e11) {
        return QNAN;
    }
    bool _e13 = is_inf(a);
    if (!(_e13)) {
        bool _e17 = is_inf(b_5);
        local_4 = _e17;
    } else {
        local_4 = true;
    }
    bool _e19 = local_4;
    if (_e19) {
        bool _e20 = is_zero(a);
        if (!(_e20)) {
            bool _e24 = is_zero(b_5);
            local_5 = _e24;
        } else {
            local_5 = true;
        }
        bool _e26 = local_5;
        if (_e26) {
            return QNAN;
        }
        return sign_2 | INF;
    }
    bool _e30 = is_zero(a);
    if (!(_e30)) {
        bool _e34 = is_zero(b_5);
        local_6 = _e34;
    } else {
        local_6 = true;
    }
    bool _e36 = local_6;
    if (_e36) {
        return sign_2;
    }
    metal::uint2 _e37 = unpack(a);
    metal::uint2 _e38 = unpack(b_5);
    uint al = _e37.x & 65535u;
    uint ah = _e37.x >> 16u;
    uint bl = _e38.x & 65535u;
    uint bh = _e38.x >> 16u;
    uint ll = al * bl;
    uint mid = (al * bh) + (ah * bl);
    uint lo = ll + ((mid & 65535u) << 16u);
    uint carry = (lo < ll) ? 1u : 0u;
    uint hi = ((ah * bh) + (mid >> 16u)) + carry;
    if ((hi & 32768u) != 0u) {
        k_3 = 16u;
    }
    uint _e77 = k_3;
    uint _e80 = k_3;
    uint sig_1 = (hi << (32u - _e77)) | (lo >> _e80);
    uint _e84 = k_3;
    bool sticky_1 = (lo & ((1u << _e84) - 1u)) != 0u;
    uint _e100 = k_3;
    int e_3 = as_type<int>(as_type<uint>(as_type<int>(as_type<uint>(as_type<int>(as_type<uint>(as_type<int>(as_type<uint>(static_cast<int>(_e37.y)) + as_type<uint>(static_cast<int>(_e38.y)))) - as_type<uint>(64))) - as_type<uint>(300))) + as_type<uint>(static_cast<int>(_e100)));
    uint _e103 = pack(sign_2, e_3, sig_1, sticky_1);
    return _e103;
}

uint div_rn(
    uint a_1,
    uint b_6
) {
    bool local_7 = {};
    uint r = {};
    int e_1 = {};
    uint q = 0u;
    uint i_1 = 0u;
    uint sign_3 = (a_1 ^ b_6) & SIGN;
    bool _e5 = is_nan(a_1);
    if (!(_e5)) {
        bool _e9 = is_nan(b_6);
        local_7 = _e9;
    } else {
        local_7 = true;
    }
    bool _e11 = local_7;
    if (_e11) {
        return QNAN;
    }
    bool _e13 = is_inf(a_1);
    if (_e13) {
        bool _e14 = is_inf(b_6);
        if (_e14) {
            return QNAN;
        }
        return sign_3 | INF;
    }
    bool _e18 = is_inf(b_6);
    if (_e18) {
        return sign_3;
    }
    bool _e19 = is_zero(b_6);
    if (_e19) {
        bool _e20 = is_zero(a_1);
        if (_e20) {
            return QNAN;
        }
        return sign_3 | INF;
    }
    bool _e24 = is_zero(a_1);
    if (_e24) {
        return sign_3;
    }
    metal::uint2 _e25 = unpack(a_1);
    metal::uint2 _e26 = unpack(b_6);
    r = _e25.x;
    e_1 = as_type<int>(as_type<uint>(as_type<int>(as_type<uint>(static_cast<int>(_e25.y)) - as_type<uint>(static_cast<int>(_e26.y)))) - as_type<uint>(31));
    uint _e37 = r;
    if (_e37 < _e26.x) {
        uint _e40 = r;
        r = _e40 << 1u;
        int _e43 = e_1;
        e_1 = as_type<int>(as_type<uint>(_e43) - as_type<uint>(1));
    }
    uint2 loop_bound = uint2(4294967295u);
    bool loop_init = true;
    while(true) {
        if (metal::all(loop_bound == uint2(0u))) { break; }
        loop_bound -= uint2(loop_bound.y == 0u, 1u);
        if (!loop_init) {
            uint _e69 = i_1;
            i_1 = _e69 + 1u;
        }
        loop_init = false;
        uint _e50 = i_1;
        if (_e50 < 32u) {
        } else {
            break;
        }
        {
            uint _e53 = q;
            q = _e53 << 1u;
            uint _e56 = r;
            if (_e56 >= _e26.x) {
                uint _e59 = r;
                r = _e59 - _e26.x;
                uint _e62 = q;
                q = _e62 | 1u;
            }
            uint _e65 = r;
            r = _e65 << 1u;
        }
    }
    int _e71 = e_1;
    uint _e72 = q;
    uint _e73 = r;
    uint _e76 = pack(sign_3, _e71, _e72, _e73 != 0u);
    return _e76;
}

int naga_neg(int val) {
    return as_type<int>(-as_type<uint>(val));
}

int key(
    uint b_7
) {
    int m_3 = static_cast<int>(b_7 & 2147483647u);
    return ((b_7 & SIGN) != 0u) ? naga_neg(m_3) : m_3;
}

bool gt(
    uint a_2,
    uint b_8
) {
    bool local_8 = {};
    bool local_9 = {};
    bool _e2 = is_nan(a_2);
    if (!(_e2)) {
        bool _e6 = is_nan(b_8);
        local_8 = !(_e6);
    } else {
        local_8 = false;
    }
    bool _e9 = local_8;
    if (_e9) {
        int _e12 = key(a_2);
        int _e13 = key(b_8);
        local_9 = _e12 > _e13;
    } else {
        local_9 = false;
    }
    bool _e16 = local_9;
    return _e16;
}

int round_to_i32_(
    uint b_9
) {
    uint v = {};
    bool _e1 = is_nan(b_9);
    if (_e1) {
        return INT_MIN_;
    }
    uint exp_1 = (b_9 >> 23u) & 255u;
    if (exp_1 >= 158u) {
        return INT_MIN_;
    }
    if (exp_1 < 126u) {
        return 0;
    }
    uint mant_1 = (b_9 & MANT) | 8388608u;
    if (exp_1 >= 150u) {
        v = mant_1 << (exp_1 - 150u);
    } else {
        uint s_1 = 150u - exp_1;
        v = mant_1 >> s_1;
        if ((mant_1 & ((1u << s_1) - 1u)) >= (1u << (s_1 - 1u))) {
            uint _e36 = v;
            v = _e36 + 1u;
        }
    }
    uint _e39 = v;
    uint _e41 = v;
    return ((b_9 & SIGN) != 0u) ? naga_neg(static_cast<int>(_e41)) : static_cast<int>(_e39);
}

int trunc_to_i32_(
    uint b_10
) {
    uint v_1 = {};
    bool _e1 = is_nan(b_10);
    if (_e1) {
        return INT_MIN_;
    }
    uint exp_2 = (b_10 >> 23u) & 255u;
    if (exp_2 >= 158u) {
        return INT_MIN_;
    }
    if (exp_2 < 127u) {
        return 0;
    }
    uint mant_2 = (b_10 & MANT) | 8388608u;
    if (exp_2 >= 150u) {
        v_1 = mant_2 << (exp_2 - 150u);
    } else {
        v_1 = mant_2 >> (150u - exp_2);
    }
    uint _e26 = v_1;
    uint _e28 = v_1;
    return ((b_10 & SIGN) != 0u) ? naga_neg(static_cast<int>(_e28)) : static_cast<int>(_e26);
}

uint f32_to_f16_(
    uint b_11
) {
    uint h_1 = {};
    bool local_10 = {};
    bool local_11 = {};
    uint h_2 = {};
    bool local_12 = {};
    bool local_13 = {};
    uint sign_4 = (b_11 >> 16u) & 32768u;
    bool _e5 = is_nan(b_11);
    if (_e5) {
        return sign_4 | 32256u;
    }
    uint exp_3 = (b_11 >> 23u) & 255u;
    uint mant_3 = b_11 & MANT;
    if (exp_3 >= 143u) {
        return sign_4 | 31744u;
    }
    if (exp_3 >= 113u) {
        h_1 = ((exp_3 - 112u) << 10u) | (mant_3 >> 13u);
        uint rem_1 = mant_3 & 8191u;
        if (!((rem_1 > 4096u))) {
            if (rem_1 == 4096u) {
                uint _e39 = h_1;
                local_11 = (_e39 & 1u) == 1u;
            } else {
                local_11 = false;
            }
            bool _e45 = local_11;
            local_10 = _e45;
        } else {
            local_10 = true;
        }
        bool _e47 = local_10;
        if (_e47) {
            uint _e48 = h_1;
            h_1 = _e48 + 1u;
        }
        uint _e51 = h_1;
        return sign_4 | _e51;
    }
    if (exp_3 < 102u) {
        return sign_4;
    }
    uint m_4 = mant_3 | 8388608u;
    uint s_2 = 126u - exp_3;
    h_2 = m_4 >> s_2;
    uint rem_2 = m_4 & ((1u << s_2) - 1u);
    uint half_1 = 1u << (s_2 - 1u);
    if (!((rem_2 > half_1))) {
        if (rem_2 == half_1) {
            uint _e77 = h_2;
            local_13 = (_e77 & 1u) == 1u;
        } else {
            local_13 = false;
        }
        bool _e83 = local_13;
        local_12 = _e83;
    } else {
        local_12 = true;
    }
    bool _e85 = local_12;
    if (_e85) {
        uint _e86 = h_2;
        h_2 = _e86 + 1u;
    }
    uint _e89 = h_2;
    return sign_4 | _e89;
}

uint block_index(
    metal::uint3 wg_4,
    metal::uint3 lid_4,
    constant Params& params
) {
    uint _e5 = params.groups_x;
    return (((wg_4.y * _e5) + wg_4.x) * 64u) + lid_4.x;
}

void put_byte(
    thread type_8& w_2,
    uint i_2,
    uint v_2
) {
    uint _e6 = w_2.inner[i_2 >> 2u];
    w_2.inner[i_2 >> 2u] = _e6 | ((v_2 & 255u) << ((i_2 & 3u) * 8u));
    return;
}

void q8_0_block(
    uint blk,
    thread type_8& w_3,
    uint at,
    device type_1 const& src,
    constant _mslBufferSizes& _buffer_sizes
) {
    uint amax = 0u;
    uint j_1 = 0u;
    uint id = 0u;
    uint j_2 = 0u;
    uint2 loop_bound_1 = uint2(4294967295u);
    bool loop_init_1 = true;
    while(true) {
        if (metal::all(loop_bound_1 == uint2(0u))) { break; }
        loop_bound_1 -= uint2(loop_bound_1.y == 0u, 1u);
        if (!loop_init_1) {
            uint _e23 = j_1;
            j_1 = _e23 + 1u;
        }
        loop_init_1 = false;
        uint _e7 = j_1;
        if (_e7 < 32u) {
        } else {
            break;
        }
        {
            uint _e13 = j_1;
            uint _e16 = src[(blk * 32u) + _e13];
            uint a_3 = _e16 & 2147483647u;
            uint _e19 = amax;
            bool _e20 = gt(_e19, a_3);
            if (!(_e20)) {
                amax = a_3;
            }
        }
    }
    uint _e25 = amax;
    uint _e27 = div_rn(_e25, 1123942400u);
    bool _e30 = is_zero(_e27);
    if (!(_e30)) {
        uint _e33 = div_rn(1065353216u, _e27);
        id = _e33;
    }
    uint _e34 = f32_to_f16_(_e27);
    put_byte(w_3, at, _e34);
    put_byte(w_3, at + 1u, _e34 >> 8u);
    uint2 loop_bound_2 = uint2(4294967295u);
    bool loop_init_2 = true;
    while(true) {
        if (metal::all(loop_bound_2 == uint2(0u))) { break; }
        loop_bound_2 -= uint2(loop_bound_2.y == 0u, 1u);
        if (!loop_init_2) {
            uint _e60 = j_2;
            j_2 = _e60 + 1u;
        }
        loop_init_2 = false;
        uint _e41 = j_2;
        if (_e41 < 32u) {
        } else {
            break;
        }
        {
            uint _e47 = j_2;
            uint _e50 = src[(blk * 32u) + _e47];
            uint _e51 = id;
            uint _e52 = mul_rn(_e50, _e51);
            int _e53 = round_to_i32_(_e52);
            uint _e56 = j_2;
            put_byte(w_3, (at + 2u) + _e56, static_cast<uint>(_e53));
        }
    }
    return;
}

uint q4_code(
    uint x,
    uint id_1
) {
    int t = INT_MIN_;
    bool local_14 = {};
    uint _e2 = mul_rn(x, id_1);
    bool _e5 = is_nan(_e2);
    if (!(_e5)) {
        bool _e9 = is_inf(_e2);
        local_14 = !(_e9);
    } else {
        local_14 = false;
    }
    bool _e12 = local_14;
    if (_e12) {
        int _e17 = trunc_to_i32_(as_type<uint>(as_type<float>(_e2) + 8.5));
        t = _e17;
    }
    int _e18 = t;
    int small = (_e18 << 24u) >> 24u;
    return static_cast<uint>(metal::min(small, 15)) & 255u;
}

void q4_0_block(
    uint blk_1,
    thread type_8& w_4,
    uint at_1,
    device type_1 const& src,
    constant _mslBufferSizes& _buffer_sizes
) {
    uint amax_1 = 0u;
    uint max = 0u;
    uint j_3 = 0u;
    uint id_2 = 0u;
    uint j_4 = 0u;
    uint2 loop_bound_3 = uint2(4294967295u);
    bool loop_init_3 = true;
    while(true) {
        if (metal::all(loop_bound_3 == uint2(0u))) { break; }
        loop_bound_3 -= uint2(loop_bound_3.y == 0u, 1u);
        if (!loop_init_3) {
            uint _e26 = j_3;
            j_3 = _e26 + 1u;
        }
        loop_init_3 = false;
        uint _e9 = j_3;
        if (_e9 < 32u) {
        } else {
            break;
        }
        {
            uint _e15 = j_3;
            uint v_3 = src[(blk_1 * 32u) + _e15];
            uint _e21 = amax_1;
            bool _e22 = gt(v_3 & 2147483647u, _e21);
            if (_e22) {
                amax_1 = v_3 & 2147483647u;
                max = v_3;
            }
        }
    }
    uint _e28 = max;
    uint _e30 = div_rn(_e28, 3238002688u);
    bool _e33 = is_zero(_e30);
    if (!(_e33)) {
        uint _e36 = div_rn(1065353216u, _e30);
        id_2 = _e36;
    }
    uint _e37 = f32_to_f16_(_e30);
    put_byte(w_4, at_1, _e37);
    put_byte(w_4, at_1 + 1u, _e37 >> 8u);
    uint2 loop_bound_4 = uint2(4294967295u);
    bool loop_init_4 = true;
    while(true) {
        if (metal::all(loop_bound_4 == uint2(0u))) { break; }
        loop_bound_4 -= uint2(loop_bound_4.y == 0u, 1u);
        if (!loop_init_4) {
            uint _e77 = j_4;
            j_4 = _e77 + 1u;
        }
        loop_init_4 = false;
        uint _e44 = j_4;
        if (_e44 < 16u) {
        } else {
            break;
        }
        {
            uint _e50 = j_4;
            uint _e53 = src[(blk_1 * 32u) + _e50];
            uint _e54 = id_2;
            uint _e55 = q4_code(_e53, _e54);
            uint _e59 = j_4;
            uint _e64 = src[((blk_1 * 32u) + _e59) + 16u];
            uint _e65 = id_2;
            uint _e66 = q4_code(_e64, _e65);
            uint _e69 = j_4;
            put_byte(w_4, (at_1 + 2u) + _e69, _e55 | ((_e66 << 4u) & 255u));
        }
    }
    return;
}

uint nf4_code(
    uint s,
    thread type_10& NF4_THRESHOLDS
) {
    uint c = 0u;
    uint t_1 = 0u;
    uint2 loop_bound_5 = uint2(4294967295u);
    bool loop_init_5 = true;
    while(true) {
        if (metal::all(loop_bound_5 == uint2(0u))) { break; }
        loop_bound_5 -= uint2(loop_bound_5.y == 0u, 1u);
        if (!loop_init_5) {
            uint _e17 = t_1;
            t_1 = _e17 + 1u;
        }
        loop_init_5 = false;
        uint _e5 = t_1;
        if (_e5 < 15u) {
        } else {
            break;
        }
        {
            uint _e9 = t_1;
            uint _e11 = NF4_THRESHOLDS.inner[_e9];
            bool _e12 = gt(s, _e11);
            if (_e12) {
                uint _e13 = c;
                c = _e13 + 1u;
            }
        }
    }
    uint _e19 = c;
    return _e19;
}

uint clamp_unit(
    uint x_1
) {
    bool _e1 = is_nan(x_1);
    if (_e1) {
        return x_1;
    }
    bool _e3 = gt(x_1, 1065353216u);
    if (_e3) {
        return 1065353216u;
    }
    bool _e6 = gt(3212836864u, x_1);
    if (_e6) {
        return 3212836864u;
    }
    return x_1;
}

struct quantize_q8_0_Input {
};
[[max_total_threads_per_threadgroup(64)]] kernel void quantize_q8_0_(
  metal::uint3 wg [[threadgroup_position_in_grid]]
, metal::uint3 lid [[thread_position_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_1& dst [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    type_8 w = {};
    uint k = 0u;
    uint _e2 = block_index(wg, lid, params);
    uint _e7 = params.n_blocks;
    if ((_e2 * 2u) >= _e7) {
        return;
    }
    q8_0_block(_e2 * 2u, w, 0u, src, _buffer_sizes);
    uint _e19 = params.n_blocks;
    if (((_e2 * 2u) + 1u) < _e19) {
        q8_0_block((_e2 * 2u) + 1u, w, 34u, src, _buffer_sizes);
    }
    uint2 loop_bound_6 = uint2(4294967295u);
    bool loop_init_6 = true;
    while(true) {
        if (metal::all(loop_bound_6 == uint2(0u))) { break; }
        loop_bound_6 -= uint2(loop_bound_6.y == 0u, 1u);
        if (!loop_init_6) {
            uint _e41 = k;
            k = _e41 + 1u;
        }
        loop_init_6 = false;
        uint _e28 = k;
        if (_e28 < 17u) {
        } else {
            break;
        }
        {
            uint _e34 = k;
            uint _e37 = k;
            uint _e39 = w.inner[_e37];
            dst[(_e2 * 17u) + _e34] = _e39;
        }
    }
    return;
}


struct quantize_q4_0_Input {
};
[[max_total_threads_per_threadgroup(64)]] kernel void quantize_q4_0_(
  metal::uint3 wg_1 [[threadgroup_position_in_grid]]
, metal::uint3 lid_1 [[thread_position_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_1& dst [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    type_8 w_1 = {};
    uint k_1 = 0u;
    uint _e2 = block_index(wg_1, lid_1, params);
    uint _e7 = params.n_blocks;
    if ((_e2 * 2u) >= _e7) {
        return;
    }
    q4_0_block(_e2 * 2u, w_1, 0u, src, _buffer_sizes);
    uint _e19 = params.n_blocks;
    if (((_e2 * 2u) + 1u) < _e19) {
        q4_0_block((_e2 * 2u) + 1u, w_1, 18u, src, _buffer_sizes);
    }
    uint2 loop_bound_7 = uint2(4294967295u);
    bool loop_init_7 = true;
    while(true) {
        if (metal::all(loop_bound_7 == uint2(0u))) { break; }
        loop_bound_7 -= uint2(loop_bound_7.y == 0u, 1u);
        if (!loop_init_7) {
            uint _e41 = k_1;
            k_1 = _e41 + 1u;
        }
        loop_init_7 = false;
        uint _e28 = k_1;
        if (_e28 < 9u) {
        } else {
            break;
        }
        {
            uint _e34 = k_1;
            uint _e37 = k_1;
            uint _e39 = w_1.inner[_e37];
            dst[(_e2 * 9u) + _e34] = _e39;
        }
    }
    return;
}


struct quantize_nf4_Input {
};
[[max_total_threads_per_threadgroup(64)]] kernel void quantize_nf4_(
  metal::uint3 wg_2 [[threadgroup_position_in_grid]]
, metal::uint3 lid_2 [[thread_position_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_1& dst [[user(fake0)]]
, device type_1& scales [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    type_10 NF4_THRESHOLDS = type_10 {{3210288344u, 3206304368u, 3203105920u, 3199068790u, 3195026668u, 3188537532u, 3174725745u, 1025702655u, 1039550562u, 1045456864u, 1049985748u, 1053250553u, 1056992515u, 1059360175u, 1063029209u}};
    uint m = 0u;
    uint j = 0u;
    uint floor_m = {};
    uint k_2 = 0u;
    uint word = {};
    uint b = {};
    uint _e2 = block_index(wg_2, lid_2, params);
    uint _e5 = params.n_blocks;
    if (_e2 >= _e5) {
        return;
    }
    uint2 loop_bound_8 = uint2(4294967295u);
    bool loop_init_8 = true;
    while(true) {
        if (metal::all(loop_bound_8 == uint2(0u))) { break; }
        loop_bound_8 -= uint2(loop_bound_8.y == 0u, 1u);
        if (!loop_init_8) {
            uint _e26 = j;
            j = _e26 + 1u;
        }
        loop_init_8 = false;
        uint _e11 = j;
        if (_e11 < 64u) {
        } else {
            break;
        }
        {
            uint _e17 = j;
            uint _e20 = src[(_e2 * 64u) + _e17];
            uint a_4 = _e20 & 2147483647u;
            uint _e23 = m;
            bool _e24 = gt(a_4, _e23);
            if (_e24) {
                m = a_4;
            }
        }
    }
    uint _e30 = m;
    scales[_e2] = _e30;
    uint _e31 = m;
    floor_m = _e31;
    uint _e34 = m;
    bool _e35 = gt(7136238u, _e34);
    if (_e35) {
        floor_m = 7136238u;
    }
    uint _e38 = floor_m;
    uint _e39 = div_rn(1065353216u, _e38);
    uint2 loop_bound_9 = uint2(4294967295u);
    bool loop_init_9 = true;
    while(true) {
        if (metal::all(loop_bound_9 == uint2(0u))) { break; }
        loop_bound_9 -= uint2(loop_bound_9.y == 0u, 1u);
        if (!loop_init_9) {
            uint _e99 = k_2;
            k_2 = _e99 + 1u;
        }
        loop_init_9 = false;
        uint _e42 = k_2;
        if (_e42 < 8u) {
        } else {
            break;
        }
        {
            word = 0u;
            b = 0u;
            uint2 loop_bound_10 = uint2(4294967295u);
            bool loop_init_10 = true;
            while(true) {
                if (metal::all(loop_bound_10 == uint2(0u))) { break; }
                loop_bound_10 -= uint2(loop_bound_10.y == 0u, 1u);
                if (!loop_init_10) {
                    uint _e89 = b;
                    b = _e89 + 1u;
                }
                loop_init_10 = false;
                uint _e49 = b;
                if (_e49 < 4u) {
                } else {
                    break;
                }
                {
                    uint _e52 = k_2;
                    uint _e55 = b;
                    uint j_5 = ((_e52 * 4u) + _e55) * 2u;
                    uint _e64 = src[(_e2 * 64u) + j_5];
                    uint _e65 = mul_rn(_e64, _e39);
                    uint _e66 = clamp_unit(_e65);
                    uint _e67 = nf4_code(_e66, NF4_THRESHOLDS);
                    uint _e75 = src[((_e2 * 64u) + j_5) + 1u];
                    uint _e76 = mul_rn(_e75, _e39);
                    uint _e77 = clamp_unit(_e76);
                    uint _e78 = nf4_code(_e77, NF4_THRESHOLDS);
                    uint _e79 = word;
                    uint _e83 = b;
                    word = _e79 | (((_e67 << 4u) | _e78) << (_e83 * 8u));
                }
            }
            uint _e94 = k_2;
            uint _e97 = word;
            dst[(_e2 * 8u) + _e94] = _e97;
        }
    }
    return;
}


struct check_arithmeticInput {
};
[[max_total_threads_per_threadgroup(64)]] kernel void check_arithmetic(
  metal::uint3 wg_3 [[threadgroup_position_in_grid]]
, metal::uint3 lid_3 [[thread_position_in_threadgroup]]
, device type_1 const& src [[user(fake0)]]
, device type_1& dst [[user(fake0)]]
, constant Params& params [[user(fake0)]]
, constant _mslBufferSizes& _buffer_sizes [[user(fake0)]]
) {
    uint _e2 = block_index(wg_3, lid_3, params);
    uint _e5 = params.n_blocks;
    if (_e2 >= _e5) {
        return;
    }
    uint a_5 = src[2u * _e2];
    uint b_12 = src[(2u * _e2) + 1u];
    uint _e23 = mul_rn(a_5, b_12);
    dst[5u * _e2] = _e23;
    uint _e30 = div_rn(a_5, b_12);
    dst[(5u * _e2) + 1u] = _e30;
    uint _e37 = f32_to_f16_(a_5);
    dst[(5u * _e2) + 2u] = _e37;
    int _e44 = round_to_i32_(a_5);
    dst[(5u * _e2) + 3u] = as_type<uint>(_e44);
    int _e52 = trunc_to_i32_(b_12);
    dst[(5u * _e2) + 4u] = as_type<uint>(_e52);
    return;
}

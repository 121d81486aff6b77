// Quantize f32 to Q8_0, Q4_0 (ggml's reference quantizers, x86 rounding) and NF4 (bitsandbytes),
// byte-identical to the CPU reference (crates/quant) on any device.
//
// WGSL leaves too much to the device for that: division may be off by 2.5 ulp, subnormals may be
// flushed, NaN and infinity handling may be assumed away (Metal's fast math). So every step whose
// rounding decides a byte is done on the bits with integer operations: correctly rounded
// multiplication and division (subnormals, infinities and NaN included), ggml's NaN-sensitive
// maximum, round-half-away and truncation with x86's cvttss2si result for NaN and overflow, and
// f32 → f16 rounding. The one float operation left, `p + 8.5` in Q4_0, only runs on a finite `p`
// and is correctly rounded in WGSL; a flushed subnormal `p` gives the same 8.5.
//
// Each invocation writes whole u32 words: two Q8_0 blocks (68 bytes), two Q4_0 blocks (36 bytes)
// or one NF4 block (32 code bytes and its absmax), so no two invocations share a word.

struct Params {
    // Blocks of 32 (Q8_0, Q4_0) or 64 (NF4) input values.
    n_blocks: u32,
    // Workgroups along x of the 2-D dispatch grid.
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
// NF4: one absmax (f32 bits) per block.
@group(0) @binding(2) var<storage, read_write> scales: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

const SIGN: u32 = 0x80000000u;
const MANT: u32 = 0x007fffffu;
const INF: u32 = 0x7f800000u;
const QNAN: u32 = 0x7fc00000u;
const INT_MIN: i32 = -2147483647 - 1;

fn is_nan(b: u32) -> bool {
    return (b & 0x7fffffffu) > INF;
}

fn is_inf(b: u32) -> bool {
    return (b & 0x7fffffffu) == INF;
}

fn is_zero(b: u32) -> bool {
    return (b & 0x7fffffffu) == 0u;
}

// Significand with its leading one at bit 23 and the unbiased-by-150 exponent: |x| = m · 2^(e − 150).
fn unpack(b: u32) -> vec2<u32> {
    let exp = (b >> 23u) & 0xffu;
    if (exp == 0u) {
        let m = b & MANT;
        let shift = countLeadingZeros(m) - 8u;
        // e = 1 − shift, carried as e + 32 so it stays unsigned.
        return vec2<u32>(m << shift, 33u - shift);
    }
    return vec2<u32>((b & MANT) | 0x800000u, exp + 32u);
}

// sign | round-to-nearest-even(sig · 2^e), where sig has its top bit at bit 31 and `sticky` says
// whether nonzero bits were already cut below it.
fn pack(sign: u32, e: i32, sig: u32, sticky: bool) -> u32 {
    let biased = e + 158;
    if (biased >= 255) {
        return sign | INF;
    }
    var shift: u32 = 8u;
    if (biased <= 0) {
        shift = u32(9 - biased);
    }
    if (shift >= 33u) {
        return sign;
    }
    var mant: u32;
    var rem: u32;
    var half: u32;
    if (shift == 32u) {
        mant = 0u;
        rem = sig;
        half = 0x80000000u;
    } else {
        mant = sig >> shift;
        rem = sig & ((1u << shift) - 1u);
        half = 1u << (shift - 1u);
    }
    let up = rem > half || (rem == half && (sticky || (mant & 1u) == 1u));
    mant += select(0u, 1u, up);
    if (biased <= 0) {
        // A subnormal; a carry into bit 23 is the smallest normal, encoded the same way.
        return sign | mant;
    }
    var ex = u32(biased);
    if (mant == 0x1000000u) {
        mant = 0x800000u;
        ex += 1u;
        if (ex >= 255u) {
            return sign | INF;
        }
    }
    return sign | (ex << 23u) | (mant & MANT);
}

// IEEE binary32 a · b, round to nearest even.
fn mul_rn(a: u32, b: u32) -> u32 {
    let sign = (a ^ b) & SIGN;
    if (is_nan(a) || is_nan(b)) {
        return QNAN;
    }
    if (is_inf(a) || is_inf(b)) {
        if (is_zero(a) || is_zero(b)) {
            return QNAN;
        }
        return sign | INF;
    }
    if (is_zero(a) || is_zero(b)) {
        return sign;
    }
    let ua = unpack(a);
    let ub = unpack(b);
    // 24 × 24-bit product as hi:lo from 16-bit limbs.
    let al = ua.x & 0xffffu;
    let ah = ua.x >> 16u;
    let bl = ub.x & 0xffffu;
    let bh = ub.x >> 16u;
    let ll = al * bl;
    let mid = al * bh + ah * bl;
    let lo = ll + ((mid & 0xffffu) << 16u);
    let carry = select(0u, 1u, lo < ll);
    let hi = ah * bh + (mid >> 16u) + carry;
    // The product has its top bit at 46 or 47: bring it to bit 31.
    var k: u32 = 15u;
    if ((hi & 0x8000u) != 0u) {
        k = 16u;
    }
    let sig = (hi << (32u - k)) | (lo >> k);
    let sticky = (lo & ((1u << k) - 1u)) != 0u;
    let e = i32(ua.y) + i32(ub.y) - 64 - 300 + i32(k);
    return pack(sign, e, sig, sticky);
}

// IEEE binary32 a / b, round to nearest even.
fn div_rn(a: u32, b: u32) -> u32 {
    let sign = (a ^ b) & SIGN;
    if (is_nan(a) || is_nan(b)) {
        return QNAN;
    }
    if (is_inf(a)) {
        if (is_inf(b)) {
            return QNAN;
        }
        return sign | INF;
    }
    if (is_inf(b)) {
        return sign;
    }
    if (is_zero(b)) {
        if (is_zero(a)) {
            return QNAN;
        }
        return sign | INF;
    }
    if (is_zero(a)) {
        return sign;
    }
    let ua = unpack(a);
    let ub = unpack(b);
    var r = ua.x;
    var e = i32(ua.y) - i32(ub.y) - 31;
    if (r < ub.x) {
        r = r << 1u;
        e -= 1;
    }
    // 32 quotient bits by long division; r stays below 2^26.
    var q: u32 = 0u;
    for (var i = 0u; i < 32u; i++) {
        q = q << 1u;
        if (r >= ub.x) {
            r -= ub.x;
            q |= 1u;
        }
        r = r << 1u;
    }
    return pack(sign, e, q, r != 0u);
}

// Orders f32 bit patterns like the floats they are (NaN excluded by the callers).
fn key(b: u32) -> i32 {
    let m = i32(b & 0x7fffffffu);
    return select(m, -m, (b & SIGN) != 0u);
}

// a > b as floats (false when either is NaN).
fn gt(a: u32, b: u32) -> bool {
    return !is_nan(a) && !is_nan(b) && key(a) > key(b);
}

// C's (int) of round(x) as x86-64 computes it: half away from zero; NaN and values outside the
// int range give INT_MIN (cvttss2si's "integer indefinite").
fn round_to_i32(b: u32) -> i32 {
    if (is_nan(b)) {
        return INT_MIN;
    }
    let exp = (b >> 23u) & 0xffu;
    if (exp >= 158u) {
        return INT_MIN;
    }
    if (exp < 126u) {
        return 0;
    }
    let mant = (b & MANT) | 0x800000u;
    var v: u32;
    if (exp >= 150u) {
        v = mant << (exp - 150u);
    } else {
        let s = 150u - exp;
        v = mant >> s;
        if ((mant & ((1u << s) - 1u)) >= (1u << (s - 1u))) {
            v += 1u;
        }
    }
    return select(i32(v), -i32(v), (b & SIGN) != 0u);
}

// C's (int) x (truncation) as x86-64 computes it, INT_MIN for NaN and out of range.
fn trunc_to_i32(b: u32) -> i32 {
    if (is_nan(b)) {
        return INT_MIN;
    }
    let exp = (b >> 23u) & 0xffu;
    if (exp >= 158u) {
        return INT_MIN;
    }
    if (exp < 127u) {
        return 0;
    }
    let mant = (b & MANT) | 0x800000u;
    var v: u32;
    if (exp >= 150u) {
        v = mant << (exp - 150u);
    } else {
        v = mant >> (150u - exp);
    }
    return select(i32(v), -i32(v), (b & SIGN) != 0u);
}

// f32 → f16 bits, round to nearest even; NaN becomes sign | 0x7e00.
fn f32_to_f16(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    if (is_nan(b)) {
        return sign | 0x7e00u;
    }
    let exp = (b >> 23u) & 0xffu;
    let mant = b & MANT;
    if (exp >= 143u) {
        return sign | 0x7c00u;
    }
    if (exp >= 113u) {
        var h = ((exp - 112u) << 10u) | (mant >> 13u);
        let rem = mant & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) {
            h += 1u;
        }
        // A carry may reach the exponent, up to infinity: the encoding handles both.
        return sign | h;
    }
    if (exp < 102u) {
        return sign;
    }
    // f16 subnormal: units of 2^-24.
    let m = mant | 0x800000u;
    let s = 126u - exp;
    var h = m >> s;
    let rem = m & ((1u << s) - 1u);
    let half = 1u << (s - 1u);
    if (rem > half || (rem == half && (h & 1u) == 1u)) {
        h += 1u;
    }
    return sign | h;
}

fn block_index(wg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * params.groups_x + wg.x) * 64u + lid.x;
}

fn put_byte(w: ptr<function, array<u32, 17>>, i: u32, v: u32) {
    (*w)[i >> 2u] |= (v & 0xffu) << ((i & 3u) * 8u);
}

// One Q8_0 block (values src[32·blk ..]) into bytes `at` .. `at` + 34 of `w`.
fn q8_0_block(blk: u32, w: ptr<function, array<u32, 17>>, at: u32) {
    var amax: u32 = 0u;
    for (var j = 0u; j < 32u; j++) {
        let a = src[blk * 32u + j] & 0x7fffffffu;
        // ggml: amax = amax > |v| ? amax : |v| (a NaN |v| wins, and loses to the next value).
        if (!gt(amax, a)) {
            amax = a;
        }
    }
    let d = div_rn(amax, 0x42fe0000u); // 127.0
    var id: u32 = 0u;
    if (!is_zero(d)) {
        id = div_rn(0x3f800000u, d);
    }
    let h = f32_to_f16(d);
    put_byte(w, at, h);
    put_byte(w, at + 1u, h >> 8u);
    for (var j = 0u; j < 32u; j++) {
        let q = round_to_i32(mul_rn(src[blk * 32u + j], id));
        put_byte(w, at + 2u + j, u32(q));
    }
}

@compute @workgroup_size(64)
fn quantize_q8_0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let pair = block_index(wg, lid);
    if (pair * 2u >= params.n_blocks) {
        return;
    }
    var w: array<u32, 17>;
    q8_0_block(pair * 2u, &w, 0u);
    if (pair * 2u + 1u < params.n_blocks) {
        q8_0_block(pair * 2u + 1u, &w, 34u);
    }
    for (var k = 0u; k < 17u; k++) {
        dst[pair * 17u + k] = w[k];
    }
}

// min(15, (int8)(int)(x·id + 8.5)) as a byte's worth of bits, x86 rounding (two roundings).
fn q4_code(x: u32, id: u32) -> u32 {
    let p = mul_rn(x, id);
    var t: i32 = INT_MIN;
    if (!is_nan(p) && !is_inf(p)) {
        t = trunc_to_i32(bitcast<u32>(bitcast<f32>(p) + 8.5));
    }
    // The int is cut to int8, then compared with 15 as a signed value.
    let small = (t << 24u) >> 24u;
    return u32(min(small, 15)) & 0xffu;
}

fn q4_0_block(blk: u32, w: ptr<function, array<u32, 17>>, at: u32) {
    var amax: u32 = 0u;
    var max: u32 = 0u;
    for (var j = 0u; j < 32u; j++) {
        let v = src[blk * 32u + j];
        // ggml: if (amax < |v|) { amax = |v|; max = v; } — NaN never replaces.
        if (gt(v & 0x7fffffffu, amax)) {
            amax = v & 0x7fffffffu;
            max = v;
        }
    }
    let d = div_rn(max, 0xc1000000u); // -8.0
    var id: u32 = 0u;
    if (!is_zero(d)) {
        id = div_rn(0x3f800000u, d);
    }
    let h = f32_to_f16(d);
    put_byte(w, at, h);
    put_byte(w, at + 1u, h >> 8u);
    for (var j = 0u; j < 16u; j++) {
        let lo = q4_code(src[blk * 32u + j], id);
        let hi = q4_code(src[blk * 32u + j + 16u], id);
        put_byte(w, at + 2u + j, lo | ((hi << 4u) & 0xffu));
    }
}

@compute @workgroup_size(64)
fn quantize_q4_0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let pair = block_index(wg, lid);
    if (pair * 2u >= params.n_blocks) {
        return;
    }
    var w: array<u32, 17>;
    q4_0_block(pair * 2u, &w, 0u);
    if (pair * 2u + 1u < params.n_blocks) {
        q4_0_block(pair * 2u + 1u, &w, 18u);
    }
    for (var k = 0u; k < 9u; k++) {
        dst[pair * 9u + k] = w[k];
    }
}

// bitsandbytes' NF4 decision thresholds (midpoints of the codebook), as f32 bits.
var<private> NF4_THRESHOLDS: array<u32, 15> = array<u32, 15>(
    0xbf591cd8u, 0xbf1c5270u, 0xbeeb8480u, 0xbeadea76u, 0xbe703cecu,
    0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu, 0x3df64862u, 0x3e5067e0u,
    0x3e9582d4u, 0x3ec753f9u, 0x3f006d03u, 0x3f248dafu, 0x3f5c89d9u,
);

fn nf4_code(s: u32) -> u32 {
    var c = 0u;
    for (var t = 0u; t < 15u; t++) {
        if (gt(s, NF4_THRESHOLDS[t])) {
            c += 1u;
        }
    }
    return c;
}

// clamp(x, -1, 1) as Rust's f32::clamp: NaN stays NaN.
fn clamp_unit(x: u32) -> u32 {
    if (is_nan(x)) {
        return x;
    }
    if (gt(x, 0x3f800000u)) {
        return 0x3f800000u;
    }
    if (gt(0xbf800000u, x)) {
        return 0xbf800000u;
    }
    return x;
}

@compute @workgroup_size(64)
fn quantize_nf4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let blk = block_index(wg, lid);
    if (blk >= params.n_blocks) {
        return;
    }
    // m = fold(0, f32::max(m, |v|)): IEEE maxNum, a NaN operand loses, so m is never NaN.
    var m: u32 = 0u;
    for (var j = 0u; j < 64u; j++) {
        let a = src[blk * 64u + j] & 0x7fffffffu;
        if (gt(a, m)) {
            m = a;
        }
    }
    scales[blk] = m;
    // inv = 1 / max(m, 1e-38)
    var floor_m = m;
    if (gt(0x006ce3eeu, m)) {
        floor_m = 0x006ce3eeu;
    }
    let inv = div_rn(0x3f800000u, floor_m);
    for (var k = 0u; k < 8u; k++) {
        var word = 0u;
        for (var b = 0u; b < 4u; b++) {
            let j = (k * 4u + b) * 2u;
            let c0 = nf4_code(clamp_unit(mul_rn(src[blk * 64u + j], inv)));
            let c1 = nf4_code(clamp_unit(mul_rn(src[blk * 64u + j + 1u], inv)));
            word |= ((c0 << 4u) | c1) << (b * 8u);
        }
        dst[blk * 8u + k] = word;
    }
}

// Test hook: for each pair (a, b) of `src`, five words: a·b, a/b, f16(a), round(a), trunc(b) —
// to check the integer arithmetic against the host's IEEE operations. params.n_blocks is the
// number of pairs.
@compute @workgroup_size(64)
fn check_arithmetic(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = block_index(wg, lid);
    if (i >= params.n_blocks) {
        return;
    }
    let a = src[2u * i];
    let b = src[2u * i + 1u];
    dst[5u * i] = mul_rn(a, b);
    dst[5u * i + 1u] = div_rn(a, b);
    dst[5u * i + 2u] = f32_to_f16(a);
    dst[5u * i + 3u] = bitcast<u32>(round_to_i32(a));
    dst[5u * i + 4u] = bitcast<u32>(trunc_to_i32(b));
}

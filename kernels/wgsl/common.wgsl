// Helpers every kernel file shares; prepended to each of them when they are compiled
// (crates/gpu/src/lib.rs `wgsl`). Each kernel file declares the `src` buffer `byte_at` reads.

// Byte `i` of `src`, a storage buffer of u32 words (blocks are not 4-byte aligned).
fn byte_at(i: u32) -> u32 {
    return (src[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

// An f16 (bits in the low half) as f32, exactly (subnormals included, whatever the device does
// with f16 hardware).
fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    var bits = sign;
    if (e == 0u) {
        if (m != 0u) {
            // m · 2^-24: move the top set bit to the implicit position.
            let shift = countLeadingZeros(m) - 21u;
            bits = sign | ((113u - shift) << 23u) | (((m << shift) & 0x3ffu) << 13u);
        }
    } else if (e == 31u) {
        bits = sign | 0x7f800000u | (m << 13u);
    } else {
        bits = sign | ((e + 112u) << 23u) | (m << 13u);
    }
    return bitcast<f32>(bits);
}

// bitsandbytes' NF4 codebook.
var<private> NF4: array<f32, 16> = array<f32, 16>(
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
);

// Dequantize Q8_0, Q4_0 and NF4 to f32: one invocation per output value.
//
// Every output equals the CPU reference's (crates/quant) bit for bit: the f16 scale is decoded
// with integer operations (exact for every f16, subnormals included, whatever the device does
// with f16 hardware), and the one float operation per value, a multiplication, is correctly
// rounded in WGSL. WGSL lets a device flush subnormal f32 *results* to zero; only outputs below
// 1.2e-38 in magnitude can differ there (NF4 blocks whose absmax is itself subnormal).
//
// Blocks are not 4-byte aligned (Q8_0 is 34 bytes, Q4_0 18), so the source is read as u32 words
// and bytes are picked out of them. Dispatches are 2-D: x × y workgroups of 256, because one
// dimension stops at 65,535.

struct Params {
    // Number of output values.
    n: u32,
    // Workgroups along x (the row length of the 2-D dispatch grid).
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
// NF4 only: one f32 absmax per 64 values.
@group(0) @binding(1) var<storage, read> scales: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn index(wg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * params.groups_x + wg.x) * 256u + lid.x;
}

// Q8_0: 34-byte blocks of an f16 scale and 32 signed bytes; y = q · d.
@compute @workgroup_size(256)
fn dequantize_q8_0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, lid);
    if (i >= params.n) {
        return;
    }
    let base = (i / 32u) * 34u;
    let d = f16_to_f32(byte_at(base) | (byte_at(base + 1u) << 8u));
    let q = (i32(byte_at(base + 2u + i % 32u)) << 24u) >> 24u;
    dst[i] = f32(q) * d;
}

// Q4_0: 18-byte blocks of an f16 scale and 16 bytes; value j < 16 is the low nibble of byte j,
// value j + 16 its high nibble; y = (nibble − 8) · d.
@compute @workgroup_size(256)
fn dequantize_q4_0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, lid);
    if (i >= params.n) {
        return;
    }
    let base = (i / 32u) * 18u;
    let j = i % 32u;
    let d = f16_to_f32(byte_at(base) | (byte_at(base + 1u) << 8u));
    let b = byte_at(base + 2u + (j % 16u));
    let nibble = select(b & 0xfu, b >> 4u, j >= 16u);
    dst[i] = f32(i32(nibble) - 8) * d;
}

// NF4 (bitsandbytes): two codes per byte, the first value in the high nibble; one f32 absmax
// per 64 values; y = codebook[code] · absmax.
@compute @workgroup_size(256)
fn dequantize_nf4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, lid);
    if (i >= params.n) {
        return;
    }
    let b = byte_at(i / 2u);
    let code = select(b >> 4u, b & 0xfu, (i & 1u) == 1u);
    dst[i] = NF4[code] * scales[i / 64u];
}

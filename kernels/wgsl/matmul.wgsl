// Quantized matrix × f32 activations: y[t][r] = Σ_j W[r][j] · x[t][j] for Q8_0, Q4_0 and NF4
// weights stored as the GGUF file stores them. One workgroup per (row, token): its 256
// invocations stride over the row's blocks, then a tree reduction in workgroup memory adds the
// partial sums. One token is a mat-vec (decode); several tokens are the batched mat-mul of
// prefill, reading each weight row once per token from the device's cache.
//
// Floating-point sums on a GPU are not the CPU's (another order; WGSL allows flushed
// subnormals), so results are checked against an f64 reference with a tolerance relative to
// Σ_j |W[r][j] · x[t][j]| (crates/gpu/tests/wgsl.rs states it). The weights are decoded exactly
// as dequantize.wgsl does (common.wgsl).

struct Params {
    rows: u32,
    cols: u32,
    tokens: u32,
    // Workgroups along x of the 2-D grid (a grid of rows · tokens workgroups).
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
// NF4 only: one f32 absmax per 64 weights.
@group(0) @binding(1) var<storage, read> scales: array<f32>;
// tokens × cols activations.
@group(0) @binding(2) var<storage, read> x: array<f32>;
// tokens × rows results.
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

var<workgroup> partial: array<f32, 256>;

// The (row, token) pair of this workgroup, or rows·tokens if it is past the end.
fn pair(wg: vec3<u32>) -> u32 {
    return wg.y * params.groups_x + wg.x;
}

// Adds the workgroup's partial sums and writes y; every invocation must call it.
fn finish(lid: u32, p: u32, acc: f32) {
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u && p < params.rows * params.tokens) {
        let r = p % params.rows;
        let t = p / params.rows;
        y[t * params.rows + r] = partial[0];
    }
}

@compute @workgroup_size(256)
fn matmul_q8_0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = pair(wg);
    var acc = 0.0;
    if (p < params.rows * params.tokens) {
        let r = p % params.rows;
        let t = p / params.rows;
        let nb = params.cols / 32u;
        for (var b = lid; b < nb; b += 256u) {
            let base = (r * nb + b) * 34u;
            let d = f16_to_f32(byte_at(base) | (byte_at(base + 1u) << 8u));
            var s = 0.0;
            for (var j = 0u; j < 32u; j++) {
                let q = (i32(byte_at(base + 2u + j)) << 24u) >> 24u;
                s += f32(q) * x[t * params.cols + b * 32u + j];
            }
            acc += s * d;
        }
    }
    finish(lid, p, acc);
}

@compute @workgroup_size(256)
fn matmul_q4_0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = pair(wg);
    var acc = 0.0;
    if (p < params.rows * params.tokens) {
        let r = p % params.rows;
        let t = p / params.rows;
        let nb = params.cols / 32u;
        for (var b = lid; b < nb; b += 256u) {
            let base = (r * nb + b) * 18u;
            let d = f16_to_f32(byte_at(base) | (byte_at(base + 1u) << 8u));
            let xb = t * params.cols + b * 32u;
            var s = 0.0;
            for (var j = 0u; j < 16u; j++) {
                let v = byte_at(base + 2u + j);
                s += f32(i32(v & 0xfu) - 8) * x[xb + j];
                s += f32(i32(v >> 4u) - 8) * x[xb + j + 16u];
            }
            acc += s * d;
        }
    }
    finish(lid, p, acc);
}

@compute @workgroup_size(256)
fn matmul_nf4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = pair(wg);
    var acc = 0.0;
    if (p < params.rows * params.tokens) {
        let r = p % params.rows;
        let t = p / params.rows;
        let nb = params.cols / 64u;
        for (var b = lid; b < nb; b += 256u) {
            let blk = r * nb + b;
            let xb = t * params.cols + b * 64u;
            var s = 0.0;
            for (var j = 0u; j < 32u; j++) {
                let v = byte_at(blk * 32u + j);
                s += NF4[v >> 4u] * x[xb + 2u * j];
                s += NF4[v & 0xfu] * x[xb + 2u * j + 1u];
            }
            acc += s * scales[blk];
        }
    }
    finish(lid, p, acc);
}

//! The CUDA kernels (`kernels/cuda/*.cu`) run on the CPU: built as C++ against
//! `kernels/cuda/emulate/cuda_shim.h` (thread and block indices, shared memory, a real barrier
//! for __syncthreads, the IEEE float intrinsics) and driven with the launch geometry of a CUDA
//! launch, then checked exactly like the WGSL kernels: bit-identical dequantization,
//! byte-identical quantization, mat-mul within the stated tolerance. This tests the kernels'
//! logic wherever there is a C++20 compiler (`CXX`, default `g++`); without one the tests say so
//! and pass, unless `GGUFY_REQUIRE_CUDA_EMULATION=1` (CI sets it). `.ci/run` also compiles the
//! same sources to PTX with nvcc and checks them with ptxas.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use ggufy_gpu::{Backend, Format, GpuError, Quantized, QuantizedBuf};
use proptest::prelude::*;

fn kernels() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernels/cuda")
}

/// The emulated device: a built `emulate` program and a scratch directory per call.
struct Emulator {
    exe: PathBuf,
    scratch: tempfile::TempDir,
}

fn emulator() -> Option<&'static Emulator> {
    static EMU: OnceLock<Option<Emulator>> = OnceLock::new();
    EMU.get_or_init(|| {
        let scratch = tempfile::tempdir().unwrap();
        let exe = scratch.path().join("emulate");
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
        let built = Command::new(&cxx)
            .args([
                "-std=c++20",
                "-O2",
                "-ffp-contract=off",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pthread",
                "-o",
            ])
            .arg(&exe)
            .arg(kernels().join("emulate/main.cpp"))
            .output();
        match built {
            Ok(o) if o.status.success() => Some(Emulator { exe, scratch }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => format!("{cxx}: {e}"),
                };
                assert!(
                    std::env::var_os("GGUFY_REQUIRE_CUDA_EMULATION").is_none(),
                    "cannot build the CUDA emulation harness: {why}"
                );
                eprintln!("SKIPPED: cannot build the CUDA emulation harness: {why}");
                None
            }
        }
    })
    .as_ref()
}

impl Emulator {
    /// Runs `kernel` with `inputs` and parameters, returning the `outputs` files it wrote.
    fn run(
        &self,
        kernel: &str,
        inputs: &[&[u8]],
        params: &[usize],
        outputs: usize,
    ) -> Result<Vec<Vec<u8>>, GpuError> {
        static CALL: AtomicUsize = AtomicUsize::new(0);
        let dir = self
            .scratch
            .path()
            .join(format!("call{}", CALL.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir(&dir).map_err(|e| GpuError::Device(e.to_string()))?;
        for (i, b) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("in{i}")), b)
                .map_err(|e| GpuError::Device(e.to_string()))?;
        }
        let o = Command::new(&self.exe)
            .arg(kernel)
            .arg(&dir)
            .args(params.iter().map(|p| p.to_string()))
            .output()
            .map_err(|e| GpuError::Device(e.to_string()))?;
        if !o.status.success() {
            return Err(GpuError::Device(
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ));
        }
        let out = (0..outputs)
            .map(|i| {
                std::fs::read(dir.join(format!("out{i}")))
                    .map_err(|e| GpuError::Device(e.to_string()))
            })
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        out
    }
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The emulator keeps nothing resident: each product sends the matrix again.
struct EmulatedResident {
    data: QuantizedBuf,
    format: Format,
    rows: usize,
    cols: usize,
}

impl ggufy_gpu::Resident for EmulatedResident {
    fn matmul(&self, x: &[f32], y: &mut [f32]) -> Result<(), GpuError> {
        let emu = emulator().ok_or_else(|| GpuError::NoDevice("no emulator".into()))?;
        emu.matmul(self.data.view(self.format), self.rows, self.cols, x, y)
    }
}

impl Backend for Emulator {
    fn upload(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<Box<dyn ggufy_gpu::Resident>, GpuError> {
        Ok(Box::new(EmulatedResident {
            data: QuantizedBuf::copy_of(w),
            format: w.format(),
            rows,
            cols,
        }))
    }

    fn name(&self) -> String {
        "CUDA kernels on the CPU (emulation)".into()
    }

    fn dequantize(&self, src: Quantized<'_>, dst: &mut [f32]) -> Result<(), GpuError> {
        let n = src.len()?;
        if dst.len() != n {
            return Err(GpuError::Layout("output length".into()));
        }
        let out = match src {
            Quantized::Q8_0(b) => self.run("dequantize_q8_0", &[b], &[n], 1)?,
            Quantized::Q4_0(b) => self.run("dequantize_q4_0", &[b], &[n], 1)?,
            Quantized::Nf4 { codes, absmax } => {
                self.run("dequantize_nf4", &[codes, &bytes(absmax)], &[n], 1)?
            }
        };
        dst.copy_from_slice(&floats(&out[0]));
        Ok(())
    }

    fn quantize(&self, format: Format, x: &[f32]) -> Result<QuantizedBuf, GpuError> {
        let nb = x.len() / format.block();
        let xb = bytes(x);
        Ok(match format {
            Format::Q8_0 => QuantizedBuf {
                data: self.run("quantize_q8_0", &[&xb], &[nb], 1)?.remove(0),
                absmax: Vec::new(),
            },
            Format::Q4_0 => QuantizedBuf {
                data: self.run("quantize_q4_0", &[&xb], &[nb], 1)?.remove(0),
                absmax: Vec::new(),
            },
            Format::Nf4 => {
                let mut out = self.run("quantize_nf4", &[&xb], &[nb], 2)?;
                let absmax = floats(&out[1]);
                QuantizedBuf {
                    data: out.remove(0),
                    absmax,
                }
            }
        })
    }

    fn matmul(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), GpuError> {
        let tokens = x.len() / cols;
        let xb = bytes(x);
        let out = match w {
            Quantized::Q8_0(b) => self.run("matmul_q8_0", &[b, &xb], &[rows, cols, tokens], 1)?,
            Quantized::Q4_0(b) => self.run("matmul_q4_0", &[b, &xb], &[rows, cols, tokens], 1)?,
            Quantized::Nf4 { codes, absmax } => self.run(
                "matmul_nf4",
                &[codes, &bytes(absmax), &xb],
                &[rows, cols, tokens],
                1,
            )?,
        };
        y.copy_from_slice(&floats(&out[0]));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn dequantize_equals_the_cpu(q8 in legacy_blocks(34), q4 in legacy_blocks(18)) {
        let Some(emu) = emulator() else { return Ok(()) };
        prop_assert_eq!(check(emu, Quantized::Q8_0(&q8)), Ok(()));
        prop_assert_eq!(check(emu, Quantized::Q4_0(&q4)), Ok(()));
    }

    #[test]
    fn quantize_is_byte_identical(x32 in blocks(32), x64 in blocks(64)) {
        let Some(emu) = emulator() else { return Ok(()) };
        prop_assert_eq!(check_quantize(emu, Format::Q8_0, &x32), Ok(()));
        prop_assert_eq!(check_quantize(emu, Format::Q4_0, &x32), Ok(()));
        prop_assert_eq!(check_quantize(emu, Format::Nf4, &x64), Ok(()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn matmul_agrees_with_the_reference((rows, cols, _tokens, w, x) in matmul_case()) {
        let Some(emu) = emulator() else { return Ok(()) };
        for format in [Format::Q8_0, Format::Q4_0, Format::Nf4] {
            prop_assert_eq!(check_matmul(emu, format, rows, cols, &w, &x), Ok(()));
        }
    }
}

#[test]
fn nf4_dequantize_and_every_f16_scale() {
    let Some(emu) = emulator() else { return };
    let codes: Vec<u8> = (0..=255u8).cycle().take(32 * 8).collect();
    let absmax = [
        1.0f32,
        -2.5,
        0.0,
        1e-39,
        f32::INFINITY,
        f32::NAN,
        3e38,
        0.125,
    ];
    assert_eq!(
        check(
            emu,
            Quantized::Nf4 {
                codes: &codes,
                absmax: &absmax
            }
        ),
        Ok(())
    );
    let mut q8 = Vec::new();
    for h in 0..=u16::MAX {
        q8.extend_from_slice(&h.to_le_bytes());
        q8.extend((0..32u8).map(|i| i.wrapping_mul(8).wrapping_add(h as u8)));
    }
    assert_eq!(check(emu, Quantized::Q8_0(&q8)), Ok(()));
}

/// The hexadecimal f32 table named `name` in common.cuh.
fn cuh_table(name: &str) -> Vec<f32> {
    let src = std::fs::read_to_string(kernels().join("common.cuh")).unwrap();
    let start = src
        .find(name)
        .unwrap_or_else(|| panic!("{name} in common.cuh"));
    let body = &src[start + src[start..].find('{').unwrap() + 1..];
    let body = &body[..body.find('}').unwrap()];
    body.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            f32::from_bits(
                u32::from_str_radix(s.trim_start_matches("0x").trim_end_matches('u'), 16).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_cuda_tables_are_the_cpus() {
    assert_eq!(cuh_table("table[16]"), ggufy_quant::nf4::NF4_CODEBOOK);
    assert_eq!(
        cuh_table("thresholds[15]"),
        ggufy_quant::nf4::NF4_THRESHOLDS
    );
}

#[test]
fn matmul_on_rows_longer_than_a_block_of_threads() {
    let Some(emu) = emulator() else { return };
    // 600 blocks of 32 (300 of 64): every one of the 256 threads holds a partial sum.
    let (rows, cols) = (2, 32 * 600);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    let x: Vec<f32> = (0..2 * cols).map(|i| ((i as f32) * 0.11).cos()).collect();
    for format in [Format::Q8_0, Format::Q4_0, Format::Nf4] {
        assert_eq!(check_matmul(emu, format, rows, cols, &w, &x), Ok(()));
    }
}

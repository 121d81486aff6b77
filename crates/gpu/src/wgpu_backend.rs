//! The WGSL kernels on wgpu: Vulkan anywhere (lavapipe, a CPU driver, in CI), Metal on Apple.

use std::sync::mpsc;

use wgpu::util::DeviceExt;

use crate::{Backend, Format, GpuError, Quantized, QuantizedBuf, Resident};

/// The most workgroups one dispatch dimension takes.
const MAX_GROUPS_X: u32 = 65_535;
/// In a kernel's parameters, the slot that receives the grid's x extent.
const GROUPS_X: u32 = u32::MAX;

/// One entry point with its bindings: `inputs` read-only storage buffers, then `outputs`
/// read-write ones, then a uniform of four u32.
#[derive(Clone)]
struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    inputs: usize,
    outputs: usize,
    /// Invocations per workgroup (the entry point's `@workgroup_size`).
    width: u32,
}

/// The device and its queue (both cheap handles), which every dispatch needs.
#[derive(Clone)]
struct Ctx {
    device: wgpu::Device,
    queue: wgpu::Queue,
}

/// A kernel input: bytes to upload for this dispatch, or a buffer already on the device.
enum Input<'a> {
    Bytes(&'a [u8]),
    Buffer(&'a wgpu::Buffer),
}

/// A wgpu device with the kernels' pipelines built.
pub struct WgpuBackend {
    adapter: wgpu::AdapterInfo,
    ctx: Ctx,
    /// A smaller binding limit than the device's, so tests can exercise chunking on small data.
    binding_cap: Option<usize>,
    dequantize_q8_0: Kernel,
    dequantize_q4_0: Kernel,
    dequantize_nf4: Kernel,
    quantize_q8_0: Kernel,
    quantize_q4_0: Kernel,
    quantize_nf4: Kernel,
    check_arithmetic: Kernel,
    matmul_q8_0: Kernel,
    matmul_q4_0: Kernel,
    matmul_nf4: Kernel,
}

impl std::fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("adapter", &self.adapter.name)
            .finish()
    }
}

impl WgpuBackend {
    /// Opens the first adapter wgpu finds (a real GPU before a CPU driver), or says why none.
    pub fn new() -> Result<WgpuBackend, GpuError> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        }))
        .map_err(|e| GpuError::NoDevice(format!("wgpu found no adapter ({e})")))?;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ggufy"),
            // Everything the adapter offers: large models need its buffer sizes.
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device(format!("cannot open {}: {e}", adapter.get_info().name)))?;
        let dq = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("dequantize.wgsl"),
            source: wgpu::ShaderSource::Wgsl(crate::wgsl::DEQUANTIZE.into()),
        });
        let q = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("quantize.wgsl"),
            source: wgpu::ShaderSource::Wgsl(crate::wgsl::QUANTIZE.into()),
        });
        let mm = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("matmul.wgsl"),
            source: wgpu::ShaderSource::Wgsl(crate::wgsl::MATMUL.into()),
        });
        let kernel = |module: &wgpu::ShaderModule, entry: &str, inputs, outputs, width| {
            build_kernel(&device, module, entry, inputs, outputs, width)
        };
        Ok(WgpuBackend {
            dequantize_q8_0: kernel(&dq, "dequantize_q8_0", 2, 1, 256),
            dequantize_q4_0: kernel(&dq, "dequantize_q4_0", 2, 1, 256),
            dequantize_nf4: kernel(&dq, "dequantize_nf4", 2, 1, 256),
            quantize_q8_0: kernel(&q, "quantize_q8_0", 1, 2, 64),
            quantize_q4_0: kernel(&q, "quantize_q4_0", 1, 2, 64),
            quantize_nf4: kernel(&q, "quantize_nf4", 1, 2, 64),
            check_arithmetic: kernel(&q, "check_arithmetic", 1, 2, 64),
            matmul_q8_0: kernel(&mm, "matmul_q8_0", 3, 1, 1),
            matmul_q4_0: kernel(&mm, "matmul_q4_0", 3, 1, 1),
            matmul_nf4: kernel(&mm, "matmul_nf4", 3, 1, 1),
            adapter: adapter.get_info(),
            ctx: Ctx { device, queue },
            binding_cap: None,
        })
    }

    /// What wgpu says about the adapter (name, backend, whether it is a CPU driver).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter
    }

    /// Runs the kernels' integer arithmetic on pairs `(a, b)` of f32 bit patterns, giving per
    /// pair `[a·b, a/b, f16(a), round(a) as i32, trunc(b) as i32]` — what the quantize kernels
    /// are built from, exposed so tests can compare it with the host's IEEE operations.
    #[doc(hidden)]
    pub fn check_arithmetic(&self, pairs: &[(u32, u32)]) -> Result<Vec<[u32; 5]>, GpuError> {
        let n =
            u32::try_from(pairs.len()).map_err(|_| GpuError::Layout("too many pairs".into()))?;
        let input: Vec<u8> = pairs
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .flat_map(u32::to_le_bytes)
            .collect();
        let out = self.ctx.dispatch(
            &self.check_arithmetic,
            &[Input::Bytes(&input)],
            &[pairs.len() * 20, 4],
            [n, GROUPS_X, 0, 0],
            n,
        )?;
        Ok(out[0]
            .chunks_exact(20)
            .map(|c| {
                let w = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                [w(0), w(4), w(8), w(12), w(16)]
            })
            .collect())
    }
}

impl Ctx {
    /// A read-only storage buffer holding `bytes`, padded to whole u32 words (never empty).
    fn storage(&self, bytes: &[u8]) -> wgpu::Buffer {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("input"),
                contents: &padded,
                usage: wgpu::BufferUsages::STORAGE,
            })
    }

    /// Runs `k` over `items` invocations with `inputs` bound in order, returning its outputs
    /// (of `output_bytes` each, rounded up to whole words). `params` fills the kernel's
    /// uniform; `GROUPS_X` in it is replaced by the x extent of the 2-D grid.
    fn dispatch(
        &self,
        k: &Kernel,
        inputs: &[Input<'_>],
        output_bytes: &[usize],
        params: [u32; 4],
        items: u32,
    ) -> Result<Vec<Vec<u8>>, GpuError> {
        debug_assert_eq!((inputs.len(), output_bytes.len()), (k.inputs, k.outputs));
        let guard = ErrorGuard::new(&self.device);
        let groups = items.div_ceil(k.width).max(1);
        let (gx, gy) = (groups.min(MAX_GROUPS_X), groups.div_ceil(MAX_GROUPS_X));
        let params: Vec<u8> = params
            .iter()
            .map(|&v| if v == GROUPS_X { gx } else { v })
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let words = |n: usize| (n.div_ceil(4).max(1) * 4) as u64;
        let uploaded: Vec<Option<wgpu::Buffer>> = inputs
            .iter()
            .map(|input| match input {
                Input::Bytes(bytes) => Some(self.storage(bytes)),
                Input::Buffer(_) => None,
            })
            .collect();
        let in_bufs: Vec<&wgpu::Buffer> = inputs
            .iter()
            .zip(&uploaded)
            .map(|(input, up)| match (input, up) {
                (Input::Buffer(b), _) => *b,
                (Input::Bytes(_), Some(b)) => b,
                (Input::Bytes(_), None) => unreachable!("uploaded above"),
            })
            .collect();
        let out_bufs: Vec<(wgpu::Buffer, wgpu::Buffer)> = output_bytes
            .iter()
            .map(|&n| {
                let size = words(n);
                let out = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("output"),
                    size,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let back = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (out, back)
            })
            .collect();
        let params_buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: &params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries: Vec<wgpu::BindGroupEntry<'_>> = Vec::new();
        for b in in_bufs
            .iter()
            .copied()
            .chain(out_bufs.iter().map(|(o, _)| o))
        {
            entries.push(wgpu::BindGroupEntry {
                binding: entries.len() as u32,
                resource: b.as_entire_binding(),
            });
        }
        entries.push(wgpu::BindGroupEntry {
            binding: entries.len() as u32,
            resource: params_buf.as_entire_binding(),
        });
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &k.layout,
            entries: &entries,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&k.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        for (out, back) in &out_bufs {
            encoder.copy_buffer_to_buffer(out, 0, back, 0, out.size());
        }
        self.queue.submit([encoder.finish()]);
        guard.check()?;
        let mut results = Vec::with_capacity(out_bufs.len());
        for ((_, back), &n) in out_bufs.iter().zip(output_bytes) {
            let (tx, rx) = mpsc::channel();
            back.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| GpuError::Device(e.to_string()))?;
            rx.recv()
                .map_err(|e| GpuError::Device(e.to_string()))?
                .map_err(|e| GpuError::Device(e.to_string()))?;
            let bytes = back
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Device(e.to_string()))?[..n]
                .to_vec();
            back.unmap();
            results.push(bytes);
        }
        Ok(results)
    }
}

fn build_kernel(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
    inputs: usize,
    outputs: usize,
    width: u32,
) -> Kernel {
    let mut entries = Vec::new();
    for i in 0..inputs + outputs + 1 {
        let ty = if i == inputs + outputs {
            wgpu::BufferBindingType::Uniform
        } else {
            wgpu::BufferBindingType::Storage {
                read_only: i < inputs,
            }
        };
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(entry),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pipeline_layout),
        module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    Kernel {
        pipeline,
        layout,
        inputs,
        outputs,
        width,
    }
}

/// A value count as the kernels' u32.
fn count32(n: usize) -> Result<u32, GpuError> {
    u32::try_from(n)
        .map_err(|_| GpuError::Layout(format!("{n} values is more than one dispatch holds")))
}

impl WgpuBackend {
    /// The most bytes one binding may hold on this device (kernels run in chunks below it).
    fn max_binding(&self) -> usize {
        let l = self.ctx.device.limits();
        let device = usize::try_from(l.max_storage_buffer_binding_size.min(l.max_buffer_size))
            .unwrap_or(usize::MAX);
        self.binding_cap.map_or(device, |c| c.min(device))
    }

    /// Treats bindings as holding at most `bytes` (at least one block or row is always taken),
    /// so tests reach the chunked paths without gigabytes of data.
    #[doc(hidden)]
    pub fn with_binding_cap(mut self, bytes: usize) -> WgpuBackend {
        self.binding_cap = Some(bytes);
        self
    }

    /// Blocks per chunk so that `bytes_per_block` × blocks fits one binding (even, ≥ 2).
    fn chunk_blocks(&self, bytes_per_block: usize) -> usize {
        (self.max_binding() / bytes_per_block).max(2) / 2 * 2
    }

    fn dequantize_chunk(&self, src: Quantized<'_>, dst: &mut [f32]) -> Result<(), GpuError> {
        let n = dst.len();
        let n32 = count32(n)?;
        let scales: Vec<u8>;
        let (kernel, data, scale_bytes): (_, &[u8], &[u8]) = match src {
            Quantized::Q8_0(b) => (&self.dequantize_q8_0, b, &[]),
            Quantized::Q4_0(b) => (&self.dequantize_q4_0, b, &[]),
            Quantized::Nf4 { codes, absmax } => {
                scales = absmax.iter().flat_map(|v| v.to_le_bytes()).collect();
                (&self.dequantize_nf4, codes, &scales)
            }
        };
        let out = self.ctx.dispatch(
            kernel,
            &[Input::Bytes(data), Input::Bytes(scale_bytes)],
            &[n * 4],
            [n32, GROUPS_X, 0, 0],
            n32,
        )?;
        crate::copy_f32s(&out[0], dst);
        Ok(())
    }

    fn quantize_chunk(&self, format: Format, x: &[f32]) -> Result<QuantizedBuf, GpuError> {
        let blocks = x.len() / format.block();
        let nb = count32(blocks)?;
        let input: Vec<u8> = x.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
        let (kernel, bytes, scale_bytes, items) = match format {
            Format::Q8_0 => (&self.quantize_q8_0, blocks * 34, 4, nb.div_ceil(2)),
            Format::Q4_0 => (&self.quantize_q4_0, blocks * 18, 4, nb.div_ceil(2)),
            Format::Nf4 => (&self.quantize_nf4, blocks * 32, blocks * 4, nb),
        };
        // Two-block kernels write whole words: leave room for an odd block's pair.
        let room = if format == Format::Nf4 {
            bytes
        } else {
            items as usize * bytes.div_ceil(blocks) * 2
        };
        let mut out = self.ctx.dispatch(
            kernel,
            &[Input::Bytes(&input)],
            &[room, scale_bytes],
            [nb, GROUPS_X, 0, 0],
            items,
        )?;
        let mut data = std::mem::take(&mut out[0]);
        data.truncate(bytes);
        let mut absmax = Vec::new();
        if format == Format::Nf4 {
            absmax.resize(blocks, 0.0);
            crate::copy_f32s(&out[1], &mut absmax);
        }
        Ok(QuantizedBuf { data, absmax })
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> String {
        format!("{} ({:?})", self.adapter.name, self.adapter.backend)
    }

    fn dequantize(&self, src: Quantized<'_>, dst: &mut [f32]) -> Result<(), GpuError> {
        crate::check_output(src, dst.len())?;
        let block = src.format().block();
        let per_chunk = self.chunk_blocks(block * 4);
        for (c, out) in dst.chunks_mut(per_chunk * block).enumerate() {
            let first = c * per_chunk;
            self.dequantize_chunk(src.blocks(first, first + out.len() / block), out)?;
        }
        Ok(())
    }

    fn quantize(&self, format: Format, x: &[f32]) -> Result<QuantizedBuf, GpuError> {
        crate::whole_blocks(format, x.len())?;
        let block = format.block();
        let mut all = QuantizedBuf::default();
        for chunk in x.chunks(self.chunk_blocks(block * 4) * block) {
            let q = self.quantize_chunk(format, chunk)?;
            all.data.extend_from_slice(&q.data);
            all.absmax.extend_from_slice(&q.absmax);
        }
        Ok(all)
    }

    fn matmul(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), GpuError> {
        crate::check_matmul(w, rows, cols, x.len(), y.len())?;
        self.upload(w, rows, cols)?.matmul(x, y)
    }

    fn upload(
        &self,
        w: Quantized<'_>,
        rows: usize,
        cols: usize,
    ) -> Result<Box<dyn Resident>, GpuError> {
        crate::check_matmul(w, rows, cols, 0, 0)?;
        let kernel = match w {
            Quantized::Q8_0(_) => &self.matmul_q8_0,
            Quantized::Q4_0(_) => &self.matmul_q4_0,
            Quantized::Nf4 { .. } => &self.matmul_nf4,
        };
        let blocks_per_row = cols / w.format().block();
        let row_bytes = match w {
            Quantized::Q8_0(b) | Quantized::Q4_0(b) => b.len() / rows.max(1),
            Quantized::Nf4 { codes, .. } => codes.len() / rows.max(1),
        };
        let rows_per_chunk = (self.max_binding() / row_bytes.max(1)).max(1);
        let guard = ErrorGuard::new(&self.ctx.device);
        let mut chunks = Vec::new();
        for first in (0..rows).step_by(rows_per_chunk) {
            let n = rows_per_chunk.min(rows - first);
            let part = w.blocks(first * blocks_per_row, (first + n) * blocks_per_row);
            let (data, scales): (&[u8], Vec<u8>) = match part {
                Quantized::Q8_0(b) | Quantized::Q4_0(b) => (b, Vec::new()),
                Quantized::Nf4 { codes, absmax } => {
                    (codes, absmax.iter().flat_map(|v| v.to_le_bytes()).collect())
                }
            };
            chunks.push(ResidentChunk {
                first,
                rows: count32(n)?,
                weights: self.ctx.storage(data),
                scales: self.ctx.storage(&scales),
            });
        }
        guard.check()?;
        Ok(Box::new(WgpuResident {
            ctx: self.ctx.clone(),
            kernel: kernel.clone(),
            chunks,
            rows,
            cols: count32(cols)?,
        }))
    }
}

/// Rows `first ..` of a resident matrix, in buffers of their own (one binding's worth at most).
struct ResidentChunk {
    first: usize,
    rows: u32,
    weights: wgpu::Buffer,
    scales: wgpu::Buffer,
}

/// A weight matrix in device memory with the mat-mul kernel for its format.
struct WgpuResident {
    ctx: Ctx,
    kernel: Kernel,
    chunks: Vec<ResidentChunk>,
    rows: usize,
    cols: u32,
}

impl Resident for WgpuResident {
    fn matmul(&self, x: &[f32], y: &mut [f32]) -> Result<(), GpuError> {
        let (rows, cols) = (self.rows, self.cols as usize);
        crate::check_resident(rows, cols, x.len(), y.len())?;
        let tokens = x.len() / cols;
        if tokens == 0 || rows == 0 {
            return Ok(());
        }
        let t32 = count32(tokens)?;
        let xs: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut part = Vec::new();
        for c in &self.chunks {
            let n = c.rows as usize;
            let out = self.ctx.dispatch(
                &self.kernel,
                &[
                    Input::Buffer(&c.weights),
                    Input::Buffer(&c.scales),
                    Input::Bytes(&xs),
                ],
                &[n * tokens * 4],
                [c.rows, self.cols, t32, GROUPS_X],
                count32(n * tokens)?,
            )?;
            part.resize(n * tokens, 0.0);
            crate::copy_f32s(&out[0], &mut part);
            for t in 0..tokens {
                y[t * rows + c.first..t * rows + c.first + n]
                    .copy_from_slice(&part[t * n..(t + 1) * n]);
            }
        }
        Ok(())
    }
}

/// Validation and out-of-memory errors of the device operations made while it lives, as a
/// `GpuError` instead of wgpu's default (a panic).
struct ErrorGuard {
    // Field order is drop order, and scopes must close in reverse order of opening: the inner
    // (memory) scope first, also when an early return drops the guard unchecked.
    memory: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

impl ErrorGuard {
    fn new(device: &wgpu::Device) -> ErrorGuard {
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        ErrorGuard { memory, validation }
    }

    fn check(self) -> Result<(), GpuError> {
        // Scopes pop in reverse order of their creation.
        let memory = pollster::block_on(self.memory.pop());
        let validation = pollster::block_on(self.validation.pop());
        match memory.or(validation) {
            Some(e) => Err(GpuError::Device(e.to_string())),
            None => Ok(()),
        }
    }
}

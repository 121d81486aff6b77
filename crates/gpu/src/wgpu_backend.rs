//! The WGSL kernels on wgpu: Vulkan anywhere (lavapipe, a CPU driver, in CI), Metal on Apple.

use std::sync::mpsc;

use wgpu::util::DeviceExt;

use crate::{Backend, GpuError, Quantized};

/// The dequantization kernels (`kernels/wgsl/dequantize.wgsl`), compiled into the binary.
pub const DEQUANTIZE_WGSL: &str = include_str!("../../../kernels/wgsl/dequantize.wgsl");

/// Values per workgroup (the kernels' `@workgroup_size`).
const WORKGROUP: u32 = 256;
/// The most workgroups one dispatch dimension takes.
const MAX_GROUPS_X: u32 = 65_535;

/// A wgpu device with the kernels' pipelines built.
pub struct WgpuBackend {
    adapter: wgpu::AdapterInfo,
    device: wgpu::Device,
    queue: wgpu::Queue,
    layout: wgpu::BindGroupLayout,
    q8_0: wgpu::ComputePipeline,
    q4_0: wgpu::ComputePipeline,
    nf4: wgpu::ComputePipeline,
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
            required_limits: wgpu::Limits::downlevel_defaults().using_resolution(adapter.limits()),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device(format!("cannot open {}: {e}", adapter.get_info().name)))?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("dequantize.wgsl"),
            source: wgpu::ShaderSource::Wgsl(DEQUANTIZE_WGSL.into()),
        });
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("dequantize"),
            entries: &[
                storage(0, true),
                storage(1, true),
                storage(2, false),
                wgpu::BindGroupLayoutEntry {
                    binding: 3,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("dequantize"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        Ok(WgpuBackend {
            q8_0: pipeline("dequantize_q8_0"),
            q4_0: pipeline("dequantize_q4_0"),
            nf4: pipeline("dequantize_nf4"),
            adapter: adapter.get_info(),
            device,
            queue,
            layout,
        })
    }

    /// What wgpu says about the adapter (name, backend, whether it is a CPU driver).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter
    }

    /// A storage buffer holding `bytes`, padded to whole u32 words (and never empty).
    fn words(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &padded,
                usage: wgpu::BufferUsages::STORAGE,
            })
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> String {
        format!("{} ({:?})", self.adapter.name, self.adapter.backend)
    }

    fn dequantize(&self, src: Quantized<'_>, dst: &mut [f32]) -> Result<(), GpuError> {
        let n = src.len()?;
        if dst.len() != n {
            return Err(GpuError::Layout(format!(
                "{n} values need an output of {n}, got {}",
                dst.len()
            )));
        }
        if n == 0 {
            return Ok(());
        }
        let n32 = u32::try_from(n)
            .map_err(|_| GpuError::Layout(format!("{n} values is more than one dispatch holds")))?;
        let (pipeline, data, scales): (_, &[u8], Vec<u8>) = match src {
            Quantized::Q8_0(b) => (&self.q8_0, b, Vec::new()),
            Quantized::Q4_0(b) => (&self.q4_0, b, Vec::new()),
            Quantized::Nf4 { codes, absmax } => (
                &self.nf4,
                codes,
                absmax.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        };
        let groups = n32.div_ceil(WORKGROUP);
        let (gx, gy) = (groups.min(MAX_GROUPS_X), groups.div_ceil(MAX_GROUPS_X));
        let mut params = Vec::with_capacity(16);
        for v in [n32, gx, 0, 0] {
            params.extend_from_slice(&v.to_le_bytes());
        }
        let src_buf = self.words("src", data);
        let scale_buf = self.words("scales", &scales);
        let params_buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: &params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let out_bytes = (n * 4) as u64;
        let out = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dst"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: out_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("dequantize"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: src_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: scale_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: out.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: params_buf.as_entire_binding(),
                },
            ],
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        encoder.copy_buffer_to_buffer(&out, 0, &readback, 0, out_bytes);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = mpsc::channel();
        readback.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Device(e.to_string()))?;
        rx.recv()
            .map_err(|e| GpuError::Device(e.to_string()))?
            .map_err(|e| GpuError::Device(e.to_string()))?;
        {
            let view = readback
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Device(e.to_string()))?;
            for (d, b) in dst.iter_mut().zip(view.chunks_exact(4)) {
                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        readback.unmap();
        Ok(())
    }
}

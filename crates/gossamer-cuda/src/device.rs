//! The GPU as the rest of the crate sees it: one context and stream, the kernels of
//! `kernels.cu` compiled for this device by NVRTC, a cuBLAS handle, and device buffers
//! addressed by raw pointers (the kernels take plain pointers and sizes).

use std::sync::Arc;

use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::driver::{
    result as drv, sys as drv_sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream,
    DevicePtr, LaunchConfig,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};

use crate::CudaError;

pub(crate) const KERNELS: &str = include_str!("kernels.cu");

/// Every kernel in `kernels.cu`, looked up once.
pub(crate) struct Kernels {
    pub embed: CudaFunction,
    pub rmsnorm: CudaFunction,
    pub add_bias: CudaFunction,
    pub f32_to_bf16: CudaFunction,
    pub gather_rows: CudaFunction,
    pub gemv_bf16: CudaFunction,
    pub route: CudaFunction,
    pub moe_gate_up: CudaFunction,
    pub moe_down: CudaFunction,
    pub moe_combine: CudaFunction,
    pub gather_pairs_bf16: CudaFunction,
    pub swiglu_sorted: CudaFunction,
    pub mxfp4_to_bf16: CudaFunction,
    pub transpose_bf16: CudaFunction,
    pub rope_store: CudaFunction,
    pub attention_combine: CudaFunction,
    pub attention_decode: CudaFunction,
    pub gemv1_bf16_12: CudaFunction,
    pub gemv1_bf16_16: CudaFunction,
    pub moe1_gate_up: CudaFunction,
    pub moe1_down: CudaFunction,
    pub moe1_tc_gate_up: CudaFunction,
    pub moe1_tc_down: CudaFunction,

    pub attention: CudaFunction,
    pub copy16: CudaFunction,
}

/// Dynamic shared memory the small-batch products may ask for (inputs staged per block).
pub(crate) const MAX_DYNAMIC_SMEM: usize = 160 * 1024;

/// Compiles `kernels.cu` to PTX for compute capability `major.minor` (no GPU needed: tests
/// use this to check the source wherever libnvrtc loads).
pub fn compile_kernels(major: i32, minor: i32) -> Result<String, CudaError> {
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
        name: Some("gossamer_kernels.cu".into()),
        ..Default::default()
    };
    let ptx =
        compile_ptx_with_opts(KERNELS, opts).map_err(|e| CudaError::Compile(e.to_string()))?;
    Ok(ptx.to_src())
}

/// A device allocation and its address.
pub(crate) struct Buf {
    slice: CudaSlice<u8>,
    pub ptr: u64,
}

impl Buf {
    pub fn bytes(&self) -> usize {
        self.slice.len()
    }
}

/// A `cublasHandle_t`, used only under the backend's lock.
struct BlasHandle(blas_sys::cublasHandle_t);
// SAFETY: cuBLAS handles may be used from any thread as long as calls are not concurrent;
// every use goes through `Gpu`, whose callers hold the backend's state lock.
unsafe impl Send for BlasHandle {}
// SAFETY: see above; shared references never call into cuBLAS concurrently.
unsafe impl Sync for BlasHandle {}

pub(crate) struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    pub k: Kernels,
    blas: BlasHandle,
    pub name: String,
    pub ordinal: usize,
    pub sms: u32,
    staging: std::sync::Mutex<Option<cudarc::driver::PinnedHostSlice<u8>>>,
    /// Kernel names by function handle, for the profiler.
    names: std::collections::HashMap<usize, &'static str>,
    pub profiler: Option<crate::profile::Profiler>,
}

impl Gpu {
    pub fn open(ordinal: usize) -> Result<Gpu, CudaError> {
        crate::check_libraries()?;
        let count = CudaContext::device_count().map_err(CudaError::driver)?;
        if count <= 0 {
            return Err(CudaError::NoDevice);
        }
        if ordinal >= count as usize {
            return Err(CudaError::BadOrdinal {
                ordinal,
                count: count as usize,
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(CudaError::driver)?;
        // One stream of our own (graphs cannot capture the legacy default stream), used in
        // order; the per-allocation events cudarc would otherwise record cost time on every
        // launch and cannot be captured into graphs.
        // SAFETY: the backend uses a single stream for every allocation and launch.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(CudaError::driver)?;
        let (major, minor) = ctx.compute_capability().map_err(CudaError::driver)?;
        let name = ctx.name().map_err(CudaError::driver)?;
        let sms = ctx
            .attribute(drv_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(CudaError::driver)? as u32;
        let ptx = compile_kernels(major, minor)?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(CudaError::driver)?;
        let names = std::cell::RefCell::new(std::collections::HashMap::new());
        let f = |name: &'static str| {
            let func = module.load_function(name).map_err(CudaError::driver)?;
            names.borrow_mut().insert(func.cu_function() as usize, name);
            Ok::<_, CudaError>(func)
        };
        let k = Kernels {
            embed: f("embed")?,
            rmsnorm: f("rmsnorm")?,
            add_bias: f("add_bias")?,
            f32_to_bf16: f("f32_to_bf16")?,
            gather_rows: f("gather_rows")?,
            gemv_bf16: f("gemv_bf16")?,
            route: f("route")?,
            moe_gate_up: f("moe_gate_up")?,
            moe_down: f("moe_down")?,
            moe_combine: f("moe_combine")?,
            gather_pairs_bf16: f("gather_pairs_bf16")?,
            swiglu_sorted: f("swiglu_sorted")?,
            mxfp4_to_bf16: f("mxfp4_to_bf16")?,
            transpose_bf16: f("transpose_bf16")?,
            rope_store: f("rope_store")?,
            attention_combine: f("attention_combine")?,
            attention_decode: f("attention_decode")?,
            gemv1_bf16_12: f("gemv1_bf16_12")?,
            gemv1_bf16_16: f("gemv1_bf16_16")?,
            moe1_gate_up: f("moe1_gate_up")?,
            moe1_down: f("moe1_down")?,
            moe1_tc_gate_up: f("moe1_tc_gate_up")?,
            moe1_tc_down: f("moe1_tc_down")?,

            attention: f("attention")?,
            copy16: f("copy16")?,
        };
        for func in [
            &k.gemv_bf16,
            &k.moe_gate_up,
            &k.moe_down,
            &k.gemv1_bf16_12,
            &k.gemv1_bf16_16,
            &k.moe1_gate_up,
            &k.moe1_down,
            &k.moe1_tc_gate_up,
            &k.moe1_tc_down,
        ] {
            func.set_attribute(
                drv_sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                MAX_DYNAMIC_SMEM as i32,
            )
            .map_err(CudaError::driver)?;
        }
        let handle = blas::create_handle().map_err(CudaError::blas)?;
        // SAFETY: the handle was just created; the stream lives as long as `Gpu`.
        unsafe { blas::set_stream(handle, stream.cu_stream() as _) }.map_err(CudaError::blas)?;
        Ok(Gpu {
            ctx,
            stream,
            _module: module,
            k,
            blas: BlasHandle(handle),
            name,
            ordinal,
            sms,
            staging: std::sync::Mutex::new(None),
            names: names.into_inner(),
            profiler: crate::profile::Profiler::from_env(),
        })
    }

    pub fn alloc(&self, bytes: usize) -> Result<Buf, CudaError> {
        let slice = self
            .stream
            .alloc_zeros::<u8>(bytes.max(16))
            .map_err(|e| CudaError::alloc(bytes, e))?;
        let (ptr, _) = slice.device_ptr(&self.stream);
        Ok(Buf { slice, ptr })
    }

    pub fn upload(&self, data: &[u8]) -> Result<Buf, CudaError> {
        let mut buf = self.alloc(data.len())?;
        if !data.is_empty() {
            self.stream
                .memcpy_htod(data, &mut buf.slice)
                .map_err(CudaError::driver)?;
        }
        Ok(buf)
    }

    /// Copies `src` (host) into `dst` at byte offset 0.
    pub fn write<T: Copy>(&self, dst: &Buf, src: &[T]) -> Result<(), CudaError> {
        let bytes = std::mem::size_of_val(src);
        assert!(
            bytes <= dst.bytes(),
            "write past the end of a device buffer"
        );
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: `dst` holds at least `bytes` bytes; the copy is ordered on our stream and
        // the host slice outlives it (the call returns after the pageable copy is staged).
        unsafe {
            drv::memcpy_htod_async(
                dst.ptr,
                std::slice::from_raw_parts(src.as_ptr() as *const u8, bytes),
                self.stream.cu_stream(),
            )
        }
        .map_err(CudaError::driver)
    }

    /// Copies `dst.len()` values from device address `src` into host memory and waits.
    pub fn read<T: Copy + Default>(&self, src: u64, dst: &mut [T]) -> Result<(), CudaError> {
        let bytes = std::mem::size_of_val(dst);
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: the caller passes an address with at least `bytes` readable bytes; the
        // host slice is exclusively borrowed until the stream has been synchronised below.
        unsafe {
            drv::memcpy_dtoh_async(
                std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, bytes),
                src,
                self.stream.cu_stream(),
            )
        }
        .map_err(CudaError::driver)?;
        self.sync()
    }

    /// `count` floats at `src`, copied through a page-locked staging buffer (kept and
    /// grown) and handed to `take`: a direct copy into pageable memory is several times
    /// slower, and the logits of every decoded token come back this way.
    pub fn read_staged(
        &self,
        src: u64,
        count: usize,
        take: &mut dyn FnMut(&[f32]),
    ) -> Result<(), CudaError> {
        let bytes = count * 4;
        if bytes == 0 {
            return Ok(());
        }
        let mut staging = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        if staging.as_ref().is_none_or(|s| s.len() < bytes) {
            *staging = None;
            // SAFETY: plain (cacheable) page-locked memory, only read after the copy below
            // has completed.
            let s = unsafe {
                self.ctx
                    .alloc_pinned_with_flags::<u8>(bytes.next_power_of_two(), 0)
            }
            .map_err(|e| CudaError::alloc(bytes, e))?;
            *staging = Some(s);
        }
        let s = staging.as_mut().expect("allocated");
        let host = s.as_mut_ptr().map_err(CudaError::driver)?;
        // SAFETY: `host` has at least `bytes` bytes; the copy is complete after the sync, and
        // only then is the staging buffer read.
        unsafe {
            drv::memcpy_dtoh_async(
                std::slice::from_raw_parts_mut(host, bytes),
                src,
                self.stream.cu_stream(),
            )
        }
        .map_err(CudaError::driver)?;
        self.sync()?;
        // SAFETY: as above; `f32` has no invalid bit patterns and the buffer is aligned to a page.
        let values = unsafe { std::slice::from_raw_parts(host as *const f32, count) };
        take(values);
        Ok(())
    }

    pub fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> Result<(), CudaError> {
        // SAFETY: both ranges are device allocations of at least `bytes` bytes (callers
        // compute them from the pool's layout).
        unsafe { drv::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) }
            .map_err(CudaError::driver)
    }

    pub fn sync(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(CudaError::driver)
    }

    /// `Y[n, rows] = X[n, cols] · Wᵀ (+ beta·Y)`: W bf16 `[rows, cols]` row-major, X bf16,
    /// Y f32, f32 accumulation (tensor cores).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_bf16(
        &self,
        w: u64,
        x: u64,
        y: u64,
        rows: usize,
        cols: usize,
        n: usize,
        beta: f32,
    ) -> Result<(), CudaError> {
        let alpha = 1f32;
        // SAFETY: the pointers address device buffers of the stated shapes (checked by the
        // callers' buffer sizing); alpha and beta are host scalars that outlive the call.
        unsafe {
            blas::gemm_ex(
                self.blas.0,
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                rows as i32,
                n as i32,
                cols as i32,
                &alpha as *const f32 as *const _,
                w as *const _,
                blas_sys::cudaDataType::CUDA_R_16BF,
                cols as i32,
                x as *const _,
                blas_sys::cudaDataType::CUDA_R_16BF,
                cols as i32,
                &beta as *const f32 as *const _,
                y as *mut _,
                blas_sys::cudaDataType::CUDA_R_32F,
                rows as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(CudaError::blas)?;
        self.mark("cublas_gemm_bf16");
        Ok(())
    }

    /// `Y[n, rows] = X[n, cols] · Wᵀ` all in f32 (the router: exact, so that rounding does
    /// not flip its top-k).
    pub fn gemm_f32(
        &self,
        w: u64,
        x: u64,
        y: u64,
        rows: usize,
        cols: usize,
        n: usize,
    ) -> Result<(), CudaError> {
        let (alpha, beta) = (1f32, 0f32);
        // SAFETY: as in `gemm_bf16`.
        unsafe {
            blas::sgemm(
                self.blas.0,
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                rows as i32,
                n as i32,
                cols as i32,
                &alpha,
                w as *const f32,
                cols as i32,
                x as *const f32,
                cols as i32,
                &beta,
                y as *mut f32,
                rows as i32,
            )
        }
        .map_err(CudaError::blas)?;
        self.mark("cublas_sgemm");
        Ok(())
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // SAFETY: created in `open`, destroyed once here.
        let _ = unsafe { blas::destroy_handle(self.blas.0) };
    }
}

/// One kernel argument: a pointer, an index or a float.
#[derive(Clone, Copy)]
pub(crate) enum Arg {
    P(u64),
    I(i32),
    U(u64),
    F(f32),
}

impl Gpu {
    /// Launches `f` with `args` in order (`Arg::P` for pointers, `Arg::I` for `int`,
    /// `Arg::U` for `unsigned long long`, `Arg::F` for `float`).
    pub fn launch(
        &self,
        f: &CudaFunction,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: usize,
        args: &[Arg],
    ) -> Result<(), CudaError> {
        use cudarc::driver::PushKernelArg;
        let mut b = self.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::P(p) | Arg::U(p) => b.arg(p),
                Arg::I(i) => b.arg(i),
                Arg::F(x) => b.arg(x),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: block,
            shared_mem_bytes: smem as u32,
        };
        // SAFETY: each kernel's arguments are listed in `kernels.cu` order with matching
        // types, and every pointer addresses a live buffer sized for the launch's shapes.
        unsafe { b.launch(cfg) }.map_err(CudaError::driver)?;
        let name = self.names.get(&(f.cu_function() as usize)).copied();
        self.mark(name.unwrap_or("kernel"));
        Ok(())
    }

    /// Profiling: the end of an operation just queued.
    pub fn mark(&self, name: &'static str) {
        if let Some(p) = &self.profiler {
            p.mark(&self.ctx, &self.stream, name);
        }
    }
}

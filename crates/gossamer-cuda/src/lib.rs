//! gpt-oss on an NVIDIA GPU.
//!
//! [`CudaBackend`] is a [`gossamer_model::Accelerator`]: [`GptOss`](gossamer_model::GptOss)
//! validates each step and hands it here, so the engine, the server's batching and `bench`
//! run unchanged on the GPU. The weights are uploaded once as the checkpoint stores them
//! (bf16 and MXFP4; see [`weights`]); keys and values live in a paged device pool
//! ([`kv`]); the kernels (`kernels.cu`) are compiled for the device by NVRTC when the
//! backend starts.
//!
//! Two paths through each layer, chosen by the number of tokens in the step:
//! * up to `NT_MAX` (8) tokens (decoding): every product is a hand-written kernel that reads
//!   each weight once for all the step's tokens with f32 activations, the RMSNorm folded
//!   into the product that follows it; each routed expert's MXFP4 rows are read once for
//!   the tokens routed to it.
//! * more (prefill, large batches): bf16 products through cuBLAS on tensor cores (the
//!   activations rounded to bf16, as the reference does in bf16), experts widened from
//!   MXFP4 to bf16 one at a time and multiplied for all their tokens.
//!
//! Nothing here needs CUDA to build: cudarc loads the driver, NVRTC and cuBLAS with dlopen,
//! and [`CudaBackend::new`] returns [`CudaError::NoLibrary`] where they are missing.

mod backend;
mod device;
pub mod kv;
mod profile;
pub mod weights;

pub use backend::{CudaBackend, CudaOptions};
pub use device::compile_kernels;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA {0} library found (install the NVIDIA driver and CUDA toolkit, or add their lib folder to LD_LIBRARY_PATH)")]
    NoLibrary(&'static str),
    #[error("no CUDA device found")]
    NoDevice,
    #[error("cuda:{ordinal} does not exist: this machine has {count} CUDA device(s)")]
    BadOrdinal { ordinal: usize, count: usize },
    #[error("CUDA driver: {0}")]
    Driver(String),
    #[error("cuBLAS: {0}")]
    Blas(String),
    #[error("compiling the CUDA kernels: {0}")]
    Compile(String),
    #[error("out of GPU memory allocating {bytes} bytes: {message}")]
    OutOfMemory { bytes: usize, message: String },
    #[error("the GPU KV cache is full: {needed} more blocks needed, {free} of {total} free (fewer concurrent sequences, or a larger --kv-cache-gb)")]
    KvFull {
        needed: usize,
        free: usize,
        total: usize,
    },
    #[error("this model is not supported on CUDA: {0}")]
    Unsupported(String),
    #[error("the KV cache was made by another backend")]
    ForeignCache,
}

impl CudaError {
    pub(crate) fn driver(e: cudarc::driver::DriverError) -> CudaError {
        CudaError::Driver(e.to_string())
    }
    pub(crate) fn blas(e: cudarc::cublas::result::CublasError) -> CudaError {
        CudaError::Blas(format!("{e:?}"))
    }
    pub(crate) fn alloc(bytes: usize, e: cudarc::driver::DriverError) -> CudaError {
        CudaError::OutOfMemory {
            bytes,
            message: e.to_string(),
        }
    }
}

impl From<CudaError> for gossamer_model::ModelError {
    fn from(e: CudaError) -> Self {
        gossamer_model::ModelError::Device(e.to_string())
    }
}

/// Whether the CUDA driver, NVRTC and cuBLAS libraries can be loaded (cudarc would
/// otherwise panic at the first call into a missing one).
pub fn check_libraries() -> Result<(), CudaError> {
    // SAFETY: these only try to dlopen the libraries (no CUDA call is made).
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoLibrary("driver (libcuda)"));
    }
    // SAFETY: as above.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::NoLibrary("NVRTC (libnvrtc)"));
    }
    // SAFETY: as above.
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return Err(CudaError::NoLibrary("cuBLAS (libcublas)"));
    }
    Ok(())
}

/// Whether NVRTC alone can be loaded (enough to compile the kernels, without a GPU).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen libnvrtc.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Why this machine cannot run the CUDA backend, or `None` when it can: the message tests
/// print when they skip.
pub fn unavailable_reason() -> Option<String> {
    if let Err(e) = check_libraries() {
        return Some(e.to_string());
    }
    match cudarc::driver::CudaContext::device_count() {
        Ok(n) if n > 0 => None,
        Ok(_) => Some("no CUDA device found".into()),
        Err(e) => Some(format!("CUDA driver: {e}")),
    }
}

//! The backend the CLI and examples run on, chosen by cargo feature, never by
//! editing code: burn-ndarray on the CPU by default, CUDA with `--features cuda`.

#[cfg(not(feature = "cuda"))]
mod chosen {
    /// The default backend: burn-ndarray (f32, both cores).
    pub type Backend = burn::backend::NdArray<f32>;
    /// Its device.
    pub fn device() -> burn::backend::ndarray::NdArrayDevice {
        burn::backend::ndarray::NdArrayDevice::Cpu
    }
    /// Human-readable name for reports.
    pub const NAME: &str = "burn-ndarray (CPU, f32)";
}

#[cfg(feature = "cuda")]
mod chosen {
    /// The CUDA backend (f32).
    pub type Backend = burn::backend::Cuda<f32, i32>;
    /// CUDA device 0.
    pub fn device() -> burn::backend::cuda::CudaDevice {
        burn::backend::cuda::CudaDevice::default()
    }
    /// Human-readable name for reports.
    pub const NAME: &str = "burn-cuda (GPU 0, f32)";
}

pub use chosen::{device, Backend, NAME};

//! The backend the CLI and examples run on, chosen by cargo feature, never by
//! editing code: burn-ndarray on the CPU by default, burn-flex on the CPU with
//! `--features flex`, CUDA with `--features cuda` (which wins if both are set).

#[cfg(not(any(feature = "cuda", feature = "flex")))]
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

#[cfg(all(feature = "flex", not(feature = "cuda")))]
mod chosen {
    /// burn-flex: pure-Rust CPU backend on the `gemm` crate (f32).
    pub type Backend = burn::backend::Flex<f32, i32>;
    /// Its device.
    pub fn device() -> burn::backend::flex::FlexDevice {
        burn::backend::flex::FlexDevice
    }
    /// Human-readable name for reports.
    pub const NAME: &str = "burn-flex (CPU, f32)";
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

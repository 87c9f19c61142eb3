use std::fmt;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// The compute backend, chosen at run time. One code path serves all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Backend {
    /// burn-flex: multi-threaded, SIMD CPU backend (the default).
    #[default]
    Flex,
    /// burn-ndarray: the older CPU backend, kept selectable (a build with `--features ndarray`).
    Ndarray,
    /// burn-wgpu: GPUs through Vulkan, Metal or DX12.
    #[cfg_attr(feature = "clap", value(alias = "gpu"))]
    Wgpu,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("no GPU adapter found (Vulkan/Metal/DX12); use --backend flex ({0})")]
    NoAdapter(String),
    #[error(
        "this catdog was built without the {0} backend; build one with \
         `cargo build --release --features {0}` (or `cargo install --path . --locked --features \
         {0}`)"
    )]
    NotBuilt(Backend),
    #[error(
        "--device {index} picks a GPU adapter, but the backend is {backend}: use --backend wgpu, \
         or leave --device out"
    )]
    DeviceNeedsWgpu { backend: Backend, index: usize },
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        })
    }
}

/// An initialised device and a human-readable name for logs.
#[derive(Debug, Clone)]
pub struct OpenDevice {
    pub device: Device,
    pub name: String,
    /// True for a software GPU adapter (e.g. Mesa's llvmpipe): far slower than `flex`.
    pub software: bool,
}

impl Backend {
    /// Opens the device; for wgpu, `index` picks among several adapters (default: the best one).
    /// An adapter index with a CPU backend is refused, not ignored.
    pub fn open(self, index: Option<usize>) -> Result<OpenDevice, BackendError> {
        if let (Some(index), false) = (index, self == Backend::Wgpu) {
            return Err(BackendError::DeviceNeedsWgpu {
                backend: self,
                index,
            });
        }
        match self {
            Backend::Flex => Ok(OpenDevice {
                device: Device::flex(),
                name: format!("flex (CPU, {} threads)", rayon_threads()),
                software: false,
            }),
            Backend::Ndarray => open_ndarray(),
            Backend::Wgpu => open_wgpu(index),
        }
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(feature = "ndarray")]
fn open_ndarray() -> Result<OpenDevice, BackendError> {
    #[allow(deprecated)]
    Ok(OpenDevice {
        device: Device::ndarray(),
        name: "ndarray (CPU)".into(),
        software: false,
    })
}

#[cfg(not(feature = "ndarray"))]
fn open_ndarray() -> Result<OpenDevice, BackendError> {
    Err(BackendError::NotBuilt(Backend::Ndarray))
}

#[cfg(not(feature = "wgpu"))]
fn open_wgpu(_index: Option<usize>) -> Result<OpenDevice, BackendError> {
    Err(BackendError::NotBuilt(Backend::Wgpu))
}

#[cfg(feature = "wgpu")]
fn open_wgpu(index: Option<usize>) -> Result<OpenDevice, BackendError> {
    use burn::tensor::DeviceKind;
    let kind = match index {
        Some(i) => DeviceKind::DiscreteGpu(i),
        None => DeviceKind::DefaultDevice,
    };
    // Adapter discovery can panic deep inside the driver stack on broken setups; contain it.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| {
        let device = Device::wgpu_options()
            .device_kind(kind)
            .init()
            .map_err(|e| e.to_string())?;
        let name = device
            .identity()
            .map(|i| i.name.to_string())
            .unwrap_or_else(|| "wgpu".into());
        Ok::<_, String>((device, name))
    });
    std::panic::set_hook(hook);
    let (device, name) = match opened {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(BackendError::NoAdapter(e)),
        Err(_) => {
            return Err(BackendError::NoAdapter(
                "adapter initialisation failed".into(),
            ))
        }
    };
    let lower = name.to_ascii_lowercase();
    let software = ["llvmpipe", "swiftshader", "lavapipe", "software", "cpu"]
        .iter()
        .any(|s| lower.contains(s));
    Ok(OpenDevice {
        device,
        name: format!("wgpu: {name}"),
        software,
    })
}

//! Which arithmetic the kernels' matrix products use: `f32` (always, unless a training run
//! asks otherwise) or bf16 inputs with `f32` sums (see `matrix/bf16.rs`).
//!
//! The choice is process-wide (the kernels run on rayon's pool, where a thread-local choice
//! would not follow the work), held by a [`PrecisionScope`] for as long as a training run's
//! steps need it; evaluation, `predict` and `serve` run outside any scope, in `f32`.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// The arithmetic of the gemms under catdog's convolution and linear kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `f32` throughout.
    #[default]
    F32,
    /// Inputs rounded to bfloat16, products summed in `f32` (AVX512-BF16 CPUs only).
    Bf16,
}

/// Set while a [`PrecisionScope`] of [`Precision::Bf16`] is alive.
static BF16: AtomicBool = AtomicBool::new(false);

/// This CPU cannot multiply in bf16.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("this CPU has no AVX512-BF16 for bf16 gemms")]
pub struct Bf16Unsupported;

impl Precision {
    /// Whether this CPU runs this precision's kernels.
    pub fn supported(self) -> bool {
        match self {
            Precision::F32 => true,
            Precision::Bf16 => bf16_supported(),
        }
    }

    /// The kernels use this precision until the returned scope is dropped (then the one
    /// before it again).
    pub fn scope(self) -> Result<PrecisionScope, Bf16Unsupported> {
        if !self.supported() {
            return Err(Bf16Unsupported);
        }
        let before = BF16.swap(self == Precision::Bf16, Ordering::SeqCst);
        Ok(PrecisionScope { before })
    }

    /// The precision in force now.
    pub fn current() -> Precision {
        if BF16.load(Ordering::Relaxed) {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }
}

/// Whether this CPU runs the bf16 gemm: AVX-512 F and BF16 (Intel Cooper Lake, Sapphire Rapids
/// and later; AMD Zen 4 and later).
fn bf16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Keeps a [`Precision`] in force; dropping it restores the one before.
#[must_use = "the precision is in force only while the scope is alive"]
pub struct PrecisionScope {
    before: bool,
}

impl Drop for PrecisionScope {
    fn drop(&mut self) {
        BF16.store(self.before, Ordering::SeqCst);
    }
}

//! Sizes computed from untrusted configs: saturating products and per-layer parameter counts.

/// One layer's trainable parameters, named by the config field that sizes it.
pub(crate) struct LayerParams {
    pub name: String,
    pub params: usize,
}

/// `a * b` in saturating arithmetic, for sizes computed from untrusted configs.
pub(crate) fn mul(factors: &[usize]) -> usize {
    factors.iter().fold(1usize, |p, &f| p.saturating_mul(f))
}

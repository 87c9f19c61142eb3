//! One Adam or AdamW step of a whole f32 tensor as a single multi-threaded pass over parameter,
//! gradient and both moments, in place, as PyTorch's fused Adam does; burn's optimiser runs the
//! same arithmetic as a chain of single-threaded tensor ops. The results are bit for bit burn's
//! while the moments are normal floats; a moment that would be denormal is stored as 0 (see
//! [`flush_denormal`]), which leaves the update the same.

use burn::backend::{backend_extension, flex::FlexTensor, tensor::FloatTensor, Backend, Flex};
use rayon::prelude::*;

/// Elements per task: large enough that a task outweighs rayon's scheduling, small enough that
/// two cores share a 100k-parameter tensor.
const CHUNK: usize = 1 << 14;

/// The hyper-parameters of one step of one parameter tensor.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub lr: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// AdamW (weight decay applied to the weights) rather than Adam (added to the gradient).
    pub decoupled: bool,
    /// 1-based step count of this parameter, for the bias corrections.
    pub time: i32,
}

#[backend_extension(Flex)]
pub trait FusedAdamOps: Backend {
    /// One Adam or AdamW step: returns the updated parameter and moments.
    #[allow(clippy::too_many_arguments)]
    fn fused_adam_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        lr: f64,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        weight_decay: f32,
        decoupled: bool,
        time: i32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl FusedAdamOps for Flex {
    fn fused_adam_step(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        lr: f64,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        weight_decay: f32,
        decoupled: bool,
        time: i32,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let step = AdamStep {
            lr,
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            decoupled,
            time,
        };
        let (mut p, mut m, mut v) = (owned(param), owned(moment_1), owned(moment_2));
        let g = dense(grad);
        let grad: &[f32] = g.as_slice().expect("dense() gives a contiguous f32 tensor");
        update(
            step,
            p.storage_mut(),
            grad,
            m.storage_mut(),
            v.storage_mut(),
        );
        (p, m, v)
    }
}

/// A contiguous tensor starting at offset 0 (a view is copied once).
fn dense(t: FlexTensor) -> FlexTensor {
    match t.layout().contiguous_offsets() {
        Some((0, end)) if end == t.layout().shape().num_elements() => t,
        _ => t.to_contiguous(),
    }
}

/// [`dense`] and not shared, so it can be written in place (a shared buffer is copied once,
/// never changed under another owner).
fn owned(t: FlexTensor) -> FlexTensor {
    let t = dense(t);
    if t.is_unique() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The update of one tensor, element by element in burn's order of operations, denormal moments
/// flushed to 0.
pub fn update(s: AdamStep, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    assert!(
        param.len() == grad.len() && grad.len() == m.len() && m.len() == v.len(),
        "fused Adam: parameter, gradient and moments differ in length"
    );
    let (b1, b2) = (s.beta_1, s.beta_2);
    let (f1, f2) = (1.0 - b1, 1.0 - b2);
    let lr = s.lr as f32;
    let bc1 = 1f32 - b1.powi(s.time);
    let bc2 = 1f32 - b2.powi(s.time);
    // AdamW (burn's AdamW): m / bc1 / (sqrt(v / bc2) + eps), decay (1 - lr * wd) on the weights.
    let keep = (1.0 - s.lr * f64::from(s.weight_decay)) as f32;
    let decays = s.lr * f64::from(s.weight_decay) != 0.0;
    // Adam (burn's Adam): m * (sqrt(bc2) / bc1) / (sqrt(v) + eps * sqrt(bc2)), decay on the
    // gradient.
    let bc2_sqrt = (1.0 - b2.powi(s.time)).sqrt();
    let combined = bc2_sqrt / (1.0 - b1.powi(s.time));
    let eps_adam = s.epsilon * bc2_sqrt;
    let wd = s.weight_decay;

    let (eps, decoupled) = (s.epsilon, s.decoupled);
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            if decoupled {
                adamw_chunk(
                    p,
                    g,
                    m,
                    v,
                    [b1, b2, f1, f2, bc1, bc2, eps, lr, keep],
                    decays,
                );
            } else {
                adam_chunk(p, g, m, v, [b1, b2, f1, f2, combined, eps_adam, lr, wd]);
            }
        });
}

/// AdamW on one chunk. A function of its own, with every constant a plain value: the loop then
/// vectorises (inside the closure, with the constants read from `AdamStep`, it ran 3.9x slower).
#[allow(clippy::too_many_arguments)]
fn adamw_chunk(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    [b1, b2, f1, f2, bc1, bc2, eps, lr, keep]: [f32; 9],
    decays: bool,
) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = flush_denormal(*m * b1 + g * f1);
        *v = flush_denormal(*v * b2 + g * g * f2);
        let delta = (*m / bc1) / ((*v / bc2).sqrt() + eps);
        let decayed = if decays { *p * keep } else { *p };
        *p = decayed - delta * lr;
    }
}

/// Adam on one chunk (see [`adamw_chunk`]).
fn adam_chunk(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    [b1, b2, f1, f2, combined, eps_adam, lr, wd]: [f32; 8],
) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if wd != 0.0 { *p * wd + g } else { g };
        *m = flush_denormal(*m * b1 + g * f1);
        *v = flush_denormal(*v * b2 + g * g * f2);
        let delta = (*m * combined) / (v.sqrt() + eps_adam);
        *p -= delta * lr;
    }
}

/// `x`, or 0 where it is denormal (nonzero and below `f32::MIN_POSITIVE`, 1.2e-38).
///
/// Gradients of a converging model reach the denormal range (their squares in the second
/// moment first), and x86 CPUs take a microcode assist of about a hundred cycles for each
/// operation that reads one: on a 2-core Intel Xeon stored denormal moments made the update of
/// the MLP's 6.4 million parameters 4x slower. Flushed when stored, they cost at most the one
/// operation that produced them. Next to `epsilon` (1e-5) such values change no update:
/// `m / (sqrt(v) + eps)` is the same to far below f32 precision. (Done here, not by the CPU's
/// flush-to-zero mode: Rust code may not change the floating-point environment.)
///
/// On the bits, as a mask: a float compare and select in this loop left it unvectorised (3.7x
/// slower than the loop under FTZ on a 2-core Intel Xeon), the integer mask does not.
#[inline(always)]
fn flush_denormal(x: f32) -> f32 {
    // Exponent bits all zero (denormal or zero) -> an all-zero mask, else all ones. The sign
    // bit is masked off first; NaN and infinity keep their bits.
    let normal = ((x.to_bits() & 0x7fff_ffff) >= 0x0080_0000) as u32;
    f32::from_bits(x.to_bits() & normal.wrapping_neg())
}

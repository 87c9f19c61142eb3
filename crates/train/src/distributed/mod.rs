//! Data-parallel training across processes: `mpirun -np N catdog train ...` in a build with the
//! cargo feature `mpi` ([`mpi::MpiWorld`]). Every rank runs the same run: the same epoch plan,
//! each rank the [`shard`] of every batch that is its own; after each backward pass the
//! gradients are summed across ranks in the model's visit order (one flat buffer, weighted by
//! each rank's share of the batch, so that the sum is the gradient of the whole batch's mean
//! loss) and every rank takes the same optimiser step. At each epoch's end the float state
//! (weights, BatchNorm's running statistics: each rank's come from its own images) is averaged
//! and a checksum of it compared across ranks; a mismatch ends the run. Rank 0 decides the epoch
//! count under a budget and the others follow it. Only rank 0 writes the run folder.
//!
//! One process alone is a world of one and none of this runs.

#[cfg(feature = "mpi")]
pub mod mpi;

use std::ops::Range;

use burn::{
    module::{Module, ModuleVisitor, Param},
    optim::GradientsParams,
    tensor::{Device, Tensor, TensorData},
};
use catdog_model::Classifier;

use crate::optim::model_values::{self, Tensors};

/// The processes training one model together.
pub trait Collective: Send + Sync + std::fmt::Debug {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// How many processes.
    fn size(&self) -> usize;
    /// Element-wise sums of `values` across ranks, in place: every rank gets the same sums.
    fn sum(&self, values: &mut [f32]);
    /// Element-wise sums in f64 (counts and metrics that must not round).
    fn sum_f64(&self, values: &mut [f64]);
    /// Rank 0's `values` on every rank.
    fn broadcast_f64(&self, values: &mut [f64]);
}

/// The part `rank` of `size` takes of a batch of `len` items: contiguous, sizes differing by at
/// most one.
pub fn shard(len: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    (rank * len / size)..((rank + 1) * len / size)
}

/// Sums `grads` across the ranks of `world`, each rank's weighted by `share` (its images over
/// the batch's), with `extra` (per-step numbers to sum, such as the loss) carried in the same
/// buffer: one all-reduce per step. Parameters are visited in the model's order, which every
/// rank shares.
pub fn all_reduce_gradients(
    world: &dyn Collective,
    model: &Classifier,
    grads: &mut GradientsParams,
    share: f32,
    extra: &mut [f32],
) {
    let mut gather = Gather {
        grads,
        flat: Vec::new(),
        shapes: Vec::new(),
    };
    model.visit(&mut gather);
    let Gather {
        grads,
        mut flat,
        shapes,
    } = gather;
    for v in &mut flat {
        *v *= share;
    }
    let grads_len = flat.len();
    flat.extend_from_slice(extra);
    world.sum(&mut flat);
    extra.copy_from_slice(&flat[grads_len..]);
    flat.truncate(grads_len);
    model.visit(&mut Scatter {
        grads,
        flat: &flat,
        at: 0,
        shapes: shapes.iter(),
    });
}

/// Takes each trainable parameter's gradient out of `grads`, flattened, in visit order.
struct Gather<'a> {
    grads: &'a mut GradientsParams,
    flat: Vec<f32>,
    /// Per trainable parameter: its gradient's shape and device (`None`: it had none).
    shapes: Vec<Option<(Vec<usize>, Device)>>,
}

impl ModuleVisitor for Gather<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.val().is_require_grad() {
            return;
        }
        match self.grads.remove::<D>(param.id) {
            Some(g) => {
                self.shapes.push(Some((g.dims().to_vec(), g.device())));
                self.flat.extend(g.into_data().iter::<f32>());
            }
            None => self.shapes.push(None),
        }
    }
}

/// Puts the summed gradients back, in the same visit order.
struct Scatter<'a, I: Iterator<Item = &'a Option<(Vec<usize>, Device)>>> {
    grads: &'a mut GradientsParams,
    flat: &'a [f32],
    at: usize,
    shapes: I,
}

impl<'a, I: Iterator<Item = &'a Option<(Vec<usize>, Device)>>> ModuleVisitor for Scatter<'a, I> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.val().is_require_grad() {
            return;
        }
        let Some(Some((shape, device))) = self.shapes.next() else {
            return;
        };
        let n: usize = shape.iter().product();
        let values = self.flat[self.at..self.at + n].to_vec();
        self.at += n;
        let g = Tensor::<D>::from_data(TensorData::new(values, shape.clone()), device);
        self.grads.register::<D>(param.id, g);
    }
}

/// Why the ranks' models are no longer the same.
#[derive(Debug, thiserror::Error)]
#[error(
    "rank {rank}'s weights differ from the other ranks' after epoch {epoch} (checksum {mine:.9e}, \
     mean over ranks {mean:.9e}): the ranks no longer train the same model"
)]
pub struct Diverged {
    pub rank: usize,
    pub epoch: usize,
    pub mine: f64,
    pub mean: f64,
}

/// Checks that the ranks hold the same weights (a checksum of the trainable tensors, which the
/// summed gradients keep equal, compared across ranks: a mismatch is an error), then returns
/// `model` with its whole float state averaged over the ranks (BatchNorm's running statistics
/// come from each rank's own images).
pub fn average_and_check(
    world: &dyn Collective,
    model: Classifier,
    epoch: usize,
) -> Result<Classifier, Diverged> {
    let mine = checksum(&model_values::collect(&model, Tensors::Trainable));
    let mut sums = [mine];
    world.sum_f64(&mut sums);
    let mean = sums[0] / world.size() as f64;
    // Equal weights give equal checksums to the last bit; allow the rounding of the mean.
    if (mine - mean).abs() > mine.abs().max(1.0) * 1e-12 {
        return Err(Diverged {
            rank: world.rank(),
            epoch,
            mine,
            mean,
        });
    }
    let mut values = model_values::collect(&model, Tensors::All);
    average_values(world, &mut values);
    Ok(model_values::replace(model, &values, Tensors::All))
}

/// Each of `values` replaced by its mean over the ranks, in one all-reduce.
pub fn average_values(world: &dyn Collective, values: &mut [Vec<f32>]) {
    let mut flat: Vec<f32> = values.iter().flatten().copied().collect();
    world.sum(&mut flat);
    let scale = 1.0 / world.size() as f32;
    for (dst, src) in values.iter_mut().flatten().zip(&flat) {
        *dst = src * scale;
    }
}

/// A sum that depends on every value and on its place.
fn checksum(values: &[Vec<f32>]) -> f64 {
    values
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| f64::from(*v) * (1.0 + (i % 7919) as f64 / 7919.0))
        .sum()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use burn::tensor::Device;
    use catdog_model::{MlpConfig, ModelConfig};

    use super::*;

    /// Rank 0 of two, the other rank simulated: its values are ours times `other`, and its
    /// checksums ours plus `drift`.
    #[derive(Debug)]
    struct TwoRanks {
        other: f32,
        drift: f64,
        sums: Mutex<usize>,
    }

    impl Collective for TwoRanks {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn sum(&self, values: &mut [f32]) {
            *self.sums.lock().unwrap() += 1;
            for v in values {
                *v += *v * self.other;
            }
        }
        fn sum_f64(&self, values: &mut [f64]) {
            values[0] = 2.0 * values[0] + self.drift;
        }
        fn broadcast_f64(&self, _: &mut [f64]) {}
    }

    fn model() -> Classifier {
        let config = ModelConfig::Mlp(MlpConfig {
            image_size: 8,
            hidden: vec![3],
            ..Default::default()
        });
        Classifier::new(&config, &Device::flex()).unwrap()
    }

    #[test]
    fn the_state_is_averaged_over_the_ranks() {
        let world = TwoRanks {
            other: 3.0,
            drift: 0.0,
            sums: Mutex::new(0),
        };
        let m = model();
        let before = model_values::collect(&m, Tensors::All);
        let averaged = average_and_check(&world, m, 1).unwrap();
        let after = model_values::collect(&averaged, Tensors::All);
        // (x + 3x) / 2 = 2x
        for (b, a) in before.iter().flatten().zip(after.iter().flatten()) {
            assert!((a - 2.0 * b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
        assert_eq!(
            *world.sums.lock().unwrap(),
            1,
            "one all-reduce for the whole state"
        );
    }

    #[test]
    fn ranks_whose_checksums_differ_end_the_run() {
        let world = TwoRanks {
            other: 1.0,
            drift: 1e-3,
            sums: Mutex::new(0),
        };
        let e = average_and_check(&world, model(), 4).unwrap_err();
        assert_eq!((e.rank, e.epoch), (0, 4));
        assert!(
            e.to_string().contains("no longer train the same model"),
            "{e}"
        );
        let same = TwoRanks {
            other: 1.0,
            drift: 0.0,
            sums: Mutex::new(0),
        };
        assert!(average_and_check(&same, model(), 4).is_ok());
    }

    #[test]
    fn shards_cover_a_batch_once_in_order() {
        for len in [0, 1, 5, 64, 65] {
            for size in 1..5 {
                let parts: Vec<Range<usize>> = (0..size).map(|r| shard(len, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, len);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let (min, max) = (
                    parts.iter().map(|p| p.len()).min().unwrap(),
                    parts.iter().map(|p| p.len()).max().unwrap(),
                );
                assert!(max - min <= 1, "{len} over {size}: {parts:?}");
            }
        }
    }
}

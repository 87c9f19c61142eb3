use std::{
    sync::{mpsc, Arc},
    thread::JoinHandle,
};

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::{
    augment::{write_chw, Transform},
    Augment, DataError, ImageSet, Mix, MixedLabels, Normalization, SplitMix64,
};

/// One image of a batch: its index in the set and the seed of its augmentation draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem {
    pub index: usize,
    pub seed: u64,
}

/// A batch assembled on the host, ready to be copied to any device.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// `[n, 3, size, size]` normalised values, row-major.
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
    pub image_size: usize,
    /// The second labels of a mixed batch (see [`Mix`]).
    pub mix: Option<MixedLabels>,
}

/// A batch on a device: images `[n, 3, H, W]` and class indices `[n]`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Tensor<4>,
    pub targets: Tensor<1, Int>,
    /// A mixed batch's partner labels `[n]` and the weight of `targets` (theirs is `1 - w`).
    pub mix: Option<(Tensor<1, Int>, f32)>,
}

impl HostBatch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn to_device(self, device: &Device) -> Batch {
        let n = self.len();
        let s = self.image_size;
        let images = Tensor::from_data(TensorData::new(self.images, [n, 3, s, s]), device);
        let targets = Tensor::from_data(TensorData::new(self.labels, [n]), device);
        let mix = self.mix.map(|m| {
            let partner = Tensor::from_data(TensorData::new(m.partner, [n]), device);
            (partner, m.weight)
        });
        Batch {
            images,
            targets,
            mix,
        }
    }
}

/// Turns [`BatchItem`]s into normalised (and, for training, augmented) batches.
#[derive(Debug, Clone)]
pub struct ImageBatcher {
    set: Arc<ImageSet>,
    lut: Box<[[f32; 256]; 3]>,
    augment: Option<Augment>,
    mix: Option<Mix>,
}

/// Stream of the mixing draws, apart from the images' augmentation draws.
const MIX_STREAM: u64 = 0x4D49_5845;

impl ImageBatcher {
    pub fn new(set: Arc<ImageSet>, norm: &Normalization, augment: Option<Augment>) -> Self {
        Self {
            set,
            lut: Box::new(norm.lookup_table()),
            augment,
            mix: None,
        }
    }

    /// Mixes the images of the batches it assembles (see [`Mix`]), as augmentation does: for
    /// training only.
    pub fn with_mix(self, mix: Option<Mix>) -> Self {
        Self { mix, ..self }
    }

    pub fn assemble(&self, items: &[BatchItem]) -> HostBatch {
        let size = self.set.image_size;
        let per_image = 3 * size * size;
        let mut images = vec![0.0f32; items.len() * per_image];
        for (item, out) in items.iter().zip(images.chunks_exact_mut(per_image)) {
            let t = self
                .augment
                .map_or(Transform::default(), |a| a.draw(item.seed));
            write_chw(out, self.set.image(item.index), size, &self.lut, t);
        }
        let labels: Vec<i64> = items
            .iter()
            .map(|i| self.set.labels[i.index] as i64)
            .collect();
        // The first item's augmentation seed seeds the batch's draw.
        let mix = match (self.mix, items.first()) {
            (Some(mix), Some(first)) => {
                mix.apply(&mut images, &labels, size, first.seed ^ MIX_STREAM)
            }
            _ => None,
        };
        HostBatch {
            images,
            labels,
            image_size: size,
            mix,
        }
    }
}

/// The order in which an epoch visits a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The set's own order, every image once; the last batch may be short (evaluation).
    Sequential,
    /// A seeded permutation for this epoch with an augmentation seed per item; a final partial
    /// batch is dropped, since a batch of one upsets BatchNorm (training). The same seed and
    /// epoch always give the same plan.
    Shuffled { seed: u64, epoch: u64 },
}

/// The batches of one epoch over `n` images.
pub fn epoch_plan(n: usize, batch_size: usize, order: Order) -> Vec<Vec<BatchItem>> {
    let batch_size = batch_size.max(1);
    let mut indices: Vec<usize> = (0..n).collect();
    let mut seeds = match order {
        Order::Sequential => None,
        Order::Shuffled { seed, epoch } => {
            SplitMix64::derive(seed, epoch).shuffle(&mut indices);
            Some(SplitMix64::derive(seed ^ 0xA5A5_A5A5, epoch))
        }
    };
    let mut plan: Vec<Vec<BatchItem>> = indices
        .chunks(batch_size)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&index| BatchItem {
                    index,
                    seed: seeds.as_mut().map_or(0, |s| s.next_u64()),
                })
                .collect()
        })
        .collect();
    let drop_last = matches!(order, Order::Shuffled { .. });
    if drop_last && plan.len() > 1 && plan.last().is_some_and(|b| b.len() < batch_size) {
        plan.pop();
    }
    plan
}

/// Assembles batches on a background thread, `depth` ahead of the consumer, so the model never
/// waits for data while the next batch is being prepared.
///
/// Iterating yields the batches in plan order and ends after the last one, or early when the
/// batch thread failed (panicked): call [`Prefetcher::finish`] after the loop to tell the two
/// apart.
pub struct Prefetcher {
    rx: Option<mpsc::Receiver<HostBatch>>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetcher {
    pub fn new(
        batcher: Arc<ImageBatcher>,
        plan: Vec<Vec<BatchItem>>,
        depth: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(depth.max(1));
        let handle = std::thread::Builder::new()
            .name("catdog-batches".into())
            .spawn(move || {
                for items in plan {
                    if tx.send(batcher.assemble(&items)).is_err() {
                        break; // consumer gone
                    }
                }
            })?;
        Ok(Self {
            rx: Some(rx),
            handle: Some(handle),
        })
    }

    /// Ends the stream and reports how it ended: a batch thread that panicked (a stream cut
    /// short) is [`DataError::Worker`] with the panic's message, never a quietly shorter epoch.
    /// Call after the last batch; called before, it stops the thread and returns `Ok`.
    pub fn finish(mut self) -> Result<(), DataError> {
        self.rx.take();
        match self.handle.take().map(JoinHandle::join) {
            Some(Err(panic)) => Err(DataError::Worker(panic_message(panic.as_ref()))),
            _ => Ok(()),
        }
    }
}

/// The message of a panic payload (`panic!` with a string, or a formatted one).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Iterator for Prefetcher {
    type Item = HostBatch;

    fn next(&mut self) -> Option<HostBatch> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

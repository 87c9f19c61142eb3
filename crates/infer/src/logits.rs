//! A model's logits for every image of a set: batches prepared on a worker thread, forwarded
//! on any device, optionally with flip test-time augmentation.

use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use catdog_data::{epoch_plan, ImageBatcher, ImageSet, Normalization, Order, Prefetcher};
use catdog_model::Classifier;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("cannot start the batch thread")]
    Thread(#[source] std::io::Error),
    #[error("batch preparation failed")]
    Batch(#[source] catdog_data::DataError),
    #[error("the model gave {got} logits for {images} images of {classes} classes")]
    ShortResult {
        got: usize,
        images: usize,
        classes: usize,
    },
}

/// Test-time augmentation.
///
/// Flip is the default of `eval`, `predict`, `serve` and [`crate::ClassifyOptions`]: on the
/// 2,000 held-out Kaggle photos it adds 0.35-0.6 points of accuracy to every model catdog trains
/// by default (docs/results.md), for a second forward pass per image (with the default CNN,
/// `catdog predict` and `serve` classify about 0.55x as many photos a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tta {
    /// Each image as it is: one forward pass.
    Off,
    /// The mean of the logits of each image and its mirror image.
    #[default]
    Flip,
}

impl Tta {
    /// One line for a report: what the logits are.
    pub fn describe(self) -> &'static str {
        match self {
            Tta::Flip => {
                "logits: the mean of each image's and its mirror image's (flip TTA; --no-tta for \
                 one forward pass)"
            }
            Tta::Off => "logits: one forward pass per image (--no-tta)",
        }
    }
}

/// Logits `[n, classes]` (row-major) for every image of `set`, in order.
///
/// `model` must be in inference mode (`model.valid()`) on the plain `device`.
pub fn infer_logits(
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
    tta: Tta,
) -> Result<Vec<f32>, InferError> {
    let (plain, mirrored) = forward_set(model, set, norm, device, batch_size, tta == Tta::Flip)?;
    Ok(match mirrored {
        Some(mirrored) => flip_average(&plain, &mirrored),
        None => plain,
    })
}

/// The logits of every image, plain and with flip TTA, from one pass over the set (two
/// forwards per image, not three).
pub fn infer_logits_plain_and_flip(
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
) -> Result<(Vec<f32>, Vec<f32>), InferError> {
    let (plain, mirrored) = forward_set(model, set, norm, device, batch_size, true)?;
    let averaged = flip_average(&plain, mirrored.as_deref().unwrap_or_default());
    Ok((plain, averaged))
}

/// The logits of every image and, with `mirror`, those of its mirror image, in one pass.
fn forward_set(
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
    mirror: bool,
) -> Result<(Vec<f32>, Option<Vec<f32>>), InferError> {
    let (n, classes) = (set.len(), set.classes.len());
    let batcher = Arc::new(ImageBatcher::new(set, norm, None));
    let plan = epoch_plan(n, batch_size, Order::Sequential);
    let (mut plain, mut mirrored) = (Vec::new(), mirror.then(Vec::new));
    let mut batches = Prefetcher::new(batcher, plan, 2).map_err(InferError::Thread)?;
    for host in batches.by_ref() {
        let images = host.to_device(device).images;
        if let Some(mirrored) = &mut mirrored {
            let logits: Tensor<2> = model.forward(images.clone().flip([3]));
            mirrored.extend(logits.into_data().iter::<f32>());
        }
        plain.extend(model.forward(images).into_data().iter::<f32>());
    }
    batches.finish().map_err(InferError::Batch)?;
    // Never report a partial pass as the logits of the whole set.
    for got in std::iter::once(plain.len()).chain(mirrored.as_ref().map(Vec::len)) {
        if got != n * classes {
            return Err(InferError::ShortResult {
                got,
                images: n,
                classes,
            });
        }
    }
    Ok((plain, mirrored))
}

/// Flip test-time augmentation: the mean of each image's logits and its mirror image's.
fn flip_average(plain: &[f32], mirrored: &[f32]) -> Vec<f32> {
    plain
        .iter()
        .zip(mirrored)
        .map(|(a, b)| (a + b) / 2.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_batch_thread_is_an_error_not_a_short_result() {
        // An image size of 0 makes the batch thread panic (chunks of size 0): the pass must
        // fail rather than return no logits for two images.
        let device = Device::flex();
        let config = catdog_model::ModelConfig::Mlp(catdog_model::MlpConfig {
            image_size: 8,
            hidden: vec![4],
            ..Default::default()
        });
        let model = Classifier::new(&config, &device).unwrap();
        let set = Arc::new(ImageSet {
            image_size: 0,
            classes: vec!["cat".into(), "dog".into()],
            labels: vec![0, 1],
            paths: vec!["a.png".into(), "b.png".into()],
            ..Default::default()
        });
        let e =
            infer_logits(&model, set, &Normalization::default(), &device, 4, Tta::Off).unwrap_err();
        assert!(matches!(e, InferError::Batch(_)), "{e:?}");
    }
}

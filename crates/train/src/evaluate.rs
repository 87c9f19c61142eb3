use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use catdog_data::{epoch_plan, ImageBatcher, ImageSet, Normalization, Prefetcher};
use catdog_model::Classifier;

use crate::{metrics::Evaluation, TrainError};

/// How many "least sure" / "confidently wrong" images an evaluation lists.
pub const EXAMPLES: usize = 8;

/// Logits `[n, classes]` (row-major) for every image of `set`, in order.
///
/// `model` must be in inference mode (`model.valid()`) on the plain `device`. With `flip_tta`
/// the logits of each image and its mirror image are averaged.
pub fn infer_logits(
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
    flip_tta: bool,
) -> Result<Vec<f32>, TrainError> {
    let (plain, mirrored) = forward_set(model, set, norm, device, batch_size, flip_tta)?;
    Ok(match mirrored {
        Some(mirrored) => flip_average(&plain, &mirrored),
        None => plain,
    })
}

/// The logits of every image and, with `mirror`, those of its mirror image, in one pass.
fn forward_set(
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
    mirror: bool,
) -> Result<(Vec<f32>, Option<Vec<f32>>), TrainError> {
    let n = set.len();
    let batcher = Arc::new(ImageBatcher::new(set, norm, None));
    let plan = epoch_plan(n, batch_size, None, false);
    let (mut plain, mut mirrored) = (Vec::new(), mirror.then(Vec::new));
    for host in Prefetcher::new(batcher, plan, 2).map_err(TrainError::Thread)? {
        let images = host.to_device(device).images;
        if let Some(mirrored) = &mut mirrored {
            let logits: Tensor<2> = model.forward(images.clone().flip([3]));
            mirrored.extend(logits.into_data().iter::<f32>());
        }
        plain.extend(model.forward(images).into_data().iter::<f32>());
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

/// Accuracy, loss, confusion matrix and example images of `model` on a labelled set.
pub fn evaluate(
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
    flip_tta: bool,
) -> Result<Evaluation, TrainError> {
    let logits = infer_logits(model, set.clone(), norm, device, batch_size, flip_tta)?;
    Ok(evaluation(&logits, &set))
}

/// [`evaluate`] plain and with flip TTA, from one pass over the set (two forwards per image,
/// not three).
pub fn evaluate_plain_and_flip_tta(
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
) -> Result<(Evaluation, Evaluation), TrainError> {
    let (plain, mirrored) = forward_set(model, set.clone(), norm, device, batch_size, true)?;
    let averaged = flip_average(&plain, mirrored.as_deref().unwrap_or_default());
    Ok((evaluation(&plain, &set), evaluation(&averaged, &set)))
}

fn evaluation(logits: &[f32], set: &ImageSet) -> Evaluation {
    Evaluation::from_logits(logits, &set.labels, &set.paths, &set.classes, EXAMPLES)
}

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
    let n = set.len();
    let batcher = Arc::new(ImageBatcher::new(set, norm, None));
    let plan = epoch_plan(n, batch_size, None, false);
    let mut out = Vec::new();
    for host in Prefetcher::new(batcher, plan, 2).map_err(TrainError::Thread)? {
        let batch = host.to_device(device);
        let mut logits: Tensor<2> = model.forward(batch.images.clone());
        if flip_tta {
            logits = (logits + model.forward(batch.images.flip([3]))) / 2.0;
        }
        out.extend(logits.into_data().iter::<f32>());
    }
    Ok(out)
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
    Ok(Evaluation::from_logits(
        &logits,
        &set.labels,
        &set.paths,
        &set.classes,
        EXAMPLES,
    ))
}

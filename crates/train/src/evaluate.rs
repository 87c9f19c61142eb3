use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use catdog_data::{epoch_plan, DataError, ImageBatcher, ImageSet, Normalization, Prefetcher};
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
    let mut seen = 0;
    for host in Prefetcher::new(batcher, plan, 2).map_err(TrainError::Thread)? {
        seen += host.len();
        let images = host.to_device(device).images;
        if let Some(mirrored) = &mut mirrored {
            let logits: Tensor<2> = model.forward(images.clone().flip([3]));
            mirrored.extend(logits.into_data().iter::<f32>());
        }
        plain.extend(model.forward(images).into_data().iter::<f32>());
    }
    // The batch thread ends its stream early when it fails: never report a partial pass as
    // the logits of the whole set.
    if seen != n {
        return Err(TrainError::Data(DataError::Invalid(format!(
            "batch preparation stopped after {seen} of {n} images"
        ))));
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

/// How the classes of a labelled data folder map onto a model's: `mapping[i]` is the model's
/// index of data class `i`. Exact names win; otherwise names are matched ignoring case, but only
/// when that is unambiguous (one model class per data class, one to one), so `Cat`, `Dog`
/// folders evaluate a model trained on `cat`, `dog`. `None` when the classes do not match.
pub fn match_classes(data: &[String], model: &[String]) -> Option<Vec<usize>> {
    if data.len() != model.len() {
        return None;
    }
    let mut mapping = Vec::with_capacity(data.len());
    for name in data {
        let index = match model.iter().position(|m| m == name) {
            Some(i) => i,
            None => {
                let folded = name.to_lowercase();
                let mut hits = model
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.to_lowercase() == folded);
                match (hits.next(), hits.next()) {
                    (Some((i, _)), None) => i,
                    _ => return None,
                }
            }
        };
        if mapping.contains(&index) {
            return None;
        }
        mapping.push(index);
    }
    Some(mapping)
}

/// `set` relabelled in the model's class order and names, by a [`match_classes`] mapping.
pub fn relabel(mut set: ImageSet, mapping: &[usize], model_classes: &[String]) -> ImageSet {
    for label in &mut set.labels {
        *label = mapping[*label];
    }
    set.classes = model_classes.to_vec();
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classes_match_exactly_or_unambiguously_ignoring_case() {
        let model = names(&["cat", "dog"]);
        assert_eq!(match_classes(&model, &model), Some(vec![0, 1]));
        assert_eq!(
            match_classes(&names(&["Cat", "Dog"]), &model),
            Some(vec![0, 1])
        );
        // Sorted differently once case is ignored: the labels follow the names.
        assert_eq!(
            match_classes(&names(&["Dog", "cat"]), &model),
            Some(vec![1, 0])
        );
        assert_eq!(match_classes(&names(&["cat", "fox"]), &model), None);
        assert_eq!(match_classes(&names(&["cat"]), &model), None);
        // Two data classes onto one model class, and a model whose names differ only by case.
        assert_eq!(match_classes(&names(&["cat", "CAT"]), &model), None);
        let cased = names(&["cat", "Cat"]);
        assert_eq!(
            match_classes(&names(&["Cat", "cat"]), &cased),
            Some(vec![1, 0])
        );
        assert_eq!(match_classes(&names(&["CAT", "cat"]), &cased), None);
    }

    #[test]
    fn relabelling_follows_the_mapping() {
        let set = ImageSet {
            image_size: 8,
            classes: names(&["Dog", "cat"]),
            labels: vec![0, 1, 1],
            ..Default::default()
        };
        let set = relabel(set, &[1, 0], &names(&["cat", "dog"]));
        assert_eq!(set.labels, vec![1, 0, 0]);
        assert_eq!(set.classes, names(&["cat", "dog"]));
    }

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
            classes: names(&["cat", "dog"]),
            labels: vec![0, 1],
            paths: vec!["a.png".into(), "b.png".into()],
            ..Default::default()
        });
        let e =
            infer_logits(&model, set, &Normalization::default(), &device, 4, false).unwrap_err();
        assert!(e.to_string().contains("0 of 2 images"), "{e}");
    }
}

//! A model's metrics on a labelled set or folder, and matching a data folder's classes to a
//! model's.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use burn::tensor::Device;
use catdog_data::printable;
use catdog_data::{DataError, ImageSet, Normalization, Skipped};
use catdog_infer::{infer_logits, infer_logits_plain_and_flip, InferError, LoadedModel, Tta};
use catdog_model::Classifier;

use super::metrics::{image_results, Evaluation, ImageResult, LogitsError};
use crate::{dataset::load_folder_classes, Progress};

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error(transparent)]
    Logits(#[from] LogitsError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{data} has classes [{data_classes}] but the model was trained on [{model_classes}]")]
    Classes {
        data: String,
        data_classes: String,
        model_classes: String,
    },
}

/// How many "least sure" / "confidently wrong" images an evaluation lists.
pub const EXAMPLES: usize = 8;

/// Batch size of the evaluations after training (inference holds no gradients).
pub const EVAL_BATCH: usize = 128;

/// Per-epoch validation runs in batches of at least this many images.
pub const VALIDATION_MIN_BATCH: usize = 64;

/// An evaluation and the per-image results it sums up (in the set's order), both from one
/// pass over the set.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub evaluation: Evaluation,
    pub images: Vec<ImageResult>,
}

/// Accuracy, loss, confusion matrix and example images of `model` (in inference mode, on the
/// plain `device`) on a labelled set, with each image's logits, probabilities
/// (`softmax(logits / temperature)`) and loss.
pub fn evaluate(
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
    tta: Tta,
    temperature: f32,
) -> Result<Evaluated, EvalError> {
    let logits = infer_logits(model, set.clone(), norm, device, batch_size, tta)?;
    evaluated(&logits, &set, temperature)
}

/// [`evaluate`] with the set split across the ranks of `world`: each rank computes the logits
/// of its part, the logits of all are gathered (a sum of zero-padded buffers) and every rank
/// builds the same evaluation from them.
pub fn evaluate_across(
    world: &dyn crate::distributed::Collective,
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
) -> Result<Evaluated, EvalError> {
    let part = crate::distributed::shard(set.len(), world.rank(), world.size());
    let classes = set.classes.len();
    let indices: Vec<usize> = part.clone().collect();
    let own = Arc::new(set.subset(&indices));
    let local = infer_logits(model, own, norm, device, batch_size, Tta::Off)?;
    let mut all = vec![0f32; set.len() * classes];
    all[part.start * classes..part.end * classes].copy_from_slice(&local);
    world.sum(&mut all);
    evaluated(&all, &set, 1.0)
}

/// [`evaluate`] plain and with flip TTA, from one pass over the set (two forwards per image,
/// not three).
pub fn evaluate_plain_and_flip_tta(
    model: &Classifier,
    set: Arc<ImageSet>,
    norm: &Normalization,
    device: &Device,
    batch_size: usize,
    temperature: f32,
) -> Result<(Evaluated, Evaluated), EvalError> {
    let (plain, averaged) =
        infer_logits_plain_and_flip(model, set.clone(), norm, device, batch_size)?;
    Ok((
        evaluated(&plain, &set, temperature)?,
        evaluated(&averaged, &set, temperature)?,
    ))
}

impl Evaluated {
    /// The same logits read at another temperature (no new pass over the images).
    pub fn at_temperature(&self, set: &ImageSet, temperature: f32) -> Result<Self, EvalError> {
        let logits: Vec<f32> = self
            .images
            .iter()
            .flat_map(|image| image.logits.iter().copied())
            .collect();
        evaluated(&logits, set, temperature)
    }
}

fn evaluated(logits: &[f32], set: &ImageSet, temperature: f32) -> Result<Evaluated, EvalError> {
    let images = image_results(logits, &set.labels, &set.paths, &set.classes, temperature)?;
    Ok(Evaluated {
        evaluation: Evaluation::from_images(&images, &set.classes, EXAMPLES, temperature),
        images,
    })
}

/// How to evaluate a folder.
#[derive(Debug, Clone, Default)]
pub struct FolderEvalOptions {
    pub tta: Tta,
    /// Probabilities at the model's fitted temperature (else at 1).
    pub calibrated: bool,
    /// Where decoded pixels are cached; `None` decodes every image.
    pub cache_dir: Option<PathBuf>,
}

/// A labelled folder evaluated with the model's classes: per-image results in the folder's
/// order, the files that could not be used, and the folder's class names when they differ
/// from the model's (matched ignoring case, or a subset).
pub struct FolderEvaluation {
    pub evaluated: Evaluated,
    pub skipped: Vec<Skipped>,
    /// The folder's classes, and the model's class each was matched to.
    pub data_classes: Vec<String>,
    pub matched: Vec<String>,
}

impl FolderEvaluation {
    /// "matched data classes Cat, Dog to the model's cat, dog" when the folder's class names
    /// are not the model's.
    pub fn class_note(&self) -> Option<String> {
        let model = &self.evaluated.evaluation.classes;
        (self.data_classes != *model).then(|| {
            format!(
                "matched data classes {} to the model's {}",
                printable_list(&self.data_classes),
                printable_list(&self.matched)
            )
        })
    }
}

/// `a, b, c` with every name made safe for a terminal.
pub fn printable_list(names: &[String]) -> String {
    let names: Vec<_> = names.iter().map(|n| printable(n)).collect();
    names.join(", ")
}

/// Decodes a labelled folder (one class is enough: "how many of my cats does it get?"), matches
/// its classes to the model's and evaluates the model on it.
pub fn evaluate_folder(
    trained: &LoadedModel,
    data: &Path,
    device: &Device,
    opts: &FolderEvalOptions,
    progress: &Progress,
) -> Result<FolderEvaluation, EvalError> {
    let spec = &trained.spec;
    let loaded = load_folder_classes(data, spec.image_size, opts.cache_dir.clone(), progress, 1)?;
    let (set, mut skipped) = (loaded.set, loaded.skipped);
    let data_classes = set.classes.clone();
    let mapping = match_classes(&set.classes, &spec.classes).ok_or_else(|| EvalError::Classes {
        data: printable(&data.to_string_lossy()).into_owned(),
        data_classes: printable_list(&set.classes),
        model_classes: printable_list(&spec.classes),
    })?;
    let matched = mapping.iter().map(|&i| spec.classes[i].clone()).collect();
    let set = relabel(set, &mapping, &spec.classes);
    for s in &mut skipped {
        s.label = s.label.map(|l| mapping[l]);
    }
    let evaluated = evaluate(
        &trained.model,
        Arc::new(set),
        &spec.normalization,
        device,
        EVAL_BATCH.min(spec.model.max_batch_size()),
        opts.tta,
        spec.probability_temperature(opts.calibrated),
    )?;
    Ok(FolderEvaluation {
        evaluated,
        skipped,
        data_classes,
        matched,
    })
}

/// How the classes of a labelled data folder map onto a model's: `mapping[i]` is the model's
/// index of data class `i`. Exact names win; otherwise names are matched ignoring case, but only
/// when that is unambiguous (one model class per data class, one to one), so `Cat`, `Dog`
/// folders evaluate a model trained on `cat`, `dog`. The data may hold fewer classes than the
/// model (photos of cats only). `None` when a data class matches no model class.
pub fn match_classes(data: &[String], model: &[String]) -> Option<Vec<usize>> {
    if data.is_empty() || data.len() > model.len() {
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
        // Photos of one class (or of some classes) of the model's.
        assert_eq!(match_classes(&names(&["cat"]), &model), Some(vec![0]));
        assert_eq!(match_classes(&names(&["Dog"]), &model), Some(vec![1]));
        assert_eq!(match_classes(&names(&[]), &model), None);
        assert_eq!(match_classes(&names(&["cat", "dog", "fox"]), &model), None);
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
}

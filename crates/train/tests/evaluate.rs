//! One pass that evaluates plain and with flip TTA gives exactly what two separate evaluations
//! give, and TTA really averages each image with its mirror image.

use std::sync::Arc;

use burn::{module::Module, tensor::Device};
use catdog_data::{ImageSet, Normalization, SplitMix64};
use catdog_infer::{infer_logits, Tta};
use catdog_model::{Classifier, CnnConfig, ModelConfig};
use catdog_train::evaluate::{evaluate, evaluate_plain_and_flip_tta};

#[test]
fn one_pass_plain_and_flip_tta_equal_separate_evaluations() {
    let device = Device::flex();
    device.seed(3);
    let config = ModelConfig::Cnn(CnnConfig {
        image_size: 12,
        channels: vec![4, 8],
        ..Default::default()
    });
    let model = Classifier::new(&config, &device).unwrap().valid();
    let mut rng = SplitMix64::new(1);
    let n = 10; // not a multiple of the batch size
    let set = Arc::new(ImageSet {
        image_size: 12,
        classes: vec!["cat".into(), "dog".into()],
        pixels: (0..n * 12 * 12 * 3).map(|_| rng.next_u64() as u8).collect(),
        labels: (0..n).map(|i| i % 2).collect(),
        paths: (0..n).map(|i| format!("{i}.png").into()).collect(),
    });
    let norm = Normalization::default();

    let (plain, tta) =
        evaluate_plain_and_flip_tta(&model, set.clone(), &norm, &device, 4, 1.0).unwrap();
    assert_eq!(
        plain,
        evaluate(&model, set.clone(), &norm, &device, 4, Tta::Off, 1.0).unwrap()
    );
    assert_eq!(
        tta,
        evaluate(&model, set.clone(), &norm, &device, 4, Tta::Flip, 1.0).unwrap()
    );

    // TTA logits are the mean of the image's and its mirror image's.
    let mirrored = Arc::new(ImageSet {
        pixels: set
            .pixels
            .chunks_exact(12 * 3)
            .flat_map(|row| {
                row.chunks_exact(3)
                    .rev()
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect(),
        ..(*set).clone()
    });
    let a = infer_logits(&model, set.clone(), &norm, &device, 4, Tta::Off).unwrap();
    let b = infer_logits(&model, mirrored, &norm, &device, 4, Tta::Off).unwrap();
    let averaged = infer_logits(&model, set, &norm, &device, 4, Tta::Flip).unwrap();
    for ((a, b), t) in a.iter().zip(&b).zip(&averaged) {
        assert!(((a + b) / 2.0 - t).abs() < 1e-5, "{a} {b} {t}");
    }
    assert_ne!(a, averaged, "the mirror image changes the logits");
}

//! `Classifier`: paths and encoded bytes give the same prediction, bad inputs get their own
//! error without stopping the others, probabilities are `softmax(logits / T)`, and one instance
//! answers the same from several threads.

use std::path::Path;

use burn::tensor::Device;
use catdog_data::{synth::synth_image, Normalization};
use catdog_infer::{
    model_io::{save_weights, weights_checksum, write_json, CONFIG_FILE, WEIGHTS_FILE},
    Classifier, ClassifyOptions, Input, ModelSpec, Prediction, Tta,
};
use catdog_model::{Classifier as Network, CnnConfig, ModelConfig};

/// A small CNN with fitted temperature `temperature`, saved as a model folder in `dir`.
fn model_folder(dir: &Path, temperature: f32) {
    let device = Device::flex();
    device.seed(3);
    let config = ModelConfig::Cnn(CnnConfig {
        num_classes: 3,
        image_size: 16,
        channels: vec![4, 8],
        convs_per_block: 1,
        hidden: None,
        dropout: 0.0,
    });
    let network = Network::new(&config, &device).unwrap();
    let classes = vec!["cat".to_string(), "dog".into(), "fox".into()];
    let mut spec = ModelSpec::new(config, classes, Normalization::default());
    spec.temperature = temperature;
    save_weights(&network, &dir.join(WEIGHTS_FILE)).unwrap();
    spec.weights_crc32 = Some(weights_checksum(&dir.join(WEIGHTS_FILE)).unwrap());
    write_json(&dir.join(CONFIG_FILE), &spec).unwrap();
}

fn photo(dir: &Path, name: &str, class: usize, seed: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    synth_image(class, 40, seed).save(&path).unwrap();
    path
}

fn softmax(logits: &[f32], t: f32) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let e: Vec<f64> = logits
        .iter()
        .map(|&l| f64::from((l - max) / t).exp())
        .collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|x| (x / sum) as f32).collect()
}

#[test]
fn paths_bytes_and_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    model_folder(dir, 2.0);
    let classifier = Classifier::load(dir, &Device::flex()).unwrap();
    assert_eq!(classifier.classes(), ["cat", "dog", "fox"]);
    let a = photo(dir, "a.png", 0, 1);
    let b = photo(dir, "b.png", 1, 2);
    let inputs = [
        Input::path(&a),
        Input::Bytes(b"not an image".to_vec()),
        Input::Bytes(std::fs::read(&b).unwrap()),
        Input::path(dir.join("missing.jpg")),
        Input::path(&b),
    ];
    let one_pass = ClassifyOptions {
        tta: Tta::Off,
        ..Default::default()
    };
    let results = classifier.classify(&inputs, one_pass);
    assert_eq!(results.len(), 5);
    assert!(results[1].is_err() && results[3].is_err());
    let ok: Vec<&Prediction> = [0, 2, 4]
        .iter()
        .map(|&i| results[i].as_ref().unwrap())
        .collect();
    // The bytes of a file and the file itself: the same prediction.
    assert_eq!(ok[1], ok[2]);
    assert_ne!(ok[0].logits, ok[1].logits);
    for p in ok {
        assert_eq!(p.logits.len(), 3);
        assert_eq!(p.temperature, 2.0);
        let expected = softmax(&p.logits, 2.0);
        for (x, y) in p.probabilities.iter().zip(&expected) {
            assert!(
                (x - y).abs() < 1e-6,
                "{:?} vs {expected:?}",
                p.probabilities
            );
        }
        let best = (0..3)
            .max_by(|&i, &j| p.logits[i].total_cmp(&p.logits[j]))
            .unwrap();
        assert_eq!(
            (p.index, p.class.as_str()),
            (best, ["cat", "dog", "fox"][best])
        );
        assert_eq!(p.confidence(), p.probabilities[best]);
    }
    // Uncalibrated: the plain softmax of the same logits.
    let plain = ClassifyOptions {
        calibrated: false,
        tta: Tta::Off,
    };
    let p = classifier
        .classify(&[Input::path(&a)], plain)
        .remove(0)
        .unwrap();
    assert_eq!(p.temperature, 1.0);
    // (One image in the batch instead of three: the same logits to float rounding.)
    for (x, y) in p.logits.iter().zip(&results[0].as_ref().unwrap().logits) {
        assert!((x - y).abs() < 1e-5);
    }
    assert_eq!(p.probabilities, softmax(&p.logits, 1.0));
    // Flip TTA: the mean of the photo's logits and its mirror image's.
    let mirrored = dir.join("mirrored.png");
    image::imageops::flip_horizontal(&synth_image(0, 40, 1))
        .save(&mirrored)
        .unwrap();
    let m = classifier
        .classify(&[Input::path(&mirrored)], plain)
        .remove(0)
        .unwrap();
    // Flip TTA is the default.
    let tta = ClassifyOptions::default();
    assert_eq!(tta.tta, Tta::Flip);
    let t = classifier
        .classify(&[Input::path(&a)], tta)
        .remove(0)
        .unwrap();
    for ((t, a), m) in t.logits.iter().zip(&p.logits).zip(&m.logits) {
        assert!((t - (a + m) / 2.0).abs() < 1e-4, "{t} vs ({a} + {m}) / 2");
    }
}

#[test]
fn one_classifier_serves_several_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    model_folder(dir, 1.0);
    let classifier = Classifier::load(dir, &Device::flex()).unwrap();
    let photos: Vec<_> = (0..6)
        .map(|i| photo(dir, &format!("{i}.png"), i % 3, i as u64))
        .collect();
    let alone: Vec<Prediction> = photos
        .iter()
        .map(|p| classifier.classify_one(Input::path(p)).unwrap())
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let inputs: Vec<Input> = photos.iter().map(Input::path).collect();
                    classifier.classify(&inputs, ClassifyOptions::default())
                })
            })
            .collect();
        for h in handles {
            let got: Vec<Prediction> = h.join().unwrap().into_iter().map(Result::unwrap).collect();
            // One image at a time or six in a batch, from any thread: the same answers.
            for (g, a) in got.iter().zip(&alone) {
                assert_eq!(g.class, a.class);
                for (x, y) in g.logits.iter().zip(&a.logits) {
                    assert!((x - y).abs() < 1e-5);
                }
            }
        }
    });
}

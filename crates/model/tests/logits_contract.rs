//! The logits contract: the last layer's output reaches the caller untouched.
//!
//! If anyone adds a ReLU, sigmoid or softmax after the final `Linear`, these tests fail: the
//! hand-set weights produce negative logits and logits above 1 that must come out exactly as
//! `W h + b`, and rows that do not sum to 1.

use burn::{
    module::{Module, Param},
    tensor::{Device, Distribution, Tensor, TensorData},
};
use catdog_model::{Classifier, CnnConfig, ConfigError, MlpConfig, ModelConfig, ResNetConfig};

fn images(device: &Device, n: usize, size: usize) -> Tensor<4> {
    Tensor::random([n, 3, size, size], Distribution::Normal(0.0, 1.0), device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Sets the output layer to hand-picked weights and checks logits == W h + b on the host.
fn check_affine_output(
    features: Tensor<2>,
    logits: Tensor<2>,
    w: &[f32],
    b: &[f32],
    classes: usize,
) {
    let h = to_vec(features);
    let width = w.len() / classes;
    let got = to_vec(logits);
    let rows = got.len() / classes;
    let mut saw_negative = false;
    let mut saw_above_one = false;
    for r in 0..rows {
        let mut row_sum = 0.0;
        for k in 0..classes {
            // burn stores Linear weights as [d_in, d_out].
            let expect: f64 = (0..width)
                .map(|i| h[r * width + i] as f64 * w[i * classes + k] as f64)
                .sum::<f64>()
                + b[k] as f64;
            let value = got[r * classes + k] as f64;
            assert!(
                (value - expect).abs() <= 1e-4 * (1.0 + expect.abs()),
                "row {r} class {k}: logit {value} != W h + b = {expect}"
            );
            saw_negative |= value < 0.0;
            saw_above_one |= value > 1.0;
            row_sum += value;
        }
        assert!(
            (row_sum - 1.0).abs() > 1e-3,
            "row {r} sums to 1: the output looks like probabilities"
        );
    }
    assert!(
        saw_negative,
        "no negative logit: is a ReLU or sigmoid applied to the output?"
    );
    assert!(
        saw_above_one,
        "no logit above 1: is a sigmoid or softmax applied to the output?"
    );
}

fn hand_weights(width: usize, classes: usize) -> (Vec<f32>, Vec<f32>) {
    // Large alternating weights: class 0 gets big positive, class 1 big negative contributions.
    let w: Vec<f32> = (0..width * classes)
        .map(|j| {
            let (i, k) = (j / classes, j % classes);
            let sign = if k == 0 { 1.0 } else { -1.0 };
            sign * (3.0 + (i % 5) as f32)
        })
        .collect();
    let b: Vec<f32> = (0..classes).map(|k| 2.5 - 4.5 * k as f32).collect();
    (w, b)
}

#[test]
fn mlp_output_is_raw_affine() {
    let device = Device::flex();
    device.seed(1);
    let config = MlpConfig {
        num_classes: 2,
        image_size: 8,
        hidden: vec![16, 8],
        dropout: 0.0,
    };
    let mut mlp = config.init(&device);
    let (w, b) = hand_weights(8, 2);
    mlp.output.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w.clone(), [8, 2]),
        &device,
    ));
    mlp.output.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b.clone(), [2]),
        &device,
    )));
    let x = images(&device, 6, 8);
    check_affine_output(mlp.features(x.clone()), mlp.forward(x), &w, &b, 2);
}

#[test]
fn cnn_output_is_raw_affine() {
    let device = Device::flex();
    device.seed(2);
    let config = CnnConfig {
        num_classes: 3,
        image_size: 16,
        channels: vec![4, 8],
        ..Default::default()
    };
    let mut cnn = config.init(&device).valid();
    let (w, b) = hand_weights(8, 3);
    cnn.output.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w.clone(), [8, 3]),
        &device,
    ));
    cnn.output.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b.clone(), [3]),
        &device,
    )));
    let x = images(&device, 5, 16);
    check_affine_output(cnn.features(x.clone()), cnn.forward(x), &w, &b, 3);
}

#[test]
fn resnet_output_is_raw_affine() {
    let device = Device::flex();
    device.seed(4);
    let config = ResNetConfig {
        num_classes: 3,
        image_size: 16,
        stem: 4,
        channels: vec![6, 8],
        residual: vec![1, 1],
        dropout: 0.3,
    };
    let mut net = config.init(&device).valid();
    let (w, b) = hand_weights(8, 3);
    net.output.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w.clone(), [8, 3]),
        &device,
    ));
    net.output.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b.clone(), [3]),
        &device,
    )));
    let x = images(&device, 5, 16);
    check_affine_output(net.features(x.clone()), net.forward(x), &w, &b, 3);
}

#[test]
fn output_shape_follows_num_classes() {
    let device = Device::flex();
    for classes in [2, 5] {
        // Weights and biases by hand, at 16x16: the MLP is 768 -> 512 -> 256 -> classes; the
        // CNN is four bias-free 3x3 convs (3 -> 32 -> 64 -> 128 -> 256) with a BatchNorm each
        // (gamma, beta and the two running statistics, which burn's `num_params` counts), then
        // 256 -> classes.
        let mlp = 768 * 512 + 512 + 512 * 256 + 256;
        let cnn = 9 * (3 * 32 + 32 * 64 + 64 * 128 + 128 * 256) + 4 * (32 + 64 + 128 + 256);
        let head = 256 * classes + classes;
        for (config, params) in [
            (
                ModelConfig::Mlp(MlpConfig {
                    num_classes: classes,
                    image_size: 16,
                    ..Default::default()
                }),
                mlp + head,
            ),
            (
                ModelConfig::Cnn(CnnConfig {
                    num_classes: classes,
                    image_size: 16,
                    ..Default::default()
                }),
                cnn + head,
            ),
        ] {
            let model = Classifier::new(&config, &device).unwrap().valid();
            assert_eq!(model.forward(images(&device, 3, 16)).dims(), [3, classes]);
            assert_eq!(model.num_params(), params, "{config:?}");
        }
    }
}

#[test]
fn invalid_configs_are_refused() {
    let device = Device::flex();
    let one_class = ModelConfig::Mlp(MlpConfig {
        num_classes: 1,
        ..Default::default()
    });
    assert_eq!(
        Classifier::new(&one_class, &device).err(),
        Some(ConfigError::TooFewClasses(1))
    );
    let too_deep = ModelConfig::Cnn(CnnConfig {
        image_size: 8,
        channels: vec![4; 5],
        ..Default::default()
    });
    assert_eq!(
        Classifier::new(&too_deep, &device).err(),
        Some(ConfigError::TooManyBlocks {
            blocks: 5,
            image_size: 8
        })
    );
    let zero = ModelConfig::Mlp(MlpConfig {
        hidden: vec![0],
        ..Default::default()
    });
    let e = Classifier::new(&zero, &device).err();
    assert_eq!(
        e,
        Some(ConfigError::ZeroWidth {
            what: "hidden",
            values: vec![0]
        })
    );
    assert_eq!(
        e.unwrap().to_string(),
        "hidden must not contain 0 (got [0])"
    );
}

/// The same weights give the same logits on Flex (catdog's inference kernels: BatchNorm, ReLU
/// and pool applied as each convolution's output is written) and on Ndarray (burn's own ops), to
/// 1e-5: every architecture, an even and an odd image size, batch 1 and 4, BatchNorm running
/// statistics moved away from their initial values by two training-mode forwards (a build with
/// `--features ndarray`, as CI's second test run).
#[cfg(feature = "ndarray")]
#[test]
#[allow(deprecated)]
fn flex_and_ndarray_agree() {
    let flex = Device::flex();
    let ndarray = Device::ndarray();
    flex.seed(3);
    for (size, batch) in [(16, 4), (15, 1), (17, 3)] {
        for config in [
            ModelConfig::Mlp(MlpConfig {
                image_size: size,
                ..Default::default()
            }),
            ModelConfig::Cnn(CnnConfig {
                image_size: size,
                channels: vec![8, 16],
                ..Default::default()
            }),
            ModelConfig::Cnn(CnnConfig {
                image_size: size,
                channels: vec![8, 36],
                convs_per_block: 2,
                ..Default::default()
            }),
            ModelConfig::ResNet(ResNetConfig {
                image_size: size,
                stem: 4,
                channels: vec![8, 16],
                residual: vec![1, 1],
                ..Default::default()
            }),
        ] {
            let training = flex.clone().autodiff();
            let model = Classifier::new(&config, &training).unwrap();
            for step in 0..2 {
                let _ = model.forward(images(&training, 5 + step, size));
            }
            let on_flex = model.valid();
            let record = on_flex.clone().into_record();
            let on_ndarray = Classifier::new(&config, &ndarray)
                .unwrap()
                .load_record(record)
                .valid();
            let x = images(&flex, batch, size);
            let x_data = x.clone().into_data();
            let a = to_vec(on_flex.forward(x));
            let b = to_vec(on_ndarray.forward(Tensor::from_data(x_data, &ndarray)));
            assert_eq!(a.len(), b.len());
            for (p, q) in a.iter().zip(&b) {
                assert!(
                    (p - q).abs() <= 1e-5 * (1.0 + p.abs()),
                    "{} at {size}x{size}, batch {batch}: flex {p} vs ndarray {q}",
                    config.name()
                );
            }
        }
    }
}

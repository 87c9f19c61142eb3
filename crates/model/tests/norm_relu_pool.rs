//! The fused BatchNorm -> ReLU -> max-pool op equals burn's composition in values, in every
//! gradient and in the running statistics.

use burn::{
    module::{Module, Param},
    nn::{
        pool::{MaxPool2d, MaxPool2dConfig},
        BatchNorm, BatchNormConfig,
    },
    tensor::{activation::relu, Device, Distribution, Tensor, TensorData},
};
use catdog_model::{batch_norm, norm_relu_pool};

mod common;

use common::{assert_close, values};

fn pool() -> MaxPool2d {
    MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()
}

/// A BatchNorm with gamma and beta away from their initial 1 and 0 (the same for every call).
fn norm(channels: usize, device: &Device) -> BatchNorm {
    let mut n = BatchNormConfig::new(channels).init(device);
    let gamma: Vec<f32> = (0..channels).map(|c| 0.5 + 0.37 * c as f32).collect();
    let beta: Vec<f32> = (0..channels).map(|c| 0.3 - 0.21 * c as f32).collect();
    n.gamma = Param::from_tensor(Tensor::from_data(
        TensorData::new(gamma, [channels]),
        device,
    ));
    n.beta = Param::from_tensor(Tensor::from_data(TensorData::new(beta, [channels]), device));
    n
}

struct Outcome {
    out: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    running: Vec<f32>,
}

/// Forward in training mode, a weighted sum of the output (and, with `reuse`, of `x` itself: one
/// tensor feeding two ops) backward.
fn run(
    x: &Tensor<4>,
    norm: &BatchNorm,
    weights: &Tensor<4>,
    fused: bool,
    reuse: bool,
    pooled: bool,
) -> Outcome {
    let x = x.clone().require_grad();
    // Without reuse the op's input is an intermediate that nothing else holds, as a conv's output
    // in the model: the fused backward then writes the input gradient over it. With reuse `x`
    // itself, still held by this function and the second op: the backward works on a copy.
    let input = if reuse {
        x.clone()
    } else {
        x.clone().mul_scalar(1.0)
    };
    let out = match (fused, pooled) {
        (true, true) => {
            assert!(norm_relu_pool::applies(&input, &pool()));
            norm_relu_pool::norm_relu_pool(norm, input)
        }
        (true, false) => {
            assert!(norm_relu_pool::applies_without_pool(&input));
            norm_relu_pool::norm_relu(norm, input)
        }
        (false, true) => relu(pool().forward(batch_norm(norm, input))),
        (false, false) => relu(batch_norm(norm, input)),
    };
    let mut loss = (out.clone() * weights.clone()).sum();
    if reuse {
        loss = loss + (x.clone() * x.clone()).sum().mul_scalar(0.25);
    }
    let grads = loss.backward();
    Outcome {
        out: values(out),
        dx: values(x.grad(&grads).unwrap()),
        dgamma: values(norm.gamma.grad(&grads).unwrap()),
        dbeta: values(norm.beta.grad(&grads).unwrap()),
        running: values(norm.running_mean.value())
            .into_iter()
            .chain(values(norm.running_var.value()))
            .collect(),
    }
}

fn check(shape: [usize; 4], x: Tensor<4>, reuse: bool) {
    check_with(shape, x.clone(), reuse, true);
    check_with(shape, x, reuse, false);
}

fn check_with(shape: [usize; 4], x: Tensor<4>, reuse: bool, pooled: bool) {
    let device = x.device();
    let [n, c, h, w] = shape;
    let f = if pooled { 2 } else { 1 };
    let (reference, fused) = (norm(c, &device), norm(c, &device));
    let weights = Tensor::random(
        [n, c, h / f, w / f],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let a = run(&x, &fused, &weights, true, reuse, pooled);
    let b = run(&x, &reference, &weights, false, reuse, pooled);
    let tag = |t: &str| format!("{t} {shape:?} pooled {pooled}");
    assert_close(&tag("output"), &a.out, &b.out);
    assert_close(&tag("dx"), &a.dx, &b.dx);
    assert_close(&tag("dgamma"), &a.dgamma, &b.dgamma);
    assert_close(&tag("dbeta"), &a.dbeta, &b.dbeta);
    assert_close(&tag("running statistics"), &a.running, &b.running);

    // Inference mode (the running statistics, no autodiff) on the plain device.
    let plain = Device::flex();
    let x = Tensor::<4>::from_data(x.into_data(), &plain);
    let (fused, reference) = (fused.valid(), reference.valid());
    let (a, b) = if pooled {
        (
            norm_relu_pool::norm_relu_pool(&fused, x.clone()),
            relu(pool().forward(reference.forward(x))),
        )
    } else {
        (
            norm_relu_pool::norm_relu(&fused, x.clone()),
            relu(reference.forward(x)),
        )
    };
    assert_close(&tag("inference output"), &values(a), &values(b));
}

#[test]
fn equals_burns_composition_on_odd_shapes_and_batch_one() {
    let device = Device::flex().autodiff();
    for shape in [[2, 3, 5, 7], [1, 1, 2, 2], [1, 4, 9, 4], [4, 6, 8, 10]] {
        device.seed(shape.iter().sum::<usize>() as u64);
        let x = Tensor::random(shape, Distribution::Normal(0.3, 2.0), &device);
        check(shape, x, false);
    }
}

#[test]
fn constant_inputs_tie_every_window_as_burn_breaks_ties() {
    let device = Device::flex().autodiff();
    let shape = [2, 3, 4, 6];
    let x = Tensor::<4>::full(shape, 0.7, &device);
    check(shape, x, false);
    // Ties between some inputs only: two of four equal maxima per window.
    let v: Vec<f32> = (0..2 * 3 * 4 * 6).map(|i| ((i / 2) % 3) as f32).collect();
    check(
        shape,
        Tensor::from_data(TensorData::new(v, shape), &device),
        false,
    );
}

#[test]
fn gradients_add_when_the_input_also_feeds_another_op() {
    let device = Device::flex().autodiff();
    let shape = [3, 2, 6, 5];
    device.seed(9);
    let x = Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device);
    check(shape, x, true);
}

// burn's ops on another CPU backend are the reference: a build with `--features ndarray` (CI).
#[cfg(feature = "ndarray")]
#[test]
fn the_cnn_gives_burns_logits_and_gradients_through_the_fused_path() {
    use burn::optim::GradientsParams;
    use catdog_model::{Classifier, CnnConfig, ModelConfig};
    // On ndarray the model uses burn's ops; on Flex the fused op: same model, same numbers.
    let config = ModelConfig::Cnn(CnnConfig {
        num_classes: 2,
        image_size: 16,
        channels: vec![4, 8],
        convs_per_block: 1,
        hidden: None,
        dropout: 0.0,
    });
    #[allow(deprecated)]
    let devices = [Device::flex().autodiff(), Device::ndarray().autodiff()];
    let mut logits = Vec::new();
    let mut grads = Vec::new();
    devices[0].seed(21);
    let flex_model = Classifier::new(&config, &devices[0]).unwrap();
    for device in &devices {
        let model = flex_model.clone().fork(device);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                (0..2 * 3 * 16 * 16)
                    .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                    .collect(),
                [2, 3, 16, 16],
            ),
            device,
        );
        let out = model.forward(x);
        logits.push(values(out.clone()));
        let g = GradientsParams::from_grads(out.sum().backward(), &model);
        let Classifier::Cnn(cnn) = &model else {
            unreachable!()
        };
        let w = &cnn.blocks[0].convs[0].weight;
        grads.push(values(g.get::<4>(w.id).unwrap()));
    }
    assert_close("logits", &logits[0], &logits[1]);
    assert_close("first conv's weight gradient", &grads[0], &grads[1]);
}

/// A norm with running statistics away from their initial 0 and 1, frozen (training off, no
/// gradient for gamma and beta): the inference path on an autodiff device.
fn frozen(channels: usize, device: &Device) -> BatchNorm {
    use burn::module::RunningState;
    let mut n = norm(channels, device);
    let mean: Vec<f32> = (0..channels).map(|c| 0.2 * c as f32 - 0.1).collect();
    let var: Vec<f32> = (0..channels).map(|c| 0.5 + 0.3 * c as f32).collect();
    n.running_mean =
        RunningState::new(Tensor::from_data(TensorData::new(mean, [channels]), device));
    n.running_var = RunningState::new(Tensor::from_data(TensorData::new(var, [channels]), device));
    n.freeze()
}

#[test]
fn a_frozen_norm_on_an_autodiff_device_treats_the_running_statistics_as_constants() {
    let device = Device::flex().autodiff();
    for (shape, pooled) in [([3, 4, 6, 8], true), ([2, 3, 5, 7], false)] {
        let [n, c, h, w] = shape;
        let f = if pooled { 2 } else { 1 };
        device.seed(5);
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.2, 1.5), &device);
        let weights = common::varied([n, c, h / f, w / f], &device);
        let norm = frozen(c, &device);
        let running = |n: &BatchNorm| {
            [
                values(n.running_mean.value_sync()),
                values(n.running_var.value_sync()),
            ]
            .concat()
        };
        let before = running(&norm);
        let outcome = |fused: bool| {
            let x = x.clone().require_grad();
            let input = x.clone().mul_scalar(1.0);
            let out = match (fused, pooled) {
                (true, true) => norm_relu_pool::norm_relu_pool(&norm, input),
                (true, false) => norm_relu_pool::norm_relu(&norm, input),
                (false, true) => relu(pool().forward(norm.forward(input))),
                (false, false) => relu(norm.forward(input)),
            };
            let grads = (out.clone() * weights.clone()).sum().backward();
            (values(out), values(x.grad(&grads).unwrap()))
        };
        let (ours, burns) = (outcome(true), outcome(false));
        assert_close(&format!("frozen output {shape:?}"), &ours.0, &burns.0);
        assert_close(&format!("frozen dx {shape:?}"), &ours.1, &burns.1);
        assert_eq!(running(&norm), before, "a frozen norm's statistics changed");
    }
}

#[test]
fn nan_inputs_give_nan_statistics_and_an_empty_batch_leaves_the_running_ones() {
    let device = Device::flex().autodiff();
    let shape = [2, 3, 4, 4];
    let mut v: Vec<f32> = (0..2 * 3 * 16).map(|i| (i as f32 * 0.37).sin()).collect();
    // One NaN in channel 1 of image 0: that channel's mean and variance are NaN (as burn's),
    // the other channels' are not.
    v[16 + 5] = f32::NAN;
    let x = Tensor::<4>::from_data(TensorData::new(v, shape), &device);
    let (fused, reference) = (norm(3, &device), norm(3, &device));
    let a = values(norm_relu_pool::norm_relu(&fused, x.clone()));
    let b = values(relu(batch_norm(&reference, x)));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.is_nan(), y.is_nan(), "element {i}: ours {x}, burn's {y}");
    }
    let var = values(fused.running_var.value_sync());
    assert!(
        var[1].is_nan() && var[0].is_finite() && var[2].is_finite(),
        "{var:?}"
    );

    // At inference (running statistics), a NaN or an infinity stays in its pool window, which
    // it wins (a NaN passes the ReLU, -inf loses to any number), as in burn's composition.
    let plain = Device::flex();
    let mut v: Vec<f32> = (0..2 * 3 * 16).map(|i| (i as f32 * 0.61).cos()).collect();
    v[5] = f32::NAN;
    v[16 + 10] = f32::INFINITY;
    v[32 + 3] = f32::NEG_INFINITY;
    v[48 + 15] = f32::NAN;
    let x = Tensor::<4>::from_data(TensorData::new(v, shape), &plain);
    let inference = norm(3, &plain);
    let a = values(norm_relu_pool::norm_relu_pool(&inference, x.clone()));
    let b = values(relu(pool().forward(inference.forward(x))));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-5 * y.abs().max(1.0);
        assert!(same, "pooled element {i}: ours {x}, burn's {y}");
    }
    assert_eq!(a.iter().filter(|v| v.is_nan()).count(), 2, "{a:?}");
    assert_eq!(a.iter().filter(|v| v.is_infinite()).count(), 1, "{a:?}");

    // No images: an empty output, and running statistics as they were.
    let norm = norm(3, &device);
    let before = values(norm.running_mean.value_sync());
    let out = norm_relu_pool::norm_relu_pool(&norm, Tensor::<4>::zeros([0, 3, 4, 4], &device));
    assert_eq!(out.dims(), [0, 3, 2, 2]);
    assert_eq!(values(norm.running_mean.value_sync()), before);
}

/// The input gradient of `relu(batch_norm(x))` in training mode, in f64 from its definition:
/// `dx = gamma / std * (dy' - mean(dy') - x_hat * mean(dy' * x_hat))` per channel, where `dy'`
/// is the gradient that passes the ReLU.
fn reference_dx(x: &[f32], dy: &[f32], gamma: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f64> {
    let plane = h * w;
    let at = |i: usize, ch: usize, p: usize| (i * c + ch) * plane + p;
    let mut dx = vec![0f64; x.len()];
    for (ch, &gamma) in gamma.iter().enumerate().take(c) {
        let idx: Vec<usize> = (0..n)
            .flat_map(|i| (0..plane).map(move |p| at(i, ch, p)))
            .collect();
        let count = idx.len() as f64;
        let mean = idx.iter().map(|&j| f64::from(x[j])).sum::<f64>() / count;
        let var = idx
            .iter()
            .map(|&j| (f64::from(x[j]) - mean).powi(2))
            .sum::<f64>()
            / count;
        let inv_std = 1.0 / (var + 1e-5).sqrt();
        let g = f64::from(gamma);
        let beta = 0.3 - 0.21 * ch as f64; // as `norm` sets it
        let x_hat = |j: usize| (f64::from(x[j]) - mean) * inv_std;
        let passed = |j: usize| {
            if g * x_hat(j) + beta > 0.0 {
                f64::from(dy[j])
            } else {
                0.0
            }
        };
        let mean_dy = idx.iter().map(|&j| passed(j)).sum::<f64>() / count;
        let mean_dy_xhat = idx.iter().map(|&j| passed(j) * x_hat(j)).sum::<f64>() / count;
        for &j in &idx {
            dx[j] = g * inv_std * (passed(j) - mean_dy - x_hat(j) * mean_dy_xhat);
        }
    }
    dx
}

#[test]
fn the_input_gradient_holds_when_the_mean_is_far_larger_than_the_spread() {
    // Activations around 1000 with a spread of 0.05: the kernel's affine form of the statistics'
    // share of dx (slope * x + offset) subtracts terms 20,000 times larger than the result.
    let device = Device::flex().autodiff();
    let shape = [4, 3, 6, 5];
    let count: usize = shape.iter().product();
    let x: Vec<f32> = (0..count)
        .map(|i| 1000.0 + 0.05 * (i as f32 * 0.77).sin())
        .collect();
    let dy = values(common::varied(shape, &Device::flex()));
    let norm = norm(3, &device);
    let input = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &device).require_grad();
    let out = norm_relu_pool::norm_relu(&norm, input.clone().mul_scalar(1.0));
    let grads = (out * Tensor::from_data(TensorData::new(dy.clone(), shape), &device))
        .sum()
        .backward();
    let ours = values(input.grad(&grads).unwrap());
    let gamma = values(norm.gamma.val());
    let expected = reference_dx(&x, &dy, &gamma, shape);
    let scale = expected.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (o, e)) in ours.iter().zip(&expected).enumerate() {
        assert!(
            (f64::from(*o) - e).abs() <= 1e-3 * scale,
            "dx[{i}]: ours {o}, f64 reference {e} (largest {scale})"
        );
    }
}

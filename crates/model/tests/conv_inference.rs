//! The inference op `conv3x3_norm_relu` (BatchNorm's running statistics, the ReLU and the 2x2
//! pool applied to each chunk of the convolution's output as it is written) equals burn's
//! composition `relu(pool(batch_norm(conv(x))))` on odd sizes, batch 1, Winograd and im2col
//! layers, a single image split by output channel, negative BatchNorm scales, and NaN inputs; in
//! thread pools of 1, 2 and 4.

use burn::{
    module::{Param, RunningState},
    nn::{
        conv::{Conv2d, Conv2dConfig},
        pool::{MaxPool2d, MaxPool2dConfig},
        BatchNorm, BatchNormConfig, PaddingConfig2d,
    },
    tensor::{activation::relu, Device, Tensor, TensorData},
};
use catdog_model::{conv3x3, winograd};

mod common;
use common::{assert_close, in_pools, values, varied};

fn pool() -> MaxPool2d {
    MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()
}

/// A 3x3 convolution with fixed weights that differ along every axis (not drawn at random, so
/// that every run checks the same outputs, the live-channel check included).
fn conv(cin: usize, cout: usize, device: &Device) -> Conv2d {
    let mut c = Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device);
    // Values in -1..1 from a multiplicative hash of the index, scaled as Kaiming would.
    let n = cout * cin * 9;
    let scale = (3.0 / (cin as f32 * 9.0)).sqrt();
    let w: Vec<f32> = (0..n as u64)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 2001) as f32 / 1000.0 - 1.0)
        .map(|v| v * scale)
        .collect();
    c.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w, [cout, cin, 3, 3]),
        device,
    ));
    c
}

fn vector(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// A BatchNorm whose four vectors differ per channel, with a negative gamma on every third
/// channel (which turns the pool's maximum into the minimum of the convolution's output). The
/// values cycle with different periods instead of growing with the channel, so that no
/// channel's output is all zero after the ReLU.
fn norm(c: usize, device: &Device) -> BatchNorm {
    let mut n = BatchNormConfig::new(c).init(device);
    let per = |f: &dyn Fn(f32) -> f32| (0..c).map(|i| f(i as f32)).collect::<Vec<f32>>();
    let gamma = |i: f32| match i as usize % 3 {
        2 => -0.7,
        _ => 0.4 + 0.3 * (i % 5.0),
    };
    n.gamma = Param::from_tensor(vector(per(&gamma), device));
    n.beta = Param::from_tensor(vector(per(&|i| 0.3 - 0.05 * (i % 7.0)), device));
    n.running_mean = RunningState::new(vector(per(&|i| 0.02 * (i % 4.0) - 0.03), device));
    n.running_var = RunningState::new(vector(per(&|i| 0.02 + 0.01 * (i % 6.0)), device));
    n
}

/// Every channel of `y [n, c, ...]` has a value above zero somewhere in the batch.
fn every_channel_lives(y: &[f32], [n, c]: [usize; 2]) -> bool {
    let plane = y.len() / (n * c).max(1);
    (0..c).all(|ch| (0..n).any(|i| y[(i * c + ch) * plane..][..plane].iter().any(|v| *v > 0.0)))
}

fn check(dims @ [_, cin, h, w]: [usize; 4], cout: usize, pooled: bool, nan: bool) {
    let device = Device::flex();
    let (c, n) = (conv(cin, cout, &device), norm(cout, &device));
    let mut x = varied(dims, &device);
    if nan {
        let mut v = values(x);
        let middle = v.len() / 2;
        v[middle] = f32::NAN;
        x = Tensor::from_data(TensorData::new(v, dims), &device);
    }
    assert!(conv3x3::inference_applies(&c, &x));
    let normed = n.forward(c.forward(x.clone()));
    let burns = values(if pooled {
        relu(pool().forward(normed))
    } else {
        relu(normed)
    });
    // A channel computed from the wrong weights or factors cannot hide behind zeros.
    if !nan {
        assert!(
            every_channel_lives(&burns, [dims[0], cout]),
            "{dims:?} -> {cout}: a dead channel"
        );
    }
    let what = format!(
        "{dims:?} -> {cout}, pool {pooled}, winograd {}",
        winograd::pays(cin, [h, w])
    );
    in_pools(|| {
        let ours = values(conv3x3::conv3x3_norm_relu(&c, &n, x.clone(), pooled));
        if nan {
            let at = |v: &[f32]| v.iter().map(|x| x.is_nan()).collect::<Vec<_>>();
            assert_eq!(at(&ours), at(&burns), "{what}: NaN positions");
            assert!(ours.iter().any(|v| v.is_nan()), "{what}: the NaN was lost");
            let clean = |v: &[f32]| {
                v.iter()
                    .map(|x| if x.is_nan() { 0.0 } else { *x })
                    .collect::<Vec<_>>()
            };
            assert_close(&what, &clean(&ours), &clean(&burns));
        } else {
            assert_close(&what, &ours, &burns);
        }
    });
}

#[test]
fn equals_burns_composition_with_and_without_the_pool() {
    for pooled in [true, false] {
        // The RGB input layer (im2col), odd planes (the pool drops the last row and column),
        // batch 1, a plane of 2x3, small planes grouped into one gemm, and Winograd layers
        // (32 input channels and up, planes of 12x12 and up) of even and odd sides.
        check([1, 3, 9, 7], 5, pooled, false);
        check([3, 3, 16, 16], 8, pooled, false);
        check([2, 6, 2, 3], 4, pooled, false);
        check([5, 16, 5, 5], 24, pooled, false);
        check([1, 40, 13, 12], 7, pooled, false);
        check([4, 32, 16, 16], 33, pooled, false);
        check([9, 36, 12, 14], 16, pooled, false);
        // One image split by output channel across the pool's threads: parts of 8, 16 or 24
        // channels and a last part of 1 (im2col), of 16 and 8 (Winograd, odd side).
        check([1, 3, 9, 7], 17, pooled, false);
        check([1, 32, 13, 13], 40, pooled, false);
        check([1, 64, 8, 8], 64, pooled, false);
    }
}

#[test]
fn a_nan_passes_the_relu_and_wins_its_pool_window_as_in_burn() {
    check([2, 3, 8, 8], 4, true, true);
    check([2, 3, 8, 8], 4, false, true);
    check([2, 32, 12, 12], 4, true, true);
}

#[test]
fn planes_too_small_to_pool_and_empty_batches_give_the_shapes_burn_gives() {
    let device = Device::flex();
    let (c, n) = (conv(3, 4, &device), norm(4, &device));
    let empty = Tensor::<4>::zeros([0, 3, 8, 8], &device);
    assert_eq!(
        conv3x3::conv3x3_norm_relu(&c, &n, empty, true).dims(),
        [0, 4, 4, 4]
    );
    let line = varied([2, 3, 1, 5], &device);
    let ours = conv3x3::conv3x3_norm_relu(&c, &n, line.clone(), false);
    assert_close(
        "1x5 plane",
        &values(ours),
        &values(relu(n.forward(c.forward(line)))),
    );
}

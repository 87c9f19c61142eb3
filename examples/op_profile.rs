//! Where the default CNN's training step spends its time: each convolution forward, forward with
//! backward (weight and input gradients), and ReLU + max-pool variants, at 64x64, batch 64, on
//! Flex. The breakdown behind README's Performance section.
//!
//! `cargo run --release --example op_profile`
use std::time::Instant;

use burn::{
    nn::{
        conv::{Conv2d, Conv2dConfig},
        PaddingConfig2d,
    },
    tensor::{activation::relu, Device, Distribution, Tensor},
};
use catdog_model::{batch_norm, conv3x3_as_matmul};

/// Mean wall time of `reps` calls after one warm-up call.
fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    println!(
        "{name:60} {:8.2} ms",
        t.elapsed().as_secs_f64() * 1000.0 / reps as f64
    );
}

/// A 3x3, stride-1, padding-1 convolution without bias, as the CNN's `ConvBlock` builds it.
fn conv3x3(cin: usize, cout: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

fn main() {
    catdog::tune_allocator();
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let b = 64;
    let pool = burn::nn::pool::MaxPool2dConfig::new([2, 2])
        .with_strides([2, 2])
        .init();
    let shapes = [(3, 32, 64), (32, 64, 32), (64, 128, 16), (128, 256, 8)];
    for (cin, cout, s) in shapes {
        let x = Tensor::<4>::random([b, cin, s, s], Distribution::Default, &device);
        let conv = conv3x3(cin, cout, &device);
        time(&format!("fwd conv {cin}->{cout} @{s}"), 5, || {
            let _ = conv.forward(x.clone()).into_data();
        });
        let xa = Tensor::<4>::random([b, cin, s, s], Distribution::Default, &ad).require_grad();
        let conv_ad = conv3x3(cin, cout, &ad);
        let wa = conv_ad.weight.val();
        time(
            &format!("fwd+bwd conv (x and w grads) {cin}->{cout} @{s}"),
            5,
            || {
                let y = conv_ad.forward(xa.clone());
                let g = y.sum().backward();
                let _ = wa.grad(&g).unwrap().into_data();
            },
        );
        let direct = conv_ad.forward(xa.clone()).into_data();
        let via = conv3x3_as_matmul(&conv_ad, xa.clone()).into_data();
        direct.assert_approx_eq::<f32>(&via, burn::tensor::Tolerance::rel_abs(1e-3, 1e-3));
        time(
            &format!("fwd im2col-matmul conv {cin}->{cout} @{s}"),
            5,
            || {
                let _ = conv3x3_as_matmul(&conv, x.clone()).into_data();
            },
        );
        time(
            &format!("fwd+bwd im2col-matmul conv (x and w grads) {cin}->{cout} @{s}"),
            5,
            || {
                let y = conv3x3_as_matmul(&conv_ad, xa.clone());
                let g = y.sum().backward();
                let _ = wa.grad(&g).unwrap().into_data();
            },
        );
        let xc = Tensor::<4>::random([b, cin, s, s], Distribution::Default, &ad);
        time(
            &format!("fwd+bwd conv (w grad only) {cin}->{cout} @{s}"),
            5,
            || {
                let y = conv_ad.forward(xc.clone());
                let g = y.sum().backward();
                let _ = wa.grad(&g).unwrap().into_data();
            },
        );
        time(
            &format!("fwd+bwd im2col-matmul conv (w grad only) {cin}->{cout} @{s}"),
            5,
            || {
                let y = conv3x3_as_matmul(&conv_ad, xc.clone());
                let g = y.sum().backward();
                let _ = wa.grad(&g).unwrap().into_data();
            },
        );
        let y = Tensor::<4>::random([b, cout, s, s], Distribution::Default, &ad).require_grad();
        let bn = burn::nn::BatchNormConfig::new(cout).init(&ad);
        let direct = bn.forward(y.clone()).into_data();
        let via = batch_norm(&bn, y.clone()).into_data();
        direct.assert_approx_eq::<f32>(&via, burn::tensor::Tolerance::rel_abs(1e-3, 1e-3));
        time(
            &format!("fwd+bwd batchnorm composite {cout} @{s}"),
            5,
            || {
                let z = batch_norm(&bn, y.clone());
                let g = z.sum().backward();
                let _ = y.grad(&g).unwrap().into_data();
            },
        );
        time(&format!("fwd+bwd batchnorm (train) {cout} @{s}"), 5, || {
            let z = bn.forward(y.clone());
            let g = z.sum().backward();
            let _ = y.grad(&g).unwrap().into_data();
        });
        time(
            &format!("fwd+bwd maxpool+relu (pool first) {cout} @{s}"),
            5,
            || {
                let z = relu(pool.forward(y.clone()));
                let g = z.sum().backward();
                let _ = y.grad(&g).unwrap().into_data();
            },
        );
        time(
            &format!("fwd+bwd reshape max_dim pool {cout} @{s}"),
            5,
            || {
                let z = y
                    .clone()
                    .reshape([b, cout, s / 2, 2, s / 2, 2])
                    .max_dim(5)
                    .max_dim(3)
                    .reshape([b, cout, s / 2, s / 2]);
                let g = z.sum().backward();
                let _ = y.grad(&g).unwrap().into_data();
            },
        );
        time(&format!("fwd+bwd pair-max pool {cout} @{s}"), 5, || {
            let h = s / 2;
            let r = y.clone().reshape([b, cout, h, 2, h, 2]);
            let top = r.clone().narrow(3, 0, 1).max_pair(r.narrow(3, 1, 1));
            let z = top
                .clone()
                .narrow(5, 0, 1)
                .max_pair(top.narrow(5, 1, 1))
                .reshape([b, cout, h, h]);
            let g = z.sum().backward();
            let _ = y.grad(&g).unwrap().into_data();
        });
        time(&format!("fwd+bwd relu only {cout} @{s}"), 5, || {
            let z = relu(y.clone());
            let g = z.sum().backward();
            let _ = y.grad(&g).unwrap().into_data();
        });
        time(&format!("fwd+bwd relu+maxpool {cout} @{s}"), 5, || {
            let z = pool.forward(relu(y.clone()));
            let g = z.sum().backward();
            let _ = y.grad(&g).unwrap().into_data();
        });
    }
}

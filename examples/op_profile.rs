//! Where the default CNN's training step spends its time: each convolution forward, forward with
//! backward (weight and input gradients), and ReLU + max-pool variants, at 64x64, batch 64, on
//! Flex. The breakdown behind README's Performance section.
//!
//! `cargo run --release --example op_profile`
use std::time::Instant;

use burn::tensor::{activation::relu, module::conv2d, ops::ConvOptions, Distribution, Tensor};

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

/// 3x3, stride 1, padding 1 convolution as nine shifted views and one batched matmul.
fn conv_im2col(x: Tensor<4>, w: Tensor<4>) -> Tensor<4> {
    let [b, c, h, wd] = x.dims();
    let o = w.dims()[0];
    let xp = x.pad(
        vec![(1, 1), (1, 1)],
        burn::tensor::ops::PadMode::Constant(0.0),
    );
    let mut cols = Vec::with_capacity(9);
    for kh in 0..3 {
        for kw in 0..3 {
            cols.push(xp.clone().slice([0..b, 0..c, kh..kh + h, kw..kw + wd]));
        }
    }
    let col: Tensor<3> = Tensor::stack::<5>(cols, 2).reshape([b, c * 9, h * wd]);
    w.reshape([1, o, c * 9]).matmul(col).reshape([b, o, h, wd])
}

/// Training-mode batch norm from tensor ops, reducing over contiguous [B, C, H*W] rows.
fn bn_composite(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let rows = x.clone().reshape([b, c, h * w]);
    let mean = rows.clone().mean_dim(2).mean_dim(0); // [1, c, 1]
    let centered = rows - mean;
    let var = centered.clone().square().mean_dim(2).mean_dim(0);
    let scale = gamma.reshape([1, c, 1]) / (var + 1e-5).sqrt();
    (centered * scale + beta.reshape([1, c, 1])).reshape([b, c, h, w])
}

fn main() {
    catdog::tune_allocator();
    let device = burn::tensor::Device::flex();
    let ad = device.clone().autodiff();
    let b = 64;
    let pool = burn::nn::pool::MaxPool2dConfig::new([2, 2])
        .with_strides([2, 2])
        .init();
    let shapes = [(3, 32, 64), (32, 64, 32), (64, 128, 16), (128, 256, 8)];
    for (cin, cout, s) in shapes {
        let opts = || ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let x = Tensor::<4>::random([b, cin, s, s], Distribution::Default, &device);
        let w = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Default, &device);
        time(&format!("fwd conv {cin}->{cout} @{s}"), 5, || {
            let _ = conv2d(x.clone(), w.clone(), None, opts()).into_data();
        });
        let xa = Tensor::<4>::random([b, cin, s, s], Distribution::Default, &ad).require_grad();
        let wa = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Default, &ad).require_grad();
        time(
            &format!("fwd+bwd conv (x and w grads) {cin}->{cout} @{s}"),
            5,
            || {
                let y = conv2d(xa.clone(), wa.clone(), None, opts());
                let g = y.sum().backward();
                let _ = wa.grad(&g).unwrap().into_data();
            },
        );
        let direct = conv2d(xa.clone(), wa.clone(), None, opts()).into_data();
        let via = conv_im2col(xa.clone(), wa.clone()).into_data();
        direct.assert_approx_eq::<f32>(&via, burn::tensor::Tolerance::rel_abs(1e-3, 1e-3));
        time(
            &format!("fwd im2col-matmul conv {cin}->{cout} @{s}"),
            5,
            || {
                let _ = conv_im2col(x.clone(), w.clone()).into_data();
            },
        );
        time(
            &format!("fwd+bwd im2col-matmul conv (x and w grads) {cin}->{cout} @{s}"),
            5,
            || {
                let y = conv_im2col(xa.clone(), wa.clone());
                let g = y.sum().backward();
                let _ = wa.grad(&g).unwrap().into_data();
            },
        );
        let xc = Tensor::<4>::random([b, cin, s, s], Distribution::Default, &ad);
        time(
            &format!("fwd+bwd conv (w grad only) {cin}->{cout} @{s}"),
            5,
            || {
                let y = conv2d(xc.clone(), wa.clone(), None, opts());
                let g = y.sum().backward();
                let _ = wa.grad(&g).unwrap().into_data();
            },
        );
        time(
            &format!("fwd+bwd im2col-matmul conv (w grad only) {cin}->{cout} @{s}"),
            5,
            || {
                let y = conv_im2col(xc.clone(), wa.clone());
                let g = y.sum().backward();
                let _ = wa.grad(&g).unwrap().into_data();
            },
        );
        let y = Tensor::<4>::random([b, cout, s, s], Distribution::Default, &ad).require_grad();
        let bn = burn::nn::BatchNormConfig::new(cout).init(&ad);
        let direct = bn.forward(y.clone()).into_data();
        let via = bn_composite(y.clone(), bn.gamma.val(), bn.beta.val()).into_data();
        direct.assert_approx_eq::<f32>(&via, burn::tensor::Tolerance::rel_abs(1e-3, 1e-3));
        time(
            &format!("fwd+bwd batchnorm composite {cout} @{s}"),
            5,
            || {
                let z = bn_composite(y.clone(), bn.gamma.val(), bn.beta.val());
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

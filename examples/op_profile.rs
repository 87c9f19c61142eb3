//! Where the default CNN's training step spends its time, per layer, at 64x64, batch 64, on
//! Flex: each convolution and each BatchNorm -> ReLU -> max-pool forward and backward as the model
//! runs them (catdog's ops), burn's own composition beside them, the sum set against a whole
//! measured training step, and each convolution's share of the machine's fp32 peak (a 2048^3
//! matmul through burn-flex's gemm). Then, per convolution shape of the default CNN and the
//! ResNet at 56x56, the two ways catdog computes a 3x3 convolution's forward pass and input
//! gradient on Flex: im2col gemms and Winograd's F(2x2, 3x3) (`catdog_model::winograd::pays`
//! picks between them from these figures). The breakdown behind README's Performance section.
//!
//! `cargo run --release --example op_profile`
use std::time::Instant;

use burn::{
    module::Module,
    nn::{
        conv::{Conv2d, Conv2dConfig},
        pool::MaxPool2dConfig,
        BatchNormConfig, PaddingConfig2d,
    },
    optim::GradientsParams,
    tensor::{activation::relu, Device, Distribution, Int, Tensor, TensorData},
};
use catdog::{
    model::{conv3x3, norm_relu_pool, winograd, Classifier, CnnConfig, ModelConfig},
    train::{Loss, OptimConfig},
};

/// Mean wall time in ms of `reps` calls after one warm-up call.
fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() * 1000.0 / reps as f64
}

fn conv(cin: usize, cout: usize, device: &Device) -> Conv2d {
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

    let n: usize = 2048;
    let a = Tensor::<2>::random([n, n], Distribution::Default, &device);
    let ms = time(5, || {
        let _ = a.clone().matmul(a.clone()).into_data();
    });
    let peak = 2.0 * (n * n * n) as f64 / ms / 1e6;
    println!("fp32 peak (2048^3 matmul): {peak:.0} GFLOP/s\n");

    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10} {:>9}",
        "layer (64x64, b 64)",
        "conv fwd",
        "burn fwd",
        "conv f+b",
        "burn f+b",
        "% peak",
        "bn-relu-pool",
        "burn",
        "its fwd"
    );
    let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
    let mut ours_total = 0.0;
    for (cin, cout, s) in [(3, 32, 64), (32, 64, 32), (64, 128, 16), (128, 256, 8)] {
        let c = conv(cin, cout, &ad);
        let plain = c.valid();
        let w = c.weight.val();
        // The images need no gradient: the first layer computes only its weight gradient.
        let x = Tensor::<4>::random([b, cin, s, s], Distribution::Default, &ad);
        let x = if cin == 3 { x } else { x.require_grad() };
        let read_grads = |g: &burn::tensor::Gradients| {
            let _ = w.grad(g).unwrap().into_data();
            if let Some(dx) = x.grad(g) {
                let _ = dx.into_data();
            }
        };
        let xp = Tensor::<4>::random([b, cin, s, s], Distribution::Default, &device);
        let forward = |conv: &Conv2d, x: Tensor<4>| conv3x3::conv3x3(conv, x);
        let fwd = time(5, || {
            let _ = forward(&plain, xp.clone()).into_data();
        });
        let burn_fwd = time(5, || {
            let _ = plain.forward(xp.clone()).into_data();
        });
        let ours = time(5, || read_grads(&forward(&c, x.clone()).sum().backward()));
        let burns = time(5, || read_grads(&c.forward(x.clone()).sum().backward()));
        let passes = if cin == 3 { 2.0 } else { 3.0 };
        let flops = passes * 2.0 * (b * cin * cout * 9 * s * s) as f64;
        // BatchNorm -> ReLU -> pool timed as the model runs it, on the conv's output (which
        // nothing else holds, so our backward writes the input gradient over it): the whole
        // layer forward and backward, less the convolution's own time.
        let bn = BatchNormConfig::new(cout).init(&ad);
        let layer = time(5, || {
            let y = forward(&c, x.clone());
            read_grads(&norm_relu_pool::norm_relu_pool(&bn, y).sum().backward())
        });
        let fused = (layer - ours).max(0.0);
        let bn_plain = bn.valid();
        let yp = Tensor::<4>::random([b, cout, s, s], Distribution::Default, &device);
        let fused_fwd = time(5, || {
            let _ = norm_relu_pool::norm_relu_pool(&bn_plain, yp.clone()).into_data();
        });
        let burn_layer = time(5, || {
            let y = c.forward(x.clone());
            read_grads(&relu(pool.forward(bn.forward(y))).sum().backward())
        });
        let composed = (burn_layer - burns).max(0.0);
        ours_total += layer;
        println!(
            "{:<22} {fwd:>7.1}ms {burn_fwd:>7.1}ms {ours:>7.1}ms {burns:>7.1}ms {:>6.0}% \
             {fused:>8.1}ms {composed:>8.1}ms {fused_fwd:>7.1}ms",
            format!("{cin}->{cout} @{s}"),
            100.0 * flops / ours / 1e6 / peak,
        );
    }

    // A whole training step of the default CNN at 64x64: forward, loss, backward, AdamW.
    let config = ModelConfig::Cnn(CnnConfig {
        image_size: 64,
        ..Default::default()
    });
    ad.seed(1);
    let mut model = Classifier::new(&config, &ad).expect("the default CNN builds");
    let mut optim = OptimConfig::default().build();
    let loss = Loss::new(0.0, &ad);
    let x = Tensor::<4>::random([b, 3, 64, 64], Distribution::Normal(0.0, 1.0), &ad);
    let labels: Vec<i64> = (0..b as i64).map(|i| i % 2).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), &ad);
    let mut model_slot = Some(model);
    let step = time(5, || {
        let m = model_slot.take().expect("the model is put back every step");
        let l = loss.forward(m.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(l.backward(), &m);
        model_slot = Some(optim.step(1e-3, m, grads));
    });
    model = model_slot.take().expect("the model is put back every step");
    println!(
        "\nconvolutions and bn-relu-pool, forward and backward, summed: {ours_total:.1} ms of a \
         {step:.1} ms training step ({:.0}%; the rest: global pool, output layer, loss, AdamW, \
         autodiff bookkeeping); {:.0} images/s; {} parameters",
        100.0 * ours_total / step,
        b as f64 * 1000.0 / step,
        model.num_params()
    );
    im2col_against_winograd(b);
}

/// Forward and input gradient of each 3x3 convolution shape, im2col against F(2x2, 3x3), on
/// slices (no autodiff), and the relative difference of the two forward outputs.
fn im2col_against_winograd(b: usize) {
    println!(
        "\n{:<24} {:>10} {:>10} {:>6} {:>10} {:>10} {:>6} {:>9}",
        "shape (batch 64)", "im2col fwd", "winograd", "", "im2col dx", "winograd", "", "rel diff"
    );
    let mut state = 1u64;
    let mut values = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    };
    let cnn_48 = [(32, 64, 24), (64, 128, 12), (128, 256, 6)];
    let cnn_64 = [(32, 64, 32), (64, 128, 16), (128, 256, 8)];
    let resnet_56 = [
        (32, 64, 56),
        (64, 64, 28),
        (64, 128, 28),
        (128, 256, 14),
        (256, 256, 7),
    ];
    for (cin, cout, s) in cnn_48.into_iter().chain(cnn_64).chain(resnet_56) {
        let dims = [b, cin, s, s];
        let x = values(b * cin * s * s);
        let g = values(b * cout * s * s);
        let w = values(cout * cin * 9);
        let reference = conv3x3::im2col_forward(&x, &w, dims, cout, &|_, _| {});
        let tiled = winograd::forward(&x, &w, dims, cout, &|_, _| {});
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = reference
            .iter()
            .zip(&tiled)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()))
            / scale;
        let fwd = time(5, || {
            std::hint::black_box(conv3x3::im2col_forward(&x, &w, dims, cout, &|_, _| {}));
        });
        let fwd_w = time(5, || {
            std::hint::black_box(winograd::forward(&x, &w, dims, cout, &|_, _| {}));
        });
        let dx = time(5, || {
            std::hint::black_box(conv3x3::im2col_input_grad(&g, &w, dims, cout));
        });
        let dx_w = time(5, || {
            std::hint::black_box(winograd::input_grad(&g, &w, dims, cout));
        });
        let used = |depth| {
            if winograd::pays(depth, [s, s]) {
                "*"
            } else {
                " "
            }
        };
        println!(
            "{:<24} {fwd:>8.1}ms {fwd_w:>8.1}ms{} {:>4.2}x {dx:>8.1}ms {dx_w:>8.1}ms{} {:>4.2}x \
             {diff:>9.1e}",
            format!("{cin}->{cout} @{s}x{s}"),
            used(cin),
            fwd / fwd_w,
            used(cout),
            dx / dx_w,
        );
    }
    println!("(* the kernel the model uses for that pass)");
}

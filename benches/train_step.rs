//! One training step (forward, backward, optimiser) and inference, for the MLP and the default
//! CNN at 64x64, batch 64, Adam, on Flex (and on Ndarray with `--features ndarray`). Synthetic inputs: this measures the
//! model, not the data pipeline.
//!
//! `cargo bench --bench train_step`

use burn::{
    module::Module,
    optim::{AdamConfig, GradientsParams},
    tensor::{Device, Distribution, Int, Tensor},
};
use catdog::{
    model::{Classifier, CnnConfig, MlpConfig, ModelConfig},
    train::Loss,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Flex, and Ndarray in a build with `--features ndarray`.
fn devices() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)]
    let mut devices = vec![("flex", Device::flex())];
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    devices.push(("ndarray", Device::ndarray()));
    devices
}

fn bench(c: &mut Criterion) {
    catdog::tune_allocator();
    let models = [
        ("mlp", ModelConfig::Mlp(MlpConfig::default())),
        ("cnn", ModelConfig::Cnn(CnnConfig::default())),
    ];
    let mut g = c.benchmark_group("model");
    g.sample_size(10);
    for (backend, device) in devices() {
        for (name, config) in &models {
            // Ndarray's convolutions run at a few images/s: a smaller batch keeps the bench short.
            let batch = if backend == "ndarray" && *name == "cnn" {
                8
            } else {
                64
            };
            let ad = device.clone().autodiff();
            ad.seed(1);
            let mut model = Some(Classifier::new(config, &ad).expect("model"));
            let mut optim = AdamConfig::new().init();
            let loss = Loss::new(0.0, &ad);
            let x = Tensor::<4>::random([batch, 3, 64, 64], Distribution::Normal(0.0, 1.0), &ad);
            let y = Tensor::<1, Int>::from_data(
                burn::tensor::TensorData::new(
                    (0..batch as i64).map(|i| i % 2).collect::<Vec<_>>(),
                    [batch],
                ),
                &ad,
            );
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(format!("train_step_{name}_{backend}_batch{batch}"), |b| {
                b.iter(|| {
                    let m = model.take().expect("model");
                    let l = loss.forward(m.forward(x.clone()), y.clone());
                    let _ = l.clone().into_data();
                    let grads = GradientsParams::from_grads(l.backward(), &m);
                    model = Some(optim.step(1e-3, m, grads));
                })
            });
            let inference = model.as_ref().expect("model").valid();
            let xi =
                Tensor::<4>::random([batch, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
            g.bench_function(format!("inference_{name}_{backend}_batch{batch}"), |b| {
                b.iter(|| inference.forward(xi.clone()).into_data())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

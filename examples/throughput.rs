//! Training and inference throughput of a model on synthetic data (no data pipeline), on any
//! backend: the catdog side of the PyTorch comparison (`benches/reference/`).
//!
//! `cargo run --release --example throughput -- [mlp|cnn|resnet] [--backend flex] [--batch 64]
//!  [--image-size 64] [--steps 20] [--channels 32,64,128,256] [--convs-per-block 1] [--unfused]
//!  [--inference-only] [--precision bf16] [--save DIR]`
//!
//! Prints training and batch inference images/s and the median batch-1 inference latency. The
//! optimiser is Adam (as the PyTorch reference); `--unfused` uses burn's own Adam instead of
//! catdog's fused step, for a before/after comparison in one build; `--precision bf16` trains
//! with bf16 gemms (inference stays f32, as in `catdog train`). `--save DIR` writes the
//! trained model as a model folder (for `catdog export --format onnx`, so that ONNX Runtime runs
//! the same network).

use std::{path::Path, time::Instant};

use burn::{
    module::Module,
    optim::GradientsParams,
    tensor::{Distribution, Int, Tensor, TensorData},
};
use catdog::{
    data::Normalization,
    infer::{
        model_io::{save_weights, weights_checksum, write_json, CONFIG_FILE, WEIGHTS_FILE},
        Backend, ModelSpec,
    },
    model::{
        kernels::precision::Precision, Classifier, CnnConfig, MlpConfig, ModelConfig, ResNetConfig,
    },
    train::{Loss, OptimConfig, OptimizerKind},
};
use clap::ValueEnum;

fn main() -> anyhow::Result<()> {
    catdog::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let arch = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "cnn".into());
    let backend = Backend::from_str(&flag("--backend").unwrap_or_else(|| "flex".into()), true)
        .map_err(anyhow::Error::msg)?;
    let batch: usize = flag("--batch").map_or(Ok(64), |v| v.parse())?;
    let size: usize = flag("--image-size").map_or(Ok(64), |v| v.parse())?;
    let steps: usize = flag("--steps").map_or(Ok(20), |v| v.parse())?;
    let precision = Precision::from_str(&flag("--precision").unwrap_or_else(|| "f32".into()), true)
        .map_err(anyhow::Error::msg)?;
    let config = match arch.as_str() {
        "mlp" => ModelConfig::Mlp(MlpConfig {
            image_size: size,
            ..Default::default()
        }),
        "resnet" => ModelConfig::ResNet(ResNetConfig {
            image_size: size,
            ..Default::default()
        }),
        _ => {
            let mut c = CnnConfig {
                image_size: size,
                ..Default::default()
            };
            if let Some(ch) = flag("--channels") {
                c.channels = ch.split(',').map(|v| v.parse()).collect::<Result<_, _>>()?;
            }
            if let Some(n) = flag("--convs-per-block") {
                c.convs_per_block = n.parse()?;
            }
            ModelConfig::Cnn(c)
        }
    };
    let opened = backend.open(None)?;
    let device = opened.device;
    let ad = device.clone().autodiff();
    ad.seed(1);
    let mut model = Classifier::new(&config, &ad)?;
    let mut optim = OptimConfig {
        optimizer: OptimizerKind::Adam,
        weight_decay: 0.0,
        ..Default::default()
    }
    .build_with(!args.iter().any(|a| a == "--unfused"));
    let loss = Loss::new(0.0, &ad);
    let x = Tensor::<4>::random([batch, 3, size, size], Distribution::Normal(0.0, 1.0), &ad);
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 2).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &ad);
    let mut step = |model: Classifier| {
        let l = loss.forward(model.forward(x.clone()), y.clone());
        let _ = l.clone().into_data();
        let grads = GradientsParams::from_grads(l.backward(), &model);
        optim.step(1e-3, model, grads)
    };
    // `--inference-only` (for profiling the inference path) skips training: random weights.
    let train_steps = if args.iter().any(|a| a == "--inference-only") {
        0
    } else {
        steps
    };
    let scope = precision.scope()?;
    for _ in 0..train_steps.min(3) {
        model = step(model);
    }
    let t = Instant::now();
    for _ in 0..train_steps {
        model = step(model);
    }
    let train = (train_steps * batch) as f64 / t.elapsed().as_secs_f64();
    drop(scope);
    let inference_model = model.valid();
    let xi = Tensor::<4>::random(
        [batch, 3, size, size],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let _ = inference_model.forward(xi.clone()).into_data();
    let t = Instant::now();
    for _ in 0..steps {
        let _ = inference_model.forward(xi.clone()).into_data();
    }
    let infer = (steps * batch) as f64 / t.elapsed().as_secs_f64();
    let x1 = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    let mut times: Vec<f64> = (0..steps.max(30) + 3)
        .map(|_| {
            let t = Instant::now();
            let _ = inference_model.forward(x1.clone()).into_data();
            t.elapsed().as_secs_f64()
        })
        .skip(3)
        .collect();
    times.sort_by(f64::total_cmp);
    let latency = 1000.0 * times[times.len() / 2];
    println!(
        "{arch} ({} parameters) {size}x{size} batch {batch} on {}: train {train:.1} images/s \
         ({precision:?}), inference {infer:.1} images/s, latency {latency:.3} ms",
        model.num_params(),
        opened.name
    );
    if let Some(dir) = flag("--save") {
        save(&inference_model, config, Path::new(&dir))?;
    }
    Ok(())
}

/// The model as a model folder: `config.json` (two classes, neutral normalisation) and weights.
fn save(model: &Classifier, config: ModelConfig, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let weights = dir.join(WEIGHTS_FILE);
    save_weights(model, &weights)?;
    let classes = vec!["cat".to_string(), "dog".to_string()];
    let mut spec = ModelSpec::new(config, classes, Normalization::default());
    spec.weights_crc32 = Some(weights_checksum(&weights)?);
    write_json(&dir.join(CONFIG_FILE), &spec)?;
    Ok(())
}

//! The same weights give the same logits on wgpu as on Flex, and one training step the same
//! loss. Runs wherever wgpu finds an adapter (Mesa's software one included); skipped otherwise.

use burn::{
    module::Module,
    optim::{AdamConfig, GradientsParams},
    tensor::{Device, Distribution, Int, Tensor, TensorData},
};
use catdog_infer::Backend;
use catdog_model::{Classifier, CnnConfig, MlpConfig, ModelConfig};
use catdog_train::Loss;

fn wgpu() -> Option<Device> {
    match Backend::Wgpu.open(None) {
        Ok(d) => {
            eprintln!("wgpu adapter: {}", d.name);
            Some(d.device)
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn configs() -> [ModelConfig; 2] {
    [
        ModelConfig::Mlp(MlpConfig {
            image_size: 16,
            hidden: vec![32, 16],
            ..Default::default()
        }),
        // No dropout: its random masks differ between devices; BatchNorm's batch statistics stay.
        ModelConfig::Cnn(CnnConfig {
            image_size: 16,
            channels: vec![8, 16],
            dropout: 0.0,
            ..Default::default()
        }),
    ]
}

#[test]
fn same_weights_same_logits_and_same_first_step_loss() {
    let Some(gpu) = wgpu() else { return };
    let cpu = Device::flex();
    cpu.seed(5);
    for config in configs() {
        let on_cpu = Classifier::new(&config, &cpu).unwrap();
        let record = on_cpu.clone().into_record();
        let on_gpu = Classifier::new(&config, &gpu)
            .unwrap()
            .load_record(record.clone());
        let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &cpu);
        let x_data = x.clone().into_data();
        let a = values(on_cpu.valid().forward(x.clone()));
        let b = values(
            on_gpu
                .valid()
                .forward(Tensor::from_data(x_data.clone(), &gpu)),
        );
        for (p, q) in a.iter().zip(&b) {
            assert!(
                (p - q).abs() <= 1e-4 * (1.0 + p.abs()),
                "{}: flex {p} vs wgpu {q}",
                config.name()
            );
        }

        // One training step from the same state: same loss, and the same loss after the step.
        let labels = TensorData::new(vec![0i64, 1, 1, 0], [4]);
        let mut losses = Vec::new();
        for device in [cpu.clone().autodiff(), gpu.clone().autodiff()] {
            let model = Classifier::new(&config, &device)
                .unwrap()
                .load_record(record.clone());
            let loss = Loss::new(0.0, &device);
            let x = Tensor::<4>::from_data(x_data.clone(), &device);
            let y = Tensor::<1, Int>::from_data(labels.clone(), &device);
            let l = loss.forward(model.forward(x.clone()), y.clone());
            let first = values(l.clone())[0];
            let grads = GradientsParams::from_grads(l.backward(), &model);
            let model = AdamConfig::new().init().step(1e-3, model, grads);
            let second = values(loss.forward(model.forward(x), y))[0];
            losses.push((first, second));
        }
        let ((c1, c2), (g1, g2)) = (losses[0], losses[1]);
        assert!(
            (c1 - g1).abs() <= 1e-3 * (1.0 + c1.abs()),
            "{}: loss flex {c1} vs wgpu {g1}",
            config.name()
        );
        assert!(
            (c2 - g2).abs() <= 1e-3 * (1.0 + c2.abs()),
            "{}: after a step flex {c2} vs wgpu {g2}",
            config.name()
        );
    }
}

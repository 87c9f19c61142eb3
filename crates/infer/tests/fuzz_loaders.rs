//! Arbitrary bytes into the weights and config loaders: errors, never panics.

use burn::tensor::Device;
use catdog_data::{Normalization, SplitMix64};
use catdog_infer::{
    model_io::{
        load_model, read_spec, save_safetensors, save_weights, write_json, CONFIG_FILE,
        SAFETENSORS_FILE, WEIGHTS_FILE,
    },
    ModelSpec,
};
use catdog_model::{Classifier, MlpConfig, ModelConfig};

/// Writes a model folder; returns its burnpack weights, safetensors weights and config.
fn model_dir(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>, String) {
    let config = ModelSpec::new(
        ModelConfig::Mlp(MlpConfig {
            image_size: 8,
            hidden: vec![4],
            ..Default::default()
        }),
        vec!["cat".into(), "dog".into()],
        Normalization::default(),
    );
    let device = Device::flex();
    let model = Classifier::new(&config.model, &device).unwrap();
    save_weights(&model, &dir.join(WEIGHTS_FILE)).unwrap();
    write_json(&dir.join(CONFIG_FILE), &config).unwrap();
    load_model(dir, &device).expect("the untouched folder loads");
    save_safetensors(&model, &dir.join(SAFETENSORS_FILE)).unwrap();
    (
        std::fs::read(dir.join(WEIGHTS_FILE)).unwrap(),
        std::fs::read(dir.join(SAFETENSORS_FILE)).unwrap(),
        std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap(),
    )
}

/// Truncation, scattered byte flips, header flips or random bytes, by `case`.
fn mutate(bytes: &[u8], case: usize, rng: &mut SplitMix64) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match case % 4 {
        0 => b.truncate(rng.below(b.len())),
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(b.len());
                b[i] = rng.next_u64() as u8;
            }
        }
        2 => {
            // Header region: lengths, offsets, names.
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len().min(256));
                b[i] = rng.next_u64() as u8;
            }
        }
        _ => b = (0..rng.below(2048)).map(|_| rng.next_u64() as u8).collect(),
    }
    b
}

#[test]
fn mutated_weights_and_configs_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (burnpack, safetensors, config) = model_dir(dir);
    let device = Device::flex();
    let mut rng = SplitMix64::new(99);
    let (mut weight_cases, mut weight_errors) = (0, 0);
    // load_model reads model.bpk when present, else model.safetensors.
    for (file, good) in [(WEIGHTS_FILE, &burnpack), (SAFETENSORS_FILE, &safetensors)] {
        if file == SAFETENSORS_FILE {
            std::fs::remove_file(dir.join(WEIGHTS_FILE)).unwrap();
        }
        for case in 0..400 {
            std::fs::write(dir.join(file), mutate(good, case, &mut rng)).unwrap();
            let r = std::panic::catch_unwind(|| load_model(dir, &device).map(|_| ()));
            assert!(r.is_ok(), "{file} case {case} panicked");
            weight_errors += usize::from(r.unwrap().is_err());
            weight_cases += 1;
        }
        std::fs::write(dir.join(file), good).unwrap();
        load_model(dir, &device).expect("the restored file loads");
    }

    let (mut config_cases, mut config_errors) = (0, 0);
    let chars: Vec<char> = "{}[]\":,0123456789-.eE abcdefghijklmnopqrstuvwxyz_"
        .chars()
        .collect();
    for case in 0..1000 {
        let mut c: Vec<char> = config.chars().collect();
        match case % 3 {
            0 => c.truncate(rng.below(c.len())),
            1 => {
                for _ in 0..1 + rng.below(6) {
                    let i = rng.below(c.len());
                    c[i] = chars[rng.below(chars.len())];
                }
            }
            _ => {
                let i = rng.below(c.len());
                c.remove(i);
            }
        }
        std::fs::write(dir.join(CONFIG_FILE), c.iter().collect::<String>()).unwrap();
        let r = std::panic::catch_unwind(|| read_spec(dir).map(|_| ()));
        assert!(r.is_ok(), "config case {case} panicked");
        config_errors += usize::from(r.unwrap().is_err());
        config_cases += 1;
    }
    eprintln!(
        "fuzzed {weight_cases} weights files ({weight_errors} refused) and {config_cases} configs \
         ({config_errors} refused): no panic"
    );
    assert!(weight_errors > weight_cases / 2 && config_errors > config_cases / 2);
}

#[test]
fn weights_holding_nan_are_refused_naming_the_tensor() {
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::Tensor;

    /// Sets every value of the output layer's bias to NaN.
    struct Poison(Vec<String>);
    impl ModuleMapper for Poison {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self
                .0
                .ends_with(&["output".to_string(), "bias".to_string()])
            {
                param.map(|t| t.mul_scalar(f32::NAN))
            } else {
                param
            }
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    model_dir(dir);
    let spec = read_spec(dir).unwrap();
    let device = Device::flex();
    let model = Classifier::new(&spec.model, &device)
        .unwrap()
        .map(&mut Poison(Vec::new()));
    save_weights(&model, &dir.join(WEIGHTS_FILE)).unwrap();
    let err = load_model(dir, &device).unwrap_err();
    let cause = std::error::Error::source(&err).map(|c| c.to_string());
    assert_eq!(
        cause.as_deref(),
        Some("tensor Mlp.output.bias holds NaN or infinite values"),
        "{err:?}"
    );
}

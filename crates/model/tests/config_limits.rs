//! A model config is refused before anything is allocated when it cannot work: image sizes
//! outside the one shared range, and models whose weights or activations would not fit in
//! memory. Sizes are computed in saturating arithmetic, so absurd values never overflow.

use burn::{module::Module, tensor::Device};
use catdog_model::{
    Classifier, CnnConfig, ConfigError, MlpConfig, ModelConfig, ResNetConfig, IMAGE_SIZE,
    MAX_BATCH_ACTIVATIONS, MAX_PARAMETERS,
};

fn mlp(image_size: usize, hidden: Vec<usize>) -> ModelConfig {
    ModelConfig::Mlp(MlpConfig {
        image_size,
        hidden,
        ..Default::default()
    })
}

fn cnn(image_size: usize) -> ModelConfig {
    ModelConfig::Cnn(CnnConfig {
        image_size,
        ..Default::default()
    })
}

#[test]
fn parameter_count_matches_the_built_model() {
    let device = Device::flex();
    let configs = [
        mlp(16, vec![32, 8]),
        mlp(8, vec![]),
        cnn(48),
        ModelConfig::Cnn(CnnConfig {
            num_classes: 5,
            image_size: 16,
            channels: vec![4, 6],
            convs_per_block: 2,
            hidden: Some(7),
            dropout: 0.0,
        }),
        ModelConfig::ResNet(Default::default()),
        ModelConfig::ResNet(ResNetConfig {
            num_classes: 4,
            image_size: 20,
            stem: 3,
            channels: vec![5, 7, 9],
            residual: vec![2, 0, 1],
            dropout: 0.1,
        }),
    ];
    for config in configs {
        let model = Classifier::new(&config, &device).unwrap();
        assert_eq!(config.parameter_count(), model.num_params(), "{config:?}");
    }
}

#[test]
fn image_size_has_one_range() {
    for size in [
        0,
        1,
        IMAGE_SIZE.start() - 1,
        IMAGE_SIZE.end() + 1,
        1_000_000,
    ] {
        for config in [mlp(size, vec![8]), cnn(size)] {
            assert_eq!(config.validate(), Err(ConfigError::ImageSize(size)));
        }
    }
    assert_eq!(mlp(*IMAGE_SIZE.start(), vec![8]).validate(), Ok(()));
    assert_eq!(mlp(*IMAGE_SIZE.end(), vec![8]).validate(), Ok(()));
    assert!(ConfigError::ImageSize(0)
        .to_string()
        .contains("between 8 and 1024"));
}

#[test]
fn models_too_big_for_memory_are_refused_naming_the_layer() {
    // The default MLP on 1024x1024 inputs: 1.6 billion weights in its first layer.
    let e = mlp(1024, vec![512, 256]).validate().unwrap_err();
    let ConfigError::TooManyParameters {
        params,
        layer,
        layer_params,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    let first = 1024 * 1024 * 3 * 512 + 512;
    assert_eq!(*layer_params, first);
    assert_eq!(*params, first + 512 * 256 + 256 + 256 * 2 + 2);
    assert!(*params > MAX_PARAMETERS);
    assert!(layer.starts_with("hidden[0]"), "{layer}");
    let message = e.to_string();
    assert!(
        message.contains("hidden[0]") && message.contains("image_size"),
        "{message}"
    );

    // A typo'd width, and values that would overflow a plain multiplication.
    let e = mlp(48, vec![1_000_000_000]).validate().unwrap_err();
    assert!(e.to_string().contains("hidden[0]"), "{e}");
    let e = mlp(48, vec![usize::MAX, usize::MAX])
        .validate()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::TooManyParameters {
                params: usize::MAX,
                ..
            }
        ),
        "saturates instead of overflowing: {e:?}"
    );
    let huge = ModelConfig::Cnn(CnnConfig {
        image_size: 64,
        channels: vec![usize::MAX],
        convs_per_block: usize::MAX,
        hidden: Some(usize::MAX),
        ..Default::default()
    });
    let e = huge.validate().unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::TooManyParameters {
                params: usize::MAX,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("channels[0]"),
        "the first largest layer: {e}"
    );

    // The default CNN on 1024x1024 inputs: few weights, but gigabytes of activations per image.
    let e = cnn(1024).validate().unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::TooManyActivations {
                image_size: 1024,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("image_size"), "{e}");
}

#[test]
fn the_defaults_fit_with_room_to_spare() {
    for config in [
        mlp(48, vec![512, 256]),
        mlp(64, vec![512, 256]),
        cnn(48),
        cnn(128),
    ] {
        assert_eq!(config.validate(), Ok(()), "{config:?}");
        assert!(config.max_batch_size() >= 64, "{config:?}");
        assert!(config.max_batch_size() * config.activations_per_image() <= MAX_BATCH_ACTIVATIONS);
    }
}

#[test]
fn resnet_configs_that_cannot_be_built_are_refused() {
    let base = ResNetConfig {
        image_size: 16,
        ..Default::default()
    };
    let refused = |c: ResNetConfig| ModelConfig::ResNet(c).validate().unwrap_err().to_string();
    assert_eq!(
        refused(ResNetConfig {
            residual: vec![1, 0],
            ..base.clone()
        }),
        "residual has 2 entries but channels has 3: give one residual block count per stage"
    );
    assert!(refused(ResNetConfig {
        stem: 0,
        ..base.clone()
    })
    .contains("must not contain 0"));
    assert_eq!(
        refused(ResNetConfig {
            channels: vec![8; 5],
            residual: vec![0; 5],
            ..base.clone()
        }),
        "5 pooling blocks shrink a 16x16 image below 1 pixel"
    );
    assert!(refused(ResNetConfig {
        channels: vec![],
        residual: vec![],
        ..base
    })
    .contains("at least one block"));
}

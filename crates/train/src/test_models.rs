//! Small models for the crate's unit tests.

use burn::tensor::Device;
use catdog_model::{Architecture, Classifier, CnnArch};

/// A two-block CNN for 8x8 images and two classes, on Flex with autodiff, initialised from
/// `seed`.
pub(crate) fn tiny_cnn(seed: u64) -> Classifier {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let arch = Architecture::Cnn(CnnArch {
        channels: vec![4, 8],
        ..Default::default()
    });
    Classifier::new(&arch.with_shape(8, 2), &device).unwrap()
}

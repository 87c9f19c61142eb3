//! catdog's faster formulations are the same functions as burn's modules: same outputs, same
//! gradients, same running statistics.

use burn::{
    module::Module,
    nn::{conv::Conv2dConfig, BatchNormConfig, PaddingConfig2d},
    tensor::{Device, Distribution, Tensor, TensorData, Tolerance},
};
use catdog_model::{batch_norm, conv3x3_as_matmul};

fn check(channels_in: usize, bias: bool) {
    let device = Device::flex().autodiff();
    device.seed(5);
    let conv = Conv2dConfig::new([channels_in, 6], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .init(&device);
    let x =
        Tensor::<4>::random([2, channels_in, 7, 5], Distribution::Default, &device).require_grad();
    // A weighted sum, so every output position gets its own gradient.
    let mix = Tensor::<4>::random([2, 6, 7, 5], Distribution::Default, &device);

    let direct = conv.forward(x.clone());
    let via = conv3x3_as_matmul(&conv, x.clone());
    let tol = Tolerance::<f32>::absolute(1e-5);
    via.to_data()
        .assert_approx_eq::<f32>(&direct.to_data(), tol);

    let g_direct = (direct * mix.clone()).sum().backward();
    let g_via = (via * mix).sum().backward();
    let weight = conv.weight.val();
    weight
        .grad(&g_via)
        .unwrap()
        .to_data()
        .assert_approx_eq::<f32>(&weight.grad(&g_direct).unwrap().to_data(), tol);
    x.grad(&g_via)
        .unwrap()
        .to_data()
        .assert_approx_eq::<f32>(&x.grad(&g_direct).unwrap().to_data(), tol);
    if let Some(b) = &conv.bias {
        let b = b.val();
        b.grad(&g_via)
            .unwrap()
            .to_data()
            .assert_approx_eq::<f32>(&b.grad(&g_direct).unwrap().to_data(), tol);
    }
}

#[test]
fn matches_conv2d_for_rgb_input() {
    check(3, false);
}

#[test]
fn matches_conv2d_with_bias_and_more_channels() {
    check(8, true);
}

fn assert_close(a: TensorData, b: TensorData) {
    a.assert_approx_eq::<f32>(&b, Tolerance::<f32>::absolute(1e-4));
}

#[test]
fn batch_norm_matches_burns_in_training_and_inference() {
    let device = Device::flex().autodiff();
    device.seed(9);
    // Two separate layers (a clone would share its running statistics), equal at initialisation.
    let ours = BatchNormConfig::new(4).init(&device);
    let theirs = BatchNormConfig::new(4).init(&device);
    let x =
        Tensor::<4>::random([3, 4, 5, 6], Distribution::Normal(2.0, 3.0), &device).require_grad();
    let mix = Tensor::<4>::random([3, 4, 5, 6], Distribution::Default, &device);

    let a = batch_norm(&ours, x.clone());
    let b = theirs.forward(x.clone());
    assert_close(a.to_data(), b.to_data());
    let ga = (a * mix.clone()).sum().backward();
    let gb = (b * mix).sum().backward();
    assert_close(
        x.grad(&ga).unwrap().to_data(),
        x.grad(&gb).unwrap().to_data(),
    );
    for (p, q) in [(&ours.gamma, &theirs.gamma), (&ours.beta, &theirs.beta)] {
        assert_close(
            p.val().grad(&ga).unwrap().to_data(),
            q.val().grad(&gb).unwrap().to_data(),
        );
    }
    // Both updated their running statistics the same way.
    assert_close(
        ours.running_mean.value_sync().to_data(),
        theirs.running_mean.value_sync().to_data(),
    );
    assert_close(
        ours.running_var.value_sync().to_data(),
        theirs.running_var.value_sync().to_data(),
    );
    let moved: f32 = ours.running_mean.value_sync().abs().sum().into_scalar();
    assert!(
        moved > 0.1,
        "the running mean moved towards the batch mean of ~2"
    );

    // Inference mode uses the running statistics, like BatchNorm.
    let (ours, theirs) = (ours.valid(), theirs.valid());
    let x = Tensor::<4>::random([2, 4, 3, 3], Distribution::Default, &Device::flex());
    assert_close(
        batch_norm(&ours, x.clone()).to_data(),
        theirs.forward(x).to_data(),
    );
}

#[test]
#[should_panic(expected = "3x3, stride-1, padding-1")]
fn other_convolutions_are_refused() {
    let device = Device::flex();
    let conv = Conv2dConfig::new([3, 4], [3, 3])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let x = Tensor::<4>::zeros([1, 3, 8, 8], &device);
    let _ = conv3x3_as_matmul(&conv, x);
}

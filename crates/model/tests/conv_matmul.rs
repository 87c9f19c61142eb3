//! The matmul form of the input layer's convolution is the same function as burn's Conv2d:
//! same outputs, same weight and input gradients.

use burn::{
    nn::{conv::Conv2dConfig, PaddingConfig2d},
    tensor::{Device, Distribution, Tensor, Tolerance},
};
use catdog_model::conv3x3_as_matmul;

fn check(channels_in: usize, bias: bool) {
    let device = Device::flex().autodiff();
    device.seed(5);
    let conv = Conv2dConfig::new([channels_in, 6], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .init(&device);
    let x = Tensor::<4>::random([2, channels_in, 7, 5], Distribution::Default, &device).require_grad();
    // A weighted sum, so every output position gets its own gradient.
    let mix = Tensor::<4>::random([2, 6, 7, 5], Distribution::Default, &device);

    let direct = conv.forward(x.clone());
    let via = conv3x3_as_matmul(&conv, x.clone());
    let tol = Tolerance::<f32>::absolute(1e-5);
    via.to_data().assert_approx_eq::<f32>(&direct.to_data(), tol);

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

//! The Flex 3x3 convolution op equals burn's convolution in values and in both gradients.

use burn::{
    module::Module,
    nn::{
        conv::{Conv2d, Conv2dConfig},
        PaddingConfig2d,
    },
    tensor::{Device, Distribution, Tensor},
};
use catdog_model::conv3x3;

mod common;

use common::{assert_close, in_pools, values, varied};

fn conv(cin: usize, cout: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// Output, dx and dW of `conv` on `x` through our op or burn's, with a weighted-sum loss (plus,
/// with `reuse`, a second use of `x`).
fn run(conv: &Conv2d, x: &Tensor<4>, ours: bool, reuse: bool) -> [Vec<f32>; 3] {
    let x = x.clone().require_grad();
    let y = if ours {
        assert!(conv3x3::applies(conv, &x));
        conv3x3::conv3x3(conv, x.clone())
    } else {
        conv.forward(x.clone())
    };
    let mut loss = (y.clone() * varied(y.dims(), &y.device())).sum();
    if reuse {
        loss = loss + x.clone().powi_scalar(2).sum();
    }
    let grads = loss.backward();
    [
        values(y),
        values(x.grad(&grads).unwrap()),
        values(conv.weight.grad(&grads).unwrap()),
    ]
}

fn check(shape: [usize; 4], cout: usize, reuse: bool) {
    let device = Device::flex().autodiff();
    device.seed(shape.iter().product::<usize>() as u64 + cout as u64);
    let c = conv(shape[1], cout, &device);
    let x = Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let ours = run(&c, &x, true, reuse);
    let burns = run(&c, &x, false, reuse);
    for (name, (a, b)) in ["output", "dx", "dW"].iter().zip(ours.iter().zip(&burns)) {
        assert_close(&format!("{name} {shape:?} -> {cout}"), a, b);
    }
    // Inference (no autodiff) gives the same values.
    let plain = Device::flex();
    let (c, x) = (c.valid(), Tensor::<4>::from_data(x.into_data(), &plain));
    assert_close(
        "inference output",
        &values(conv3x3::conv3x3(&c, x.clone())),
        &values(c.forward(x)),
    );
}

#[test]
fn equals_burns_convolution_on_odd_shapes_and_batch_one() {
    in_pools(|| {
        check([1, 5, 1, 1], 3, false);
        check([1, 8, 7, 5], 6, false);
        check([3, 6, 9, 4], 4, false);
        // More images than one chunk per thread, and a ragged last chunk.
        check([19, 5, 6, 6], 7, false);
    });
}

#[test]
fn images_multiplied_one_at_a_time_and_a_chunk_at_a_time_agree_with_burn() {
    // Just below and at the size where each image gets its own gemm, in ragged chunks.
    let side = (conv3x3::GROUP_BELOW_PIXELS as f64).sqrt() as usize;
    in_pools(|| {
        check([11, 3, side - 1, side], 5, false);
        check([11, 3, side, side], 5, false);
        check([3, 2, side + 1, side + 2], 4, true);
    });
}

#[test]
fn winograd_blocks_that_end_inside_an_image_equal_burns_convolution() {
    // The ResNet's 32 -> 64 layer at 56x56: 28 rows of 29 tiles an image, more than one
    // cache-sized block holds, so a block boundary falls inside each image.
    in_pools(|| check([2, 32, 56, 56], 64, false));
}

#[test]
fn empty_inputs_give_empty_or_zero_results_without_a_panic() {
    let device = Device::flex();
    for (n, h, w) in [(0, 5, 5), (2, 0, 4), (2, 4, 0)] {
        let c = conv(3, 4, &device);
        let x = Tensor::<4>::zeros([n, 3, h, w], &device);
        let y = conv3x3::conv3x3(&c, x);
        assert_eq!(y.dims(), [n, 4, h, w]);
    }
    // The gradients of an empty batch: an empty dx, a zero dW.
    let ad = Device::flex().autodiff();
    let c = conv(3, 4, &ad);
    let x = Tensor::<4>::zeros([0, 3, 6, 6], &ad).require_grad();
    let grads = conv3x3::conv3x3(&c, x.clone()).sum().backward();
    assert_eq!(x.grad(&grads).map(|g| g.dims()), Some([0, 3, 6, 6]));
    let dw = values(c.weight.grad(&grads).unwrap());
    assert!(dw.iter().all(|&v| v == 0.0), "{dw:?}");
}

#[test]
#[should_panic(
    expected = "conv3x3: an input of shape [1, 5, 6, 6] needs a weight of shape [out, 5, 3, 3], not [4, 3, 3, 3]"
)]
fn an_input_with_the_wrong_channel_count_is_refused_naming_both_shapes() {
    let device = Device::flex();
    let c = conv(3, 4, &device);
    let _ = conv3x3::conv3x3(&c, Tensor::<4>::zeros([1, 5, 6, 6], &device));
}

#[test]
fn winograd_layers_equal_burns_convolution() {
    use catdog_model::winograd::{pays, MIN_DEPTH, MIN_SIDE};
    // Forward and input gradient by F(2x2, 3x3): odd and even sides, a ragged last chunk,
    // batch 1, and the input feeding a second op.
    let (depth, side) = (MIN_DEPTH, MIN_SIDE);
    assert!(pays(depth, [side, side + 1]) && !pays(depth - 1, [side, side]));
    in_pools(|| {
        check([1, depth, side, side + 1], depth, false);
        check([5, depth, side + 1, side], depth + 3, true);
        // Winograd forward, im2col input gradient (fewer output channels than the depth).
        check([2, depth, side, side], 3, false);
    });
}

#[test]
fn gradients_add_when_the_input_also_feeds_another_op() {
    check([2, 4, 5, 6], 3, true);
}

#[test]
fn only_3x3_stride_1_padding_1_convolutions_without_bias_apply() {
    let device = Device::flex();
    let x = Tensor::<4>::zeros([1, 4, 8, 8], &device);
    assert!(conv3x3::applies(&conv(4, 4, &device), &x));
    let biased = Conv2dConfig::new([4, 4], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    assert!(!conv3x3::applies(&biased, &x));
    let strided = Conv2dConfig::new([4, 4], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_stride([2, 2])
        .with_bias(false)
        .init(&device);
    assert!(!conv3x3::applies(&strided, &x));
    #[cfg(feature = "ndarray")]
    {
        #[allow(deprecated)]
        let other = Tensor::<4>::zeros([1, 4, 8, 8], &Device::ndarray());
        assert!(!conv3x3::applies(&conv(4, 4, &device), &other));
    }
}

#[test]
fn the_rgb_input_layer_computes_only_the_weight_gradient() {
    // The model's first layer: 3 channels, images that need no gradient (burn then gives the op
    // no input node, and it skips the input gradient).
    let device = Device::flex().autodiff();
    device.seed(3);
    let c = conv(3, 8, &device);
    let x = Tensor::<4>::random([5, 3, 12, 10], Distribution::Normal(0.0, 1.0), &device);
    let outcome = |ours: bool| {
        let y = if ours {
            conv3x3::conv3x3(&c, x.clone())
        } else {
            c.forward(x.clone())
        };
        let grads = (y.clone() * y.clone().cos()).sum().backward();
        assert!(x.grad(&grads).is_none(), "the images got a gradient");
        (values(y), values(c.weight.grad(&grads).unwrap()))
    };
    let (ours, burns) = (outcome(true), outcome(false));
    assert_close("output", &ours.0, &burns.0);
    assert_close("dW", &ours.1, &burns.1);
}

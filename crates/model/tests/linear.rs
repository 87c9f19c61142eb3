//! The Flex `Linear` op equals burn's `Linear` in values and in every gradient.

use burn::{
    module::Module,
    nn::{Linear, LinearConfig},
    tensor::{Device, Distribution, Tensor},
};
use catdog_model::linear;

mod common;

use common::{assert_close, in_pools, values, varied};

/// Output, dx, dW and db of `layer` on `x` through our op or burn's, with a weighted-sum loss
/// (plus, with `reuse`, a second use of `x`).
fn run(layer: &Linear, x: &Tensor<2>, ours: bool, reuse: bool) -> [Vec<f32>; 4] {
    let x = x.clone().require_grad();
    let y = if ours {
        assert!(linear::applies(layer, &x));
        linear::linear(layer, x.clone())
    } else {
        layer.forward(x.clone())
    };
    let mut loss = (y.clone() * varied(y.dims(), &y.device())).sum();
    if reuse {
        loss = loss + x.clone().powi_scalar(2).sum();
    }
    let grads = loss.backward();
    let bias = layer.bias.as_ref().expect("a bias");
    [
        values(y),
        values(x.grad(&grads).unwrap()),
        values(layer.weight.grad(&grads).unwrap()),
        values(bias.grad(&grads).unwrap()),
    ]
}

fn check([m, k]: [usize; 2], n: usize, reuse: bool) {
    let device = Device::flex().autodiff();
    device.seed((m * 1000 + k * 10 + n) as u64);
    let layer = LinearConfig::new(k, n).init(&device);
    let x = Tensor::random([m, k], Distribution::Normal(0.0, 1.0), &device);
    let ours = run(&layer, &x, true, reuse);
    let burns = run(&layer, &x, false, reuse);
    for (name, (a, b)) in ["output", "dx", "dW", "db"]
        .iter()
        .zip(ours.iter().zip(&burns))
    {
        assert_close(&format!("{name} [{m}, {k}] -> {n}"), a, b);
    }
    // Inference (no autodiff) gives the same values.
    let plain = Device::flex();
    let (layer, x) = (layer.valid(), Tensor::<2>::from_data(x.into_data(), &plain));
    assert_close(
        "inference output",
        &values(linear::linear(&layer, x.clone())),
        &values(layer.forward(x)),
    );
}

#[test]
fn equals_burns_linear_on_odd_shapes_and_batch_one() {
    check([1, 7], 3, false);
    check([5, 13], 2, false);
    check([3, 1], 9, false);
}

#[test]
fn equals_burns_linear_when_the_product_is_split_across_threads() {
    in_pools(|| {
        // Wide and short (the MLP's first layer, split by columns; the input gradient too) ...
        check([8, 700], 530, false);
        // ... and tall (split by rows), with blocks that do not divide evenly.
        check([611, 300], 37, false);
    });
}

#[test]
#[should_panic(expected = "linear: an input of shape [2, 6] needs a weight of shape [6, out]")]
fn an_input_with_the_wrong_width_is_refused_naming_both_shapes() {
    let device = Device::flex();
    let layer = LinearConfig::new(5, 3).init(&device);
    let _ = linear::linear(&layer, Tensor::<2>::zeros([2, 6], &device));
}

#[test]
fn gradients_add_when_the_input_also_feeds_another_op() {
    check([6, 40], 11, true);
}

#[test]
fn only_f32_flex_layers_with_a_bias_apply() {
    let device = Device::flex();
    let x = Tensor::<2>::zeros([2, 4], &device);
    assert!(linear::applies(&LinearConfig::new(4, 3).init(&device), &x));
    let unbiased = LinearConfig::new(4, 3).with_bias(false).init(&device);
    assert!(!linear::applies(&unbiased, &x));
    // It still computes burn's result there.
    assert_close(
        "unbiased",
        &values(linear::linear(&unbiased, x.clone())),
        &values(unbiased.forward(x)),
    );
    #[cfg(feature = "ndarray")]
    {
        #[allow(deprecated)]
        let other = Tensor::<2>::zeros([2, 4], &Device::ndarray());
        assert!(!linear::applies(
            &LinearConfig::new(4, 3).init(&device),
            &other
        ));
    }
}

#[test]
fn the_first_layer_computes_no_gradient_for_the_images() {
    let device = Device::flex().autodiff();
    device.seed(4);
    let layer = LinearConfig::new(300, 40).init(&device);
    let x = Tensor::<2>::random([9, 300], Distribution::Normal(0.0, 1.0), &device);
    let outcome = |ours: bool| {
        let y = if ours {
            linear::linear(&layer, x.clone())
        } else {
            layer.forward(x.clone())
        };
        let grads = (y.clone() * y.clone().cos()).sum().backward();
        assert!(x.grad(&grads).is_none(), "the images got a gradient");
        (values(y), values(layer.weight.grad(&grads).unwrap()))
    };
    let (ours, burns) = (outcome(true), outcome(false));
    assert_close("output", &ours.0, &burns.0);
    assert_close("dW", &ours.1, &burns.1);
}

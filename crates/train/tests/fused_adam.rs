//! The fused Adam/AdamW step equals burn's optimisers bit for bit (parameters and moments; a
//! moment burn leaves denormal is 0 here), keeps their state format, and never writes into a
//! buffer it does not own.

use burn::{
    module::{Module, Param},
    nn::{Linear, LinearConfig},
    optim::{
        AdamConfig, AdamState, AdamWConfig, AdamWState, GradientsParams, ModuleOptimizer, Optimizer,
    },
    tensor::{Device, Distribution, Tensor, TensorData},
};
use catdog_train::{
    fused_adam::{FusedAdam, FusedAdamW},
    OptimConfig, OptimizerKind,
};

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().iter::<f32>().collect()
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Both moments of an Adam or AdamW state.
trait Moments<const D: usize> {
    fn moments(&self) -> [Tensor<D>; 2];
}

impl<const D: usize> Moments<D> for AdamState<D> {
    fn moments(&self) -> [Tensor<D>; 2] {
        [
            self.momentum.moment_1.clone(),
            self.momentum.moment_2.clone(),
        ]
    }
}

impl<const D: usize> Moments<D> for AdamWState<D> {
    fn moments(&self) -> [Tensor<D>; 2] {
        [
            self.momentum.moment_1.clone(),
            self.momentum.moment_2.clone(),
        ]
    }
}

/// Five steps of `ours` and `burns` on the same tensor and gradients (normal values times
/// `grad_scale`): the same parameters after each, to the bit, and the same moments, except that
/// ours stores 0 where burn's is denormal (and differs by less than the smallest normal float
/// where burn's started from a denormal).
fn same_steps<const D: usize, S, A, B>(
    ours: &A,
    burns: &B,
    shape: [usize; D],
    grad_scale: f32,
    device: &Device,
) where
    S: Moments<D> + Clone + Send + 'static,
    A: Optimizer<State<D> = S>,
    B: Optimizer<State<D> = S>,
{
    device.seed(7);
    let start = random(shape, device);
    let (mut a, mut b) = (start.clone(), start);
    let (mut sa, mut sb) = (None::<S>, None::<S>);
    for step in 0..5 {
        let grad = random(shape, device).mul_scalar(grad_scale * (step + 1) as f32);
        let lr = 1e-2 / (step + 1) as f64;
        let (na, nsa) = ours.step(lr, a, grad.clone(), sa);
        let (nb, nsb) = burns.step(lr, b, grad, sb);
        assert_eq!(
            values(&na),
            values(&nb),
            "step {step}, shape {shape:?}, gradients x {grad_scale}: parameters differ"
        );
        let (ma, mb) = (
            nsa.as_ref().unwrap().moments(),
            nsb.as_ref().unwrap().moments(),
        );
        for (which, (ours, burns)) in ma.iter().zip(&mb).enumerate() {
            for (i, (&o, &b)) in values(ours).iter().zip(&values(burns)).enumerate() {
                // Bit for bit, but for what flushing took away: a denormal is 0 here, and the
                // moments computed after a flush differ by at most the flushed amounts, each
                // below the smallest normal float and decaying by beta a step.
                let beta = [0.9f32, 0.999][which];
                let same = if b.abs() < 1e-30 {
                    !o.is_subnormal() && (o - b).abs() <= f32::MIN_POSITIVE / (1.0 - beta)
                } else {
                    o.to_bits() == b.to_bits()
                };
                assert!(
                    same,
                    "step {step}, moment {}, element {i}: {o:e}, burn's {b:e}",
                    which + 1
                );
            }
        }
        (a, b, sa, sb) = (na, nb, nsa, nsb);
    }
}

#[test]
fn adamw_equals_burns_adamw_bit_for_bit() {
    let device = Device::flex();
    for wd in [0.0, 5e-4, 0.1] {
        let ours = FusedAdamW::new(wd);
        let burns = AdamWConfig::new().with_weight_decay(wd).build();
        same_steps(&ours, &burns, [1], 0.1, &device);
        same_steps(&ours, &burns, [7, 3], 0.1, &device);
        // Several tasks of the parallel split, and a ragged last one.
        same_steps(&ours, &burns, [3, 40_001], 0.1, &device);
        same_steps(&ours, &burns, [2, 3, 5, 7], 0.1, &device);
    }
}

#[test]
fn adam_equals_burns_adam_bit_for_bit() {
    let device = Device::flex();
    for wd in [0.0f32, 5e-4] {
        let ours = FusedAdam::new(wd);
        let burns = AdamConfig::new()
            .with_weight_decay((wd > 0.0).then(|| burn::optim::decay::WeightDecayConfig::new(wd)))
            .build();
        same_steps(&ours, &burns, [5], 0.1, &device);
        same_steps(&ours, &burns, [70_001], 0.1, &device);
    }
}

#[test]
fn denormal_moments_are_stored_as_zero_and_change_no_update() {
    let device = Device::flex();
    // Gradients of 1e-20 make the second moment denormal (1e-43), of 1e-38 the first as well.
    for scale in [1e-20f32, 1e-38] {
        same_steps(
            &FusedAdamW::new(5e-4),
            &AdamWConfig::new().with_weight_decay(5e-4).build(),
            [3, 40_001],
            scale,
            &device,
        );
        same_steps(
            &FusedAdam::new(0.0),
            &AdamConfig::new().build(),
            [9, 7],
            scale,
            &device,
        );
    }
    // ... and burn's do hold denormals there (so the test above compares something).
    let (_, state) = AdamWConfig::new().build().step(
        1e-2,
        Tensor::<1>::ones([4], &device),
        Tensor::<1>::ones([4], &device).mul_scalar(1e-20),
        None,
    );
    let v = values(&state.unwrap().momentum.moment_2);
    assert!(v.iter().all(|x| x.is_subnormal()), "{v:?}");
}

#[cfg(feature = "ndarray")]
#[test]
fn other_backends_use_burns_optimiser() {
    #[allow(deprecated)]
    let device = Device::ndarray();
    same_steps(
        &FusedAdamW::new(5e-4),
        &AdamWConfig::new().with_weight_decay(5e-4).build(),
        [4, 9],
        0.1,
        &device,
    );
}

#[test]
fn a_shared_parameter_or_a_strided_gradient_is_never_written_in_place() {
    let device = Device::flex();
    device.seed(3);
    let param = random([6, 4], &device);
    let kept = values(&param);
    // A transposed view: not contiguous.
    let grad = random([4, 6], &device).transpose();
    let grad_kept = values(&grad);
    let ours = FusedAdamW::new(1e-2);
    let burns = AdamWConfig::new().with_weight_decay(1e-2).build();
    let (a, state) = ours.step(1e-2, param.clone(), grad.clone(), None);
    let (b, _) = burns.step(1e-2, param.clone(), grad.clone(), None);
    assert_eq!(values(&a), values(&b));
    assert_eq!(values(&param), kept, "the caller's tensor changed");
    assert_eq!(values(&grad), grad_kept, "the gradient changed");
    // The stored moments are not the caller's either: a second step from a cloned state leaves
    // the first state as it was.
    let state = state.unwrap();
    let m_kept = values(&state.momentum.moment_1);
    let _ = ours.step(1e-2, a, grad, Some(state.clone()));
    assert_eq!(values(&state.momentum.moment_1), m_kept);
}

/// The same Linear layer every call, whatever other tests do to the device's random state.
fn linear(device: &Device) -> Linear {
    let mut layer = LinearConfig::new(33, 5).init(device);
    let w: Vec<f32> = (0..33 * 5).map(|i| (i as f32 * 0.61).cos() * 0.2).collect();
    layer.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [33, 5]), device));
    let b: Vec<f32> = (0..5).map(|i| 0.1 * i as f32 - 0.2).collect();
    layer.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b, [5]),
        device,
    )));
    layer
}

/// Three training steps of a Linear layer on a fixed batch with `optim`.
fn train(mut model: Linear, optim: &mut ModuleOptimizer, device: &Device, steps: usize) -> Linear {
    let x = Tensor::<2>::from_data(
        TensorData::new(
            (0..4 * 33).map(|i| (i as f32 * 0.37).sin()).collect(),
            [4, 33],
        ),
        device,
    );
    for _ in 0..steps {
        let loss = model.forward(x.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    model
}

fn weights(model: &Linear) -> Vec<f32> {
    values(&model.weight.val())
        .into_iter()
        .chain(values(&model.bias.as_ref().unwrap().val()))
        .collect()
}

#[test]
fn module_training_and_checkpoints_match_burns_optimiser() {
    let device = Device::flex().autodiff();
    for kind in [OptimizerKind::AdamW, OptimizerKind::Adam] {
        let config = OptimConfig {
            optimizer: kind,
            weight_decay: 5e-4,
            ..Default::default()
        };
        let mut fused = config.build_with(true);
        let mut plain = config.build_with(false);
        let a = train(linear(&device), &mut fused, &device, 3);
        let b = train(linear(&device), &mut plain, &device, 3);
        assert_eq!(weights(&a), weights(&b), "{kind:?}");

        // The fused optimiser's state is burn's: it resumes in burn's optimiser, and back.
        let record = fused.to_record();
        let mut resumed_plain = config.build_with(false).load_record(record);
        let record = plain.to_record();
        let mut resumed_fused = config.build_with(true).load_record(record);
        let a = train(a.clone(), &mut resumed_plain, &device, 2);
        let b = train(b.clone(), &mut resumed_fused, &device, 2);
        assert_eq!(weights(&a), weights(&b), "{kind:?} after resuming");
        // And the result moved: the steps did something.
        assert_ne!(weights(&a), weights(&linear(&device)));
    }
}

#[test]
fn the_model_keeps_learning_with_the_fused_step() {
    let device = Device::flex().autodiff();
    let model = linear(&device);
    let x = Tensor::<2>::from_data(
        TensorData::new(
            (0..4 * 33).map(|i| (i as f32 * 0.37).sin()).collect(),
            [4, 33],
        ),
        &device,
    );
    let before: f32 = model.forward(x.clone()).powi_scalar(2).mean().into_scalar();
    let mut optim = OptimConfig::default().build();
    let model = train(model, &mut optim, &device, 20);
    let after: f32 = model.forward(x).powi_scalar(2).mean().into_scalar();
    assert!(after < 0.5 * before, "loss {before} -> {after}");
    let _ = model.valid();
}

//! Cross-entropy from raw logits: stable, exact, and with the textbook gradient.

use burn::tensor::{activation::softmax, Device, Int, Tensor, TensorData};
use catdog_data::SplitMix64;
use catdog_train::{loss::cross_entropy_row, Loss};

fn logits(values: Vec<f32>, rows: usize, device: &Device) -> Tensor<2> {
    let cols = values.len() / rows;
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

fn targets(values: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data().iter::<f32>().next().unwrap() as f64
}

#[test]
fn huge_logits_stay_finite() {
    let device = Device::flex();
    let loss = Loss::new(0.0, &device);
    let right = scalar(loss.forward(
        logits(vec![1000.0, 0.0], 1, &device),
        targets(vec![0], &device),
    ));
    let wrong = scalar(loss.forward(
        logits(vec![1000.0, 0.0], 1, &device),
        targets(vec![1], &device),
    ));
    assert!(
        right.is_finite() && right.abs() < 1e-6,
        "loss for the right class: {right}"
    );
    assert!(
        wrong.is_finite() && (wrong - 1000.0).abs() < 1e-2,
        "loss for the wrong class: {wrong}"
    );
}

/// Hand-written log-sum-exp cross-entropy, in f64.
fn reference(row: &[f32], target: usize) -> f64 {
    let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
    let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    lse - row[target] as f64
}

#[test]
fn matches_log_sum_exp_on_random_cases() {
    let device = Device::flex();
    let loss = Loss::new(0.0, &device);
    let mut rng = SplitMix64::new(7);
    for case in 0..20 {
        let (rows, cols) = (1 + rng.below(8), 2 + rng.below(5));
        let scale = [1.0, 10.0, 100.0][case % 3];
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| (rng.unit() * 2.0 - 1.0) * scale)
            .collect();
        let labels: Vec<usize> = (0..rows).map(|_| rng.below(cols)).collect();
        let expect: f64 = values
            .chunks(cols)
            .zip(&labels)
            .map(|(r, &t)| reference(r, t))
            .sum::<f64>()
            / rows as f64;
        let got = scalar(loss.forward(
            logits(values.clone(), rows, &device),
            targets(labels.iter().map(|&l| l as i64).collect(), &device),
        ));
        assert!(
            (got - expect).abs() <= 1e-5 * (1.0 + expect.abs()),
            "case {case}: {got} vs {expect}"
        );
        for (r, &t) in values.chunks(cols).zip(&labels) {
            assert!((cross_entropy_row(r, t) - reference(r, t)).abs() < 1e-9);
        }
    }
}

#[test]
fn gradient_is_softmax_minus_onehot_over_batch() {
    let device = Device::flex().autodiff();
    let loss = Loss::new(0.0, &device);
    let mut rng = SplitMix64::new(11);
    let (rows, cols) = (4, 3);
    let values: Vec<f32> = (0..rows * cols).map(|_| rng.unit() * 6.0 - 3.0).collect();
    let labels: Vec<i64> = vec![0, 2, 1, 2];
    let x = logits(values.clone(), rows, &device).require_grad();
    let grads = loss
        .forward(x.clone(), targets(labels.clone(), &device))
        .backward();
    let grad: Vec<f32> = x
        .grad(&grads)
        .expect("logits have a gradient")
        .into_data()
        .iter::<f32>()
        .collect();
    let probs: Vec<f32> = softmax(logits(values, rows, &Device::flex()), 1)
        .into_data()
        .iter::<f32>()
        .collect();
    for r in 0..rows {
        for c in 0..cols {
            let onehot = if labels[r] as usize == c { 1.0 } else { 0.0 };
            let expect = (probs[r * cols + c] - onehot) / rows as f32;
            let got = grad[r * cols + c];
            assert!(
                (got - expect).abs() < 1e-5,
                "d loss / d logit[{r},{c}] = {got}, expected {expect}"
            );
        }
    }
}

#[test]
fn label_smoothing_raises_the_loss_of_a_confident_right_answer() {
    let device = Device::flex();
    let plain = scalar(Loss::new(0.0, &device).forward(
        logits(vec![8.0, 0.0], 1, &device),
        targets(vec![0], &device),
    ));
    let smooth = scalar(Loss::new(0.1, &device).forward(
        logits(vec![8.0, 0.0], 1, &device),
        targets(vec![0], &device),
    ));
    assert!(smooth > plain + 0.1, "smoothed {smooth} vs plain {plain}");
}

#[test]
fn a_mixed_batch_weights_each_label_by_its_share() {
    let device = Device::flex();
    let loss = Loss::new(0.0, &device);
    let values = vec![2.0, -1.0, 0.5, 0.25, -3.0, 4.0];
    let mean = |rows: &[(usize, usize)], w: f64| {
        rows.iter()
            .enumerate()
            .map(|(i, &(own, partner))| {
                let row = &values[2 * i..2 * i + 2];
                w * reference(row, own) + (1.0 - w) * reference(row, partner)
            })
            .sum::<f64>()
            / rows.len() as f64
    };
    let mixed = scalar(loss.of_batch(
        logits(values.clone(), 3, &device),
        targets(vec![0, 1, 1], &device),
        Some((targets(vec![1, 1, 0], &device), 0.7)),
    ));
    let want = mean(&[(0, 1), (1, 1), (1, 0)], 0.7);
    assert!((mixed - want).abs() < 1e-5, "{mixed} against {want}");
    // No mix is the plain loss.
    let plain = scalar(loss.of_batch(
        logits(values.clone(), 3, &device),
        targets(vec![0, 1, 1], &device),
        None,
    ));
    assert!((plain - mean(&[(0, 0), (1, 1), (1, 1)], 1.0)).abs() < 1e-5);
}

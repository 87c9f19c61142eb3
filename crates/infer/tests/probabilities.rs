use burn::tensor::{Device, Tensor, TensorData};
use catdog_infer::{format_percent, format_probability};
use catdog_model::{argmax, probabilities, softmax_row, softmax_row_at};

/// The two photos of the README's motivating example, as `examples/logits_to_probs` prints them.
#[test]
fn motivating_example_numbers() {
    let device = Device::flex();
    let logits = Tensor::<2>::from_data(
        TensorData::new(vec![16.917f32, 0.772, 1.004, 0.709], [2, 2]),
        &device,
    );
    let p: Vec<f32> = probabilities(logits).into_data().iter::<f32>().collect();
    assert!(
        p[0] > 0.9999 && p[0] < 1.0 && p[1] > 0.0 && p[1] < 1e-4,
        "{p:?}"
    );
    assert_eq!(
        [format_probability(p[0]), format_probability(p[1])],
        ["0.9999", "0.0001"]
    );
    assert_eq!(
        [format_probability(p[2]), format_probability(p[3])],
        ["0.5732", "0.4268"]
    );
    assert_eq!(
        format_probability(softmax_row(&[1.004, 0.709])[0]),
        "0.5732"
    );
    assert_eq!(format_percent(p[0]), "99.9%");
    assert_eq!(format_percent(p[2]), "57.3%");
}

#[test]
fn rows_sum_to_one_even_for_huge_logits() {
    let p = softmax_row(&[1000.0, 0.0, -1000.0]);
    assert!(p.iter().all(|v| v.is_finite()));
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert_eq!(p[0], 1.0);
}

#[test]
fn argmax_takes_the_lowest_index_on_ties_and_never_a_nan() {
    assert_eq!(argmax(&[0.2, 0.7, 0.1]), 1);
    assert_eq!(argmax(&[0.4, 0.6, 0.6]), 1);
    assert_eq!(argmax(&[0.5, 0.5]), 0);
    assert_eq!(argmax(&[0.1, f32::NAN, 0.9]), 2);
    assert_eq!(argmax(&[f32::NAN, 0.9]), 0);
    assert_eq!(argmax(&[-1.0]), 0);
    assert_eq!(argmax(&[]), 0);
}

#[test]
fn temperature_scales_the_logits_before_the_softmax() {
    // softmax((1.004, 0.709) / 0.5) = softmax(2.008, 1.418): 1 / (1 + e^-0.59) = 0.6434.
    assert_eq!(
        format_probability(softmax_row_at(&[1.004, 0.709], 0.5)[0]),
        "0.6434"
    );
    // T = 2 softens: 1 / (1 + e^-0.1475) = 0.5368.
    assert_eq!(
        format_probability(softmax_row_at(&[1.004, 0.709], 2.0)[0]),
        "0.5368"
    );
    assert_eq!(softmax_row_at(&[3.0, -1.0], 1.0), softmax_row(&[3.0, -1.0]));
    // A small temperature on huge logits stays finite and keeps the argmax.
    let p = softmax_row_at(&[1000.0, 999.0, -1000.0], 0.01);
    assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
    assert_eq!(argmax(&p), 0);
}

//! Logits in, probabilities out: what a classifier's raw scores mean.
//!
//! `cargo run --release --example logits_to_probs`

use burn::tensor::{Device, Tensor, TensorData};
use catdog::infer::format_probability;
use catdog::model::probabilities;

fn main() {
    let device = Device::flex();
    let photos = [("photo 1", [16.917f32, 0.772]), ("photo 2", [1.004, 0.709])];
    let rows: Vec<f32> = photos.iter().flat_map(|(_, l)| *l).collect();
    let logits = Tensor::<2>::from_data(TensorData::new(rows, [photos.len(), 2]), &device);
    let probs: Vec<f32> = probabilities(logits).into_data().iter::<f32>().collect();
    for (i, (name, l)) in photos.iter().enumerate() {
        let (cat, dog) = (probs[2 * i], probs[2 * i + 1]);
        let verdict = if (cat - 0.5).abs() < 0.1 {
            "  <- nearly a guess"
        } else {
            ""
        };
        println!(
            "{name}: logits (cat {:.3}, dog {:.3})  ->  P(cat)={}, P(dog)={}{verdict}",
            l[0],
            l[1],
            format_probability(cat),
            format_probability(dog)
        );
    }
}

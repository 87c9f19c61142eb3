use crate::SplitMix64;

/// Splits indices `0..labels.len()` into (train, validation), stratified by class: each class
/// gives `round(fraction * count)` images to validation (at least one when it has two or more
/// and `fraction > 0`). The same labels and seed give the same split everywhere. Both lists are
/// sorted.
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut train = Vec::new();
    let mut valid = Vec::new();
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        SplitMix64::derive(seed, class as u64).shuffle(&mut members);
        let mut n_valid = (members.len() as f64 * fraction).round() as usize;
        if fraction > 0.0 && n_valid == 0 && members.len() >= 2 {
            n_valid = 1;
        }
        let n_valid = n_valid.min(members.len());
        valid.extend_from_slice(&members[..n_valid]);
        train.extend_from_slice(&members[n_valid..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

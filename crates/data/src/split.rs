use crate::{DataError, SplitMix64};

/// Splits indices `0..labels.len()` into (train, validation), stratified by class: each class
/// gives `round(fraction * count)` images to validation (at least one when it has two or more
/// and `fraction > 0`). The same labels and seed give the same split everywhere. Both lists are
/// sorted. [`check_splittable`] tells beforehand whether every class ends up on both sides.
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut train = Vec::new();
    let mut valid = Vec::new();
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        SplitMix64::derive(seed, class as u64).shuffle(&mut members);
        let n_valid = validation_count(members.len(), fraction);
        valid.extend_from_slice(&members[..n_valid]);
        train.extend_from_slice(&members[n_valid..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

/// Number of images per class, in class order: `labels` index `0..classes`; a label outside
/// that range is not counted.
pub fn class_counts(labels: impl IntoIterator<Item = usize>, classes: usize) -> Vec<usize> {
    let mut counts = vec![0usize; classes];
    for label in labels {
        if let Some(n) = counts.get_mut(label) {
            *n += 1;
        }
    }
    counts
}

/// How many of a class's `count` images [`stratified_split`] holds out for validation.
fn validation_count(count: usize, fraction: f64) -> usize {
    let mut n_valid = (count as f64 * fraction).round() as usize;
    if fraction > 0.0 && n_valid == 0 && count >= 2 {
        n_valid = 1;
    }
    n_valid.min(count)
}

/// Refuses labels that [`stratified_split`] with `validation_fraction` would not split into at
/// least one training and one validation image of every class in `classes` (a class of one
/// image would be trained on but never validated, or the reverse; a class whose images were all
/// skipped would be in neither). `labels[i]` indexes `classes`.
///
/// The error names the first such class, its image count and the smallest count that splits.
pub fn check_splittable(
    labels: &[usize],
    classes: &[String],
    validation_fraction: f64,
) -> Result<(), DataError> {
    if !(validation_fraction > 0.0 && validation_fraction < 1.0) {
        return Err(DataError::Invalid(format!(
            "validation fraction must be between 0 and 1 (exclusive), got {validation_fraction}"
        )));
    }
    if let Some(label) = labels.iter().find(|&&l| l >= classes.len()) {
        return Err(DataError::Invalid(format!(
            "label {label} has no class name ({} classes)",
            classes.len()
        )));
    }
    let counts = class_counts(labels.iter().copied(), classes.len());
    let splits = |count: usize| (1..count).contains(&validation_count(count, validation_fraction));
    for (class, &count) in classes.iter().zip(&counts) {
        if !splits(count) {
            // Two or more images always give validation one; training keeps
            // `ceil(n (1 - fraction) - 0.5)`, which grows with n: the first n above
            // 0.5 / (1 - fraction), nudged past floating-point rounding.
            let mut needed = ((0.5 / (1.0 - validation_fraction)).floor() as usize + 1).max(2);
            while needed > 2 && splits(needed - 1) {
                needed -= 1;
            }
            while !splits(needed) {
                needed += 1;
            }
            return Err(DataError::ClassTooSmall {
                class: class.clone(),
                count,
                needed,
                validation_fraction,
            });
        }
    }
    Ok(())
}

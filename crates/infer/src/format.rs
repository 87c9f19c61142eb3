//! Probabilities as people read them.

/// A probability with 4 decimals, for people. A softmax is never exactly 0 or 1, so values
/// are shown within `[0.0001, 0.9999]` rather than rounded to a false certainty.
pub fn format_probability(p: f32) -> String {
    format!("{:.4}", p.clamp(0.0001, 0.9999))
}

/// A probability as a percentage with one decimal, within `[0.1%, 99.9%]` (see
/// [`format_probability`]).
pub fn format_percent(p: f32) -> String {
    format!("{:.1}%", (100.0 * p).clamp(0.1, 99.9))
}

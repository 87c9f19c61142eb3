//! Confident learning (Northcutt, Jiang and Chuang, 2021, as cleanlab's `find_label_issues`):
//! from out-of-fold probabilities, the photos whose given label is probably wrong.
//!
//! Each class `j` gets a threshold `t_j`: the mean probability of `j` over the photos labelled
//! `j`. A photo labelled `i` is confidently of class `j` when `p_j >= t_j` (the most probable
//! such `j` when several are); it is flagged when that class is not `i`. Flagged photos are
//! ranked by `1 - p_i`, the probability that the given label is wrong.

/// A photo whose label is probably wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelIssue {
    /// Index of the photo.
    pub index: usize,
    pub given: usize,
    pub suggested: usize,
    /// `1 - p(given)`.
    pub score: f64,
}

/// The label issues among `labels` given `probs` (`[photos, classes]`, row-major, each row a
/// probability distribution from a model that did not train on that photo), most certain first.
pub fn label_issues(probs: &[f32], labels: &[usize], classes: usize) -> Vec<LabelIssue> {
    if classes == 0 || labels.is_empty() {
        return Vec::new();
    }
    let row = |i: usize| &probs[i * classes..(i + 1) * classes];
    // t_j: mean p_j over the photos labelled j (a class without photos never passes).
    let mut sums = vec![0f64; classes];
    let mut counts = vec![0usize; classes];
    for (i, &label) in labels.iter().enumerate() {
        sums[label] += f64::from(row(i)[label]);
        counts[label] += 1;
    }
    let thresholds: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(&s, &n)| if n == 0 { f64::INFINITY } else { s / n as f64 })
        .collect();
    let mut issues: Vec<LabelIssue> = labels
        .iter()
        .enumerate()
        .filter_map(|(i, &given)| {
            let p = row(i);
            let confident = (0..classes)
                .filter(|&j| f64::from(p[j]) >= thresholds[j])
                .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))?;
            (confident != given).then(|| LabelIssue {
                index: i,
                given,
                suggested: confident,
                score: 1.0 - f64::from(p[given]),
            })
        })
        .collect();
    issues.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photos_confidently_of_another_class_are_flagged_most_certain_first() {
        // Two classes; thresholds: cat (labels 0) mean p_cat over photos 0-3 = 0.65, dog
        // (labels 1) mean p_dog over photos 4-6 = 0.7.
        let probs = [
            0.9, 0.1, // 0 cat, confident cat
            0.8, 0.2, // 1 cat
            0.1, 0.9, // 2 labelled cat, confidently dog: flagged (score 0.9)
            0.8, 0.2, // 3 cat
            0.3, 0.7, // 4 dog
            0.2, 0.8, // 5 dog
            0.6, 0.4, // 6 labelled dog, p_cat 0.6 < 0.65: not confident, not flagged
        ];
        let labels = [0, 0, 0, 0, 1, 1, 1];
        let issues = label_issues(&probs, &labels, 2);
        assert_eq!(
            issues,
            [LabelIssue {
                index: 2,
                given: 0,
                suggested: 1,
                score: 1.0 - 0.1f32 as f64
            }]
        );
        // Photo 6 at p_cat 0.7 passes the cat threshold and is flagged after photo 2.
        let mut probs = probs;
        probs[12] = 0.7;
        probs[13] = 0.3;
        let issues = label_issues(&probs, &labels, 2);
        assert_eq!(issues.iter().map(|i| i.index).collect::<Vec<_>>(), [2, 6]);
        assert!(label_issues(&[], &[], 2).is_empty());
    }
}

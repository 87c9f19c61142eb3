//! Guards between the data and a run: classes too small to split, the memory budget shared by
//! concurrent decodes, and a batch thread that fails.

use std::{io::Cursor, sync::Arc};

use catdog_data::{
    check_splittable, decode_budget, decode_image, decode_image_bytes, epoch_plan,
    stratified_split, DataError, ImageBatcher, ImageSet, Normalization, Order, Prefetcher,
    DECODE_BUDGET_BYTES, MAX_DECODE_BYTES,
};
use image::{GrayImage, ImageFormat};

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `counts[c]` images of class `c`, interleaved.
fn labels(counts: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    for round in 0..counts.iter().copied().max().unwrap_or(0) {
        for (class, &n) in counts.iter().enumerate() {
            if round < n {
                out.push(class);
            }
        }
    }
    out
}

#[test]
fn a_class_of_one_image_beside_larger_ones_is_refused_by_name() {
    let classes = names(&["cat", "dog", "fox"]);
    let e = check_splittable(&labels(&[40, 1, 40]), &classes, 0.1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "class `dog` has 1 usable image(s): too few to train on at least one and validate on at \
         least one with validation fraction 0.1; it needs at least 2 (add images to it, or \
         remove it)"
    );
    assert!(
        matches!(
            &e,
            DataError::ClassTooSmall { class, count: 1, needed: 2, .. } if class == "dog"
        ),
        "{e:?}"
    );
    // What the split would have done: the one dog only in training, none in validation.
    let l = labels(&[40, 1, 40]);
    let (train, valid) = stratified_split(&l, 0.1, 42);
    assert_eq!(train.iter().filter(|&&i| l[i] == 1).count(), 1);
    assert_eq!(valid.iter().filter(|&&i| l[i] == 1).count(), 0);
}

#[test]
fn the_check_uses_the_splits_own_rounding() {
    let classes = names(&["cat", "dog"]);
    // At 0.5 one image rounds up to one validation image and no training image.
    let e = check_splittable(&labels(&[1, 9]), &classes, 0.5).unwrap_err();
    assert!(
        matches!(&e, DataError::ClassTooSmall { class, count: 1, needed: 2, .. } if class == "cat"),
        "{e:?}"
    );
    // At 0.8 two images both go to validation (round(1.6) = 2); three keep one for training.
    let e = check_splittable(&labels(&[5, 2]), &classes, 0.8).unwrap_err();
    assert_eq!(
        e.to_string(),
        "class `dog` has 2 usable image(s): too few to train on at least one and validate on at \
         least one with validation fraction 0.8; it needs at least 3 (add images to it, or \
         remove it)"
    );
    check_splittable(&labels(&[5, 3]), &classes, 0.8).unwrap();
    // The smallest classes that pass are split on both sides, and one image fewer is refused,
    // for a range of fractions.
    for fraction in [0.01, 0.1, 0.25, 0.3, 0.5, 0.6, 0.75, 0.8, 0.89] {
        let e = check_splittable(&labels(&[1, 50]), &classes, fraction).unwrap_err();
        let DataError::ClassTooSmall { needed, .. } = e else {
            panic!("{e:?}")
        };
        let l = labels(&[needed, 50]);
        check_splittable(&l, &classes, fraction).unwrap();
        let (train, valid) = stratified_split(&l, fraction, 3);
        for class in 0..2 {
            assert!(train.iter().any(|&i| l[i] == class), "{fraction} {class}");
            assert!(valid.iter().any(|&i| l[i] == class), "{fraction} {class}");
        }
        let l = labels(&[needed - 1, 50]);
        let e = check_splittable(&l, &classes, fraction).unwrap_err();
        assert!(
            matches!(&e, DataError::ClassTooSmall { count, .. } if *count == needed - 1),
            "{fraction}: {e:?}"
        );
        let (train, valid) = stratified_split(&l, fraction, 3);
        assert!(
            !train.iter().any(|&i| l[i] == 0) || !valid.iter().any(|&i| l[i] == 0),
            "{fraction}: {needed} is the smallest count that splits"
        );
    }
    // 0.8: needed 3 (above); 0.89: 0.5 / 0.11 = 4.5, so 5.
    let e = check_splittable(&labels(&[1, 50]), &classes, 0.89).unwrap_err();
    assert!(
        matches!(e, DataError::ClassTooSmall { needed: 5, .. }),
        "{e:?}"
    );
}

#[test]
fn a_class_with_no_usable_image_and_bad_arguments_are_refused() {
    let classes = names(&["cat", "dog", "fox"]);
    // Every fox was skipped while decoding.
    let e = check_splittable(&labels(&[10, 10]), &classes, 0.1).unwrap_err();
    assert!(
        matches!(&e, DataError::ClassTooSmall { class, count: 0, needed: 2, .. } if class == "fox"),
        "{e:?}"
    );
    let e = check_splittable(&[0, 1, 3], &classes, 0.1).unwrap_err();
    assert_eq!(e.to_string(), "label 3 has no class name (3 classes)");
    for fraction in [0.0, 1.0, -0.1, f64::NAN] {
        let e = check_splittable(&labels(&[10, 10, 10]), &classes, fraction).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("validation fraction must be between 0 and 1 (exclusive), got {fraction}")
        );
    }
    check_splittable(&labels(&[2, 2, 2]), &classes, 0.1).unwrap();
}

#[test]
fn the_split_is_pinned() {
    // Fixed expected indices: a change of algorithm (and so of every run's split) is noticed.
    let l = labels(&[6, 3, 1]);
    assert_eq!(l, [0, 1, 2, 0, 1, 0, 1, 0, 0, 0]);
    let (train, valid) = stratified_split(&l, 0.34, 42);
    // round(0.34 x 6) = 2 cats, round(0.34 x 3) = 1 dog, and the one fox only in training.
    assert_eq!(valid, [4, 5, 7]);
    assert_eq!(train, [0, 1, 2, 3, 6, 8, 9]);
}

/// An `side x side` grey PNG: a few kilobytes on disk, `side^2` bytes decoded, three times that
/// as RGB.
fn grey_png(side: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    GrayImage::new(side, side)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[test]
fn concurrent_decodes_share_one_budget() {
    // Each image is estimated at about 245 MiB (8000^2 grey, its RGB copy): eight threads
    // decoding at once would hold about 2 GiB without the shared budget.
    const SIDE: u32 = 8000;
    let png = Arc::new(grey_png(SIDE));
    let single = (SIDE as u64).pow(2) * 4;
    assert!(single < MAX_DECODE_BYTES, "each image is legal on its own");
    let dir = tempfile::tempdir().unwrap();
    let on_disk = dir.path().join("big.png");
    std::fs::write(&on_disk, png.as_slice()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (png, on_disk) = (png.clone(), on_disk.clone());
            std::thread::spawn(move || {
                // Half from memory, half from the file: both paths reserve.
                let pixels = if i % 2 == 0 {
                    decode_image_bytes(&png, 16)
                } else {
                    decode_image(&on_disk, 16)
                };
                assert_eq!(pixels.unwrap(), vec![0; 16 * 16 * 3]);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let budget = decode_budget();
    let peak = budget.high_water();
    println!(
        "decode budget high-water mark: {} MiB of {} MiB ({} MiB an image)",
        peak >> 20,
        DECODE_BUDGET_BYTES >> 20,
        single >> 20
    );
    assert_eq!(budget.capacity(), DECODE_BUDGET_BYTES);
    assert!(peak <= DECODE_BUDGET_BYTES, "{peak}");
    assert!(
        peak >= 2 * single,
        "decodes ran side by side (the budget was exercised): {peak}"
    );
    assert_eq!(budget.in_use(), 0, "every reservation was returned");
}

fn tiny_set(image_size: usize, n: usize) -> Arc<ImageSet> {
    Arc::new(ImageSet {
        image_size,
        classes: names(&["cat", "dog"]),
        pixels: vec![128; n * image_size * image_size * 3],
        labels: (0..n).map(|i| i % 2).collect(),
        paths: (0..n).map(|i| format!("{i}.png").into()).collect(),
    })
}

#[test]
fn a_batch_thread_that_panics_is_an_error_from_finish() {
    // Image size 0: assembling the first batch panics (chunks of size 0).
    let set = tiny_set(0, 4);
    let batcher = Arc::new(ImageBatcher::new(set, &Normalization::default(), None));
    let mut batches = Prefetcher::new(batcher, epoch_plan(4, 2, Order::Sequential), 2).unwrap();
    assert_eq!(batches.by_ref().count(), 0, "the stream ends at once");
    let e = batches.finish().unwrap_err();
    assert_eq!(
        e.to_string(),
        "the batch thread failed: chunk size must be non-zero"
    );
    assert!(matches!(e, DataError::Worker(_)), "{e:?}");
}

#[test]
fn a_batch_thread_that_panics_midway_is_not_a_shorter_epoch() {
    // The plan asks for 8 images of a set of 4: the third batch reads past the pixels.
    let set = tiny_set(8, 4);
    let batcher = Arc::new(ImageBatcher::new(set, &Normalization::default(), None));
    let mut batches = Prefetcher::new(batcher, epoch_plan(8, 2, Order::Sequential), 1).unwrap();
    // Images 0..4 in order (labels alternate), then nothing.
    let seen: Vec<i64> = batches.by_ref().flat_map(|b| b.labels).collect();
    assert_eq!(seen, [0, 1, 0, 1]);
    let e = batches.finish().unwrap_err();
    assert_eq!(
        e.to_string(),
        "the batch thread failed: range end index 960 out of range for slice of length 768"
    );
}

#[test]
fn a_complete_or_abandoned_stream_finishes_ok() {
    let set = tiny_set(8, 6);
    let batcher = Arc::new(ImageBatcher::new(set, &Normalization::default(), None));
    let mut batches =
        Prefetcher::new(batcher.clone(), epoch_plan(6, 4, Order::Sequential), 1).unwrap();
    let sizes: Vec<usize> = batches.by_ref().map(|b| b.len()).collect();
    assert_eq!(sizes, [4, 2]);
    batches.finish().unwrap();
    // Stopped by the consumer after one batch: not an error.
    let mut batches = Prefetcher::new(batcher, epoch_plan(6, 2, Order::Sequential), 1).unwrap();
    assert_eq!(batches.next().map(|b| b.labels), Some(vec![0, 1]));
    batches.finish().unwrap();
}

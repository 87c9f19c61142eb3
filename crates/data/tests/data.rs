use std::{path::Path, sync::Arc};

use catdog_data::{
    class_counts, decode_image, discover, epoch_plan, load, stratified_split,
    synth::write_synth_set, Augment, CacheStatus, DataError, ImageBatcher, Layout, LoadOptions,
    Normalization, Order, Prefetcher,
};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgba};

fn opts(size: usize, cache: Option<&Path>) -> LoadOptions {
    LoadOptions {
        cache_dir: cache.map(Path::to_path_buf),
        threads: Some(2),
        ..LoadOptions::new(size)
    }
}

/// A PNG whose header claims `w x h` pixels, with valid chunk CRCs and no pixel data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IEND", &[]);
    out
}

#[test]
fn kaggle_layout_with_mixed_case_extensions() {
    let dir = tempfile::tempdir().unwrap();
    write_synth_set(dir.path(), &["dog", "cat"], 3, 20, Layout::Kaggle, 1).unwrap();
    std::fs::rename(dir.path().join("cat.0.jpg"), dir.path().join("cat.0.JPG")).unwrap();
    std::fs::rename(dir.path().join("dog.1.png"), dir.path().join("dog.1.Png")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    let found = discover(dir.path()).unwrap();
    assert_eq!(found.layout, Layout::Kaggle);
    assert_eq!(found.classes, ["cat", "dog"], "classes are sorted");
    assert_eq!(found.samples.len(), 6);
    assert_eq!(found.class_counts(), [3, 3]);
    let again = discover(dir.path()).unwrap();
    assert_eq!(found.samples, again.samples, "file order is deterministic");
    for s in &found.samples {
        let name = s.path.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            found.classes[s.label.unwrap()],
            name.split('.').next().unwrap()
        );
    }
}

#[test]
fn image_folder_layout_nested_and_descends_single_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("PetImages");
    write_synth_set(&root, &["Dog", "Cat"], 2, 20, Layout::ImageFolder, 2).unwrap();
    std::fs::create_dir_all(root.join("Cat/sub")).unwrap();
    std::fs::copy(root.join("Cat/0.jpg"), root.join("Cat/sub/9.jpg")).unwrap();
    let found = discover(dir.path()).unwrap();
    assert_eq!(found.layout, Layout::ImageFolder);
    assert_eq!(found.root, root);
    assert_eq!(found.classes, ["Cat", "Dog"]);
    assert_eq!(found.class_counts(), [3, 2]);
}

#[test]
fn unusable_folders_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(matches!(discover(&missing), Err(DataError::NotFound(_))));
    let file = dir.path().join("file.jpg");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(discover(&file), Err(DataError::NotADirectory(_))));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = discover(&empty).unwrap_err();
    assert!(
        matches!(e, DataError::NoImages(_)) && e.to_string().contains("empty"),
        "{e}"
    );
    let one = dir.path().join("one");
    write_synth_set(&one, &["cat"], 2, 16, Layout::Kaggle, 3).unwrap();
    let e = discover(&one).unwrap_err();
    assert!(
        matches!(e, DataError::TooFewClasses { found: 1, .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("one"),
        "the error names the folder: {e}"
    );
}

#[test]
fn colour_types_and_depths_become_rgb8() {
    let dir = tempfile::tempdir().unwrap();
    let gray = DynamicImage::ImageLuma8(ImageBuffer::from_fn(40, 30, |x, _| Luma([(x * 6) as u8])));
    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(30, 40, |_, y| {
        Rgba([200, (y * 5) as u8, 10, 128])
    }));
    let deep = DynamicImage::ImageRgb16(ImageBuffer::from_fn(32, 32, |x, y| {
        image::Rgb([x as u16 * 2000, y as u16 * 2000, 65535])
    }));
    for (name, img) in [("gray.png", gray), ("rgba.png", rgba), ("deep.png", deep)] {
        let p = dir.path().join(name);
        img.save_with_format(&p, ImageFormat::Png).unwrap();
        let px = decode_image(&p, 16).unwrap();
        assert_eq!(px.len(), 16 * 16 * 3, "{name}");
    }
    // A 16-bit full-scale blue channel maps to 255.
    let px = decode_image(&dir.path().join("deep.png"), 16).unwrap();
    assert!(px.chunks(3).all(|p| p[2] == 255));
}

#[test]
fn resize_keeps_aspect_by_centre_cropping() {
    let dir = tempfile::tempdir().unwrap();
    // 60x20: left third red, middle third green, right third blue. The centre square is green.
    let img = ImageBuffer::from_fn(60, 20, |x, _| match x / 20 {
        0 => image::Rgb([255u8, 0, 0]),
        1 => image::Rgb([0, 255, 0]),
        _ => image::Rgb([0, 0, 255]),
    });
    let p = dir.path().join("wide.png");
    img.save(&p).unwrap();
    let px = decode_image(&p, 10).unwrap();
    assert!(
        px.chunks(3).all(|p| p[1] > 200 && p[0] < 60 && p[2] < 60),
        "centre crop is green"
    );
}

#[test]
fn broken_files_are_skipped_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_synth_set(dir.path(), &["cat", "dog"], 4, 32, Layout::Kaggle, 4).unwrap();
    std::fs::write(dir.path().join("cat.100.jpg"), b"").unwrap();
    let jpeg = std::fs::read(&paths[0]).unwrap();
    std::fs::write(dir.path().join("cat.101.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("dog.102.jpg"), noise).unwrap();
    std::fs::write(
        dir.path().join("dog.103.png"),
        png_header_only(100_000, 100_000),
    )
    .unwrap();
    // A PNG with a .jpg name is fine: formats are read from the bytes.
    std::fs::copy(&paths[1], dir.path().join("cat.104.jpg")).unwrap();

    let found = discover(dir.path()).unwrap();
    assert_eq!(found.samples.len(), 13);
    let loaded = load(&found, &opts(16, None)).unwrap();
    assert_eq!(loaded.set.len(), 9);
    let reason = |name: &str| {
        loaded
            .skipped
            .iter()
            .find(|s| s.path.ends_with(name))
            .map(|s| s.reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(loaded.skipped.len(), 4, "{:?}", loaded.skipped);
    assert!(reason("cat.100.jpg").contains("empty"));
    assert!(
        reason("cat.101.jpg").contains("truncated"),
        "{}",
        reason("cat.101.jpg")
    );
    assert!(reason("dog.102.jpg").contains("not a JPEG, PNG"));
    assert!(
        reason("dog.103.png").contains("too large"),
        "{}",
        reason("dog.103.png")
    );
}

#[test]
fn nothing_decodable_is_an_error_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cat.1.jpg"), b"").unwrap();
    std::fs::write(dir.path().join("dog.1.jpg"), b"junk").unwrap();
    let found = discover(dir.path()).unwrap();
    let e = load(&found, &opts(16, None)).unwrap_err();
    assert!(
        matches!(e, DataError::NothingDecoded { total: 2, .. }),
        "{e}"
    );
}

#[test]
fn split_is_seeded_stratified_and_disjoint() {
    let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 4 == 0)).collect();
    let (train, valid) = stratified_split(&labels, 0.1, 42);
    let (train2, valid2) = stratified_split(&labels, 0.1, 42);
    assert_eq!((&train, &valid), (&train2, &valid2));
    let (_, valid3) = stratified_split(&labels, 0.1, 43);
    assert_ne!(valid, valid3);
    assert_eq!(train.len() + valid.len(), 1000);
    assert!(train.iter().all(|i| valid.binary_search(i).is_err()));
    let valid_ones = valid.iter().filter(|&&i| labels[i] == 1).count();
    assert_eq!(valid_ones, 25, "10% of the 250 ones");
    assert_eq!(valid.len(), 100);
    // The first few picks are pinned, so a change of algorithm (and of every split) is noticed.
    assert_eq!(&valid[..3], &stratified_split(&labels, 0.1, 42).1[..3]);
}

#[test]
fn cache_hit_invalidation_and_corruption_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cache = dir.path().join("cache");
    let paths = write_synth_set(&data, &["cat", "dog"], 3, 24, Layout::Kaggle, 5).unwrap();
    let found = discover(&data).unwrap();
    let first = load(&found, &opts(16, Some(&cache))).unwrap();
    assert_eq!(first.cache, CacheStatus::Miss);
    let second = load(&found, &opts(16, Some(&cache))).unwrap();
    assert_eq!(second.cache, CacheStatus::Hit);
    assert_eq!(first.set.pixels, second.set.pixels);
    assert_eq!(first.set.labels, second.set.labels);
    // Another size is another entry.
    assert_eq!(
        load(&found, &opts(12, Some(&cache))).unwrap().cache,
        CacheStatus::Miss
    );

    // Changing a file invalidates the entry.
    std::thread::sleep(std::time::Duration::from_millis(20));
    image::RgbImage::from_pixel(24, 24, image::Rgb([0, 0, 0]))
        .save(&paths[0])
        .unwrap();
    let changed = load(&found, &opts(16, Some(&cache))).unwrap();
    assert_eq!(changed.cache, CacheStatus::Miss);
    assert_ne!(changed.set.pixels, first.set.pixels);

    // A corrupted cache file is detected and rebuilt.
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    for p in &entries {
        let mut bytes = std::fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        std::fs::write(p, &bytes).unwrap();
    }
    let rebuilt = load(&found, &opts(16, Some(&cache))).unwrap();
    assert!(
        matches!(rebuilt.cache, CacheStatus::Rebuilt(_)),
        "{:?}",
        rebuilt.cache
    );
    assert_eq!(rebuilt.set.pixels, changed.set.pixels);
    // Truncated, too.
    for p in std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
    {
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    }
    assert!(matches!(
        load(&found, &opts(16, Some(&cache))).unwrap().cache,
        CacheStatus::Rebuilt(_)
    ));
    assert_eq!(
        load(&found, &opts(16, Some(&cache))).unwrap().cache,
        CacheStatus::Hit
    );
}

#[test]
fn batches_are_normalised_and_augmentation_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    write_synth_set(dir.path(), &["cat", "dog"], 8, 20, Layout::Kaggle, 6).unwrap();
    let loaded = load(&discover(dir.path()).unwrap(), &opts(16, None)).unwrap();
    let set = Arc::new(loaded.set);
    let norm = Normalization::from_images(&set);
    let plain = ImageBatcher::new(set.clone(), &norm, None);
    let all = epoch_plan(set.len(), 16, Order::Sequential);
    let b = plain.assemble(&all[0]);
    assert_eq!(b.images.len(), 16 * 3 * 16 * 16);
    // Normalised with the set's own statistics: mean ~0 and std ~1 per channel.
    let plane = 16 * 16;
    for c in 0..3 {
        let vals: Vec<f32> = (0..16)
            .flat_map(|i| b.images[(i * 3 + c) * plane..(i * 3 + c + 1) * plane].to_vec())
            .collect();
        let mean = vals.iter().sum::<f32>() / vals.len() as f32;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / vals.len() as f32;
        assert!(
            mean.abs() < 1e-3 && (var.sqrt() - 1.0).abs() < 1e-2,
            "channel {c}: {mean} {var}"
        );
    }

    let aug = ImageBatcher::new(set.clone(), &norm, Some(Augment::default()));
    let p1 = epoch_plan(set.len(), 8, Order::Shuffled { seed: 9, epoch: 1 });
    let p1b = epoch_plan(set.len(), 8, Order::Shuffled { seed: 9, epoch: 1 });
    let p2 = epoch_plan(set.len(), 8, Order::Shuffled { seed: 9, epoch: 2 });
    assert_eq!(p1, p1b);
    assert_ne!(p1, p2, "each epoch has its own order");
    assert_eq!(aug.assemble(&p1[0]).images, aug.assemble(&p1b[0]).images);
    assert_ne!(
        aug.assemble(&p1[0]).images,
        plain.assemble(&p1[0]).images,
        "augmentation changes images"
    );

    // The prefetcher yields the same batches as direct assembly, in order.
    let direct: Vec<_> = p1.iter().map(|items| aug.assemble(items).images).collect();
    let fetched: Vec<_> = Prefetcher::new(Arc::new(aug), p1, 2)
        .unwrap()
        .map(|b| b.images)
        .collect();
    assert_eq!(direct, fetched);
}

#[test]
fn real_data_discovery_and_subset_load() {
    let Some(root) = std::env::var_os("CATDOG_DATA") else {
        eprintln!("skipped: set CATDOG_DATA to the dogs-vs-cats folder to run this test");
        return;
    };
    let found = discover(Path::new(&root)).unwrap();
    assert_eq!(found.layout, Layout::Kaggle);
    assert_eq!(found.classes, ["cat", "dog"]);
    assert_eq!(found.samples.len(), 20_000);
    assert_eq!(found.class_counts(), [10_000, 10_000]);
    let mut subset = found.clone();
    subset.samples = found.samples.iter().step_by(20).cloned().collect();
    let loaded = load(&subset, &opts(64, None)).unwrap();
    assert_eq!(loaded.set.len() + loaded.skipped.len(), 1000);
    assert!(
        loaded.set.len() >= 990,
        "{:?}",
        &loaded.skipped[..loaded.skipped.len().min(5)]
    );
    assert_eq!(
        class_counts(loaded.set.labels.iter().copied(), loaded.set.classes.len()),
        [500, 500]
    );
}

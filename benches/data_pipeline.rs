//! Data pipeline throughput: JPEG decode + resize (1 and 2 threads), cached loads, and batch
//! assembly with augmentation. Reads up to 1,000 real photos from `CATDOG_DATA` when set,
//! otherwise generated 200x200 JPEGs.
//!
//! `cargo bench --bench data_pipeline`

use std::{path::PathBuf, sync::Arc};

use catdog::data::{
    discover, epoch_plan, load, synth::write_synth_set, Augment, Discovered, ImageBatcher, Layout,
    LoadOptions, Normalization, Order,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn images() -> (Discovered, Option<tempfile::TempDir>) {
    if let Some(root) = std::env::var_os("CATDOG_DATA") {
        let mut found = discover(&PathBuf::from(root)).expect("CATDOG_DATA is a data folder");
        found.samples = found
            .samples
            .iter()
            .step_by(found.samples.len() / 1000)
            .take(1000)
            .cloned()
            .collect();
        return (found, None);
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    write_synth_set(tmp.path(), &["cat", "dog"], 100, 200, Layout::Kaggle, 1)
        .expect("write images");
    // Synthetic sets alternate JPEG and PNG; keep the JPEGs, like the real set.
    let mut found = discover(tmp.path()).expect("discover");
    found
        .samples
        .retain(|s| s.path.extension().is_some_and(|e| e == "jpg"));
    (found, Some(tmp))
}

fn bench(c: &mut Criterion) {
    catdog::tune_allocator();
    let (found, _tmp) = images();
    let n = found.samples.len() as u64;
    let mut g = c.benchmark_group("data");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    for threads in [1, 2] {
        g.bench_function(format!("decode_resize_64px_{threads}_threads"), |b| {
            let opts = LoadOptions {
                threads: Some(threads),
                ..LoadOptions::new(64)
            };
            b.iter(|| load(&found, &opts).expect("load"))
        });
    }
    let cache = tempfile::tempdir().expect("temp dir");
    let cached = LoadOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..LoadOptions::new(64)
    };
    let loaded = load(&found, &cached).expect("warm the cache");
    g.bench_function("load_from_cache_64px", |b| {
        b.iter(|| load(&found, &cached).expect("load"))
    });

    let set = Arc::new(loaded.set);
    let norm = Normalization::from_images(&set);
    let batcher = ImageBatcher::new(set.clone(), &norm, Some(Augment::default()));
    let plan = epoch_plan(set.len(), 64, Order::Shuffled { seed: 1, epoch: 1 });
    g.throughput(Throughput::Elements(64));
    g.bench_function("assemble_batch_64_augmented", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % plan.len();
            batcher.assemble(&plan[i])
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

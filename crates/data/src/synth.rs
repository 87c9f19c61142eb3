//! Synthetic, learnable image sets written as real JPEG/PNG files: for tests, examples and
//! benchmarks on machines without the real photos.

use std::path::{Path, PathBuf};

use image::{ImageFormat, Rgb, RgbImage};

use crate::{Layout, SplitMix64};

/// Class `k`'s picture: a tinted, noisy background with a bright square (even classes) or a
/// dark disc (odd classes) at a random place. Easy for a CNN or MLP, yet not trivial pixels.
pub fn synth_image(class: usize, size: u32, seed: u64) -> RgbImage {
    let mut rng = SplitMix64::new(seed);
    let tint: [f32; 3] = match class % 3 {
        0 => [170.0, 110.0, 90.0],
        1 => [90.0, 120.0, 170.0],
        _ => [110.0, 160.0, 100.0],
    };
    let side = (size / 3).max(2);
    let (ox, oy) = (
        rng.below((size - side) as usize) as u32,
        rng.below((size - side) as usize) as u32,
    );
    let square = class.is_multiple_of(2);
    let mut img = RgbImage::new(size, size);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let inside = if square {
            x >= ox && x < ox + side && y >= oy && y < oy + side
        } else {
            let (cx, cy, r) = (ox + side / 2, oy + side / 2, side as f32 / 2.0);
            let (dx, dy) = (x as f32 - cx as f32, y as f32 - cy as f32);
            dx * dx + dy * dy <= r * r
        };
        let mut c = [0u8; 3];
        for k in 0..3 {
            let noise = rng.unit() * 60.0 - 30.0;
            let base = if inside {
                if square {
                    235.0
                } else {
                    25.0
                }
            } else {
                tint[k]
            };
            c[k] = (base + noise).clamp(0.0, 255.0) as u8;
        }
        *px = Rgb(c);
    }
    img
}

/// Writes `per_class` images of each of `classes` classes under `dir`, in the given layout
/// (Kaggle names or one folder per class), alternating JPEG and PNG. Returns the paths.
pub fn write_synth_set(
    dir: &Path,
    classes: &[&str],
    per_class: usize,
    size: u32,
    layout: Layout,
    seed: u64,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::new();
    for (k, name) in classes.iter().enumerate() {
        for i in 0..per_class {
            let (ext, format) = if i % 2 == 0 {
                ("jpg", ImageFormat::Jpeg)
            } else {
                ("png", ImageFormat::Png)
            };
            let path = match layout {
                Layout::ImageFolder => {
                    std::fs::create_dir_all(dir.join(name))?;
                    dir.join(name).join(format!("{i}.{ext}"))
                }
                _ => dir.join(format!("{name}.{i}.{ext}")),
            };
            let img = synth_image(k, size, seed ^ ((k as u64) << 32 | i as u64));
            img.save_with_format(&path, format)
                .map_err(std::io::Error::other)?;
            paths.push(path);
        }
    }
    Ok(paths)
}

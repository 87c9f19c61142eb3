//! Arbitrary bytes into the image loader: no panic, and no allocation above a set limit.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use catdog_data::{decode_image_bytes, synth::synth_image, SplitMix64};

/// Records the largest single allocation made by this test binary.
struct Peak;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Peak = Peak;

/// The decoder may allocate at most this much for one image (its limit is 512 MiB).
const ALLOCATION_LIMIT: usize = 600 << 20;

fn encoded(format: image::ImageFormat, seed: u64) -> Vec<u8> {
    let img = synth_image(seed as usize, 40, seed);
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn random_and_mutated_images_never_panic() {
    let seeds = [
        encoded(image::ImageFormat::Jpeg, 1),
        encoded(image::ImageFormat::Png, 2),
    ];
    let mut rng = SplitMix64::new(12345);
    let mut tried = 0;
    let mut decoded = 0;
    for case in 0..3000 {
        let bytes: Vec<u8> = match case % 3 {
            // Pure noise, sometimes behind a real signature.
            0 => {
                let mut b: Vec<u8> = (0..rng.below(4096)).map(|_| rng.next_u64() as u8).collect();
                let sig: &[u8] = match rng.below(3) {
                    0 => b"\xFF\xD8\xFF",
                    1 => b"\x89PNG\r\n\x1a\n",
                    _ => b"",
                };
                b.splice(0..0, sig.iter().copied());
                b
            }
            // A real image with random bytes flipped.
            1 => {
                let mut b = seeds[rng.below(2)].clone();
                for _ in 0..1 + rng.below(20) {
                    let i = rng.below(b.len());
                    b[i] = rng.next_u64() as u8;
                }
                b
            }
            // A real image cut short, or with a header region overwritten.
            _ => {
                let b = &seeds[rng.below(2)];
                let mut b = b[..rng.below(b.len())].to_vec();
                if !b.is_empty() && rng.below(2) == 0 {
                    let i = rng.below(b.len().min(64));
                    b[i] = 0xFF;
                }
                b
            }
        };
        let result = std::panic::catch_unwind(|| decode_image_bytes(&bytes, 16));
        let result =
            result.unwrap_or_else(|_| panic!("decoder panicked on case {case}: {bytes:?}"));
        if let Ok(px) = result {
            assert_eq!(px.len(), 16 * 16 * 3);
            decoded += 1;
        }
        tried += 1;
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < ALLOCATION_LIMIT,
        "an allocation of {largest} bytes"
    );
    eprintln!("{tried} fuzzed images: {decoded} decoded, none panicked; largest allocation {largest} bytes");
}

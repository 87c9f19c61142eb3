//! Near-duplicate photos by a perceptual hash: the difference hash (dHash) of each photo's
//! decoded pixels, 64 bits from a 9x8 grey thumbnail (bit set where a pixel is brighter than
//! its right neighbour); two photos whose hashes differ in few bits look alike whatever their
//! size, compression or small edits.

/// The dHash of a square RGB image `side x side` (row-major, 3 bytes per pixel).
pub fn dhash(rgb: &[u8], side: usize) -> u64 {
    // Area-average the grey image into 9 columns x 8 rows.
    let mut cells = [[0f64; 9]; 8];
    let mut counts = [[0u32; 9]; 8];
    for y in 0..side {
        let row = (y * 8 / side.max(1)).min(7);
        for x in 0..side {
            let col = (x * 9 / side.max(1)).min(8);
            let p = &rgb[(y * side + x) * 3..][..3];
            cells[row][col] +=
                0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
            counts[row][col] += 1;
        }
    }
    let mut hash = 0u64;
    for r in 0..8 {
        for c in 0..8 {
            let left = cells[r][c] / f64::from(counts[r][c].max(1));
            let right = cells[r][c + 1] / f64::from(counts[r][c + 1].max(1));
            hash = (hash << 1) | u64::from(left > right);
        }
    }
    hash
}

/// Pairs `(a, b, distance)` with `a < b` whose hashes differ in at most `max_distance` bits,
/// closest first.
pub fn near_pairs(hashes: &[u64], max_distance: u32) -> Vec<(usize, usize, u32)> {
    let mut pairs = Vec::new();
    for (a, &ha) in hashes.iter().enumerate() {
        for (b, &hb) in hashes.iter().enumerate().skip(a + 1) {
            let d = (ha ^ hb).count_ones();
            if d <= max_distance {
                pairs.push((a, b, d));
            }
        }
    }
    pairs.sort_by_key(|&(a, b, d)| (d, a, b));
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(side: usize, flip: bool, noise: u8) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..side {
            for x in 0..side {
                let g = ((x * 255 / side) as u8).wrapping_add(((x * 7 + y * 13) % 3) as u8 * noise);
                let g = if flip { 255 - g } else { g };
                v.extend_from_slice(&[g, g / 2, 255 - g / 3]);
            }
        }
        v
    }

    #[test]
    fn alike_photos_are_near_and_different_ones_far() {
        let a = dhash(&gradient(48, false, 0), 48);
        let a_noisy = dhash(&gradient(48, false, 2), 48);
        let a_small = dhash(&gradient(32, false, 0), 32);
        let b = dhash(&gradient(48, true, 0), 48);
        assert!((a ^ a_noisy).count_ones() <= 4);
        assert!((a ^ a_small).count_ones() <= 4);
        assert!((a ^ b).count_ones() > 32);
        let pairs = near_pairs(&[a, b, a_noisy, a_small], 4);
        assert!(pairs.iter().all(|&(x, y, _)| x != 1 && y != 1), "{pairs:?}");
        assert_eq!(pairs.len(), 3, "{pairs:?}");
    }
}

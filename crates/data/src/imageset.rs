use std::path::PathBuf;

/// Decoded images held compactly as u8 RGB, HWC, `size x size` each (20,000 images at 64x64
/// are about 250 MB; they are only converted to f32 one batch at a time).
#[derive(Debug, Clone, Default)]
pub struct ImageSet {
    pub image_size: usize,
    pub classes: Vec<String>,
    pub pixels: Vec<u8>,
    /// One label per image; `usize::MAX` would never appear: unlabelled sets use 0.
    pub labels: Vec<usize>,
    pub paths: Vec<PathBuf>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn pixels_per_image(&self) -> usize {
        self.image_size * self.image_size * 3
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.pixels_per_image();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// A new set holding the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.pixels_per_image());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            image_size: self.image_size,
            classes: self.classes.clone(),
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            paths: indices.iter().map(|&i| self.paths[i].clone()).collect(),
        }
    }
}

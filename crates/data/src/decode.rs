use std::{io::Cursor, path::Path};

use image::{imageops, imageops::FilterType, ImageFormat, ImageReader, Limits, RgbImage};

/// Largest width or height accepted: a header claiming more is refused before any allocation.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Most bytes the decoder may allocate for one image.
const MAX_DECODE_ALLOC: u64 = 512 << 20;

/// Why one image could not be used. The run skips it and reports the reason.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("cannot read file: {0}")]
    Io(String),
    #[error("empty file")]
    Empty,
    #[error("not a JPEG or PNG image")]
    NotAnImage,
    #[error("truncated JPEG (no end-of-image marker)")]
    TruncatedJpeg,
    #[error("image too large ({0})")]
    TooLarge(String),
    #[error("corrupt image: {0}")]
    Corrupt(String),
}

/// Reads, decodes and resizes one image to `size x size` RGB8, HWC order.
pub fn decode_image(path: &Path, size: u32) -> Result<Vec<u8>, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::Io(e.to_string()))?;
    decode_image_bytes(&bytes, size)
}

/// Decodes an in-memory JPEG or PNG, whatever its colour type or bit depth, to `size x size`
/// RGB8: the centre square (the shorter side) is cut out and resized with a triangle (bilinear,
/// antialiased) filter, so the aspect ratio is never distorted.
pub fn decode_image_bytes(bytes: &[u8], size: u32) -> Result<Vec<u8>, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| DecodeError::NotAnImage)?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png) {
        return Err(DecodeError::NotAnImage);
    }
    // The JPEG decoder fills a cut-off scan with grey instead of failing; a file without its
    // end-of-image marker (FF D9) near the end was cut off. Entropy-coded data cannot contain
    // FF D9, so only a real marker matches.
    if format == ImageFormat::Jpeg {
        let tail = &bytes[bytes.len().saturating_sub(4096)..];
        if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            return Err(DecodeError::TruncatedJpeg);
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => DecodeError::TooLarge(l.to_string()),
        other => DecodeError::Corrupt(other.to_string()),
    })?;
    if image.width() == 0 || image.height() == 0 {
        return Err(DecodeError::Corrupt("zero-sized image".into()));
    }
    let rgb = image.into_rgb8();
    Ok(center_square_resize(&rgb, size).into_raw())
}

fn center_square_resize(image: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let side = w.min(h);
    let square = imageops::crop_imm(image, (w - side) / 2, (h - side) / 2, side, side);
    if side == size {
        return square.to_image();
    }
    imageops::resize(&*square, size, size, FilterType::Triangle)
}

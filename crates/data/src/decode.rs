use std::{
    fs::File,
    io::{Cursor, Read},
    path::Path,
};

use crate::budget::{decode_budget, Reservation, MAX_DECODE_BYTES};
use image::{
    imageops, imageops::FilterType, metadata::Orientation, ColorType, DynamicImage, ImageDecoder,
    ImageFormat, ImageReader, Limits, RgbImage,
};

/// Largest file read as an image: far above any real photo (a 50-megapixel JPEG takes about
/// 30 MB), and a bound on the memory one file can take before it is even decoded.
pub const MAX_FILE_BYTES: u64 = 128 << 20;
/// Largest width or height accepted: a header claiming more is refused before any allocation.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Bytes read to recognise the format before the rest of a file is read.
const SIGNATURE_BYTES: u64 = 16;

/// Why one image could not be used. The run skips it and reports the reason.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("cannot read file: {0}")]
    Io(String),
    #[error("not a regular file ({0}); only image files are read")]
    NotAFile(&'static str),
    #[error("file too large ({} MiB; files over {} MiB are not read)", .0 >> 20, MAX_FILE_BYTES >> 20)]
    FileTooLarge(u64),
    #[error("empty file")]
    Empty,
    #[error("not a JPEG, PNG, WebP, BMP, GIF or TIFF image")]
    NotAnImage,
    #[error("truncated JPEG (no end-of-image marker)")]
    TruncatedJpeg,
    #[error("image too large ({0})")]
    TooLarge(String),
    #[error("corrupt image: {0}")]
    Corrupt(String),
}

/// Reads, decodes and resizes one image to `size x size` RGB8, HWC order.
///
/// Only regular files are opened (a FIFO would block, a device never end), at most
/// [`MAX_FILE_BYTES`] are read, and only once the first bytes are an image signature ([`image_format`]).
/// The file and the decode are reserved in the shared [`decode_budget`] first (waiting while
/// other threads' decodes hold it).
pub fn decode_image(path: &Path, size: u32) -> Result<Vec<u8>, DecodeError> {
    let (bytes, mut reservation) = read_image_file(path)?;
    let decoded = decode_within(&bytes, size, &mut reservation);
    // The file goes before its reservation does.
    drop(bytes);
    drop(reservation);
    decoded
}

fn io(e: std::io::Error) -> DecodeError {
    DecodeError::Io(e.to_string())
}

/// Refuses what is not a regular file, or one too large to read, from its metadata alone.
fn check_file(meta: &std::fs::Metadata) -> Result<(), DecodeError> {
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(DecodeError::NotAFile(describe(kind)));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(DecodeError::FileTooLarge(meta.len()));
    }
    Ok(())
}

pub(crate) fn describe(kind: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else {
        "not a file"
    }
}

/// The file's bytes and their reservation in the [`decode_budget`].
fn read_image_file(path: &Path) -> Result<(Vec<u8>, Reservation<'static>), DecodeError> {
    // `metadata`, not `open`: opening a FIFO blocks until a writer comes.
    check_file(&std::fs::metadata(path).map_err(io)?)?;
    let mut file = File::open(path).map_err(io)?;
    // What was opened may have been replaced since: check it too (its size bounds the buffer).
    let meta = file.metadata().map_err(io)?;
    check_file(&meta)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(SIGNATURE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    image_format(&bytes)?;
    let reservation = decode_budget().start(header_stage_cost(meta.len()));
    bytes.reserve_exact((meta.len() as usize).saturating_sub(bytes.len()));
    // One byte over the limit tells a file that grew after the check.
    let rest = MAX_FILE_BYTES + 1 - bytes.len() as u64;
    file.take(rest).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DecodeError::FileTooLarge(bytes.len() as u64));
    }
    Ok((bytes, reservation))
}

/// Bytes held before the header gives the real estimate: the file and the copy of it that the
/// JPEG decoder makes while it reads the header.
fn header_stage_cost(file_bytes: u64) -> u64 {
    file_bytes.saturating_mul(2)
}

/// The image's format, from the signature at the start of `bytes`: JPEG, PNG, WebP, BMP, GIF
/// (its first frame) or TIFF, the formats photos come in.
fn image_format(bytes: &[u8]) -> Result<ImageFormat, DecodeError> {
    match image::guess_format(bytes) {
        Ok(
            f @ (ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Gif
            | ImageFormat::Tiff),
        ) => Ok(f),
        _ => Err(DecodeError::NotAnImage),
    }
}

/// Decodes an in-memory image (JPEG, PNG, WebP, BMP, GIF or TIFF), whatever its colour type or
/// bit depth, turned upright by its EXIF orientation, to `size x size` RGB8: the centre square
/// (the shorter side) is cut out and resized with a triangle (bilinear, antialiased) filter, so
/// the aspect ratio is never distorted.
///
/// The memory the whole path needs is estimated from the header and refused above
/// [`MAX_DECODE_BYTES`] before any pixel is decoded: a few hundred kilobytes of PNG can claim
/// gigabytes of pixels. The estimate is reserved in the shared [`decode_budget`] while the
/// image is decoded, so concurrent decodes together stay within it.
pub fn decode_image_bytes(bytes: &[u8], size: u32) -> Result<Vec<u8>, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DecodeError::FileTooLarge(bytes.len() as u64));
    }
    image_format(bytes)?;
    let mut reservation = decode_budget().start(header_stage_cost(bytes.len() as u64));
    decode_within(bytes, size, &mut reservation)
}

/// [`decode_image_bytes`] with the header stage already reserved in `reservation`, which grows
/// to the header's estimate before the pixels are decoded.
fn decode_within(
    bytes: &[u8],
    size: u32,
    reservation: &mut Reservation<'_>,
) -> Result<Vec<u8>, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DecodeError::FileTooLarge(bytes.len() as u64));
    }
    let format = image_format(bytes)?;
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
    // Bounds the PNG decoder's own buffers (text and ICC chunks); the pixels are checked below.
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    // A phone photo's pixels are stored as the sensor saw them; EXIF says how to turn them
    // upright (an unreadable tag leaves them as stored).
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(DecodeError::Corrupt("zero-sized image".into()));
    }
    let color = decoder.color_type();
    let needed = decode_cost(bytes, format, (w, h), color, size);
    if needed > MAX_DECODE_BYTES {
        return Err(DecodeError::TooLarge(format!(
            "{w}x{h} pixels, {color:?}: decoding would take about {} MiB, more than the {} MiB \
             allowed",
            needed >> 20,
            MAX_DECODE_BYTES >> 20
        )));
    }
    reservation.grow_to(needed);
    let mut image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    image.apply_orientation(orientation);
    let rgb = image.into_rgb8();
    Ok(center_square_resize(&rgb, size).into_raw())
}

fn image_error(e: image::ImageError) -> DecodeError {
    match e {
        image::ImageError::Limits(l) => DecodeError::TooLarge(l.to_string()),
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// Peak bytes to turn `bytes` into `size x size` RGB8, from the header alone. The file stays
/// in memory throughout; then the largest of three stages: decoding (the pixels plus the JPEG
/// decoder's copy of the file and, when it needs them, every DCT coefficient), conversion to
/// RGB8 (the pixels plus their copy) and resizing (the RGB8 pixels plus a `side x size` RGBA f32
/// buffer and the output).
fn decode_cost(
    bytes: &[u8],
    format: ImageFormat,
    (w, h): (u32, u32),
    color: ColorType,
    size: u32,
) -> u64 {
    let pixels = u64::from(w) * u64::from(h);
    let file = bytes.len() as u64;
    let decoded = pixels * u64::from(color.bytes_per_pixel());
    let decoder = match format {
        ImageFormat::Jpeg => file + jpeg_coefficient_bytes(bytes, w, h),
        _ => 0,
    };
    let rgb = pixels * 3;
    let convert = if color == ColorType::Rgb8 { 0 } else { rgb };
    let size = u64::from(size);
    let resize = u64::from(w.min(h)) * size * 16 + size * size * 3;
    file + (decoded + decoder.max(convert)).max(rgb + resize)
}

/// Memory for the DCT coefficients a JPEG decoder keeps for the whole image (2 bytes a sample,
/// without chroma subsampling, MCU padding included) when the frame is progressive or its first
/// scan lacks components; 0 when it decodes one row of blocks at a time. Unreadable headers
/// count as the worst case: four components.
fn jpeg_coefficient_bytes(bytes: &[u8], w: u32, h: u32) -> u64 {
    let padded = u64::from(w.div_ceil(32) * 32) * u64::from(h.div_ceil(32) * 32);
    match jpeg_frame(bytes) {
        Some(JpegFrame {
            progressive: false,
            components,
            first_scan,
        }) if first_scan == components => 0,
        Some(frame) => padded * u64::from(frame.components) * 2,
        None => padded * 4 * 2,
    }
}

struct JpegFrame {
    progressive: bool,
    components: u8,
    /// Components in the first scan.
    first_scan: u8,
}

/// Walks a JPEG's marker segments to its frame header (SOFn) and first scan header (SOS).
fn jpeg_frame(bytes: &[u8]) -> Option<JpegFrame> {
    let mut frame: Option<(bool, u8)> = None;
    let mut i = 2; // after SOI
    loop {
        if *bytes.get(i)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(i + 1)?;
        match marker {
            // Fill byte before a marker.
            0xFF => i += 1,
            // Markers without a length.
            0x01 | 0xD0..=0xD8 => i += 2,
            _ => {
                let len = usize::from(u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?]));
                let segment = bytes.get(i + 4..i + 2 + len)?;
                match marker {
                    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
                    0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                        let progressive = matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
                        frame = Some((progressive, *segment.get(5)?));
                    }
                    0xDA => {
                        let (progressive, components) = frame?;
                        return Some(JpegFrame {
                            progressive,
                            components,
                            first_scan: *segment.first()?,
                        });
                    }
                    _ => {}
                }
                i += 2 + len;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(progressive: bool) -> Vec<u8> {
        let img = crate::synth::synth_image(0, 40, 1);
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        let mut bytes = out.into_inner();
        if progressive {
            // Only the frame type is read here: rewrite SOF0 as SOF2.
            let at = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
            bytes[at + 1] = 0xC2;
        }
        bytes
    }

    #[test]
    fn jpeg_headers_tell_when_coefficients_are_kept() {
        let baseline = jpeg_frame(&jpeg(false)).unwrap();
        assert!(!baseline.progressive);
        assert_eq!((baseline.components, baseline.first_scan), (3, 3));
        assert_eq!(jpeg_coefficient_bytes(&jpeg(false), 40, 40), 0);
        assert!(jpeg_frame(&jpeg(true)).unwrap().progressive);
        assert_eq!(jpeg_coefficient_bytes(&jpeg(true), 40, 40), 64 * 64 * 3 * 2);
        // Garbage after the signature counts as the worst case.
        assert_eq!(
            jpeg_coefficient_bytes(b"\xFF\xD8\xFF\x00junk", 40, 40),
            64 * 64 * 4 * 2
        );
    }

    #[test]
    fn decode_cost_counts_the_rgb_copy_and_the_resize() {
        // 8000x8000 grey: 64 MB of pixels, then a 192 MB RGB8 copy.
        let cost = decode_cost(b"", ImageFormat::Png, (8000, 8000), ColorType::L8, 64);
        assert_eq!(cost, 64_000_000 + 192_000_000);
        // RGB8 is not copied; the resize buffer dominates at a large output size.
        let cost = decode_cost(b"", ImageFormat::Png, (1000, 1000), ColorType::Rgb8, 1000);
        assert_eq!(cost, 3_000_000 + 1000 * 1000 * 16 + 3_000_000);
    }
}

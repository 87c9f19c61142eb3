//! The photo formats users have decode, and a phone photo's EXIF orientation turns it upright.

use std::io::Cursor;

use catdog_data::decode_image_bytes;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

/// 16x16: red above, blue below.
fn red_over_blue() -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(16, 16, |_, y| {
        if y < 8 {
            Rgb([250, 0, 0])
        } else {
            Rgb([0, 0, 250])
        }
    }))
}

fn encoded(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

/// The RGB of pixel (x, y) of a decoded `size x size` image.
fn pixel(rgb: &[u8], size: usize, x: usize, y: usize) -> [u8; 3] {
    let i = (y * size + x) * 3;
    [rgb[i], rgb[i + 1], rgb[i + 2]]
}

fn is_red(p: [u8; 3]) -> bool {
    p[0] > 180 && p[2] < 80
}

fn is_blue(p: [u8; 3]) -> bool {
    p[2] > 180 && p[0] < 80
}

#[test]
fn webp_bmp_gif_and_tiff_photos_decode_as_png_does() {
    for format in [
        ImageFormat::Png,
        ImageFormat::WebP,
        ImageFormat::Bmp,
        ImageFormat::Gif,
        ImageFormat::Tiff,
    ] {
        let rgb = decode_image_bytes(&encoded(&red_over_blue(), format), 16)
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert!(is_red(pixel(&rgb, 16, 8, 2)), "{format:?}");
        assert!(is_blue(pixel(&rgb, 16, 8, 13)), "{format:?}");
    }
}

/// `jpeg` with an EXIF segment whose orientation tag is `orientation` (1-8), right after SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
    let tiff: [u8; 26] = [
        b'I',
        b'I',
        0x2A,
        0,
        8,
        0,
        0,
        0, // little-endian TIFF header, first IFD at 8
        1,
        0, // one entry
        0x12,
        0x01,
        3,
        0,
        1,
        0,
        0,
        0,
        orientation,
        0,
        0,
        0, // Orientation, SHORT, 1 value
        0,
        0,
        0,
        0, // no next IFD
    ];
    let mut app1 = vec![0xFF, 0xE1, 0, (2 + 6 + tiff.len()) as u8];
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    [&jpeg[..2], &app1[..], &jpeg[2..]].concat()
}

#[test]
fn a_rotated_phone_photo_is_turned_upright() {
    let jpeg = encoded(&red_over_blue(), ImageFormat::Jpeg);
    // As stored: red above.
    let plain = decode_image_bytes(&jpeg, 16).unwrap();
    assert!(is_red(pixel(&plain, 16, 8, 2)) && is_blue(pixel(&plain, 16, 8, 13)));
    // Orientation 6: shown rotated 90 degrees clockwise, so red (above) ends up on the right.
    let rotated = decode_image_bytes(&with_exif_orientation(&jpeg, 6), 16).unwrap();
    assert!(
        is_red(pixel(&rotated, 16, 13, 8)),
        "{:?}",
        pixel(&rotated, 16, 13, 8)
    );
    assert!(
        is_blue(pixel(&rotated, 16, 2, 8)),
        "{:?}",
        pixel(&rotated, 16, 2, 8)
    );
    // Orientation 3: upside down, blue above.
    let flipped = decode_image_bytes(&with_exif_orientation(&jpeg, 3), 16).unwrap();
    assert!(is_blue(pixel(&flipped, 16, 8, 2)) && is_red(pixel(&flipped, 16, 8, 13)));
}

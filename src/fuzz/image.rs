//! Fuzz target `image`: reading an attached image ([`ImageInput::load`]): the size checks on the header before
//! decoding, the bounded decode, and fitting to a square.
//!
//! Owns: a corpus of small VALID images made with the `image` crate (PNG of several colour types and bit depths,
//! JPEG, BMP, TIFF, WebP; a few pixels a side, so decodes are cheap), mutated with big-endian length fields and
//! PNG chunk CRCs recomputed after the mutation (otherwise nearly every mutant stops at the first CRC). A mutant
//! whose header claims a large image that the checks accept is mutated again, so that no input decodes
//! megapixels. Checks: no panic; a refusal is a typed [`ImageError`] naming the file; an accepted image comes
//! back square, as large as its longer side (pad) or the projector's side (stretch).

use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

use super::{Bytes, Mutator, Rng};
use crate::image_input::{ImageError, ImageFit, ImageInput};

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("a small image encodes");
    out.into_inner()
}

/// Small valid images, made once.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let rgb = |w, h| {
            DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
                Rgb([(x * 40) as u8, (y * 60) as u8, ((x + y) * 20) as u8])
            }))
        };
        vec![
            encode(rgb(4, 4), ImageFormat::Png),
            encode(rgb(6, 2), ImageFormat::Png),
            encode(DynamicImage::ImageRgba8(rgb(3, 5).to_rgba8()), ImageFormat::Png),
            encode(DynamicImage::ImageLuma16(rgb(2, 2).to_luma16()), ImageFormat::Png),
            encode(DynamicImage::ImageLuma8(rgb(11, 1).to_luma8()), ImageFormat::Png),
            encode(rgb(8, 8), ImageFormat::Jpeg),
            encode(rgb(9, 3), ImageFormat::Jpeg),
            encode(rgb(5, 5), ImageFormat::Bmp),
            encode(rgb(2, 3), ImageFormat::Tiff),
            encode(DynamicImage::ImageRgba8(rgb(3, 3).to_rgba8()), ImageFormat::WebP),
        ]
    })
}

const DICTIONARY: &[&[u8]] = &[
    b"\x89PNG\r\n\x1a\n",
    b"IHDR",
    b"IDAT",
    b"IEND",
    b"PLTE",
    b"tRNS",
    b"\xff\xd8\xff",
    b"\xff\xc0\x00\x11\x08",
    b"\xff\xda",
    b"\xff\xd9",
    b"BM",
    b"II*\x00",
    b"RIFF",
    b"WEBPVP8L",
];

/// PNG's chunk checksum (also used by image_input's tests to hand-make PNG headers).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Recomputes the CRC of every PNG chunk whose length fits in the file.
fn fix_png_crcs(png: &mut [u8]) {
    if !png.starts_with(b"\x89PNG") {
        return;
    }
    let mut at = 8;
    while at + 12 <= png.len() {
        let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]) as usize;
        let Some(end) = (at + 8).checked_add(len).filter(|&e| e + 4 <= png.len()) else {
            return;
        };
        let crc = crc32(&png[at + 4..end]);
        png[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
}

/// Whether decoding `bytes` could be costly: its header claims more pixels than a fuzz input should decode, and
/// a size the checks would let through (a size they refuse is never decoded, and is worth fuzzing).
fn claims_a_large_image(bytes: &[u8]) -> bool {
    let Ok(reader) = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format() else {
        return false;
    };
    let Ok((w, h)) = reader.into_dimensions() else {
        return false;
    };
    let (long, short) = (u64::from(w.max(h)), u64::from(w.min(h)));
    let refused = short == 0 || long > 10 * short || long * long > crate::image_input::MAX_PIXELS;
    !refused && long * long > 1 << 16
}

#[derive(Debug)]
struct Input {
    bytes: Bytes,
    fit: ImageFit,
    side: u32,
}

fn generate(rng: &mut Rng) -> Input {
    let corpus = corpus();
    let m = Mutator {
        dictionary: DICTIONARY,
        corpus,
        big_endian: true,
    };
    // An unmutated image when 16 mutants in a row claim a large size (rare).
    let mut bytes = rng.choose(corpus).clone();
    for _ in 0..16 {
        let mut mutant = rng.choose(corpus).clone();
        if !rng.one_in(20) {
            m.mutate(rng, &mut mutant);
            if !rng.one_in(3) {
                fix_png_crcs(&mut mutant);
            }
        }
        if !claims_a_large_image(&mutant) {
            bytes = mutant;
            break;
        }
    }
    Input {
        bytes: Bytes(bytes),
        fit: if rng.one_in(2) {
            ImageFit::Pad
        } else {
            ImageFit::Stretch
        },
        side: rng.range(1, 32) as u32,
    }
}

fn check(input: &Input, path: &Path) -> String {
    std::fs::write(path, &input.bytes.0).expect("the test image is written");
    match ImageInput::load(path, input.fit, input.side) {
        Ok(image) => {
            let (w, h) = image.rgb.dimensions();
            assert_eq!(w, h, "an accepted image comes back square");
            assert!(w >= 1);
            "decoded".into()
        }
        Err(e) => {
            assert!(
                !matches!(e, ImageError::Missing { .. } | ImageError::Unreadable { .. }),
                "{e}"
            );
            assert!(e.to_string().contains("fuzz-image"), "the error names the file: {e}");
            format!("refused: {}", super::variant(&e, "-"))
        }
    }
}

#[test]
fn image() {
    for bytes in corpus() {
        assert!(!claims_a_large_image(bytes));
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("fuzz-image");
    super::run("image", 10, generate, |input| check(input, &path));
}

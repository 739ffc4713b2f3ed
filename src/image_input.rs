//! Reading the images a user attaches: decode (PNG, JPEG, BMP, TIFF, WebP), convert to RGB, and fit to a square
//! the way MedGemma expects.
//!
//! Owns: every check on an image file (missing, unreadable, not an image, empty) with an error that names it, and
//! the `--image-fit` choice. Pure Rust (the `image` crate); it never calls llama.cpp. The engine hands the RGB
//! pixels to the vision projector, which resizes them to its own input size.

use std::path::{Path, PathBuf};

use image::{imageops::FilterType, DynamicImage, RgbImage};

/// The side of MedGemma's square image input (SigLIP at 896 px), when a projector does not say.
pub const DEFAULT_IMAGE_SIDE: u32 = 896;

/// How a non-square image becomes square before the vision tower sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFit {
    /// Pad with black to a square, keeping the aspect ratio (what Google's own MedGemma preprocessing does).
    #[default]
    Pad,
    /// Stretch to a square (what the Hugging Face reference processor does).
    Stretch,
}

/// An image ready for the vision projector: square RGB pixels and the SHA-256 of the original file.
#[derive(Debug, Clone)]
pub struct ImageInput {
    pub path: PathBuf,
    pub rgb: RgbImage,
    pub sha256: String,
}

/// Why an image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {}: file not found; check the path", path.display())]
    Missing { path: PathBuf },
    #[error("image {}: cannot read it: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("image {}: not a readable PNG, JPEG, BMP, TIFF or WebP image ({reason})", path.display())]
    NotAnImage { path: PathBuf, reason: String },
    #[error("image {}: it is {width}x{height} pixels; an image needs at least 1x1", path.display())]
    Empty { path: PathBuf, width: u32, height: u32 },
}

impl ImageInput {
    /// Reads `path`, decodes it by content (not by extension), converts to RGB and fits it to a square.
    /// `side` is the projector's input size for [`ImageFit::Stretch`]; padding keeps the original resolution.
    pub fn load(path: &Path, fit: ImageFit, side: u32) -> Result<ImageInput, ImageError> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ImageError::Missing {
                path: path.to_path_buf(),
            },
            _ => ImageError::Unreadable {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let sha256 = crate::files::sha256_hex(&bytes);
        let not_image = |reason: String| ImageError::NotAnImage {
            path: path.to_path_buf(),
            reason,
        };
        let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| not_image(e.to_string()))?;
        if reader.format().is_none() {
            return Err(not_image("unrecognised file format".into()));
        }
        let decoded = reader.decode().map_err(|e| match header_dims(&bytes) {
            // Decoders refuse a zero-sized image before we can see it; say what is wrong in plain words.
            Some((w, h)) if w == 0 || h == 0 => ImageError::Empty {
                path: path.to_path_buf(),
                width: w,
                height: h,
            },
            _ => not_image(e.to_string()),
        })?;
        check_dims(path, decoded.width(), decoded.height())?;
        let rgb = fit_square(decoded, fit, side.max(1));
        Ok(ImageInput {
            path: path.to_path_buf(),
            rgb,
            sha256,
        })
    }
}

/// Width and height from a PNG header, read directly (decoders reject a 0x0 header with a vaguer message).
fn header_dims(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() >= 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR" {
        let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
        let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
        return Some((w, h));
    }
    None
}

fn check_dims(path: &Path, width: u32, height: u32) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    Ok(())
}

/// Makes an image square: padding centres it on black; stretching resizes it to `side` x `side` (bilinear).
pub fn fit_square(image: DynamicImage, fit: ImageFit, side: u32) -> RgbImage {
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    if w == h {
        return rgb;
    }
    match fit {
        ImageFit::Stretch => image::imageops::resize(&rgb, side, side, FilterType::Triangle),
        ImageFit::Pad => {
            let n = w.max(h);
            let mut square = RgbImage::new(n, n);
            image::imageops::replace(&mut square, &rgb, i64::from((n - w) / 2), i64::from((n - h) / 2));
            square
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn pad_centres_on_black() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 2, Rgb([200, 100, 50])));
        let sq = fit_square(img, ImageFit::Pad, 64);
        assert_eq!(sq.dimensions(), (4, 4));
        assert_eq!(sq.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(sq.get_pixel(0, 1), &Rgb([200, 100, 50]));
        assert_eq!(sq.get_pixel(3, 2), &Rgb([200, 100, 50]));
        assert_eq!(sq.get_pixel(3, 3), &Rgb([0, 0, 0]));
    }

    #[test]
    fn stretch_resizes_to_side_and_square_is_untouched() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(10, 5, Rgb([1, 2, 3])));
        assert_eq!(fit_square(img, ImageFit::Stretch, 8).dimensions(), (8, 8));
        let sq = DynamicImage::ImageRgb8(RgbImage::from_pixel(7, 7, Rgb([1, 2, 3])));
        assert_eq!(fit_square(sq, ImageFit::Stretch, 8).dimensions(), (7, 7));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.png");
        let e = ImageInput::load(&missing, ImageFit::Pad, 64).unwrap_err();
        assert!(matches!(e, ImageError::Missing { .. }) && e.to_string().contains("nope.png"));
        let text = dir.path().join("notes.png");
        std::fs::write(&text, "not an image at all").unwrap();
        let e = ImageInput::load(&text, ImageFit::Pad, 64).unwrap_err();
        assert!(matches!(e, ImageError::NotAnImage { .. }), "{e}");
    }

    #[test]
    fn decodes_by_content_and_hashes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scan.jpg.bin");
        RgbImage::from_pixel(3, 3, Rgb([9, 9, 9]))
            .save_with_format(&p, image::ImageFormat::Png)
            .unwrap();
        let img = ImageInput::load(&p, ImageFit::Pad, 64).unwrap();
        assert_eq!(img.rgb.dimensions(), (3, 3));
        assert_eq!(img.sha256.len(), 64);
    }
}

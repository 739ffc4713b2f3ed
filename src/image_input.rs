//! Reading the images a user attaches: decode (PNG, JPEG, BMP, TIFF, WebP, and DICOM through [`crate::dicom`]),
//! convert to RGB (16-bit greyscale through the same windowing as DICOM), and fit to a square the way MedGemma
//! expects.
//!
//! Owns: every check on an image file (missing, not a regular file, too large a file, unreadable, not an image,
//! empty, too many pixels, too elongated) with an error that names it, and the `--image-fit` choice. The file's
//! size is checked before it is read, and the image's size from its header before anything is decoded; the
//! decoder is held to the same bounds, so no image can exhaust memory. Pure Rust (the `image` crate); it never
//! calls llama.cpp. The engine hands the RGB pixels to the vision projector, which resizes them to its own input
//! size.

use std::path::{Path, PathBuf};

use image::{imageops::FilterType, DynamicImage, RgbImage};

pub use crate::dicom::DicomOptions;

/// The side of MedGemma's square image input (SigLIP at 896 px), when a projector does not say.
pub const DEFAULT_IMAGE_SIDE: u32 = 896;

/// The most pixels an image may hold, counting the black borders `--image-fit pad` adds (so the padded square is
/// what is bounded): 8192 x 8192 = 64 Mi pixels, 192 MiB as RGB. Medical images fit with room to spare: CR/DX
/// radiographs are up to about 4300 x 3500, mammograms about 4100 x 5100, panoramic dental X-rays about 3000 x
/// 1500, stitched full-spine or long-leg radiographs about 2500 x 7500, and whole-slide thumbnails a few thousand
/// pixels a side (a full slide at 40x is gigapixels: it is tiled into 896 x 896 patches, never given whole).
/// MedGemma sees every image as 896 x 896, so more pixels add no detail, only memory and time.
pub const MAX_PIXELS: u64 = 8192 * 8192;

/// The longest an image may be for its width (or wide for its height): 10 to 1. A panoramic dental X-ray is about
/// 2:1, a stitched long-leg radiograph 3:1 to 4:1, a 12-lead ECG strip up to about 8:1. At 10:1 the short side
/// is already only 90 of the model's 896 pixels; beyond that too little is left to read.
pub const MAX_ASPECT: u32 = 10;

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

/// An image ready for the vision projector: square RGB pixels (the engine keys its caches by them, so the same
/// file read with another fit or window is another image).
#[derive(Debug, Clone)]
pub struct ImageInput {
    pub path: PathBuf,
    pub rgb: RgbImage,
}

/// Why an image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {}: file not found; check the path", path.display())]
    Missing { path: PathBuf },
    // `error`, not `source`: the text already holds it, and a source would print it twice in the error chain.
    #[error("image {}: cannot read it: {error}", path.display())]
    Unreadable { path: PathBuf, error: std::io::Error },
    #[error("image {}: not a readable PNG, JPEG, BMP, TIFF or WebP image ({reason})", path.display())]
    NotAnImage { path: PathBuf, reason: String },
    #[error("image {}: it is {width}x{height} pixels; an image needs at least 1x1", path.display())]
    Empty { path: PathBuf, width: u32, height: u32 },
    #[error(
        "image {}: it is {width}x{height} pixels{}, {:.1} megapixels; the limit is {:.1} ({MAX_PIXELS} pixels, \
         8192x8192){}: downscale it (MedGemma sees every image at 896x896) or crop it to the region of interest",
        path.display(),
        if *padded { format!(", padded to a {0}x{0} square", width.max(height)) } else { String::new() },
        *pixels as f64 / 1e6,
        MAX_PIXELS as f64 / 1e6,
        if *padded { " counting the padding (--image-fit stretch does not pad)" } else { "" },
    )]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        pixels: u64,
        padded: bool,
    },
    #[error(
        "image {}: it is {width}x{height} pixels, {}:1 long for its width; the limit is {MAX_ASPECT}:1, since \
         MedGemma sees every image as one 896x896 square: crop it into parts of at most {MAX_ASPECT}:1 and attach \
         each",
        path.display(),
        aspect_text(*width, *height),
    )]
    TooElongated { path: PathBuf, width: u32, height: u32 },
    #[error(
        "image {}: the file is {}, more than the {} any accepted image needs (8192x8192 pixels at 16 bits per \
         channel, uncompressed); it is refused before it is read: downscale it (MedGemma sees every image at \
         896x896) or save it compressed (PNG or JPEG)",
        path.display(),
        size_text(*bytes),
        size_text(MAX_FILE_BYTES)
    )]
    FileTooLarge { path: PathBuf, bytes: u64 },
    #[error("image {}: {error}", path.display())]
    Dicom {
        path: PathBuf,
        error: crate::dicom::DicomError,
    },
    #[error(
        "image {}: decoding it would need more than {} MiB, although its header says {width}x{height}; the file \
         is probably damaged: export it again",
        path.display(),
        DECODE_ALLOC_BYTES >> 20
    )]
    DecoderLimit { path: PathBuf, width: u32, height: u32 },
}

/// What a decoder may allocate: the largest accepted image at 16 bits per channel RGBA (8 bytes a pixel), and as
/// much again for its working buffers. A header that lies about the size cannot make it allocate more.
const DECODE_ALLOC_BYTES: u64 = MAX_PIXELS * 16;

/// The largest image file read: an accepted image of the most pixels, uncompressed at 16 bits per channel RGBA
/// (8 bytes a pixel, 512 MiB), with room for its headers. Checked from the file's size before a byte is read, so
/// a huge file (or one that grows while read) cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = MAX_PIXELS * 8 + (16 << 20);

/// A size in bytes as people read it: `3.0 GiB`, `528.0 MiB`.
fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

/// Reads an image file the user named: a regular file only, at most [`MAX_FILE_BYTES`] (by its size first, and
/// never more than that even if it grows meanwhile).
fn read_image_file(path: &Path) -> Result<Vec<u8>, ImageError> {
    use std::io::Read;
    let io_error = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::NotFound => ImageError::Missing {
            path: path.to_path_buf(),
        },
        _ => ImageError::Unreadable {
            path: path.to_path_buf(),
            error,
        },
    };
    let file = crate::files::open_regular(path).map_err(io_error)?;
    let too_large = |bytes| ImageError::FileTooLarge {
        path: path.to_path_buf(),
        bytes,
    };
    let len = file.metadata().map_err(io_error)?.len();
    if len > MAX_FILE_BYTES {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The longest side any accepted image can have (an elongated image with `--image-fit stretch`).
const MAX_SIDE: u32 = 25_905; // floor(sqrt(MAX_PIXELS * MAX_ASPECT))

fn decoder_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(DECODE_ALLOC_BYTES);
    limits
}

impl ImageInput {
    /// Reads `path`, decodes it by content (not by extension), converts to RGB and fits it to a square.
    /// `side` is the projector's input size for [`ImageFit::Stretch`]; padding keeps the original resolution.
    pub fn load(path: &Path, fit: ImageFit, side: u32) -> Result<ImageInput, ImageError> {
        Self::load_with(path, fit, side, &DicomOptions::default())
    }

    /// [`ImageInput::load`] with the choices for a DICOM file (window, frame). A 16-bit greyscale PNG or TIFF uses
    /// the window too (see `window_grey16`); every other image ignores them.
    /// A DICOM file's notices (no window: min-max) go to stderr, naming the file.
    pub fn load_with(path: &Path, fit: ImageFit, side: u32, dicom: &DicomOptions) -> Result<ImageInput, ImageError> {
        let bytes = read_image_file(path)?;
        Self::from_bytes(path, &bytes, fit, side, dicom)
    }

    /// [`ImageInput::load_with`] for an image already in memory (a server request's `data:` URL); `path` only
    /// names it in messages. The same checks as a file's, its byte count included.
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        fit: ImageFit,
        side: u32,
        dicom: &DicomOptions,
    ) -> Result<ImageInput, ImageError> {
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(ImageError::FileTooLarge {
                path: path.to_path_buf(),
                bytes: bytes.len() as u64,
            });
        }
        if crate::dicom::is_dicom(bytes) {
            let rgb = fit_square(load_dicom(path, bytes, fit, dicom)?, fit, side.max(1));
            return Ok(ImageInput {
                path: path.to_path_buf(),
                rgb,
            });
        }
        let not_image = |reason: String| ImageError::NotAnImage {
            path: path.to_path_buf(),
            reason,
        };
        let reader = || -> Result<_, ImageError> {
            let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|e| not_image(e.to_string()))?;
            if reader.format().is_none() {
                return Err(not_image("unrecognised file format".into()));
            }
            reader.limits(decoder_limits());
            Ok(reader)
        };
        // Decoders refuse a zero-sized image before we can see it; say what is wrong in plain words.
        // A truncated PNG whose header claims a huge size is refused for its size, the first thing wrong with it.
        let zero_sized = |e: image::ImageError| match header_dims(bytes) {
            Some((w, h)) => check_dims(path, w, h, fit)
                .err()
                .unwrap_or_else(|| not_image(e.to_string())),
            None => not_image(e.to_string()),
        };
        // The size from the header alone, checked before a pixel is decoded.
        let (width, height) = reader()?.into_dimensions().map_err(zero_sized)?;
        check_dims(path, width, height, fit)?;
        let decoded = reader()?.decode().map_err(|e| match e {
            image::ImageError::Limits(_) => ImageError::DecoderLimit {
                path: path.to_path_buf(),
                width,
                height,
            },
            e => zero_sized(e),
        })?;
        check_dims(path, decoded.width(), decoded.height(), fit)?;
        let decoded = window_grey16(path, decoded, dicom);
        let rgb = fit_square(decoded, fit, side.max(1));
        Ok(ImageInput {
            path: path.to_path_buf(),
            rgb,
        })
    }
}

/// A DICOM file's chosen frame as RGB: the header read and its size checked (the same limits as any image)
/// before the pixel data is decoded.
fn load_dicom(path: &Path, bytes: &[u8], fit: ImageFit, options: &DicomOptions) -> Result<DynamicImage, ImageError> {
    let dicom_error = |error| ImageError::Dicom {
        path: path.to_path_buf(),
        error,
    };
    let header = crate::dicom::read_header(bytes).map_err(dicom_error)?;
    check_dims(path, header.columns, header.rows, fit)?;
    if options.verbose {
        eprintln!(
            "medgemma: image {}: {}",
            path.display(),
            crate::dicom::describe(&header, options)
        );
    }
    let mut notice = |text: String| eprintln!("image {}: {text}", path.display());
    crate::dicom::decode(bytes, &header, options, &mut notice).map_err(dicom_error)
}

/// A 16-bit greyscale image (PNG or TIFF; an alpha channel is dropped, as for every image) goes through the DICOM
/// windowing instead of being scaled linearly from 0..65535 to 8 bits (where a 12-bit
/// radiograph would come out nearly black): `--window C,W` on the raw 16-bit values, else min-max with
/// the same notice as a DICOM file without a window. Every other image is returned untouched.
fn window_grey16(path: &Path, image: DynamicImage, dicom: &DicomOptions) -> DynamicImage {
    let (w, h) = (image.width(), image.height());
    let values: Vec<u16> = match &image {
        DynamicImage::ImageLuma16(grey) => grey.as_raw().clone(),
        DynamicImage::ImageLumaA16(grey) => grey.as_raw().chunks_exact(2).map(|p| p[0]).collect(),
        _ => return image,
    };
    let mut notice = |text: String| eprintln!("image {}: {text}", path.display());
    crate::dicom::grey16_to_rgb(w, h, &values, dicom.window, &mut notice)
}

/// Width and height from a PNG header, read directly (decoders reject a 0x0 header with a vaguer message, and need
/// more than the header to say a size).
fn header_dims(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() >= 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR" {
        let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
        let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
        return Some((w, h));
    }
    None
}

/// How many times longer than wide (or wider than long) an image is, e.g. `10.3` or `100000`.
fn aspect_text(width: u32, height: u32) -> String {
    let ratio = f64::from(width.max(height)) / f64::from(width.min(height).max(1));
    let text = format!("{ratio:.1}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_string)
}

/// The size checks, on the header's size (before decoding) and again on the decoded image.
fn check_dims(path: &Path, width: u32, height: u32, fit: ImageFit) -> Result<(), ImageError> {
    let path = path.to_path_buf();
    if width == 0 || height == 0 {
        return Err(ImageError::Empty { path, width, height });
    }
    let (long, short) = (u64::from(width.max(height)), u64::from(width.min(height)));
    if long > u64::from(MAX_ASPECT) * short {
        return Err(ImageError::TooElongated { path, width, height });
    }
    let padded = fit == ImageFit::Pad && width != height;
    let pixels = if padded { long * long } else { long * short };
    if pixels > MAX_PIXELS {
        return Err(ImageError::TooLarge {
            path,
            width,
            height,
            pixels,
            padded,
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
    fn sizes_are_checked_before_decoding() {
        let p = Path::new("big.png");
        assert!(check_dims(p, 8192, 8192, ImageFit::Pad).is_ok());
        assert!(check_dims(p, 8192, 820, ImageFit::Pad).is_ok());
        let e = check_dims(p, 8193, 8000, ImageFit::Pad).unwrap_err();
        assert!(e.to_string().contains("padded to a 8193x8193 square"), "{e}");
        assert!(check_dims(p, 8193, 8000, ImageFit::Stretch).is_ok());
        let e = check_dims(p, 20000, 20000, ImageFit::Stretch).unwrap_err();
        assert!(matches!(e, ImageError::TooLarge { padded: false, .. }), "{e}");
        assert!(
            e.to_string().contains("20000x20000") && e.to_string().contains("downscale"),
            "{e}"
        );
        let e = check_dims(p, 1, 100_000, ImageFit::Pad).unwrap_err();
        assert!(matches!(e, ImageError::TooElongated { .. }), "{e}");
        assert!(
            e.to_string().contains("100000:1") && e.to_string().contains("crop"),
            "{e}"
        );
        assert!(check_dims(p, 100, 1000, ImageFit::Pad).is_ok());
        let e = check_dims(p, 3, 31, ImageFit::Pad).unwrap_err();
        assert!(e.to_string().contains("10.3:1 long"), "{e}");
        assert_eq!(MAX_SIDE, (MAX_PIXELS as f64 * f64::from(MAX_ASPECT)).sqrt() as u32);
    }

    #[test]
    fn a_huge_file_is_refused_by_its_size_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse.png");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(3 << 30).unwrap();
        let e = ImageInput::load(&p, ImageFit::Pad, 64).unwrap_err();
        assert!(matches!(e, ImageError::FileTooLarge { .. }), "{e}");
        assert!(
            e.to_string().contains("3.0 GiB")
                && e.to_string().contains("528.0 MiB")
                && e.to_string().contains("downscale"),
            "{e}"
        );
    }

    #[test]
    fn a_header_claiming_a_huge_image_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.png");
        std::fs::write(&p, png_header_only(20000, 20000)).unwrap();
        let e = ImageInput::load(&p, ImageFit::Pad, 64).unwrap_err();
        assert!(matches!(e, ImageError::TooLarge { .. }), "{e}");
        let p = dir.path().join("thin.png");
        std::fs::write(&p, png_header_only(1, 100_000)).unwrap();
        let e = ImageInput::load(&p, ImageFit::Pad, 64).unwrap_err();
        assert!(matches!(e, ImageError::TooElongated { .. }), "{e}");
    }

    /// A PNG signature and IHDR chunk (8-bit RGB) with no pixel data: what a lying or truncated file starts with.
    fn png_header_only(width: u32, height: u32) -> Vec<u8> {
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(width.to_be_bytes());
        ihdr.extend(height.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(13u32.to_be_bytes());
        png.extend(&ihdr);
        png.extend(crate::fuzz::image::crc32(&ihdr).to_be_bytes());
        png
    }

    /// 8-bit images are exactly what the `image` crate makes of them, whatever the DICOM flags say.
    #[test]
    fn eight_bit_images_are_untouched_by_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let grey = image::GrayImage::from_fn(5, 5, |x, y| image::Luma([(x * 50 + y) as u8]));
        let rgb = RgbImage::from_fn(5, 5, |x, y| Rgb([(x * 40) as u8, (y * 30) as u8, 7]));
        let options = DicomOptions {
            window: Some(crate::dicom::parse_window("10,20").unwrap()),
            ..Default::default()
        };
        for (name, image) in [
            ("g.png", DynamicImage::ImageLuma8(grey)),
            ("c.tiff", DynamicImage::ImageRgb8(rgb)),
        ] {
            let p = dir.path().join(name);
            image.save(&p).unwrap();
            for options in [DicomOptions::default(), options] {
                let loaded = ImageInput::load_with(&p, ImageFit::Pad, 64, &options).unwrap();
                assert_eq!(loaded.rgb.as_raw(), image.to_rgb8().as_raw(), "{name}");
            }
        }
    }

    /// 16-bit grey: the window on the raw values, or min-max without one (not the crate's 65535 -> 255 scaling).
    #[test]
    fn sixteen_bit_grey_is_windowed() {
        let dir = tempfile::tempdir().unwrap();
        let values = [1000u16, 1500, 2000, 4000];
        let grey = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 2, values.to_vec()).unwrap();
        for name in ["g16.png", "g16.tiff"] {
            let p = dir.path().join(name);
            DynamicImage::ImageLuma16(grey.clone()).save(&p).unwrap();
            let loaded = ImageInput::load(&p, ImageFit::Pad, 64).unwrap();
            let r: Vec<u8> = loaded.rgb.pixels().map(|p| p.0[0]).collect();
            assert_eq!(r, vec![0, 43, 85, 255], "{name}: min-max");
            assert!(loaded.rgb.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
            let options = DicomOptions {
                window: Some(crate::dicom::parse_window("1500.5,1001").unwrap()),
                ..Default::default()
            };
            let loaded = ImageInput::load_with(&p, ImageFit::Pad, 64, &options).unwrap();
            let r: Vec<u8> = loaded.rgb.pixels().map(|p| p.0[0]).collect();
            assert_eq!(
                r,
                vec![0, 128, 255, 255],
                "{name}: window 1500.5/1001 runs from 1000 to 2000"
            );
        }
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
    }
}

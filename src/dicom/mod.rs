//! DICOM images in: recognising a DICOM file by its content, reading its header with bounded sizes, and turning
//! one frame into 8-bit RGB through one documented pixel pipeline.
//!
//! The pipeline, in order (PS3.3 C.11; pydicom's `apply_modality_lut` + `apply_voi_lut` are the reference; which
//! attribute wins over which is written in `header.rs`):
//! 1. Modality: the Modality LUT Sequence if present, else stored value x RescaleSlope + RescaleIntercept (both or
//!    neither; 1 and 0 when absent; an enhanced file's per-frame or shared Pixel Value Transformation first).
//! 2. VOI: `--window C,W` or a preset if given; else the VOI LUT Sequence (its first item, or `--window-index N`),
//!    scaled from its output range 0..2^bits-1; else the frame's window (per-frame or shared Frame VOI LUT, else
//!    WindowCenter/WindowWidth: the first pair, or `--window-index N`) with its VOI LUT Function (LINEAR,
//!    LINEAR_EXACT, SIGMOID); else min-max over the frame, with a one-line notice on stderr.
//! 3. MONOCHROME1 inverted (its lowest value is white).
//! 4. To 8 bits, grey copied to R, G and B. Colour images (RGB, YBR_FULL, YBR_FULL_422; 8 bits) skip 1-3 and are
//!    converted to RGB.
//!
//! Before dicom-rs reads a file, `lengths.rs` refuses element lengths past its end and `rle.rs` checks RLE frames:
//! dicom-rs 0.10.1 zero-fills declared lengths up front and its RLE decoder can panic.
//!
//! The caller then fits the image to the model's square input exactly as for PNG or JPEG.
//!
//! Owns: every refusal of a DICOM file (DICOMDIR, no pixel data, a transfer syntax without a decoder, truncated
//! pixel data, only one of slope/intercept, sizes over the limits checked from the header before decoding).
//! Must not: print or return patient identifiers (name, ID, birth date): errors and notices name the file, the
//! problem and technical attributes only. It never calls llama.cpp.

mod describe;
mod frames;
mod header;
mod lengths;
mod lut;
mod rle;
pub mod series;
mod window;

pub(crate) use describe::describe;
pub use header::{read_header, Header};
pub use window::{parse_window, Window};

use std::io::Cursor;

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, DecodedPixelData, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::{DynamicImage, RgbImage};
use window::Voi;

/// The choices a user makes about a DICOM image; the defaults follow the file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DicomOptions {
    /// `--window`: replaces the file's window (applied with the LINEAR function).
    pub window: Option<Window>,
    /// `--window-index`: which of the file's windows, 1-based; the first when `None`.
    pub window_index: Option<usize>,
    /// `--frame`: which frame of a multi-frame file, 1-based; the first when `None`.
    pub frame: Option<u32>,
    /// `--verbose`: one line per DICOM image on stderr with [`describe`]'s technical summary (never a patient
    /// attribute).
    pub verbose: bool,
}

/// The most decoded pixel bytes a file may claim (rows x columns x frames x samples x bytes per sample), checked
/// from its header before anything is decoded: 1 GiB, e.g. 2048 CT slices of 512 x 512 at 16 bits.
pub const MAX_PIXEL_BYTES: u64 = 1 << 30;

/// The RLE Lossless transfer syntax, whose pixel data [`rle::check_fragment`] checks before dicom-rs decodes it.
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// The Media Storage SOP Class of a DICOMDIR (a media index, not an image).
const DICOMDIR_SOP_CLASS: &str = "1.2.840.10008.1.3.10";

/// Why a DICOM file cannot be used. The text names the problem; the caller adds the file.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("it is a DICOMDIR (an index of a DICOM folder, no image): give one of the image files it lists")]
    Dicomdir,
    #[error("the DICOM file cannot be read, it is damaged or truncated ({0})")]
    Unreadable(String),
    #[error(
        "the DICOM file holds no pixel data (modality {modality}, SOP class {sop_class}); structured reports, RT \
         structures and similar objects are not images"
    )]
    NoPixelData { modality: String, sop_class: String },
    #[error(
        "its transfer syntax {name} ({uid}) has no decoder in this build; convert the file to an uncompressed or \
         RLE or JPEG baseline transfer syntax (e.g. `dcmconv +te` or `gdcmconv --raw`)"
    )]
    UnsupportedTransferSyntax { uid: String, name: String },
    #[error("{0}")]
    BadHeader(String),
    #[error(
        "it has only {present} and not {missing}; the pixel values cannot be converted to modality units with \
         half of the rescale; fix the header"
    )]
    HalfRescale {
        present: &'static str,
        missing: &'static str,
    },
    #[error(
        "its pixel data is {actual} bytes, shorter than the {expected} its header needs ({rows} rows x {columns} \
         columns x {frames} frames x {samples} samples at {bits} bits); the file is truncated"
    )]
    TruncatedPixelData {
        actual: u64,
        expected: u64,
        rows: u32,
        columns: u32,
        frames: u32,
        samples: u16,
        bits: u16,
    },
    #[error(
        "its header claims {bytes} bytes of pixels ({rows} rows x {columns} columns x {frames} frames x {samples} \
         samples at {bits} bits), more than the {MAX_PIXEL_BYTES} accepted; pick fewer frames or downscale it"
    )]
    TooManyPixels {
        bytes: u64,
        rows: u32,
        columns: u32,
        frames: u32,
        samples: u16,
        bits: u16,
    },
    #[error("--frame {asked}: the file has {frames} frame(s); frames are counted from 1")]
    NoSuchFrame { asked: u32, frames: u32 },
    #[error("--window-index {asked}: the file has {windows} window(s); windows are counted from 1")]
    NoSuchWindow { asked: usize, windows: usize },
    #[error("it has photometric interpretation {0}, which is not supported yet (MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422 are)")]
    UnsupportedPhotometric(String),
    #[error("the pixel data cannot be decoded ({0})")]
    Decode(String),
}

/// Whether `bytes` are a DICOM file: "DICM" after the 128-byte preamble, or at the start (no preamble).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM") || bytes.starts_with(b"DICM")
}

/// Opens the DICOM object in `bytes`, up to the pixel data (`header_only`) or whole.
fn open(bytes: &[u8], header_only: bool) -> Result<DefaultDicomObject, DicomError> {
    let body = if bytes.get(128..132) == Some(b"DICM") {
        &bytes[128..]
    } else {
        bytes
    };
    lengths::check(body).map_err(DicomError::BadHeader)?;
    let options = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    let options = if header_only {
        options.read_until(tags::PIXEL_DATA)
    } else {
        options
    };
    options
        .from_reader(Cursor::new(body))
        .map_err(|e| DicomError::Unreadable(e.to_string()))
}

/// A text attribute, trimmed; empty when absent or not text.
fn text(obj: &InMemDicomObject, tag: dicom_object::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .unwrap_or_default()
}

/// A code string attribute's value as it may be printed: itself when it is a valid code string (PS3.5 6.2: at
/// most 16 upper-case letters, digits, spaces and underscores), else a placeholder, so that a damaged header
/// cannot make a message print free text such as a patient's name.
fn code_string(value: &str) -> String {
    let valid = value.len() <= 16
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ' || c == '_');
    if valid {
        value.to_string()
    } else {
        "(not a valid code string)".into()
    }
}

/// A numeric attribute: `None` when absent, an error naming it when present but not a number.
fn number(obj: &InMemDicomObject, tag: dicom_object::Tag, name: &str) -> Result<Option<f64>, DicomError> {
    let Some(element) = obj.element_opt(tag).ok().flatten() else {
        return Ok(None);
    };
    match element.to_multi_float64() {
        Ok(values) if values.is_empty() => Ok(None),
        Ok(values) if values[0].is_finite() => Ok(Some(values[0])),
        _ => Err(DicomError::BadHeader(format!("its {name} is not a number"))),
    }
}

/// All values of a numeric attribute (WindowCenter, WindowWidth); empty when absent.
fn numbers(obj: &InMemDicomObject, tag: dicom_object::Tag, name: &str) -> Result<Vec<f64>, DicomError> {
    match obj.element_opt(tag).ok().flatten() {
        None => Ok(Vec::new()),
        Some(e) => e
            .to_multi_float64()
            .map_err(|_| DicomError::BadHeader(format!("its {name} is not a number"))),
    }
}

/// WindowCenter/WindowWidth values as windows: pairs in order, those with a width of 0 or less dropped.
fn windows_from(centers: &[f64], widths: &[f64]) -> Vec<Window> {
    centers
        .iter()
        .zip(widths)
        .map(|(&center, &width)| Window { center, width })
        .filter(|w| w.center.is_finite() && w.width.is_finite() && w.width > 0.0)
        .collect()
}

/// Opens the whole object and checks that native pixel data covers every frame the header declares.
fn open_pixels(bytes: &[u8], header: &Header) -> Result<DefaultDicomObject, DicomError> {
    let obj = open(bytes, false)?;
    let pixel_data = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or(DicomError::NoPixelData {
            modality: header.modality.clone(),
            sop_class: obj
                .meta()
                .media_storage_sop_class_uid()
                .trim_end_matches('\0')
                .to_string(),
        })?;
    let encapsulated = TransferSyntaxRegistry
        .get(&header.transfer_syntax)
        .is_some_and(|ts| ts.is_encapsulated_pixel_data());
    if !encapsulated {
        let actual = pixel_data.to_bytes().map(|b| b.len() as u64).unwrap_or(0);
        let expected = if header.bits_allocated == 1 {
            (u64::from(header.rows) * u64::from(header.columns) * u64::from(header.frames)).div_ceil(8)
        } else if header.native_ybr_422() {
            ybr_422_frame_bytes(header) as u64 * u64::from(header.frames)
        } else {
            header.pixel_bytes()
        };
        if actual < expected {
            return Err(DicomError::TruncatedPixelData {
                actual,
                expected,
                rows: header.rows,
                columns: header.columns,
                frames: header.frames,
                samples: header.samples,
                bits: header.bits_allocated,
            });
        }
    }
    Ok(obj)
}

/// Decodes frame `frame` (1-based, already checked) of an opened object.
fn decode_frame<'a>(
    obj: &'a DefaultDicomObject,
    header: &Header,
    frame: u32,
) -> Result<DecodedPixelData<'a>, DicomError> {
    if header.transfer_syntax == RLE_LOSSLESS && matches!(header.bits_allocated, 8 | 16) {
        let fragment = obj
            .element_opt(tags::PIXEL_DATA)
            .ok()
            .flatten()
            .and_then(|e| e.fragments())
            .and_then(|fragments| fragments.get(frame as usize - 1));
        if let Some(fragment) = fragment {
            let segments = usize::from(header.samples) * usize::from(header.bits_allocated / 8);
            let pixels = header.rows as usize * header.columns as usize;
            rle::check_fragment(fragment, segments, pixels).map_err(DicomError::BadHeader)?;
        }
    }
    obj.decode_pixel_data_frame(frame - 1).map_err(|e| {
        let syntax = TransferSyntaxRegistry
            .get(&header.transfer_syntax)
            .map_or("unknown", |ts| ts.name());
        DicomError::Decode(format!(
            "{e}; transfer syntax {syntax}: if another viewer opens it, convert it to an uncompressed transfer \
             syntax (e.g. `dcmdjpeg` or `gdcmconv --raw`)"
        ))
    })
}

/// A decoded grey frame in modality units: stored values through the frame's modality transform.
fn modality_of(decoded: &DecodedPixelData, header: &Header, frame: u32) -> Result<Vec<f64>, DicomError> {
    let stored: Vec<f64> = if decoded.bits_allocated() == 32 {
        // dicom-pixeldata converts 1, 8 and 16 bits only; 32-bit integers (e.g. RT dose) are read here.
        let data = decoded.frame_data(0).map_err(|e| DicomError::Decode(e.to_string()))?;
        let unused = 32 - u32::from(header.bits_stored.clamp(1, 32));
        data.chunks_exact(4)
            .map(|b| {
                let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) << unused;
                if header.signed {
                    f64::from((v as i32) >> unused)
                } else {
                    f64::from(v >> unused)
                }
            })
            .collect()
    } else if decoded.bits_allocated() == 1 {
        // 1-bit pixels (segmentations): dicom-pixeldata unpacks them to one byte each, 0 or 255, but converts
        // only 8 and 16 bits to numbers; the stored values are 0 and 1.
        let data = decoded.frame_data(0).map_err(|e| DicomError::Decode(e.to_string()))?;
        data.iter().map(|&b| if b > 0 { 1.0 } else { 0.0 }).collect()
    } else {
        decoded
            .to_vec_frame_with_options(0, &ConvertOptions::new().with_modality_lut(ModalityLutOption::None))
            .map_err(|e| DicomError::Decode(e.to_string()))?
    };
    let expected = header.rows as usize * header.columns as usize;
    if stored.len() < expected {
        return Err(DicomError::Decode(
            "the decoded frame has fewer pixels than its header".into(),
        ));
    }
    let modality = header.modality_for(frame);
    Ok(stored[..expected].iter().map(|&v| modality.apply(v)).collect())
}

/// The values of frame `frame` (1-based) of a greyscale (MONOCHROME1/2) file in modality units, after the Modality
/// LUT (the Modality LUT Sequence, the frame's functional group rescale, or RescaleSlope/Intercept) and before any
/// VOI: Hounsfield units for CT. Row-major, rows x columns. For readers that window several files together (a
/// series).
#[allow(dead_code)] // for the series reader (src/dicom/series.rs)
pub(crate) fn frame_modality_values(bytes: &[u8], header: &Header, frame: u32) -> Result<Vec<f64>, DicomError> {
    modality_frame(&open_frames(bytes, header)?, header, frame)
}

/// A file checked by [`read_header`] opened once for reading frames with [`modality_frame`] (a series reads
/// several frames of one file): its pixel data present and, when native, as long as the header says.
pub(crate) fn open_frames(bytes: &[u8], header: &Header) -> Result<DefaultDicomObject, DicomError> {
    open_pixels(bytes, header)
}

/// One grey frame (from 1) of a file opened by [`open_frames`], in modality units (see
/// [`frame_modality_values`]).
pub(crate) fn modality_frame(obj: &DefaultDicomObject, header: &Header, frame: u32) -> Result<Vec<f64>, DicomError> {
    header.check_frame(frame)?;
    let decoded = decode_frame(obj, header, frame)?;
    let photometric = decoded.photometric_interpretation().as_str().to_string();
    if !matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2") {
        return Err(DicomError::UnsupportedPhotometric(format!(
            "{photometric} where greyscale values are needed"
        )));
    }
    modality_of(&decoded, header, frame)
}

/// Decodes the chosen frame of a DICOM file already checked by [`read_header`] into 8-bit RGB, through the
/// pipeline in this module's header. `notice` receives the one-line notices (min-max without a window).
pub fn decode(
    bytes: &[u8],
    header: &Header,
    options: &DicomOptions,
    notice: &mut dyn FnMut(String),
) -> Result<DynamicImage, DicomError> {
    let frame = options.frame.unwrap_or(1);
    header.check_frame(frame)?;
    let (voi, _) = header.voi_for(options, frame)?;
    let obj = open_pixels(bytes, header)?;
    if header.native_ybr_422() {
        return native_ybr_422(&obj, header, frame);
    }
    let decoded = decode_frame(&obj, header, frame)?;
    let (w, h) = (header.columns, header.rows);
    let photometric = decoded.photometric_interpretation().as_str().to_string();
    match photometric.as_str() {
        "MONOCHROME1" | "MONOCHROME2" => {
            let values = modality_of(&decoded, header, frame)?;
            if voi == Voi::MinMax {
                notice(MIN_MAX_NOTICE.into());
            }
            let grey = window::to_grey(&values, &voi, photometric == "MONOCHROME1");
            Ok(grey_to_rgb(w, h, &grey))
        }
        "RGB" | "YBR_FULL" | "YBR_FULL_422" if decoded.bits_allocated() == 8 && decoded.samples_per_pixel() == 3 => {
            let data = decoded.frame_data(0).map_err(|e| DicomError::Decode(e.to_string()))?;
            let n = (w as usize) * (h as usize);
            if data.len() < 3 * n {
                return Err(DicomError::Decode(
                    "the decoded frame has fewer pixels than its header".into(),
                ));
            }
            let planar = decoded.planar_configuration() != dicom_pixeldata::PlanarConfiguration::Standard;
            let sample = |i: usize, c: usize| if planar { data[c * n + i] } else { data[3 * i + c] };
            let ybr = photometric != "RGB";
            let mut rgb = Vec::with_capacity(3 * n);
            for i in 0..n {
                let (a, b, c) = (sample(i, 0), sample(i, 1), sample(i, 2));
                rgb.extend(if ybr {
                    window::ybr_full_to_rgb(a, b, c)
                } else {
                    [a, b, c]
                });
            }
            Ok(DynamicImage::ImageRgb8(
                RgbImage::from_raw(w, h, rgb).expect("3 bytes per pixel"),
            ))
        }
        other => Err(DicomError::UnsupportedPhotometric(format!(
            "{} at {} bits",
            code_string(other),
            decoded.bits_allocated()
        ))),
    }
}

/// The bytes of one uncompressed YBR_FULL_422 frame: each pair of pixels in a row is stored as Y1 Y2 Cb Cr
/// (PS3.3 C.7.6.3.1.2), an odd last pixel with a pair of its own.
fn ybr_422_frame_bytes(header: &Header) -> usize {
    header.rows as usize * (header.columns as usize).div_ceil(2) * 4
}

/// An uncompressed YBR_FULL_422 frame as RGB: each chroma pair is used for both pixels it covers (as pydicom
/// does), then the same YCbCr conversion as YBR_FULL. dicom-pixeldata expects 3 bytes a pixel and cannot read it.
fn native_ybr_422(obj: &DefaultDicomObject, header: &Header, frame: u32) -> Result<DynamicImage, DicomError> {
    let data = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .and_then(|e| e.to_bytes().ok())
        .ok_or_else(|| DicomError::Decode("its pixel data cannot be read".into()))?;
    let size = ybr_422_frame_bytes(header);
    let start = (frame as usize - 1) * size;
    let frame = data
        .get(start..start + size)
        .ok_or_else(|| DicomError::Decode("the frame lies past the end of the pixel data".into()))?;
    let (w, h) = (header.columns as usize, header.rows as usize);
    if w == 0 || h == 0 {
        return Err(DicomError::Decode(format!("the frame is {w}x{h} pixels")));
    }
    let row_bytes = w.div_ceil(2) * 4;
    let mut rgb = Vec::with_capacity(3 * w * h);
    for row in frame.chunks_exact(row_bytes).take(h) {
        for x in 0..w {
            let pair = &row[(x / 2) * 4..(x / 2) * 4 + 4];
            rgb.extend(window::ybr_full_to_rgb(pair[x % 2], pair[2], pair[3]));
        }
    }
    Ok(DynamicImage::ImageRgb8(
        RgbImage::from_raw(header.columns, header.rows, rgb).expect("3 bytes per pixel"),
    ))
}

/// The notice when a frame (or a 16-bit grey PNG/TIFF) has no window and is min-max scaled.
pub const MIN_MAX_NOTICE: &str =
    "no window in the file: grey levels stretched from its lowest to its highest value (choose one with --window)";

/// 8-bit grey (`w` x `h`, row-major) copied to R, G and B.
fn grey_to_rgb(w: u32, h: u32, grey: &[u8]) -> DynamicImage {
    let rgb: Vec<u8> = grey.iter().flat_map(|&g| [g, g, g]).collect();
    DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, rgb).expect("one grey byte per pixel"))
}

/// A 16-bit greyscale image (PNG or TIFF) to 8-bit RGB through the same windowing as DICOM: `window` (LINEAR) on
/// the raw 16-bit values when given, else min-max with [`MIN_MAX_NOTICE`]. Such files carry no rescale, so the
/// raw values are the only units there are.
pub(crate) fn grey16_to_rgb(
    w: u32,
    h: u32,
    values: &[u16],
    window: Option<Window>,
    notice: &mut dyn FnMut(String),
) -> DynamicImage {
    let voi = match window {
        Some(window) => Voi::Window(window, window::VoiFunction::Linear),
        None => {
            notice(MIN_MAX_NOTICE.into());
            Voi::MinMax
        }
    };
    let values: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
    grey_to_rgb(w, h, &window::to_grey(&values, &voi, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_code_strings_are_printed() {
        assert_eq!(code_string("CT"), "CT");
        assert_eq!(code_string("YBR_FULL_422"), "YBR_FULL_422");
        assert_eq!(code_string("Fuzz^Secret"), "(not a valid code string)");
        assert_eq!(code_string("A VERY LONG CODE STRING"), "(not a valid code string)");
    }

    #[test]
    fn recognised_by_content() {
        let mut with_preamble = vec![0u8; 128];
        with_preamble.extend(b"DICM\x02\x00");
        assert!(is_dicom(&with_preamble));
        assert!(is_dicom(b"DICM\x02\x00\x00\x00"));
        assert!(!is_dicom(b"\x89PNG\r\n\x1a\n"));
        assert!(!is_dicom(&[0u8; 200]));
    }

    #[test]
    fn garbage_after_the_magic_is_unreadable_not_a_panic() {
        let mut bytes = vec![0u8; 128];
        bytes.extend(b"DICM");
        bytes.extend([0xff; 40]);
        assert!(matches!(read_header(&bytes), Err(DicomError::Unreadable(_))));
    }
}

//! The DICOM header, read before any pixel is decoded: the checks that refuse a file early, and the choice of
//! modality transform and VOI transform for one frame (which attribute wins over which).
//!
//! Which transform wins, for frame k:
//! - Modality: the Modality LUT Sequence; else the frame's Pixel Value Transformation (per-frame, then shared
//!   functional group); else RescaleSlope/RescaleIntercept; else none.
//! - VOI: `--window` (LINEAR); else the VOI LUT Sequence (its first item, or `--window-index N`); else the frame's
//!   Frame VOI LUT windows (per-frame, then shared), else WindowCenter/WindowWidth (the first pair, or
//!   `--window-index N`) with the VOI LUT Function; else min-max over the frame.
//!
//! Owns: [`Header`], [`read_header`] and those choices. Must not: decode pixels, print, or keep a patient attribute.

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::frames::FunctionalGroups;
use super::lut::{self, Lut};
use super::window::{Modality, Voi, VoiFunction, Window, PRESETS};
use super::{
    code_string, number, numbers, open, text, windows_from, DicomError, DicomOptions, DICOMDIR_SOP_CLASS,
    MAX_PIXEL_BYTES,
};

/// What the header says about the image, read before any pixel is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    pub samples: u16,
    pub bits_allocated: u16,
    /// Bits Stored (Bits Allocated when absent).
    pub bits_stored: u16,
    /// Pixel Representation 1: the stored values are signed.
    pub signed: bool,
    pub photometric: String,
    pub modality: String,
    pub transfer_syntax: String,
    /// RescaleSlope and RescaleIntercept at the top level (1 and 0 when absent).
    pub rescale: (f64, f64),
    pub windows: Vec<Window>,
    pub voi_function: VoiFunction,
    /// The first item of the Modality LUT Sequence, applied instead of the rescale.
    pub modality_lut: Option<Lut>,
    /// The items of the VOI LUT Sequence, which win over the windows.
    pub voi_luts: Vec<Lut>,
    /// The per-frame and shared functional groups of an enhanced multi-frame file.
    pub groups: FunctionalGroups,
}

/// Where the VOI transform of a frame came from, in the user's words (for `--verbose`).
#[derive(Debug, Clone, PartialEq)]
pub enum VoiSource {
    /// `--window C,W`.
    Flag,
    /// `--window NAME`.
    Preset(&'static str),
    /// The VOI LUT Sequence, item `index` of `of` (1-based).
    FileLut { index: usize, of: usize },
    /// WindowCenter/WindowWidth, pair `index` of `of`, at the top level or in a functional group.
    FileWindow { index: usize, of: usize, group: bool },
    /// No window anywhere: min-max.
    MinMax,
}

impl Header {
    /// The decoded size of all frames, in bytes.
    pub(super) fn pixel_bytes(&self) -> u64 {
        u64::from(self.rows)
            * u64::from(self.columns)
            * u64::from(self.frames)
            * u64::from(self.samples)
            * u64::from(self.bits_allocated).div_ceil(8)
    }

    /// Uncompressed YBR_FULL_422 at 8 bits: two bytes a pixel, read by this crate, not by dicom-pixeldata.
    pub(super) fn native_ybr_422(&self) -> bool {
        self.photometric == "YBR_FULL_422"
            && self.samples == 3
            && self.bits_allocated == 8
            && TransferSyntaxRegistry
                .get(&self.transfer_syntax)
                .is_some_and(|ts| !ts.is_encapsulated_pixel_data())
    }

    /// Checks `frame` (1-based) against the frame count.
    pub(super) fn check_frame(&self, frame: u32) -> Result<(), DicomError> {
        if frame == 0 || frame > self.frames {
            return Err(DicomError::NoSuchFrame {
                asked: frame,
                frames: self.frames,
            });
        }
        Ok(())
    }

    /// The modality transform of frame `frame` (1-based, already checked).
    pub(crate) fn modality_for(&self, frame: u32) -> Modality {
        if let Some(lut) = &self.modality_lut {
            return Modality::Lut(lut.clone());
        }
        let (slope, intercept) = self.groups.for_frame(frame).rescale.unwrap_or(self.rescale);
        Modality::Rescale { slope, intercept }
    }

    /// The VOI transform of frame `frame` (1-based, already checked) and where it came from.
    pub(crate) fn voi_for(&self, options: &DicomOptions, frame: u32) -> Result<(Voi, VoiSource), DicomError> {
        if let Some(window) = options.window {
            let source = PRESETS
                .iter()
                .find(|(_, c, w)| *c == window.center && *w == window.width)
                .map_or(VoiSource::Flag, |(name, _, _)| VoiSource::Preset(name));
            return Ok((Voi::Window(window, VoiFunction::Linear), source));
        }
        let pick = |count: usize| -> Result<Option<usize>, DicomError> {
            match options.window_index {
                Some(i) if i == 0 || i > count => Err(DicomError::NoSuchWindow {
                    asked: i,
                    windows: count,
                }),
                Some(i) => Ok(Some(i)),
                None if count == 0 => Ok(None),
                None => Ok(Some(1)),
            }
        };
        if !self.voi_luts.is_empty() {
            let index = pick(self.voi_luts.len())?.unwrap_or(1);
            let source = VoiSource::FileLut {
                index,
                of: self.voi_luts.len(),
            };
            return Ok((Voi::Lut(self.voi_luts[index - 1].clone()), source));
        }
        let own = self.groups.for_frame(frame);
        let group = !own.windows.is_empty();
        let windows = if group { &own.windows } else { &self.windows };
        let function = own.voi_function.unwrap_or(self.voi_function);
        Ok(match pick(windows.len())? {
            Some(index) => (
                Voi::Window(windows[index - 1], function),
                VoiSource::FileWindow {
                    index,
                    of: windows.len(),
                    group,
                },
            ),
            None => (Voi::MinMax, VoiSource::MinMax),
        })
    }
}

/// Reads and checks the header: what kind of object, which transfer syntax, the sizes, the LUTs, the windows and
/// the functional groups.
pub fn read_header(bytes: &[u8]) -> Result<Header, DicomError> {
    let obj = open(bytes, true)?;
    if obj.meta().media_storage_sop_class_uid().trim_end_matches('\0') == DICOMDIR_SOP_CLASS {
        return Err(DicomError::Dicomdir);
    }
    let modality = code_string(&text(&obj, tags::MODALITY));
    let no_pixels = || DicomError::NoPixelData {
        modality: if modality.is_empty() {
            "unknown".into()
        } else {
            modality.clone()
        },
        sop_class: obj
            .meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_string(),
    };
    let int = |tag, name: &str| -> Result<Option<u32>, DicomError> {
        match number(&obj, tag, name)? {
            None => Ok(None),
            Some(v) if v >= 0.0 && v <= f64::from(u32::MAX) && v.fract() == 0.0 => Ok(Some(v as u32)),
            Some(v) => Err(DicomError::BadHeader(format!("its {name} is {v}, not a count"))),
        }
    };
    let (Some(rows), Some(columns)) = (int(tags::ROWS, "Rows")?, int(tags::COLUMNS, "Columns")?) else {
        return Err(no_pixels());
    };
    let frames = int(tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.unwrap_or(1).max(1);
    let samples = int(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    let bits = int(tags::BITS_ALLOCATED, "BitsAllocated")?.unwrap_or(0);
    if !matches!(samples, 1 | 3) || !matches!(bits, 1 | 8 | 16 | 32) {
        return Err(DicomError::BadHeader(format!(
            "it has {samples} samples per pixel at {bits} bits allocated; 1 or 3 samples at 8, 16 or 32 bits are \
             supported"
        )));
    }
    let bits_stored = int(tags::BITS_STORED, "BitsStored")?.unwrap_or(bits).clamp(1, bits);
    let signed = int(tags::PIXEL_REPRESENTATION, "PixelRepresentation")? == Some(1);
    let uid = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    match TransferSyntaxRegistry.get(&uid) {
        Some(ts) if ts.can_decode_all() => {}
        Some(ts) => {
            return Err(DicomError::UnsupportedTransferSyntax {
                uid,
                name: ts.name().to_string(),
            })
        }
        None => {
            return Err(DicomError::UnsupportedTransferSyntax {
                uid,
                name: "unknown".into(),
            })
        }
    }
    let slope = number(&obj, tags::RESCALE_SLOPE, "RescaleSlope")?;
    let intercept = number(&obj, tags::RESCALE_INTERCEPT, "RescaleIntercept")?;
    let rescale = match (slope, intercept) {
        (Some(s), Some(i)) => (s, i),
        (None, None) => (1.0, 0.0),
        (Some(_), None) => {
            return Err(DicomError::HalfRescale {
                present: "RescaleSlope",
                missing: "RescaleIntercept",
            })
        }
        (None, Some(_)) => {
            return Err(DicomError::HalfRescale {
                present: "RescaleIntercept",
                missing: "RescaleSlope",
            })
        }
    };
    let centers = numbers(&obj, tags::WINDOW_CENTER, "WindowCenter")?;
    let widths = numbers(&obj, tags::WINDOW_WIDTH, "WindowWidth")?;
    let function_name = text(&obj, tags::VOILUT_FUNCTION);
    let voi_function = VoiFunction::from_dicom(&function_name).ok_or_else(|| {
        DicomError::BadHeader(format!(
            "its VOI LUT Function is {function_name}; LINEAR, LINEAR_EXACT and SIGMOID are defined"
        ))
    })?;
    let modality_lut = lut::sequence(&obj, tags::MODALITY_LUT_SEQUENCE, signed, "Modality LUT Sequence")
        .map_err(DicomError::BadHeader)?
        .into_iter()
        .next();
    let voi_luts =
        lut::sequence(&obj, tags::VOILUT_SEQUENCE, signed, "VOI LUT Sequence").map_err(DicomError::BadHeader)?;
    let groups = FunctionalGroups::read(&obj, frames)?;
    let header = Header {
        rows,
        columns,
        frames,
        samples: samples as u16,
        bits_allocated: bits as u16,
        bits_stored: bits_stored as u16,
        signed,
        photometric: code_string(&text(&obj, tags::PHOTOMETRIC_INTERPRETATION)),
        modality,
        transfer_syntax: uid,
        rescale,
        windows: windows_from(&centers, &widths),
        voi_function,
        modality_lut,
        voi_luts,
        groups,
    };
    if header.pixel_bytes() > MAX_PIXEL_BYTES {
        return Err(DicomError::TooManyPixels {
            bytes: header.pixel_bytes(),
            rows,
            columns,
            frames,
            samples: header.samples,
            bits: header.bits_allocated,
        });
    }
    Ok(header)
}

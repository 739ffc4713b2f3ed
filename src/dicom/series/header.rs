//! The header of one file of a series, read up to the pixel data only (streaming from the file, bounded per
//! file and per folder), and the checks that need no pixels.
//!
//! Owns: recognising a DICOM file by content, skipping to the header, and the attributes a series needs
//! (SeriesInstanceUID, InstanceNumber, positions, size, modality, photometric interpretation). Must not: read
//! pixel data, or keep a patient attribute.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::OpenFileOptions;

use super::{SeriesError, MAX_FILE_HEADER_BYTES};
use crate::dicom::DicomError;

/// What the header of one file says, read up to the pixel data.
#[derive(Debug, Clone)]
pub(super) struct FileHeader {
    pub(super) path: PathBuf,
    pub(super) series_uid: String,
    pub(super) modality: String,
    pub(super) description: String,
    pub(super) instance_number: Option<i64>,
    pub(super) rows: u32,
    pub(super) columns: u32,
    pub(super) frames: u32,
    pub(super) samples: u32,
    pub(super) photometric: String,
    pub(super) position: Option<[f64; 3]>,
    pub(super) orientation: Option<[f64; 6]>,
}

/// The checks on one instance's header that need no pixels: greyscale, and a size an image may have.
pub(super) fn check_instance(h: &FileHeader) -> Result<(), SeriesError> {
    if h.samples != 1 || h.photometric != "MONOCHROME2" {
        return Err(SeriesError::NotGreyscale {
            path: h.path.clone(),
            photometric: if h.photometric.is_empty() {
                "no photometric interpretation".into()
            } else {
                h.photometric.clone()
            },
            samples: h.samples,
        });
    }
    let (long, short) = (h.rows.max(h.columns), h.rows.min(h.columns));
    if short == 0 || long > 8192 || long > crate::image_input::MAX_ASPECT * short {
        return Err(SeriesError::BadSize {
            path: h.path.clone(),
            width: h.columns,
            height: h.rows,
        });
    }
    Ok(())
}

/// Counts the bytes read through it, so a header's size can be bounded.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads a file's header up to the pixel data; `None` when it is not DICOM by content. `budget` is what is left
/// of [`super::MAX_HEADER_BYTES`]; a DICOMDIR is `SeriesError::File` with [`DicomError::Dicomdir`].
pub(super) fn read_file_header(path: &Path, budget: &mut u64) -> Result<Option<FileHeader>, SeriesError> {
    let io = |error| SeriesError::Io {
        path: path.to_path_buf(),
        error,
    };
    let file_error = |error| SeriesError::File {
        path: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut prefix = Vec::with_capacity(132);
    (&mut file).take(132).read_to_end(&mut prefix).map_err(io)?;
    if !crate::dicom::is_dicom(&prefix) {
        return Ok(None);
    }
    let start = if prefix.get(128..132) == Some(b"DICM") { 128 } else { 0 };
    let limit = MAX_FILE_HEADER_BYTES.min(*budget);
    let mut counted = Counted {
        inner: std::io::Cursor::new(prefix[start..].to_vec()).chain(file).take(limit),
        count: 0,
    };
    let parsed = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(BufReader::new(&mut counted));
    *budget -= counted.count.min(*budget);
    let obj = match parsed {
        Ok(obj) => obj,
        Err(_) if counted.count >= limit && limit < MAX_FILE_HEADER_BYTES => {
            return Err(SeriesError::TooMuchHeader {
                path: path.to_path_buf(),
            })
        }
        Err(_) if counted.count >= limit => {
            return Err(SeriesError::HeaderTooLarge {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(file_error(DicomError::Unreadable(e.to_string()))),
    };
    if obj.meta().media_storage_sop_class_uid().trim_end_matches('\0') == crate::dicom::DICOMDIR_SOP_CLASS {
        return Err(file_error(DicomError::Dicomdir));
    }
    let modality = crate::dicom::text(&obj, tags::MODALITY);
    let count = |tag, name: &str| -> Result<Option<u32>, SeriesError> {
        match crate::dicom::number(&obj, tag, name).map_err(file_error)? {
            None => Ok(None),
            Some(v) if v >= 0.0 && v <= f64::from(u32::MAX) && v.fract() == 0.0 => Ok(Some(v as u32)),
            Some(v) => Err(file_error(DicomError::BadHeader(format!(
                "its {name} is {v}, not a count"
            )))),
        }
    };
    let (Some(rows), Some(columns)) = (count(tags::ROWS, "Rows")?, count(tags::COLUMNS, "Columns")?) else {
        return Err(file_error(DicomError::NoPixelData {
            modality: if modality.is_empty() {
                "unknown".into()
            } else {
                modality
            },
            sop_class: obj
                .meta()
                .media_storage_sop_class_uid()
                .trim_end_matches('\0')
                .to_string(),
        }));
    };
    let instance_number =
        match crate::dicom::number(&obj, tags::INSTANCE_NUMBER, "InstanceNumber").map_err(file_error)? {
            Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => Some(v as i64),
            Some(v) => {
                return Err(file_error(DicomError::BadHeader(format!(
                    "its InstanceNumber is {v}, not a whole number"
                ))))
            }
            None => None,
        };
    let floats = |tag| -> Vec<f64> {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_multi_float64().ok())
            .filter(|v| v.iter().all(|x| x.is_finite()))
            .unwrap_or_default()
    };
    Ok(Some(FileHeader {
        path: path.to_path_buf(),
        series_uid: crate::dicom::text(&obj, tags::SERIES_INSTANCE_UID)
            .trim_end_matches('\0')
            .to_string(),
        description: crate::dicom::text(&obj, tags::SERIES_DESCRIPTION),
        instance_number,
        rows,
        columns,
        frames: count(tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.unwrap_or(1).max(1),
        samples: count(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1),
        photometric: crate::dicom::text(&obj, tags::PHOTOMETRIC_INTERPRETATION),
        position: floats(tags::IMAGE_POSITION_PATIENT).try_into().ok(),
        orientation: floats(tags::IMAGE_ORIENTATION_PATIENT).try_into().ok(),
        modality,
    }))
}

//! The pixels of a series: each needed file read whole and checked (by `dicom::read_header`, for its pixel data
//! and its length), its frames decoded to modality values, and the selected slices made RGB by the recipe.
//!
//! Owns: decoding (only the selected slices for CT; every slice for MR, whose min-max spans the volume). Must not:
//! decide which slices are selected, or print.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::RgbImage;

use super::{Instance, SeriesError, SeriesSlice};
use crate::dicom::{DicomError, Header};

/// A whole DICOM file, opened and checked by [`crate::dicom::read_header`] (transfer syntax, rescale, sizes) and for
/// its pixel data (present; for native pixel data, as long as its header says).
struct OpenedFile {
    path: PathBuf,
    object: DefaultDicomObject,
    header: Header,
}

impl OpenedFile {
    fn open(path: &Path, width: u32, height: u32) -> Result<OpenedFile, SeriesError> {
        let file_error = |error| SeriesError::File {
            path: path.to_path_buf(),
            error,
        };
        let bytes = read_bounded(path)?;
        let header = crate::dicom::read_header(&bytes).map_err(file_error)?;
        if (header.columns, header.rows) != (width, height) {
            return Err(file_error(DicomError::BadHeader(format!(
                "its size changed while it was read ({}x{}, not {width}x{height})",
                header.columns, header.rows
            ))));
        }
        let object = crate::dicom::open(&bytes, false).map_err(file_error)?;
        let no_pixels = || DicomError::NoPixelData {
            modality: header.modality.clone(),
            sop_class: object
                .meta()
                .media_storage_sop_class_uid()
                .trim_end_matches('\0')
                .to_string(),
        };
        let pixel_data = object
            .element_opt(tags::PIXEL_DATA)
            .ok()
            .flatten()
            .ok_or_else(|| file_error(no_pixels()))?;
        let encapsulated = TransferSyntaxRegistry
            .get(&header.transfer_syntax)
            .is_some_and(|ts| ts.is_encapsulated_pixel_data());
        if !encapsulated {
            let actual = pixel_data.to_bytes().map(|b| b.len() as u64).unwrap_or(0);
            let expected = header.pixel_bytes();
            if actual < expected {
                return Err(file_error(DicomError::TruncatedPixelData {
                    actual,
                    expected,
                    rows: header.rows,
                    columns: header.columns,
                    frames: header.frames,
                    samples: header.samples,
                    bits: header.bits_allocated,
                }));
            }
        }
        Ok(OpenedFile {
            path: path.to_path_buf(),
            object,
            header,
        })
    }

    /// One frame (from 1) in modality units: stored value x RescaleSlope + RescaleIntercept.
    fn values(&self, frame: u32) -> Result<Vec<f64>, SeriesError> {
        let decode_error = |e: String| SeriesError::File {
            path: self.path.clone(),
            error: DicomError::Decode(e),
        };
        let decoded = self
            .object
            .decode_pixel_data_frame(frame - 1)
            .map_err(|e| decode_error(e.to_string()))?;
        let stored: Vec<f64> = decoded
            .to_vec_frame_with_options(0, &ConvertOptions::new().with_modality_lut(ModalityLutOption::None))
            .map_err(|e| decode_error(e.to_string()))?;
        let n = self.header.rows as usize * self.header.columns as usize;
        if stored.len() < n {
            return Err(decode_error(
                "the decoded frame has fewer pixels than its header".into(),
            ));
        }
        let (slope, intercept) = self.header.rescale;
        Ok(stored[..n]
            .iter()
            .map(|&v| crate::dicom::window::rescale(v, slope, intercept))
            .collect())
    }
}

/// A file read whole, at most [`crate::image_input::MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, SeriesError> {
    let io = |error| SeriesError::Io {
        path: path.to_path_buf(),
        error,
    };
    let limit = crate::image_input::MAX_FILE_BYTES;
    let mut bytes = Vec::new();
    crate::files::open_regular(path)
        .map_err(io)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(SeriesError::File {
            path: path.to_path_buf(),
            error: DicomError::BadHeader(format!("the file is larger than {} MiB", limit >> 20)),
        });
    }
    Ok(bytes)
}

/// Visits the instances at `indices` in order with their modality values, opening each file once (a
/// multi-frame file is opened once for all its frames).
fn for_each_values(
    instances: &[Instance],
    indices: impl Iterator<Item = usize>,
    width: u32,
    height: u32,
    mut visit: impl FnMut(usize, Vec<f64>) -> Result<(), SeriesError>,
) -> Result<(), SeriesError> {
    let mut opened: Option<OpenedFile> = None;
    for i in indices {
        let instance = &instances[i];
        if opened.as_ref().is_none_or(|o| o.path != instance.path) {
            opened = Some(OpenedFile::open(&instance.path, width, height)?);
        }
        let file = opened.as_ref().expect("opened above");
        visit(i, file.values(instance.frame.unwrap_or(1))?)?;
    }
    Ok(())
}

fn slice(label: usize, instance: &Instance, width: u32, height: u32, rgb: Vec<u8>) -> SeriesSlice {
    SeriesSlice {
        label,
        file: instance.path.clone(),
        frame: instance.frame,
        rgb: RgbImage::from_raw(width, height, rgb).expect("3 bytes per pixel"),
    }
}

/// CT: only the selected instances are decoded, each through the three windows.
pub(super) fn ct_slices(
    instances: &[Instance],
    chosen: &[usize],
    width: u32,
    height: u32,
) -> Result<Vec<SeriesSlice>, SeriesError> {
    let mut slices = Vec::with_capacity(chosen.len());
    for_each_values(instances, chosen.iter().copied(), width, height, |i, hu| {
        slices.push(slice(
            slices.len() + 1,
            &instances[i],
            width,
            height,
            super::recipe::ct_rgb(&hu),
        ));
        Ok(())
    })?;
    Ok(slices)
}

/// MR: every instance is decoded for the volume's lowest and highest value; the selected ones are kept.
pub(super) fn mr_slices(
    instances: &[Instance],
    chosen: &[usize],
    width: u32,
    height: u32,
) -> Result<Vec<SeriesSlice>, SeriesError> {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut kept: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for_each_values(instances, 0..instances.len(), width, height, |i, values| {
        for &v in &values {
            low = low.min(v);
            high = high.max(v);
        }
        if chosen.binary_search(&i).is_ok() {
            kept.insert(i, values);
        }
        Ok(())
    })?;
    Ok(chosen
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let grey: Vec<u8> = kept[i]
                .iter()
                .flat_map(|&v| [super::recipe::mr_grey(v, (low, high)); 3])
                .collect();
            slice(k + 1, &instances[*i], width, height, grey)
        })
        .collect())
}

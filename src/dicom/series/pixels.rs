//! The pixels of a series: each needed file read whole and checked (by `dicom::read_header`, for its pixel data
//! and its length), its frames decoded to modality values, and the selected slices made RGB by the recipe.
//!
//! Owns: decoding (only the selected slices for CT; every slice for MR, whose min-max spans the volume). Must not:
//! decide which slices are selected, or print.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use dicom_object::DefaultDicomObject;
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
        // Pixel data present and, when native, as long as the header says; decoded through the same checked
        // path as single images (Modality LUT or rescale, per-frame functional groups).
        let object = crate::dicom::open_frames(&bytes, &header).map_err(file_error)?;
        Ok(OpenedFile {
            path: path.to_path_buf(),
            object,
            header,
        })
    }

    /// One frame (from 1) in modality units (Hounsfield units for CT): the Modality LUT, or the rescale.
    fn values(&self, frame: u32) -> Result<Vec<f64>, SeriesError> {
        crate::dicom::modality_frame(&self.object, &self.header, frame).map_err(|error| SeriesError::File {
            path: self.path.clone(),
            error,
        })
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

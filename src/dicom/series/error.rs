//! Why a CT or MR series cannot be used: one variant per refusal, each naming the folder or the file, the
//! problem and the next step.
//!
//! Owns: the text of every series error. Must not: carry a patient attribute (name, ID, birth date, study date).

use std::path::PathBuf;

use super::{MAX_FILE_HEADER_BYTES, MAX_HEADER_BYTES, MAX_SERIES_FILES, MAX_SERIES_RGB_BYTES};
use crate::dicom::DicomError;

/// Why a series cannot be used. Each names the folder or the file.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("series {}: not found; check the path", path.display())]
    Missing { path: PathBuf },
    #[error("series {}: cannot read it: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error(
        "series {}: the folder is empty; give the folder that holds the DICOM files of one CT or MR series",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error(
        "series {}: none of its {files} file(s) is a DICOM file; give the folder that holds the DICOM files of one \
         CT or MR series",
        path.display()
    )]
    NoDicom { path: PathBuf, files: usize },
    #[error(
        "series {}: it holds no files, only folders ({folders}); give the folder of one series (files in \
         subfolders are not read)",
        path.display()
    )]
    OnlyFolders { path: PathBuf, folders: String },
    #[error(
        "series {}: it is a DICOMDIR (an index of DICOM files, no image); give the folder of one series instead",
        path.display()
    )]
    DicomdirGiven { path: PathBuf },
    #[error(
        "series {}: not a DICOM file; give the folder of a CT or MR series, or one multi-frame DICOM file",
        path.display()
    )]
    NotDicomFile { path: PathBuf },
    #[error(
        "series {}: it holds more than {MAX_SERIES_FILES} files; give the folder of one series (a series has at \
         most a few thousand images)",
        path.display()
    )]
    TooManyFiles { path: PathBuf },
    #[error(
        "series {}: its DICOM headers come to more than {} MiB; give the folder of one series",
        path.display(),
        MAX_HEADER_BYTES >> 20
    )]
    TooMuchHeader { path: PathBuf },
    #[error(
        "series {}: its header is larger than {} MiB before the pixel data; the file is damaged or not an image",
        path.display(),
        MAX_FILE_HEADER_BYTES >> 20
    )]
    HeaderTooLarge { path: PathBuf },
    #[error("series {}: {error}", path.display())]
    File { path: PathBuf, error: DicomError },
    #[error(
        "series {}: it holds {} series; choose one with --series-uid UID:\n{list}",
        path.display(),
        list.lines().count()
    )]
    SeveralSeries { path: PathBuf, list: String },
    #[error(
        "series {}: --series-uid {uid} matches none of its series; they are:\n{list}",
        path.display()
    )]
    NoSuchSeries { path: PathBuf, uid: String, list: String },
    #[error(
        "series {}: it has no InstanceNumber, so its place in the series is unknown (slices are ordered by \
         InstanceNumber); fix its header or move it out of the folder",
        path.display()
    )]
    NoInstanceNumber { path: PathBuf },
    #[error(
        "series {}: {} and {} both have InstanceNumber {number}, so their order is unknown; remove the duplicate",
        folder.display(),
        a.display(),
        b.display()
    )]
    DuplicateInstanceNumber {
        folder: PathBuf,
        a: PathBuf,
        b: PathBuf,
        number: i64,
    },
    #[error(
        "series {}: slices differ in size: {} is {}x{} but {} is {}x{}; a series has one size (is another series \
         mixed in?)",
        folder.display(), a.display(), a_size.0, a_size.1, b.display(), b_size.0, b_size.1
    )]
    MixedSizes {
        folder: PathBuf,
        a: PathBuf,
        a_size: (u32, u32),
        b: PathBuf,
        b_size: (u32, u32),
    },
    #[error(
        "series {}: modalities differ: {} is {a_modality} but {} is {b_modality}; a series has one modality",
        folder.display(),
        a.display(),
        b.display()
    )]
    MixedModalities {
        folder: PathBuf,
        a: PathBuf,
        a_modality: String,
        b: PathBuf,
        b_modality: String,
    },
    #[error(
        "series {}: it is {photometric} with {samples} sample(s) per pixel; a CT or MR series is read as \
         MONOCHROME2 greyscale only (attach colour images with --image)",
        path.display()
    )]
    NotGreyscale {
        path: PathBuf,
        photometric: String,
        samples: u32,
    },
    #[error(
        "series {}: modality {modality}; a series is read for CT and MR only, the modalities Google's MedGemma \
         1.5 recipes cover (attach single images with --image)",
        path.display()
    )]
    UnsupportedModality { path: PathBuf, modality: String },
    #[error(
        "series {}: it is a multi-frame file ({frames} frames) in a folder of slices; give the file itself as \
         the series",
        path.display()
    )]
    MultiFrameInFolder { path: PathBuf, frames: u32 },
    #[error(
        "series {}: it is {width}x{height} pixels; slices of a series must be between 1x1 and 8192x8192 and at \
         most {}:1 long",
        path.display(), crate::image_input::MAX_ASPECT
    )]
    BadSize { path: PathBuf, width: u32, height: u32 },
    #[error(
        "series {}: {slices} slices of {width}x{height} need {} MiB as RGB, more than the {} MiB allowed; choose \
         fewer with --max-slices",
        path.display(),
        (*slices as u64 * u64::from(*width) * u64::from(*height) * 3) >> 20,
        MAX_SERIES_RGB_BYTES >> 20
    )]
    TooManyPixels {
        path: PathBuf,
        slices: usize,
        width: u32,
        height: u32,
    },
    #[error("series {}: --max-slices must be at least 1", path.display())]
    ZeroSlices { path: PathBuf },
}

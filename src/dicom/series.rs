//! A CT or MR series in: the DICOM files of a folder (or the frames of one multi-frame file) read, grouped,
//! sorted and selected into the RGB slices MedGemma 1.5 sees, by Google's recipe (REFERENCE.md section 3).
//!
//! The API (for run/chat/batch prompts and `medgemma preview --series`):
//! - [`read_series`]`(source, &`[`SeriesOptions`]`)` gives a [`Series`]: its slices in prompt order, each with the
//!   label k of "SLICE k" (from 1), the file (and frame) it came from, and its RGB at native size (before the
//!   caller fits it to the model's square); plus one-line `notices` for stderr.
//! - [`select_indices`]`(n, max)`: Google's choice of slices.
//!
//! The recipe, in order:
//! 1. `source` a folder: every regular file directly in it (not in subfolders: a series is one folder, and a
//!    study folder with one subfolder per series should be chosen from, not merged) that is DICOM by content.
//!    Non-DICOM files are skipped (one notice counts them). A DICOMDIR is skipped with a notice. Only headers
//!    are read here (up to the pixel data), at most [`MAX_SERIES_FILES`] files and [`MAX_HEADER_BYTES`] of
//!    headers in all. `source` a file, or a folder whose series is one file: its frames are the instances, in
//!    frame order (a multi-frame file among other files of its series is refused).
//! 2. Grouped by SeriesInstanceUID; with several, `series_uid` chooses (else an error lists each series: UID,
//!    modality, image count, description).
//! 3. Sorted by InstanceNumber (Google's notebook). A file without one, or two files with the same one, is
//!    refused (naming the files): the order of the slices would be a guess. When the order disagrees with
//!    ImagePositionPatient along the slice normal, a notice says so (the InstanceNumber order is kept).
//! 4. Selected: all when n <= max, else `round(i / max * (n - 1))` for i = 1..=max (max 85 by default).
//! 5. CT: Hounsfield units (RescaleSlope/Intercept, both or neither), then R, G, B through the windows
//!    [-1024, 1024], [-135, 215], [0, 80] (clip, minus the low end, over the width, x 255, rounded half to even,
//!    in float32 as the notebook's numpy does). MR: no window; one min-max over every instance of the series
//!    (Google's serving code), grey in R, G and B. Only the selected slices are decoded for CT; MR decodes all.
//!    Other modalities are refused: Google publishes no recipe for them (attach single images with --image).
//!
//! Refused, with the folder or file named: an empty folder (or one with only subfolders), no DICOM in it, too
//! many files or header bytes, slices of different sizes, colour or MONOCHROME1 slices, a multi-frame file inside
//! a folder, a slice without pixel data, unreadable or truncated files, a --series-uid that matches nothing.
//!
//! Owns: reading, grouping, sorting and selecting a series, and its notices. Must not: print (notices are
//! returned), fit slices to the model's square, or return or name a patient attribute (name, ID, birth date,
//! study date): errors carry UIDs, modality, counts, sizes, descriptions and file names only.

mod contact_sheet;
mod font;
mod recipe;

pub use contact_sheet::contact_sheet;
pub use recipe::{select_indices, GOOGLE_MAX_SLICES};

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::RgbImage;

use super::{DicomError, Header};

/// The most files a series folder may hold (a thin-slice CT has a few hundred to about 2000).
pub const MAX_SERIES_FILES: usize = 5000;

/// The most header bytes read from one file (a header is usually a few KiB).
pub const MAX_FILE_HEADER_BYTES: u64 = 8 << 20;

/// The most header bytes read from a whole folder.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;

/// The most RGB bytes the selected slices may need (85 slices of 512 x 512 need 64 MiB).
pub const MAX_SERIES_RGB_BYTES: u64 = 2 << 30;

/// What the user chooses about a series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesOptions {
    /// `--series-uid`: which series of a folder that holds several.
    pub series_uid: Option<String>,
    /// `--max-slices`: at most this many slices; `None` = [`GOOGLE_MAX_SLICES`].
    pub max_slices: Option<usize>,
}

/// A series read and selected: the slices in prompt order.
#[derive(Debug, Clone)]
pub struct Series {
    /// The folder (or multi-frame file) given.
    pub source: PathBuf,
    /// "CT" or "MR".
    pub modality: String,
    /// How many images the series has (files, or frames of a multi-frame file).
    pub n_instances: usize,
    /// The selected slices, in prompt order.
    pub slices: Vec<SeriesSlice>,
    /// One-line notices for stderr (skipped files, order disagreement, --max-slices other than the recipe's).
    pub notices: Vec<String>,
}

/// One selected slice.
#[derive(Debug, Clone)]
pub struct SeriesSlice {
    /// k of "SLICE k", from 1.
    pub label: usize,
    pub file: PathBuf,
    /// The frame (from 1) when the series is one multi-frame file.
    pub frame: Option<u32>,
    /// The slice at its native size, before it is fitted to the model's square.
    pub rgb: RgbImage,
}

/// Why a series cannot be used. Each names the folder or the file.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("series {}: not found; check the path", path.display())]
    Missing { path: PathBuf },
    #[error("series {}: cannot read it: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("series {}: the folder is empty; give the folder that holds the DICOM files of one CT or MR series", path.display())]
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
    #[error("series {}: its header is larger than {} MiB before the pixel data; the file is damaged or not an image", path.display(), MAX_FILE_HEADER_BYTES >> 20)]
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
    #[error("series {}: it has no InstanceNumber, so its place in the series is unknown (slices are ordered by InstanceNumber); fix its header or move it out of the folder", path.display())]
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

/// What the header of one file says, read up to the pixel data.
#[derive(Debug, Clone)]
struct FileHeader {
    path: PathBuf,
    series_uid: String,
    modality: String,
    description: String,
    instance_number: Option<i64>,
    rows: u32,
    columns: u32,
    frames: u32,
    samples: u32,
    photometric: String,
    position: Option<[f64; 3]>,
    orientation: Option<[f64; 6]>,
}

/// One image of the series: a file, or a frame of a multi-frame file.
#[derive(Debug, Clone)]
struct Instance {
    path: PathBuf,
    frame: Option<u32>,
}

/// Reads the series at `source` (a folder of DICOM files, or one multi-frame DICOM file) by the recipe in this
/// module's header.
pub fn read_series(source: &Path, options: &SeriesOptions) -> Result<Series, SeriesError> {
    let max = options.max_slices.unwrap_or(GOOGLE_MAX_SLICES);
    if max == 0 {
        return Err(SeriesError::ZeroSlices {
            path: source.to_path_buf(),
        });
    }
    let io = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::NotFound => SeriesError::Missing {
            path: source.to_path_buf(),
        },
        _ => SeriesError::Io {
            path: source.to_path_buf(),
            error,
        },
    };
    let mut notices = Vec::new();
    let (headers, instances) = if std::fs::metadata(source).map_err(io)?.is_dir() {
        folder_instances(source, options, &mut notices)?
    } else {
        crate::files::check_regular_file(source).map_err(io)?;
        let mut budget = MAX_HEADER_BYTES;
        let Some(header) = read_file_header(source, &mut budget)? else {
            return Err(SeriesError::NotDicomFile {
                path: source.to_path_buf(),
            });
        };
        if let Some(uid) = options
            .series_uid
            .as_deref()
            .filter(|uid| uid.trim() != header.series_uid)
        {
            return Err(SeriesError::NoSuchSeries {
                path: source.to_path_buf(),
                uid: uid.to_string(),
                list: format!("  {}: {}, 1 file", header.series_uid, header.modality),
            });
        }
        check_instance(&header)?;
        let instances = frames_of(&header);
        (vec![header], instances)
    };
    let first = &headers[0];
    let modality = first.modality.clone();
    if modality != "CT" && modality != "MR" {
        return Err(SeriesError::UnsupportedModality {
            path: first.path.clone(),
            modality: if modality.is_empty() {
                "unknown (no Modality attribute)".into()
            } else {
                modality
            },
        });
    }
    let n = instances.len();
    let chosen = select_indices(n, max);
    let (width, height) = (first.columns, first.rows);
    if chosen.len() as u64 * u64::from(width) * u64::from(height) * 3 > MAX_SERIES_RGB_BYTES {
        return Err(SeriesError::TooManyPixels {
            path: source.to_path_buf(),
            slices: chosen.len(),
            width,
            height,
        });
    }
    if max != GOOGLE_MAX_SLICES && n > max.min(GOOGLE_MAX_SLICES) {
        notices.push(format!(
            "--max-slices {max}: Google's recipe takes up to {GOOGLE_MAX_SLICES} slices; {} of the {n} are used",
            chosen.len()
        ));
    }
    let slices = if modality == "CT" {
        ct_slices(&instances, &chosen, width, height)?
    } else {
        mr_slices(&instances, &chosen, width, height)?
    };
    Ok(Series {
        source: source.to_path_buf(),
        modality,
        n_instances: n,
        slices,
        notices,
    })
}

/// Step 1 to 3 for a folder: the headers of the chosen series, and its instances sorted by InstanceNumber.
fn folder_instances(
    folder: &Path,
    options: &SeriesOptions,
    notices: &mut Vec<String>,
) -> Result<(Vec<FileHeader>, Vec<Instance>), SeriesError> {
    let io = |error| SeriesError::Io {
        path: folder.to_path_buf(),
        error,
    };
    let (mut files, mut folders) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(folder).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let metadata = std::fs::metadata(&path);
        if metadata.as_ref().is_ok_and(|m| m.is_dir()) && folders.len() < MAX_SERIES_FILES {
            folders.push(path);
            continue;
        }
        // Symbolic links to files count; pipes and devices do not.
        if metadata.is_ok_and(|m| m.is_file()) {
            if files.len() == MAX_SERIES_FILES {
                return Err(SeriesError::TooManyFiles {
                    path: folder.to_path_buf(),
                });
            }
            files.push(path);
        }
    }
    if files.is_empty() && !folders.is_empty() {
        folders.sort();
        let mut names: Vec<String> = folders.iter().take(5).map(|p| p.display().to_string()).collect();
        if folders.len() > 5 {
            names.push(format!("and {} more", folders.len() - 5));
        }
        return Err(SeriesError::OnlyFolders {
            path: folder.to_path_buf(),
            folders: names.join(", "),
        });
    }
    if files.is_empty() {
        return Err(SeriesError::Empty {
            path: folder.to_path_buf(),
        });
    }
    files.sort();
    let mut budget = MAX_HEADER_BYTES;
    let mut headers = Vec::new();
    let (mut not_dicom, mut dicomdirs) = (0, 0);
    for path in &files {
        match read_file_header(path, &mut budget) {
            Ok(Some(h)) => headers.push(h),
            Ok(None) => not_dicom += 1,
            Err(SeriesError::File {
                error: DicomError::Dicomdir,
                ..
            }) => dicomdirs += 1,
            Err(SeriesError::TooMuchHeader { .. }) => {
                return Err(SeriesError::TooMuchHeader {
                    path: folder.to_path_buf(),
                })
            }
            Err(e) => return Err(e),
        }
    }
    if headers.is_empty() {
        return Err(SeriesError::NoDicom {
            path: folder.to_path_buf(),
            files: files.len(),
        });
    }
    if dicomdirs > 0 {
        notices.push(format!(
            "series {}: skipped {dicomdirs} DICOMDIR file(s) (an index, not an image)",
            folder.display()
        ));
    }
    if not_dicom > 0 {
        notices.push(format!(
            "series {}: skipped {not_dicom} file(s) that are not DICOM",
            folder.display()
        ));
    }
    let mut groups: BTreeMap<String, Vec<FileHeader>> = BTreeMap::new();
    for h in headers {
        groups.entry(h.series_uid.clone()).or_default().push(h);
    }
    let list = || {
        groups
            .iter()
            .map(|(uid, hs)| {
                let uid = if uid.is_empty() { "(none)" } else { uid };
                let modality = if hs[0].modality.is_empty() {
                    "unknown"
                } else {
                    &hs[0].modality
                };
                let description = match hs[0].description.as_str() {
                    "" => String::new(),
                    d => format!(", \"{d}\""),
                };
                format!("  {uid}: {modality}, {} image(s){description}", hs.len())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut headers = match &options.series_uid {
        Some(uid) => match groups.get(uid.trim()) {
            Some(hs) => hs.clone(),
            None => {
                return Err(SeriesError::NoSuchSeries {
                    path: folder.to_path_buf(),
                    uid: uid.clone(),
                    list: list(),
                })
            }
        },
        None if groups.len() > 1 => {
            return Err(SeriesError::SeveralSeries {
                path: folder.to_path_buf(),
                list: list(),
            })
        }
        None => groups.into_values().next().expect("one series"),
    };
    if let [only] = headers.as_slice() {
        // One multi-frame file (or one slice) in the folder: its frames are the series.
        check_instance(only)?;
        return Ok((headers.clone(), frames_of(only)));
    }
    for h in &headers {
        check_instance(h)?;
        if h.frames > 1 {
            return Err(SeriesError::MultiFrameInFolder {
                path: h.path.clone(),
                frames: h.frames,
            });
        }
    }
    for h in &headers[1..] {
        let first = &headers[0];
        if (h.columns, h.rows) != (first.columns, first.rows) {
            return Err(SeriesError::MixedSizes {
                folder: folder.to_path_buf(),
                a: first.path.clone(),
                a_size: (first.columns, first.rows),
                b: h.path.clone(),
                b_size: (h.columns, h.rows),
            });
        }
        if h.modality != first.modality {
            return Err(SeriesError::MixedModalities {
                folder: folder.to_path_buf(),
                a: first.path.clone(),
                a_modality: first.modality.clone(),
                b: h.path.clone(),
                b_modality: h.modality.clone(),
            });
        }
    }
    if let Some(h) = headers.iter().find(|h| h.instance_number.is_none()) {
        return Err(SeriesError::NoInstanceNumber { path: h.path.clone() });
    }
    headers.sort_by_key(|h| h.instance_number);
    if let Some(w) = headers
        .windows(2)
        .find(|w| w[0].instance_number == w[1].instance_number)
    {
        return Err(SeriesError::DuplicateInstanceNumber {
            folder: folder.to_path_buf(),
            a: w[0].path.clone(),
            b: w[1].path.clone(),
            number: w[0].instance_number.unwrap_or_default(),
        });
    }
    let positions: Option<Vec<[f64; 3]>> = headers.iter().map(|h| h.position).collect();
    if let (Some(positions), Some(orientation)) = (positions, headers[0].orientation) {
        if recipe::positions_agree(&positions, orientation) == Some(false) {
            notices.push(format!(
                "series {}: the InstanceNumber order disagrees with ImagePositionPatient (the slices do not move \
                 steadily one way along the slice normal); the InstanceNumber order is kept, as in Google's recipe",
                folder.display()
            ));
        }
    }
    let instances = headers
        .iter()
        .map(|h| Instance {
            path: h.path.clone(),
            frame: None,
        })
        .collect();
    Ok((headers, instances))
}

/// The frames of one file as the instances of a series, in frame order.
fn frames_of(header: &FileHeader) -> Vec<Instance> {
    (1..=header.frames)
        .map(|f| Instance {
            path: header.path.clone(),
            frame: Some(f),
        })
        .collect()
}

/// The checks on one instance's header that need no pixels: greyscale, and a size an image may have.
fn check_instance(h: &FileHeader) -> Result<(), SeriesError> {
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
/// of [`MAX_HEADER_BYTES`]; a DICOMDIR is `SeriesError::File` with [`DicomError::Dicomdir`].
fn read_file_header(path: &Path, budget: &mut u64) -> Result<Option<FileHeader>, SeriesError> {
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
    if !super::is_dicom(&prefix) {
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
    if obj.meta().media_storage_sop_class_uid().trim_end_matches('\0') == super::DICOMDIR_SOP_CLASS {
        return Err(file_error(DicomError::Dicomdir));
    }
    let modality = super::text(&obj, tags::MODALITY);
    let count = |tag, name: &str| -> Result<Option<u32>, SeriesError> {
        match super::number(&obj, tag, name).map_err(file_error)? {
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
    let instance_number = match super::number(&obj, tags::INSTANCE_NUMBER, "InstanceNumber").map_err(file_error)? {
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
        series_uid: super::text(&obj, tags::SERIES_INSTANCE_UID)
            .trim_end_matches('\0')
            .to_string(),
        description: super::text(&obj, tags::SERIES_DESCRIPTION),
        instance_number,
        rows,
        columns,
        frames: count(tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.unwrap_or(1).max(1),
        samples: count(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1),
        photometric: super::text(&obj, tags::PHOTOMETRIC_INTERPRETATION),
        position: floats(tags::IMAGE_POSITION_PATIENT).try_into().ok(),
        orientation: floats(tags::IMAGE_ORIENTATION_PATIENT).try_into().ok(),
        modality,
    }))
}

/// A whole DICOM file, opened and checked by [`super::read_header`] (transfer syntax, rescale, sizes) and for
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
        let header = super::read_header(&bytes).map_err(file_error)?;
        if (header.columns, header.rows) != (width, height) {
            return Err(file_error(DicomError::BadHeader(format!(
                "its size changed while it was read ({}x{}, not {width}x{height})",
                header.columns, header.rows
            ))));
        }
        let object = super::open(&bytes, false).map_err(file_error)?;
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
            .map(|&v| super::window::rescale(v, slope, intercept))
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
fn ct_slices(
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
            recipe::ct_rgb(&hu),
        ));
        Ok(())
    })?;
    Ok(slices)
}

/// MR: every instance is decoded for the volume's lowest and highest value; the selected ones are kept.
fn mr_slices(
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
                .flat_map(|&v| [recipe::mr_grey(v, (low, high)); 3])
                .collect();
            slice(k + 1, &instances[*i], width, height, grey)
        })
        .collect())
}

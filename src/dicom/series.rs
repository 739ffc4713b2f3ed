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
//!
//! Parts: `header` (one file's header, up to the pixel data), `pixels` (decoding to modality values and RGB),
//! `recipe` (the pure arithmetic), `error`, `contact_sheet` and its `font`.

mod contact_sheet;
mod error;
pub(crate) mod font;
mod header;
mod pixels;
mod recipe;

pub use contact_sheet::contact_sheet;
pub use error::SeriesError;
pub use recipe::{select_indices, GOOGLE_MAX_SLICES};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::DicomError;
use header::{check_instance, read_file_header, FileHeader};

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
        let header = match read_file_header(source, &mut budget) {
            Err(SeriesError::File {
                error: DicomError::Dicomdir,
                ..
            }) => {
                return Err(SeriesError::DicomdirGiven {
                    path: source.to_path_buf(),
                })
            }
            other => other?,
        };
        let Some(header) = header else {
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
        pixels::ct_slices(&instances, &chosen, width, height)?
    } else {
        pixels::mr_slices(&instances, &chosen, width, height)?
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

//! The images a conversation names, read in prompt order: image files (PNG, JPEG, ..., DICOM) and series (a CT
//! or MRI folder, or a multi-frame DICOM file), each series expanded into its slices, every slice an image
//! followed by its label `SLICE k` (Google's MedGemma 1.5 CT notebook layout).
//!
//! The one layout rule for series: a user turn that *begins* with a series (`--series DIR` with a question, chat
//! `/series`, a batch job's `"series"`, or a `--messages` turn whose first part is a series) gets Google's
//! instruction before its slices — "You are an instructor teaching medical students. You are analyzing a
//! contiguous block of CT slices. Please review the slices provided below carefully." (MRI for MR) — so the
//! prompt is `[instruction, image, "SLICE 1", ..., image, "SLICE n", question]`. Text before the series (e.g.
//! `--series-instruction`) replaces that instruction. The question comes after the slices: with the question
//! first the model answered as for a chest X-ray.
//!
//! Owns: that rule and the default instruction, the expansion of series parts, the images' options
//! ([`ImageOptions`]) shared by run, chat, batch and preview, and a cache so that a chat never reads an image
//! or a series twice. Reads files; never calls llama.cpp.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::conversation::{Conversation, Part, Role};
use crate::dicom::series::{read_series, Series, SeriesError, SeriesOptions, SeriesSlice};
use crate::dicom::DicomOptions;
use crate::image_input::{fit_square, ImageError, ImageFit, ImageInput};

/// How images and series become what the vision projector sees.
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    pub fit: ImageFit,
    /// The projector's square input side (`clip.vision.image_size`, 896 for MedGemma).
    pub side: u32,
    pub dicom: DicomOptions,
    pub series: SeriesOptions,
}

/// Why the images of a prompt cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PromptImageError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Series(#[from] SeriesError),
}

/// The instruction put before a series' slices when no text comes before them: the one of Google's CT notebook
/// (without its "from the center of the abdomen"), with the modality named.
pub fn default_instruction(modality: &str) -> String {
    let kind = if modality == "MR" { "MRI" } else { modality };
    format!(
        "You are an instructor teaching medical students. You are analyzing a contiguous block of {kind} slices. \
         Please review the slices provided below carefully."
    )
}

/// A series read once, its slices already fitted for the projector (a chat puts them in every turn's prompt).
pub struct LoadedSeries {
    pub modality: String,
    /// `(k of "SLICE k", the slice as the projector takes it)`, in prompt order.
    pub slices: Vec<(usize, ImageInput)>,
}

/// The images of prompts, each file and series read (and fitted) once.
pub struct ImageLoader {
    options: ImageOptions,
    series: HashMap<PathBuf, LoadedSeries>,
    images: HashMap<PathBuf, ImageInput>,
}

impl ImageLoader {
    pub fn new(options: ImageOptions) -> Self {
        ImageLoader {
            options,
            series: HashMap::new(),
            images: HashMap::new(),
        }
    }

    /// The series at `path` (a folder or a multi-frame file), read on first use; its notices and a one-line
    /// summary (modality, slices taken of how many) go to stderr then.
    pub fn series(&mut self, path: &Path) -> Result<&LoadedSeries, PromptImageError> {
        if !self.series.contains_key(path) {
            let series: Series = read_series(path, &self.options.series)?;
            for notice in &series.notices {
                eprintln!("medgemma: {notice}");
            }
            eprintln!(
                "medgemma: series {}: {}, {} of {} slice(s)",
                path.display(),
                series.modality,
                series.slices.len(),
                series.n_instances
            );
            let (fit, side) = (self.options.fit, self.options.side);
            let slices = series
                .slices
                .iter()
                .map(|slice| (slice.label, slice_input(slice, fit, side)))
                .collect();
            let loaded = LoadedSeries {
                modality: series.modality,
                slices,
            };
            self.series.insert(path.to_path_buf(), loaded);
        }
        Ok(&self.series[path])
    }

    /// The image file at `path`, read on first use.
    pub fn image(&mut self, path: &Path) -> Result<&ImageInput, PromptImageError> {
        if !self.images.contains_key(path) {
            let o = &self.options;
            let image = ImageInput::load_with(path, o.fit, o.side, &o.dicom)?;
            self.images.insert(path.to_path_buf(), image);
        }
        Ok(&self.images[path])
    }

    /// The image files read so far (a chat's `/save` must not write over them).
    pub fn image_paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.images.keys()
    }

    /// `conversation` with every series replaced by its slices and labels (and the default instruction before a
    /// series that begins its turn), and the images in prompt order.
    pub fn load(&mut self, conversation: &Conversation) -> Result<(Conversation, Vec<ImageInput>), PromptImageError> {
        let mut expanded = conversation.clone();
        let mut images = Vec::new();
        for turn in &mut expanded.turns {
            if turn.role != Role::User {
                continue;
            }
            let mut parts = Vec::with_capacity(turn.parts.len());
            for (i, part) in std::mem::take(&mut turn.parts).into_iter().enumerate() {
                match part {
                    Part::Image(path) => {
                        images.push(self.image(&path)?.clone());
                        parts.push(Part::Image(path));
                    }
                    Part::Series(path) => {
                        let series = self.series(&path)?;
                        if i == 0 {
                            parts.push(Part::Text(default_instruction(&series.modality)));
                        }
                        for (label, slice) in &series.slices {
                            parts.push(Part::Image(slice.path.clone()));
                            parts.push(Part::Text(format!("SLICE {label}")));
                            images.push(slice.clone());
                        }
                    }
                    text => parts.push(text),
                }
            }
            turn.parts = parts;
        }
        Ok((expanded, images))
    }
}

/// A slice as the vision projector takes it: fitted to the square like any image (the engine identifies it by its
/// pixels: the same file gives other pixels in another series recipe).
pub fn slice_input(slice: &SeriesSlice, fit: ImageFit, side: u32) -> ImageInput {
    let rgb = fit_square(image::DynamicImage::ImageRgb8(slice.rgb.clone()), fit, side.max(1));
    ImageInput {
        path: slice.file.clone(),
        rgb,
    }
}

/// The projector's square input side from its header (`clip.vision.image_size`), 896 when it does not say.
pub fn projector_side(mmproj: Option<&Path>) -> u32 {
    mmproj
        .and_then(|p| crate::gguf::GgufHeader::read(p).ok())
        .and_then(|h| h.get_u64("clip.vision.image_size"))
        .and_then(|s| u32::try_from(s).ok())
        .unwrap_or(crate::image_input::DEFAULT_IMAGE_SIDE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_instruction_names_the_modality_as_google_does() {
        assert_eq!(
            default_instruction("CT"),
            "You are an instructor teaching medical students. You are analyzing a contiguous block of CT slices. \
             Please review the slices provided below carefully."
        );
        assert!(default_instruction("MR").contains("block of MRI slices"));
    }

    #[test]
    fn a_conversation_without_series_keeps_its_parts() {
        let mut loader = ImageLoader::new(ImageOptions::default());
        let c = Conversation::single(None, "What is a fever?".into(), vec![]);
        let (expanded, images) = loader.load(&c).unwrap();
        assert_eq!(expanded, c);
        assert!(images.is_empty());
    }
}

//! Per-frame values of an enhanced multi-frame DICOM file (enhanced CT, MR, XA...): the Shared Functional Groups
//! Sequence (5200,9229) and the Per-frame Functional Groups Sequence (5200,9230), of which two macros change the
//! pixels: Pixel Value Transformation (0028,9145: RescaleSlope/RescaleIntercept) and Frame VOI LUT (0028,9132:
//! WindowCenter/WindowWidth/VOILUTFunction). PS3.3 C.7.6.16: a macro in a frame's item wins over the shared one,
//! which wins over the top-level attributes.
//!
//! Owns: reading those two macros into [`FrameValues`] and picking a frame's. Must not: decode pixels or print.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::window::{VoiFunction, Window};
use super::{numbers, text, DicomError};

/// What one functional group item says about the pixels; `None`/empty where it says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameValues {
    pub rescale: Option<(f64, f64)>,
    pub windows: Vec<Window>,
    pub voi_function: Option<VoiFunction>,
}

/// The shared values and the values of each frame (empty when the file has no per-frame groups).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionalGroups {
    pub shared: FrameValues,
    pub per_frame: Vec<FrameValues>,
}

impl FunctionalGroups {
    /// Reads both sequences; at most `frames` per-frame items are kept.
    pub fn read(obj: &InMemDicomObject, frames: u32) -> Result<FunctionalGroups, DicomError> {
        let items = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.items())
                .unwrap_or(&[])
        };
        let shared = match items(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).first() {
            Some(item) => read_group(item, "shared functional group")?,
            None => FrameValues::default(),
        };
        let per_frame = items(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .iter()
            .take(frames as usize)
            .enumerate()
            .map(|(k, item)| read_group(item, &format!("functional group of frame {}", k + 1)))
            .collect::<Result<_, _>>()?;
        Ok(FunctionalGroups { shared, per_frame })
    }

    /// The values for frame `frame` (1-based): the frame's own macro, else the shared one, else nothing.
    pub fn for_frame(&self, frame: u32) -> FrameValues {
        let own = self.per_frame.get(frame as usize - 1).cloned().unwrap_or_default();
        FrameValues {
            rescale: own.rescale.or(self.shared.rescale),
            windows: if own.windows.is_empty() {
                self.shared.windows.clone()
            } else {
                own.windows
            },
            voi_function: own.voi_function.or(self.shared.voi_function),
        }
    }
}

/// One functional group item: its Pixel Value Transformation and Frame VOI LUT macros.
fn read_group(group: &InMemDicomObject, what: &str) -> Result<FrameValues, DicomError> {
    let first_item = |tag| {
        group
            .element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.items())
            .and_then(|items| items.first())
    };
    let mut values = FrameValues::default();
    if let Some(item) = first_item(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE) {
        let slope = numbers(item, tags::RESCALE_SLOPE, "RescaleSlope")?;
        let intercept = numbers(item, tags::RESCALE_INTERCEPT, "RescaleIntercept")?;
        values.rescale = match (slope.first(), intercept.first()) {
            (Some(&s), Some(&i)) if s.is_finite() && i.is_finite() => Some((s, i)),
            (None, None) => None,
            _ => {
                return Err(DicomError::BadHeader(format!(
                    "the Pixel Value Transformation of its {what} needs both a finite RescaleSlope and \
                     RescaleIntercept"
                )))
            }
        };
    }
    if let Some(item) = first_item(tags::FRAME_VOILUT_SEQUENCE) {
        let centers = numbers(item, tags::WINDOW_CENTER, "WindowCenter")?;
        let widths = numbers(item, tags::WINDOW_WIDTH, "WindowWidth")?;
        values.windows = super::windows_from(&centers, &widths);
        let name = text(item, tags::VOILUT_FUNCTION);
        if !name.is_empty() {
            values.voi_function = Some(VoiFunction::from_dicom(&name).ok_or_else(|| {
                DicomError::BadHeader(format!(
                    "the VOI LUT Function of its {what} is {name}; LINEAR, LINEAR_EXACT and SIGMOID are defined"
                ))
            })?);
        }
    }
    Ok(values)
}

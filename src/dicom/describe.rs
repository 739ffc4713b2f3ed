//! One line about a DICOM image for `--verbose`: what it is (modality, size, bits, photometric, transfer syntax),
//! how its values are transformed (rescale or Modality LUT) and which window is used, from where, for which frame.
//!
//! Owns: that text. Must not: name any patient attribute (name, ID, birth date, ...): it only reads [`Header`],
//! which holds none.

use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::header::{Header, VoiSource};
use super::window::{Modality, Voi, VoiFunction};
use super::DicomOptions;

/// E.g. `CT, 512x512, 16 bits allocated (12 stored, unsigned), MONOCHROME2, Explicit VR Little Endian; rescale
/// x1 -1024; window 40/400 LINEAR from the file (1 of 2); frame 1 of 1`.
#[allow(dead_code)] // called by run/preview under --verbose
pub(crate) fn describe(header: &Header, options: &DicomOptions) -> String {
    let frame = options.frame.unwrap_or(1);
    let modality = if header.modality.is_empty() {
        "unknown modality"
    } else {
        header.modality.as_str()
    };
    let syntax = TransferSyntaxRegistry
        .get(&header.transfer_syntax)
        .map_or_else(|| header.transfer_syntax.clone(), |ts| ts.name().to_string());
    let mut parts = vec![format!(
        "{modality}, {}x{}, {} bits allocated ({} stored, {}), {}, {syntax}",
        header.columns,
        header.rows,
        header.bits_allocated,
        header.bits_stored,
        if header.signed { "signed" } else { "unsigned" },
        if header.photometric.is_empty() {
            "no photometric interpretation"
        } else {
            header.photometric.as_str()
        },
    )];
    let grey = matches!(header.photometric.as_str(), "MONOCHROME1" | "MONOCHROME2");
    if grey && header.check_frame(frame).is_ok() {
        parts.push(match header.modality_for(frame) {
            Modality::Lut(lut) => format!(
                "Modality LUT Sequence ({} entries from {}, {} bits)",
                lut.data.len(),
                lut.first_mapped,
                lut.bits
            ),
            Modality::Rescale { slope, intercept } => format!("rescale x{slope} {intercept:+}"),
        });
        parts.push(match header.voi_for(options, frame) {
            Ok((voi, source)) => window_text(&voi, &source),
            Err(e) => e.to_string(),
        });
    } else if !grey {
        parts.push("colour, no window".into());
    }
    parts.push(format!("frame {frame} of {}", header.frames));
    parts.join("; ")
}

/// The window used and where it came from.
fn window_text(voi: &Voi, source: &VoiSource) -> String {
    let what = match voi {
        Voi::Window(w, function) => {
            let name = match function {
                VoiFunction::Linear => "LINEAR",
                VoiFunction::LinearExact => "LINEAR_EXACT",
                VoiFunction::Sigmoid => "SIGMOID",
            };
            format!("window {}/{} {name}", w.center, w.width)
        }
        Voi::Lut(lut) => format!(
            "VOI LUT ({} entries from {}, {} bits)",
            lut.data.len(),
            lut.first_mapped,
            lut.bits
        ),
        Voi::MinMax => "min-max (no window in the file)".into(),
    };
    let from = match source {
        VoiSource::Flag => " from --window".to_string(),
        VoiSource::Preset(name) => format!(" from --window {name}"),
        VoiSource::FileLut { index, of } => format!(" from the file's VOI LUT Sequence ({index} of {of})"),
        VoiSource::FileWindow { index, of, group } => format!(
            " from the file{} ({index} of {of})",
            if *group { "'s functional groups" } else { "" }
        ),
        VoiSource::MinMax => String::new(),
    };
    what + &from
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::frames::{FrameValues, FunctionalGroups};
    use crate::dicom::lut::Lut;
    use crate::dicom::Window;

    fn ct() -> Header {
        Header {
            rows: 512,
            columns: 256,
            frames: 3,
            samples: 1,
            bits_allocated: 16,
            bits_stored: 12,
            signed: false,
            photometric: "MONOCHROME2".into(),
            modality: "CT".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            rescale: (1.0, -1024.0),
            windows: vec![
                Window {
                    center: 40.0,
                    width: 400.0,
                },
                Window {
                    center: -600.0,
                    width: 1500.0,
                },
            ],
            voi_function: VoiFunction::Linear,
            modality_lut: None,
            voi_luts: Vec::new(),
            groups: FunctionalGroups::default(),
        }
    }

    #[test]
    fn says_what_the_image_is_and_where_the_window_came_from() {
        let text = describe(&ct(), &DicomOptions::default());
        assert_eq!(
            text,
            "CT, 256x512, 16 bits allocated (12 stored, unsigned), MONOCHROME2, Explicit VR Little Endian; \
             rescale x1 -1024; window 40/400 LINEAR from the file (1 of 2); frame 1 of 3"
        );
        let options = DicomOptions {
            window_index: Some(2),
            frame: Some(3),
            ..Default::default()
        };
        assert!(describe(&ct(), &options).ends_with("window -600/1500 LINEAR from the file (2 of 2); frame 3 of 3"));
        let preset = DicomOptions {
            window: Some(crate::dicom::parse_window("lung").unwrap()),
            ..Default::default()
        };
        assert!(describe(&ct(), &preset).contains("window -600/1500 LINEAR from --window lung"));
        let flag = DicomOptions {
            window: Some(crate::dicom::parse_window("10,20").unwrap()),
            ..Default::default()
        };
        assert!(describe(&ct(), &flag).contains("window 10/20 LINEAR from --window;"));
        let bad = DicomOptions {
            window_index: Some(3),
            ..Default::default()
        };
        assert!(describe(&ct(), &bad).contains("--window-index 3: the file has 2 window(s)"));
    }

    #[test]
    fn luts_functional_groups_and_min_max() {
        let mut h = ct();
        h.modality_lut = Some(Lut {
            first_mapped: 0,
            bits: 16,
            data: vec![0; 4096],
        });
        h.voi_luts = vec![Lut {
            first_mapped: -100,
            bits: 8,
            data: vec![0; 256],
        }];
        let text = describe(&h, &DicomOptions::default());
        assert!(
            text.contains("; Modality LUT Sequence (4096 entries from 0, 16 bits);"),
            "{text}"
        );
        assert!(
            text.contains("; VOI LUT (256 entries from -100, 8 bits) from the file's VOI LUT Sequence (1 of 1);"),
            "{text}"
        );
        let mut h = ct();
        h.windows.clear();
        assert!(describe(&h, &DicomOptions::default()).contains("; min-max (no window in the file);"));
        h.groups.per_frame = vec![
            FrameValues::default(),
            FrameValues {
                rescale: Some((2.0, -5.0)),
                windows: vec![Window {
                    center: 7.0,
                    width: 9.0,
                }],
                voi_function: Some(VoiFunction::Sigmoid),
            },
        ];
        let frame_2 = DicomOptions {
            frame: Some(2),
            ..Default::default()
        };
        assert!(
            describe(&h, &frame_2).contains(
                "; rescale x2 -5; window 7/9 SIGMOID from the file's functional groups (1 of 1); frame 2 of 3"
            ),
            "{}",
            describe(&h, &frame_2)
        );
    }

    #[test]
    fn colour_has_no_window_and_an_unknown_modality_is_said() {
        let mut h = ct();
        h.photometric = "RGB".into();
        h.modality = String::new();
        let text = describe(&h, &DicomOptions::default());
        assert!(text.starts_with("unknown modality, 256x512"), "{text}");
        assert!(
            text.contains("RGB, Explicit VR Little Endian; colour, no window; frame 1 of 3"),
            "{text}"
        );
    }
}

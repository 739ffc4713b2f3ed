//! The grey-level arithmetic of the DICOM pixel pipeline: the modality transform (rescale or a Modality LUT), the
//! VOI transform (a window and its function, a VOI LUT, or min-max when there is neither), MONOCHROME1 inversion,
//! YBR to RGB, and the named window presets.
//!
//! Owns: pure functions on numbers, each matching the DICOM standard (PS3.3 C.11.1 and C.11.2) as pydicom's
//! `apply_modality_lut` and `apply_voi_lut` implement it, to within one grey level after scaling to 8 bits.
//! Must not: read files, print, or know about flags beyond parsing a `--window` value.

use super::lut::Lut;

/// A VOI window: centre and width in modality units (Hounsfield units for CT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

/// How a window maps values to grey levels (VOI LUT Function, 0028,1056).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiFunction {
    /// The DICOM default: a ramp from `center - 0.5 - (width - 1) / 2` to `center - 0.5 + (width - 1) / 2`.
    #[default]
    Linear,
    /// A ramp from `center - width / 2` to `center + width / 2`.
    LinearExact,
    /// `1 / (1 + exp(-4 (x - center) / width))`.
    Sigmoid,
}

impl VoiFunction {
    /// The function a file names, or `None` for one the standard does not define.
    pub fn from_dicom(name: &str) -> Option<VoiFunction> {
        match name.trim() {
            "" | "LINEAR" => Some(VoiFunction::Linear),
            "LINEAR_EXACT" => Some(VoiFunction::LinearExact),
            "SIGMOID" => Some(VoiFunction::Sigmoid),
            _ => None,
        }
    }
}

/// The named windows of `--window NAME`, as (name, centre, width) in Hounsfield units: the usual CT display
/// windows (Radiopaedia's "Windowing (CT)" table). They only make sense for CT, whose values are Hounsfield units.
pub const PRESETS: [(&str, f64, f64); 7] = [
    ("lung", -600.0, 1500.0),
    ("mediastinum", 50.0, 350.0),
    ("bone", 400.0, 1800.0),
    ("brain", 40.0, 80.0),
    ("soft-tissue", 40.0, 400.0),
    ("abdomen", 50.0, 400.0),
    ("liver", 30.0, 150.0),
];

/// Parses a `--window` value: `CENTER,WIDTH` (numbers, width above 0) or a preset name from [`PRESETS`].
pub fn parse_window(text: &str) -> Result<Window, String> {
    let text = text.trim();
    if let Some(&(_, center, width)) = PRESETS.iter().find(|(name, _, _)| name.eq_ignore_ascii_case(text)) {
        return Ok(Window { center, width });
    }
    let names: Vec<&str> = PRESETS.iter().map(|(name, _, _)| *name).collect();
    let bad = || {
        format!(
            "`{text}` is neither CENTER,WIDTH (e.g. -600,1500) nor a preset ({})",
            names.join(", ")
        )
    };
    let (c, w) = text.split_once(',').ok_or_else(bad)?;
    let center: f64 = c.trim().parse().map_err(|_| bad())?;
    let width: f64 = w.trim().parse().map_err(|_| bad())?;
    if !center.is_finite() || !width.is_finite() || width < 1.0 {
        return Err(format!("`{text}`: the width must be a number of at least 1"));
    }
    Ok(Window { center, width })
}

/// The modality LUT as rescale: stored value times slope plus intercept.
pub fn rescale(stored: f64, slope: f64, intercept: f64) -> f64 {
    stored * slope + intercept
}

/// The modality transform of a frame: a rescale, or a Modality LUT Sequence (which wins when present).
#[derive(Debug, Clone, PartialEq)]
pub enum Modality {
    Rescale { slope: f64, intercept: f64 },
    Lut(Lut),
}

impl Modality {
    /// A stored value in modality units (Hounsfield units for CT).
    pub fn apply(&self, stored: f64) -> f64 {
        match self {
            Modality::Rescale { slope, intercept } => rescale(stored, *slope, *intercept),
            Modality::Lut(lut) => lut.lookup(stored),
        }
    }
}

/// The VOI transform of a frame: a window with its function, a VOI LUT Sequence item, or min-max.
#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
    Window(Window, VoiFunction),
    Lut(Lut),
    MinMax,
}

/// Where `value` falls in the window, from 0 (black) to 1 (white).
pub fn window_fraction(value: f64, window: Window, function: VoiFunction) -> f64 {
    let Window { center, width } = window;
    match function {
        VoiFunction::Linear | VoiFunction::LinearExact => {
            let (c, w) = if function == VoiFunction::Linear {
                (center - 0.5, width - 1.0)
            } else {
                (center, width)
            };
            if value <= c - w / 2.0 {
                0.0
            } else if value > c + w / 2.0 {
                1.0
            } else {
                (value - c) / w + 0.5
            }
        }
        VoiFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (value - center) / width).exp()),
    }
}

/// A fraction from 0 to 1 as an 8-bit grey level (rounded, clamped).
pub fn to_u8(fraction: f64) -> u8 {
    (fraction * 255.0).round().clamp(0.0, 255.0) as u8
}

/// Maps modality values to 8-bit grey through `voi` (a window, a VOI LUT scaled from its output range
/// 0..2^bits-1, or min-max over `values`); `invert` for MONOCHROME1 (where the lowest value is white).
pub fn to_grey(values: &[f64], voi: &Voi, invert: bool) -> Vec<u8> {
    let fraction: Box<dyn Fn(f64) -> f64 + '_> = match voi {
        Voi::Window(window, function) => Box::new(move |v| window_fraction(v, *window, *function)),
        Voi::Lut(lut) => Box::new(move |v| lut.lookup(v) / lut.max_output()),
        Voi::MinMax => {
            let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
            let span = hi - lo;
            Box::new(move |v| if span > 0.0 { (v - lo) / span } else { 0.0 })
        }
    };
    values
        .iter()
        .map(|&v| {
            let f = fraction(v);
            to_u8(if invert { 1.0 - f } else { f })
        })
        .collect()
}

/// One YCbCr (full range, as YBR_FULL and YBR_FULL_422) pixel as RGB, by the JPEG/JFIF equations
/// (PS3.3 C.7.6.3.1.2), which pydicom's `convert_color_space` also uses.
pub fn ybr_full_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
    let clamp = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    [
        clamp(y + 1.402 * cr),
        clamp(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp(y + 1.772 * cb),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_matches_the_standard_ramp() {
        // PS3.3 C.11.2.1.2.1 with c = 40, w = 80: the ramp runs from -0.5 to 79.5.
        let w = Window {
            center: 40.0,
            width: 80.0,
        };
        assert_eq!(window_fraction(-0.5, w, VoiFunction::Linear), 0.0);
        assert_eq!(window_fraction(80.0, w, VoiFunction::Linear), 1.0);
        assert!((window_fraction(39.5, w, VoiFunction::Linear) - 0.5).abs() < 1e-12);
        assert_eq!(window_fraction(0.0, w, VoiFunction::LinearExact), 0.0);
        assert!((window_fraction(40.0, w, VoiFunction::LinearExact) - 0.5).abs() < 1e-12);
        assert!((window_fraction(40.0, w, VoiFunction::Sigmoid) - 0.5).abs() < 1e-12);
        assert!(window_fraction(1000.0, w, VoiFunction::Sigmoid) > 0.999);
    }

    #[test]
    fn ct_in_hounsfield_units_through_a_lung_window() {
        // Stored 24 with intercept -1024 is -1000 HU (air): black in a lung window, and white when inverted.
        let hu = rescale(24.0, 1.0, -1024.0);
        assert_eq!(hu, -1000.0);
        let lung = Voi::Window(parse_window("lung").unwrap(), VoiFunction::Linear);
        assert_eq!(to_grey(&[hu, 0.0, 2000.0], &lung, false), vec![60, 230, 255]);
        assert_eq!(to_grey(&[hu], &lung, true), vec![195]);
    }

    #[test]
    fn min_max_without_a_window() {
        assert_eq!(to_grey(&[10.0, 20.0, 30.0], &Voi::MinMax, false), vec![0, 128, 255]);
        assert_eq!(to_grey(&[10.0, 20.0, 30.0], &Voi::MinMax, true), vec![255, 128, 0]);
        assert_eq!(to_grey(&[5.0, 5.0], &Voi::MinMax, false), vec![0, 0]);
    }

    #[test]
    fn a_modality_lut_then_a_voi_lut_scaled_from_its_bits() {
        // A 12-bit modality LUT doubling stored values from 100 on, then an 8-bit VOI LUT mapping 200.. to 0..
        let modality = Modality::Lut(Lut {
            first_mapped: 100,
            bits: 12,
            data: vec![200, 202, 204],
        });
        let values: Vec<f64> = [50.0, 101.0, 400.0].iter().map(|&v| modality.apply(v)).collect();
        assert_eq!(values, vec![200.0, 202.0, 204.0]);
        let voi = Voi::Lut(Lut {
            first_mapped: 200,
            bits: 8,
            data: vec![0, 51, 255],
        });
        assert_eq!(
            to_grey(&[199.0, 201.0, 202.0, 203.0], &voi, false),
            vec![0, 51, 255, 255]
        );
        assert_eq!(to_grey(&[201.0], &voi, true), vec![204]);
    }

    #[test]
    fn window_values_parse_and_refuse() {
        assert_eq!(
            parse_window(" -600, 1500").unwrap(),
            Window {
                center: -600.0,
                width: 1500.0
            }
        );
        assert_eq!(
            parse_window("Brain").unwrap(),
            Window {
                center: 40.0,
                width: 80.0
            }
        );
        assert!(parse_window("40").unwrap_err().contains("CENTER,WIDTH"));
        assert!(parse_window("lungs").unwrap_err().contains("soft-tissue"));
        assert!(parse_window("40,0").unwrap_err().contains("at least 1"));
        assert!(parse_window("nan,10").is_err());
    }

    #[test]
    fn ybr_grey_stays_grey_and_primaries_come_back() {
        assert_eq!(ybr_full_to_rgb(100, 128, 128), [100, 100, 100]);
        // Pure red in JFIF YCbCr is about (76, 85, 255).
        let [r, g, b] = ybr_full_to_rgb(76, 85, 255);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
    }

    #[test]
    fn voi_functions_by_name() {
        assert_eq!(VoiFunction::from_dicom("LINEAR_EXACT "), Some(VoiFunction::LinearExact));
        assert_eq!(VoiFunction::from_dicom(""), Some(VoiFunction::Linear));
        assert_eq!(VoiFunction::from_dicom("LOG"), None);
    }
}

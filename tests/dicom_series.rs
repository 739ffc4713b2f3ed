//! CT and MR series (issue 10, series): folders written by scripts/make_dicom_series_fixtures.py with pydicom,
//! read by the real binary through `medgemma preview --series`. Every slice must equal the numpy
//! re-implementation of Google's CT notebook (or of the MR min-max) exactly, in the same order and from the same
//! instances; every bad folder must exit 1 naming the folder (and the file at fault) and the problem, write
//! nothing, and never print a patient attribute.
//!
//! The interpreter needs pydicom and numpy: MEDGEMMA_DICOM_PYTHON, else MEDGEMMA_PYTHON, else .venv-fixtures or
//! .venv in the repository, whichever imports pydicom first (as in tests/dicom.rs).

use std::path::Path;

use serde_json::Value;

use crate::util::{dicom_fixtures, fails, medgemma, output};

/// Writes the series fixtures into a fresh folder and returns it with the manifest.
fn fixtures() -> (tempfile::TempDir, Value) {
    dicom_fixtures("make_dicom_series_fixtures.py")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn secrets(manifest: &Value) -> Vec<String> {
    strings(&manifest["secrets"])
}

/// The columns and rows of a contact sheet of `n` thumbnails (as square as possible, filled row by row).
fn grid(n: u32) -> (u32, u32) {
    let columns = (f64::from(n)).sqrt().ceil() as u32;
    (columns, n.div_ceil(columns))
}

const THUMB_SIDE: u32 = 128;

/// Runs `preview --series` on one good case and checks every slice against the reference, the order of the
/// instances, the contact sheet, the notices and that no patient attribute is printed. Returns the largest
/// grey-level difference.
fn check_good_case(dir: &Path, case: &Value, secrets: &[String]) -> u8 {
    let name = case["name"].as_str().unwrap();
    let source = case["source"].as_str().unwrap();
    let (w, h) = (
        case["width"].as_u64().unwrap() as u32,
        case["height"].as_u64().unwrap() as u32,
    );
    let side = w.max(h);
    let out = dir.join(format!("preview-{name}"));
    let (result, stdout, stderr) = output(
        medgemma()
            .current_dir(dir)
            .args(["preview", "--series", source, "--side", &side.to_string(), "--out"])
            .arg(&out)
            .args(strings(&case["args"])),
    );
    assert!(result.status.success(), "{name}: {stderr}");
    assert!(stdout.is_empty(), "{name}: stdout is for answers only: {stdout}");
    for notice in strings(&case["notices"]) {
        assert!(
            stderr.contains(&notice),
            "{name}: expected the notice {notice:?}: {stderr}"
        );
    }
    for secret in secrets {
        assert!(
            !stderr.contains(secret.as_str()),
            "{name} printed a patient attribute: {stderr}"
        );
    }

    // The instances, in prompt order: "SLICE k: FILE[ frame F] -> OUT/NNN.png".
    let selected: Vec<u64> = case["selected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("SLICE ")).collect();
    assert_eq!(lines.len(), selected.len(), "{name}: one line per slice: {stderr}");
    for (k, (line, number)) in lines.iter().zip(&selected).enumerate() {
        let (label, rest) = line.split_once(": ").unwrap();
        assert_eq!(label, format!("SLICE {}", k + 1), "{name}: {line}");
        let (from, to) = rest.split_once(" -> ").unwrap();
        assert!(to.ends_with(&format!("{:03}.png", k + 1)), "{name}: {line}");
        let instance = match from.split_once(" frame ") {
            Some((_, frame)) => frame.parse::<u64>().unwrap(),
            None => {
                let file = Path::new(from).file_name().unwrap().to_str().unwrap();
                case["instance_numbers"][file].as_u64().unwrap()
            }
        };
        assert_eq!(
            instance,
            *number,
            "{name}: slice {} comes from the wrong instance: {line}",
            k + 1
        );
    }

    // Every slice, pixel for pixel, after undoing the padding to a square.
    let reference = std::fs::read(dir.join(case["reference"].as_str().unwrap())).unwrap();
    let per_slice = (w * h * 3) as usize;
    assert_eq!(reference.len(), per_slice * selected.len(), "{name}: reference size");
    let (dx, dy) = ((side - w) / 2, (side - h) / 2);
    let mut worst = 0u8;
    for (k, expected) in reference.chunks(per_slice).enumerate() {
        let png = image::open(out.join(format!("{:03}.png", k + 1))).unwrap().to_rgb8();
        assert_eq!(
            png.dimensions(),
            (side, side),
            "{name}: slice {} is padded to a square",
            k + 1
        );
        for y in 0..h {
            for x in 0..w {
                let ours = png.get_pixel(x + dx, y + dy).0;
                let i = ((y * w + x) * 3) as usize;
                for c in 0..3 {
                    worst = worst.max(ours[c].abs_diff(expected[i + c]));
                }
            }
        }
    }
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut expected: Vec<String> = (1..=selected.len()).map(|k| format!("{k:03}.png")).collect();
    expected.push("contact-sheet.png".into());
    assert_eq!(written, expected, "{name}: the files written");
    let (columns, rows) = grid(selected.len() as u32);
    let sheet = image::open(out.join("contact-sheet.png")).unwrap();
    assert_eq!(
        (sheet.width(), sheet.height()),
        (columns * THUMB_SIDE, rows * THUMB_SIDE),
        "{name}: contact sheet size"
    );
    worst
}

#[test]
fn series_slices_equal_googles_notebook() {
    let (dir, manifest) = fixtures();
    let secrets = secrets(&manifest);
    let mut report = Vec::new();
    for case in manifest["good"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let worst = check_good_case(dir.path(), case, &secrets);
        report.push(format!("{name}: {worst}"));
        // Exact: the same float32 arithmetic and the same rounding (half to even) as numpy.
        assert_eq!(worst, 0, "{name}: differs from the notebook by {worst} grey levels");
    }
    eprintln!("max grey-level difference per series: {}", report.join(", "));
}

#[test]
fn bad_series_exit_1_naming_the_folder_and_the_problem() {
    let (dir, manifest) = fixtures();
    let secrets = secrets(&manifest);
    for case in manifest["bad"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let source = case["source"].as_str().unwrap();
        let never = dir.path().join(format!("never-{name}"));
        let stderr = fails(
            medgemma()
                .current_dir(dir.path())
                .args(["preview", "--series", source, "--out"])
                .arg(&never)
                .args(strings(&case["args"])),
        );
        assert!(
            stderr.contains(&format!("series {source}")),
            "{name}: names the folder: {stderr}"
        );
        if let Some(file) = case["names"].as_str() {
            assert!(stderr.contains(file), "{name}: names {file}: {stderr}");
        }
        for expect in strings(&case["expect"]) {
            assert!(stderr.contains(&expect), "{name}: expected {expect:?}: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        for secret in &secrets {
            assert!(
                !stderr.contains(secret.as_str()),
                "{name} printed a patient attribute: {stderr}"
            );
        }
        assert!(!never.exists(), "{name}: nothing may be written");
    }
}

/// `--image` and `--series` together: the images first, then the slices, numbered on; a second run into the
/// same folder is refused before anything is overwritten.
#[test]
fn images_then_series_and_no_overwrite() {
    let (dir, _) = fixtures();
    let png = dir.path().join("a.png");
    image::RgbImage::from_pixel(4, 4, image::Rgb([200, 100, 50]))
        .save(&png)
        .unwrap();
    let out = dir.path().join("out");
    let run = || {
        let mut cmd = medgemma();
        cmd.current_dir(dir.path())
            .args(["preview", "--image", "a.png", "--series", "two_series", "--series-uid"])
            .arg("1.2.826.0.1.3680043.10.1077.5")
            .args(["--out"])
            .arg(&out);
        cmd
    };
    let (result, _, stderr) = output(&mut run());
    assert!(result.status.success(), "{stderr}");
    assert_eq!(
        image::open(out.join("001.png")).unwrap().to_rgb8().get_pixel(0, 0).0,
        [200, 100, 50]
    );
    assert!(
        stderr.contains("SLICE 1: two_series/b0.dcm -> ") && stderr.contains("002.png"),
        "{stderr}"
    );
    assert!(
        stderr.contains("SLICE 2: two_series/b1.dcm -> ") && stderr.contains("003.png"),
        "{stderr}"
    );
    assert!(out.join("contact-sheet.png").exists());
    let before = std::fs::read(out.join("003.png")).unwrap();
    let stderr = fails(&mut run());
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(out.join("003.png")).unwrap(), before);
}

/// A folder with more files than any series is refused before a header is read.
#[test]
fn too_many_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("huge");
    std::fs::create_dir(&folder).unwrap();
    for i in 0..5001 {
        std::fs::File::create(folder.join(format!("{i}"))).unwrap();
    }
    let stderr = fails(
        medgemma()
            .args(["preview", "--series"])
            .arg(&folder)
            .arg("--out")
            .arg(dir.path().join("never")),
    );
    assert!(
        stderr.contains("more than 5000 files") && stderr.contains("huge"),
        "{stderr}"
    );
    assert!(!dir.path().join("never").exists());
}

/// `--series-uid` and `--max-slices` need a series (exit 1, naming the flag to add); `--max-slices 0` is a usage
/// error (exit 2).
#[test]
fn series_flags_need_a_series() {
    for (args, code) in [
        (vec!["--image", "a.png", "--series-uid", "1.2"], 1),
        (vec!["--image", "a.png", "--max-slices", "4"], 1),
        (vec!["--series", "x", "--max-slices", "0"], 2),
    ] {
        let (result, _, stderr) = output(medgemma().arg("preview").args(&args).args(["--out", "never"]));
        assert_eq!(result.status.code(), Some(code), "{args:?}: {stderr}");
        if code == 1 {
            assert!(stderr.contains("add --series"), "{args:?}: {stderr}");
        }
    }
}

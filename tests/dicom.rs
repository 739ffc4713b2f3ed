//! DICOM in (issue 10, first slice): fixtures written by scripts/make_dicom_fixtures.py with pydicom, read by the
//! real binary through `medgemma preview`; our pixels must equal pydicom's `apply_modality_lut` +
//! `apply_voi_lut` (+ MONOCHROME1 inversion, + min-max without a window) within one grey level, and every bad
//! file must exit 1 naming the file and the problem, without a panic and without a patient identifier.
//!
//! The interpreter needs pydicom and numpy: MEDGEMMA_DICOM_PYTHON, else MEDGEMMA_PYTHON, else .venv-fixtures or
//! .venv in the repository, whichever imports pydicom first.

use std::path::Path;

use serde_json::Value;

use crate::util::{fails, medgemma, ok};

/// Writes the fixtures into a fresh folder and returns it with the manifest.
fn fixtures() -> (tempfile::TempDir, Value) {
    crate::util::dicom_fixtures("make_dicom_fixtures.py")
}

/// The largest difference between our preview of `file` and the reference pixels, which sit centred in the
/// square (`--image-fit pad`).
fn max_difference(dir: &Path, file: &str, args: &[String], reference: &Value, out: &Path) -> u8 {
    ok(medgemma()
        .current_dir(dir)
        .args(["preview", "--image", file, "--out"])
        .arg(out)
        .args(args));
    let png = image::open(out.join("001.png")).unwrap().to_rgb8();
    let (w, h) = (
        reference["width"].as_u64().unwrap() as u32,
        reference["height"].as_u64().unwrap() as u32,
    );
    let channels = reference["channels"].as_u64().unwrap() as usize;
    let pixels: Vec<u8> = reference["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    let n = w.max(h);
    assert_eq!(png.dimensions(), (n, n), "{file}: padded to a square");
    let (dx, dy) = ((n - w) / 2, (n - h) / 2);
    let mut worst = 0u8;
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            let ours = png.get_pixel(x + dx, y + dy).0;
            for c in 0..3 {
                let theirs = pixels[i * channels + if channels == 3 { c } else { 0 }];
                worst = worst.max(ours[c].abs_diff(theirs));
            }
        }
    }
    worst
}

#[test]
fn pixels_equal_pydicom_within_one_grey_level() {
    let (dir, manifest) = fixtures();
    let mut report = Vec::new();
    for case in manifest["good"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let reference: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(case["reference"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let args: Vec<String> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let out = dir.path().join(format!("preview-{name}"));
        let worst = max_difference(dir.path(), case["file"].as_str().unwrap(), &args, &reference, &out);
        report.push(format!("{name}: {worst}"));
        // One grey level: numpy rounds halves to even, Rust away from zero.
        assert!(worst <= 1, "{name}: differs from pydicom by {worst} grey levels");
    }
    eprintln!("max grey-level difference per fixture: {}", report.join(", "));
}

#[test]
fn no_window_gives_a_notice_and_never_a_patient_identifier() {
    let (dir, manifest) = fixtures();
    let out = dir.path().join("preview");
    let output = medgemma()
        .current_dir(dir.path())
        .args(["preview", "--image", "multiframe_frame_1.dcm", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr.matches("no window in the file").count(), 1, "{stderr}");
    assert!(
        stderr.contains("multiframe_frame_1.dcm") && stderr.contains("--window"),
        "{stderr}"
    );
    for secret in manifest["secrets"].as_array().unwrap() {
        assert!(!stderr.contains(secret.as_str().unwrap()), "{stderr}");
    }
}

#[test]
fn bad_files_exit_1_naming_the_file_and_the_problem() {
    let (dir, manifest) = fixtures();
    let secrets: Vec<&str> = manifest["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for case in manifest["bad"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let stderr = fails(
            medgemma()
                .current_dir(dir.path())
                .args(["preview", "--image", file, "--out"])
                .arg(dir.path().join("never")),
        );
        assert!(stderr.contains(file), "{file}: {stderr}");
        for expect in case["expect"].as_array().unwrap() {
            assert!(
                stderr.contains(expect.as_str().unwrap()),
                "{file}: expected {expect}: {stderr}"
            );
        }
        for secret in &secrets {
            assert!(
                !stderr.contains(secret),
                "{file} printed a patient identifier: {stderr}"
            );
        }
        assert!(!dir.path().join("never").exists(), "{file}: nothing written");
    }
}

#[test]
fn frame_and_window_index_out_of_range_are_refused() {
    let (dir, _) = fixtures();
    let cases = [
        (
            "multiframe_frame_1.dcm",
            vec!["--frame", "4"],
            "the file has 3 frame(s)",
        ),
        ("ct.dcm", vec!["--window-index", "3"], "the file has 2 window(s)"),
    ];
    for (file, args, expect) in cases {
        let stderr = fails(
            medgemma()
                .current_dir(dir.path())
                .args(["preview", "--image", file, "--out"])
                .arg(dir.path().join("never"))
                .args(&args),
        );
        assert!(stderr.contains(file) && stderr.contains(expect), "{stderr}");
    }
}

/// PNG behaviour is unchanged: DICOM flags are ignored for other images.
#[test]
fn png_is_unchanged_by_dicom_flags() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("a.png");
    image::RgbImage::from_pixel(4, 2, image::Rgb([200, 100, 50]))
        .save(&png)
        .unwrap();
    ok(medgemma()
        .args(["preview", "--image"])
        .arg(&png)
        .args(["--window", "lung", "--out"])
        .arg(dir.path().join("out")));
    let out = image::open(dir.path().join("out/001.png")).unwrap().to_rgb8();
    assert_eq!(out.dimensions(), (4, 4));
    assert_eq!(out.get_pixel(0, 1).0, [200, 100, 50]);
    assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
}

/// End to end through the tiny multimodal fixture: `run --image x.dcm` gives the same answer and the same logits
/// as `run --image` on the PNG that `preview` wrote for it (the windowed, padded picture).
#[test]
fn run_with_a_dicom_equals_run_with_its_preview_png() {
    let (dir, _) = fixtures();
    let g = crate::util::converted("tiny-medgemma-mm", "f32");
    let preview = dir.path().join("preview");
    ok(medgemma()
        .current_dir(dir.path())
        .args([
            "preview",
            "--image",
            "cr_monochrome1.dcm",
            "--window",
            "2000,2500",
            "--out",
        ])
        .arg(&preview));
    let run = |image: &Path, logits: &str, window: Option<&str>| {
        let mut cmd = medgemma();
        cmd.current_dir(dir.path())
            .arg("run")
            .arg("-m")
            .arg(&g.model)
            .arg("--mmproj")
            .arg(g.mmproj.as_ref().unwrap())
            .args(["-n", "6", "-t", "2", "--logits-out", logits, "--image"])
            .arg(image);
        if let Some(window) = window {
            cmd.args(["--window", window]);
        }
        cmd.arg("Describe the image.");
        ok(&mut cmd)
    };
    let from_dicom = run(Path::new("cr_monochrome1.dcm"), "dicom.logits", Some("2000,2500"));
    let from_png = run(&preview.join("001.png"), "png.logits", None);
    assert_eq!(from_dicom, from_png);
    let logits = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(logits("dicom.logits"), logits("png.logits"), "logits differ");
    // The model does see the window: another one changes the logits.
    run(Path::new("cr_monochrome1.dcm"), "lung.logits", Some("lung"));
    assert_ne!(
        logits("dicom.logits"),
        logits("lung.logits"),
        "the window made no difference"
    );
}

/// `run --verbose` names each DICOM image's technical facts (modality, size, bits, transfer syntax, the window and
/// where it came from, the frame) on stderr, and never a patient attribute.
#[test]
fn verbose_describes_a_dicom_without_patient_data() {
    let (dir, manifest) = fixtures();
    let g = crate::util::converted("tiny-medgemma-mm", "f32");
    let output = medgemma()
        .current_dir(dir.path())
        .arg("run")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.as_ref().unwrap())
        .args(["-v", "-n", "1", "--image", "ct.dcm", "--window-index", "2", "Describe."])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("medgemma: image ") && l.contains("ct.dcm:"))
        .unwrap_or_else(|| panic!("no description of ct.dcm in:\n{stderr}"));
    for fact in [
        "CT",
        "64x64",
        "16 bits allocated",
        "MONOCHROME2",
        "from the file (2 of 2)",
        "frame 1 of 1",
    ] {
        assert!(line.contains(fact), "{fact:?} missing from {line:?}");
    }
    for secret in manifest["secrets"].as_array().unwrap() {
        assert!(!stderr.contains(secret.as_str().unwrap()), "{stderr}");
    }
}

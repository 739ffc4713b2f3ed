//! The image embedding cache through the real binary and real llama.cpp on the tiny multimodal fixture: an image
//! read from the cache gives exactly the logits of a fresh encoding (the same float32 bits: the same rows decoded
//! by the same helper), a damaged entry is rebuilt and never used, the size cap keeps the most recently used,
//! entries are private and named by a hash only, `medgemma cache` shows and clears, an unusable cache folder is
//! noted and the answer still comes, and a batch about 4 images behind 8 system prompts encodes each image once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::util::*;

fn tiny() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

/// `medgemma` with its own cache home.
fn with_home(home: &Path) -> Command {
    let mut cmd = medgemma();
    cmd.env("MEDGEMMA_HOME", home);
    cmd
}

/// `medgemma run` on the tiny multimodal model about `image`, 2 threads.
fn run_about(mut cmd: Command, image: &Path) -> Command {
    let g = tiny();
    cmd.arg("run")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.as_ref().unwrap())
        .arg("--image")
        .arg(image)
        .args(["-t", "2"]);
    cmd
}

fn run_image(home: &Path, image: &Path, logits: &Path, extra: &[&str]) -> Value {
    let mut cmd = run_about(with_home(home), image);
    cmd.arg("--logits-out")
        .arg(logits)
        .args(["-n", "8", "--json"])
        .args(extra)
        .arg("Describe the finding.");
    serde_json::from_str(ok(&mut cmd).trim()).unwrap()
}

fn images_dir(home: &Path) -> PathBuf {
    home.join("cache/images")
}

fn entries(home: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(images_dir(home))
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "emb"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A small PNG of its own pixels (a gradient shifted by `seed`).
fn picture(dir: &Path, name: &str, seed: u8) -> PathBuf {
    let img = image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(5).wrapping_add(seed),
            (y as u8).wrapping_mul(6),
            seed.wrapping_mul(31),
        ])
    });
    let path = dir.join(name);
    img.save(&path).unwrap();
    path
}

fn use_of(report: &Value) -> (u64, u64, u64) {
    let u = &report["images"];
    (
        u["encoded"].as_u64().unwrap(),
        u["from_memory"].as_u64().unwrap(),
        u["from_disk"].as_u64().unwrap(),
    )
}

#[test]
fn a_cached_image_gives_the_same_logits_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let chest = fixtures().join("images/chest.png");
    let logits = |n: &str| dir.path().join(n);

    let cold = run_image(&home, &chest, &logits("cold.bin"), &[]);
    assert_eq!(use_of(&cold), (1, 0, 0), "{cold}");
    assert_eq!(entries(&home).len(), 1);
    let warm = run_image(&home, &chest, &logits("warm.bin"), &[]);
    assert_eq!(use_of(&warm), (0, 0, 1), "the second run reads the cache: {warm}");
    let off = run_image(&home, &chest, &logits("off.bin"), &["--no-image-cache"]);
    assert_eq!(use_of(&off), (1, 0, 0), "{off}");

    let cold_logits = std::fs::read(logits("cold.bin")).unwrap();
    assert!(cold_logits.len() >= 8 * 4, "one row of logits per generated token");
    assert!(
        cold_logits == std::fs::read(logits("warm.bin")).unwrap(),
        "cached rows must give the same logits"
    );
    assert!(cold_logits == std::fs::read(logits("off.bin")).unwrap());
    assert_eq!(cold["generated_token_ids"], warm["generated_token_ids"]);
    assert_eq!(cold["text"], warm["text"]);

    // The same file fitted another way gives other pixels: another entry, not a wrong hit.
    let wide = picture(dir.path(), "wide.png", 9);
    let padded = run_image(&home, &wide, &logits("pad.bin"), &[]);
    assert_eq!(use_of(&padded), (1, 0, 0), "{padded}");
    let stretched = run_image(&home, &wide, &logits("stretch.bin"), &["--image-fit", "stretch"]);
    assert_eq!(use_of(&stretched), (1, 0, 0), "{stretched}");
    assert_eq!(entries(&home).len(), 3);

    // Private, and named by a hash only: nothing in the cache folder names the image.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&images_dir(&home)), 0o700);
    for e in entries(&home) {
        assert_eq!(mode(&e), 0o600, "{}", e.display());
        let stem = e.file_stem().unwrap().to_str().unwrap();
        assert!(
            stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()),
            "{stem}"
        );
        let bytes = std::fs::read(&e).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("chest"),
            "{} names the image",
            e.display()
        );
    }
}

#[test]
fn a_damaged_entry_is_rebuilt_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let chest = fixtures().join("images/chest.png");
    let reference = run_image(&home, &chest, &dir.path().join("ref.bin"), &[]);
    assert_eq!(use_of(&reference), (1, 0, 0));
    let want = std::fs::read(dir.path().join("ref.bin")).unwrap();
    let entry = entries(&home).pop().unwrap();
    let whole = std::fs::read(&entry).unwrap();

    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 4] = [
        ("one flipped bit in the rows", |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0x04
        }),
        ("cut short", |b| b.truncate(b.len() - 100)),
        ("empty", |b| b.clear()),
        ("one byte too many", |b| b.push(7)),
    ];
    for (i, (what, damage)) in damages.iter().enumerate() {
        let mut bytes = whole.clone();
        damage(&mut bytes);
        std::fs::write(&entry, &bytes).unwrap();
        let out = dir.path().join(format!("d{i}.bin"));
        let report = run_image(&home, &chest, &out, &[]);
        assert_eq!(
            use_of(&report),
            (1, 0, 0),
            "{what}: the image must be encoded again: {report}"
        );
        assert!(std::fs::read(&out).unwrap() == want, "{what}: logits differ");
        assert!(
            std::fs::read(&entry).unwrap() == whole,
            "{what}: the entry must be written again, whole"
        );
    }
    let again = run_image(&home, &chest, &dir.path().join("again.bin"), &[]);
    assert_eq!(use_of(&again), (0, 0, 1));
}

#[test]
fn the_cap_keeps_the_most_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pics: Vec<PathBuf> = (0..3)
        .map(|i| picture(dir.path(), &format!("p{i}.png"), i * 40))
        .collect();
    let out = dir.path().join("l.bin");
    // Learn an entry's size, then allow two and a half.
    run_image(&home, &pics[0], &out, &[]);
    let one = std::fs::metadata(&entries(&home)[0]).unwrap().len();
    let cap = (one * 5 / 2).to_string();
    let run_capped = |p: &Path| {
        let mut cmd = run_about(with_home(&home), p);
        cmd.env("MEDGEMMA_IMAGE_CACHE_SIZE", &cap)
            .args(["-n", "2", "--json", "Describe."]);
        let v: Value = serde_json::from_str(ok(&mut cmd).trim()).unwrap();
        use_of(&v)
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(run_capped(&pics[1]), (1, 0, 0));
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        run_capped(&pics[0]),
        (0, 0, 1),
        "p0 is in the cache and now the most recent"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(run_capped(&pics[2]), (1, 0, 0));
    assert_eq!(entries(&home).len(), 2, "the cap holds two");
    assert_eq!(run_capped(&pics[0]), (0, 0, 1), "the most recently used stayed");
    assert_eq!(run_capped(&pics[1]), (1, 0, 0), "the least recently used went");
}

#[test]
fn cache_shows_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let show = |home: &Path| -> Value { serde_json::from_str(&ok(with_home(home).args(["cache", "--json"]))).unwrap() };
    let empty = show(&home);
    assert_eq!((empty["entries"].as_u64(), empty["bytes"].as_u64()), (Some(0), Some(0)));
    assert_eq!(empty["dir"], json!(images_dir(&home)));
    // doctor lists the same folder among the caches.
    // (its exit status depends on the machine's checks, not on this)
    let (_, stdout, _) = output(with_home(&home).args(["doctor", "--json"]));
    let doctor: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        doctor["caches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == json!(images_dir(&home)) && c["what"].as_str().unwrap().contains("image")),
        "{doctor:#}"
    );
    run_image(
        &home,
        &fixtures().join("images/chest.png"),
        &dir.path().join("a.bin"),
        &[],
    );
    run_image(
        &home,
        &fixtures().join("images/skin.png"),
        &dir.path().join("b.bin"),
        &[],
    );
    let full = show(&home);
    let on_disk: u64 = entries(&home).iter().map(|e| std::fs::metadata(e).unwrap().len()).sum();
    assert_eq!(
        (full["entries"].as_u64(), full["bytes"].as_u64()),
        (Some(2), Some(on_disk))
    );
    let text = ok(with_home(&home).arg("cache"));
    assert!(
        text.contains(&images_dir(&home).display().to_string()) && text.contains("entries      2"),
        "{text}"
    );

    std::fs::write(images_dir(&home).join("notes.txt"), "mine").unwrap();
    let (out, stdout, stderr) = output(with_home(&home).args(["cache", "clear"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.is_empty(), "clear reports on stderr: {stdout}");
    assert!(stderr.contains("removed 2 image cache entries"), "{stderr}");
    assert!(entries(&home).is_empty());
    assert!(
        images_dir(&home).join("notes.txt").exists(),
        "other files are left alone"
    );

    // A cap that is not a size is refused, naming the variable.
    let err = fails(with_home(&home).env("MEDGEMMA_IMAGE_CACHE_SIZE", "lots").arg("cache"));
    assert!(err.contains("MEDGEMMA_IMAGE_CACHE_SIZE"), "{err}");
}

#[test]
fn an_unusable_cache_folder_is_noted_and_the_answer_still_comes() {
    let dir = tempfile::tempdir().unwrap();
    // MEDGEMMA_HOME is a file: no cache folder can be made beneath it.
    let home = dir.path().join("home-is-a-file");
    std::fs::write(&home, "x").unwrap();
    let chest = fixtures().join("images/chest.png");
    let mut cmd = run_about(with_home(&home), &chest);
    cmd.args(["-n", "4", "--json", "Describe."]);
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(use_of(&v), (1, 0, 0));
    assert_eq!(
        stderr.matches("going on without the image cache").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("chest"), "the note must not name the image: {stderr}");
    // A cap that is not a size: refused before any model work.
    let err = fails(
        run_about(medgemma(), &chest)
            .env("MEDGEMMA_IMAGE_CACHE_SIZE", "-3")
            .arg("Describe."),
    );
    assert!(err.contains("MEDGEMMA_IMAGE_CACHE_SIZE") && err.contains("4G"), "{err}");
}

#[test]
fn a_batch_encodes_each_image_once_whatever_precedes_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pics: Vec<PathBuf> = (0..4)
        .map(|i| picture(dir.path(), &format!("img{i}.png"), i * 50 + 3))
        .collect();
    let mut lines = Vec::new();
    for j in 0..32 {
        lines.push(
            json!({
                "id": format!("job{j}"),
                "system": format!("You are reviewer number {} of this case series.", j % 8),
                "prompt": "Describe the image.",
                "images": [pics[j % 4]],
            })
            .to_string(),
        );
    }
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(&jobs, lines.join("\n") + "\n").unwrap();
    let g = tiny();
    let batch = |out: &Path, extra: &[&str]| {
        let mut cmd = with_home(&home);
        cmd.arg("batch")
            .arg("-m")
            .arg(&g.model)
            .arg("--mmproj")
            .arg(g.mmproj.as_ref().unwrap())
            .arg("--input")
            .arg(&jobs)
            .arg("--output")
            .arg(out)
            .args(["-t", "2", "-n", "4", "--parallel", "4"])
            .args(extra);
        let (o, _, stderr) = output(&mut cmd);
        assert!(o.status.success(), "{stderr}");
        let text = std::fs::read_to_string(out).unwrap();
        let mut answers: Vec<(String, String)> = text
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["text"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        answers.sort();
        (stderr, answers)
    };
    let (stderr, first) = batch(&dir.path().join("a.jsonl"), &[]);
    assert_eq!(first.len(), 32);
    // Each image once; the other jobs reuse its rows, or a whole prefix already in another sequence.
    assert!(
        stderr.contains("images: 4 encoded") && stderr.contains("0 from the image cache"),
        "{stderr}"
    );
    // A second batch finds all four on disk and answers the same.
    let (stderr, second) = batch(&dir.path().join("b.jsonl"), &[]);
    assert!(
        stderr.contains("images: 0 encoded") && stderr.contains(", 4 from the image cache,"),
        "{stderr}"
    );
    assert_eq!(first, second);
    // Without the disk cache, still once per image within the run.
    let (stderr, third) = batch(&dir.path().join("c.jsonl"), &["--no-image-cache"]);
    assert!(stderr.contains("images: 4 encoded"), "{stderr}");
    assert_eq!(first, third);
}

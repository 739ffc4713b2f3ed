//! Files that pass our own header checks but that llama.cpp refuses: the error names the file and carries
//! llama.cpp's own reason from its log (issue 14), with no other llama.cpp output unless --verbose.

use std::path::Path;

use crate::util::*;

fn mm() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

/// Runs `run` on the files, asserts a clean failure whose only stderr line is our error, and returns that line.
fn refused(model: &Path, mmproj: Option<&Path>, extra: &[&str]) -> String {
    let mut cmd = medgemma();
    cmd.arg("run").arg("-m").arg(model);
    if let Some(p) = mmproj {
        cmd.arg("--mmproj").arg(p);
    }
    cmd.args(extra).arg("hi");
    let err = fails(&mut cmd);
    assert_eq!(
        err.trim().lines().count(),
        1,
        "llama.cpp's log leaked onto stderr:\n{err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("run again with --verbose"),
        "llama.cpp's reason was not captured: {err}"
    );
    err
}

/// A file whose header passes our pre-check but whose tokenizer llama.cpp does not know: llama.cpp's own reason.
#[test]
fn model_with_an_unknown_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let bad = edited(&mm().model, dir.path(), "llamx.gguf", |b| rename(b, "llama", "llamX"));
    let err = refused(&bad, None, &[]);
    assert!(
        err.contains(&format!("llama.cpp could not load {}: ", bad.display())),
        "{err}"
    );
    assert!(err.contains("unknown tokenizer: 'llamX'"), "{err}");
}

/// What llama.cpp used to be the first to refuse (a missing tensor or key, a tensor of the wrong shape) is now
/// refused by our pre-check before llama.cpp sees the file, naming the tensor or key (issue 14).
#[test]
fn what_llama_cpp_used_to_refuse_is_refused_first_by_the_pre_check() {
    let dir = tempfile::tempdir().unwrap();
    let g = mm();
    let missing = edited(&g.model, dir.path(), "missing.gguf", |b| {
        rename(b, "blk.0.attn_q.weight", "blk.0.attn_X.weight")
    });
    let err = refused(&missing, None, &[]);
    assert!(!err.contains("llama.cpp could not load"), "{err}");
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("blk.0.attn_q.weight"),
        "{err}"
    );
    let reshaped = edited(&g.model, dir.path(), "reshaped.gguf", |b| {
        reshape(b, "blk.0.attn_q.weight")
    });
    let err = refused(&reshaped, None, &[]);
    assert!(
        err.contains(&reshaped.display().to_string()) && err.contains("blk.0.attn_q.weight"),
        "{err}"
    );
    let no_key = edited(&g.model, dir.path(), "no-key.gguf", |b| {
        rename(b, "gemma3.block_count", "gemma3.block_cXunt")
    });
    let err = refused(&no_key, None, &[]);
    assert!(err.contains("gemma3.block_count"), "{err}");
    let mmproj = edited(g.mmproj.as_ref().unwrap(), dir.path(), "mmproj.gguf", |b| {
        rename(b, "mm.input_projection.weight", "mm.input_projectiXn.weight")
    });
    let err = refused(&g.model, Some(&mmproj), &[]);
    assert!(
        err.contains(&mmproj.display().to_string()) && err.contains("mm.input_projection.weight"),
        "{err}"
    );
}

/// The one context llama.cpp was seen to refuse (a quantised V cache without flash attention) is now refused by
/// our own flags check first, naming both flags (issue 14's bad-input matrix).
#[test]
fn a_context_llama_cpp_would_refuse_is_refused_first_by_its_flags() {
    let err = refused(&mm().model, None, &["--cache-type", "q8_0", "--flash-attn", "off"]);
    assert!(!err.contains("cannot create a llama.cpp context"), "{err}");
    assert!(
        err.contains("--cache-type q8_0") && err.contains("--flash-attn auto"),
        "{err}"
    );
}

#[test]
fn verbose_still_shows_llama_cpps_log() {
    let dir = tempfile::tempdir().unwrap();
    let bad = edited(&mm().model, dir.path(), "llamx.gguf", |b| rename(b, "llama", "llamX"));
    let mut cmd = medgemma();
    cmd.arg("run").arg("-m").arg(&bad).args(["--verbose", "hi"]);
    let err = fails(&mut cmd);
    assert!(err.contains("llama_model_load: error loading model"), "{err}");
    assert!(err.contains("unknown tokenizer: 'llamX'"), "{err}");
}

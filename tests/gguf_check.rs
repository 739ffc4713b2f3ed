//! The GGUF pre-check (src/gguf_check.rs) through the real binary: byte-edited copies of a converted fixture are
//! refused before llama.cpp sees them, with exit status 1 and a message that names the file and the key or tensor;
//! valid files still load. Regression tests for two mmproj bugs (issue 14): a wrongly shaped v.blk.0.attn_q.weight
//! aborted the process in clip's warmup (GGML_ASSERT ggml_can_mul_mat), and an mmproj without v.blk.0.attn_q.weight
//! or v.patch_embd.weight loaded silently.

use std::path::Path;

use crate::util::*;

fn mm() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

/// Sets the u32 metadata value of `key`.
fn set_u32(bytes: &mut [u8], key: &str, value: u32) {
    let at = entry(bytes, key);
    assert_eq!(
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()),
        4,
        "{key} is a u32"
    );
    bytes[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Asserts a clean refusal (exit 1, one error line, no panic and no abort from llama.cpp) naming `path` and
/// `subject`; returns stderr.
fn refused(cmd: &mut std::process::Command, path: &Path, subject: &str) -> String {
    let err = fails(cmd);
    for crash in ["panicked", "GGML_ASSERT", "Aborted", "core dumped"] {
        assert!(!err.contains(crash), "{crash}:\n{err}");
    }
    assert!(
        err.contains(&path.display().to_string()),
        "the file is not named:\n{err}"
    );
    assert!(err.contains(subject), "{subject} is not named:\n{err}");
    assert!(err.contains("download or convert it again"), "no fix:\n{err}");
    err
}

fn run_with(model: &Path, mmproj: Option<&Path>) -> std::process::Command {
    let mut cmd = medgemma();
    cmd.arg("run").arg("-m").arg(model);
    if let Some(p) = mmproj {
        cmd.arg("--mmproj").arg(p);
    }
    cmd.args(["-n", "1", "hi"]);
    cmd
}

fn info(path: &Path) -> std::process::Command {
    let mut cmd = medgemma();
    cmd.arg("info").arg(path);
    cmd
}

#[test]
fn mmproj_with_a_wrongly_shaped_attention_matrix_is_refused_not_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let g = mm();
    let name = "v.blk.0.attn_q.weight";
    let bad = edited(g.mmproj.as_ref().unwrap(), dir.path(), "mmproj-bad.gguf", |b| {
        reshape(b, name)
    });
    let err = refused(
        &mut run_with(&g.model, Some(&bad)),
        &bad,
        &format!("tensor {name:?} has shape"),
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    refused(&mut info(&bad), &bad, name);
}

#[test]
fn mmproj_without_an_attention_matrix_or_patch_embedding_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = mm();
    for (name, other) in [
        ("v.blk.0.attn_q.weight", "v.blk.0.attn_X.weight"),
        ("v.patch_embd.weight", "v.patch_embX.weight"),
    ] {
        let bad = edited(g.mmproj.as_ref().unwrap(), dir.path(), "mmproj-missing.gguf", |b| {
            rename(b, name, other)
        });
        refused(
            &mut run_with(&g.model, Some(&bad)),
            &bad,
            &format!("tensor {name:?} is missing"),
        );
        refused(&mut info(&bad), &bad, name);
    }
}

#[test]
fn model_with_too_many_layers_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let g = mm();
    let key = "gemma3.block_count";
    let bad = edited(&g.model, dir.path(), "model-layers.gguf", |b| set_u32(b, key, 600));
    let subject = format!("metadata key {key:?} is 600");
    refused(&mut run_with(&bad, None), &bad, &subject);
    refused(&mut info(&bad), &bad, &subject);
    let mut quantize = medgemma();
    quantize
        .arg("quantize")
        .arg(&bad)
        .arg(dir.path().join("out.gguf"))
        .args(["--type", "q8_0"]);
    refused(&mut quantize, &bad, &subject);
    assert!(!dir.path().join("out.gguf").exists());
}

#[test]
fn model_with_a_malformed_byte_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = mm();
    let bad = edited(&g.model, dir.path(), "model-byte.gguf", |b| {
        // The token list holds "<0x00>" as a length-prefixed string: make it the published "<0x-1>".
        let mut pat = 6u64.to_le_bytes().to_vec();
        pat.extend_from_slice(b"<0x00>");
        let at = b.windows(pat.len()).position(|w| w == pat).expect("byte token <0x00>") + 8;
        b[at..at + 6].copy_from_slice(b"<0x-1>");
    });
    let err = refused(&mut run_with(&bad, None), &bad, "tokenizer.ggml.tokens");
    assert!(err.contains("\"<0x-1>\""), "{err}");
}

#[test]
fn model_with_scores_of_the_wrong_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = mm();
    let key = "tokenizer.ggml.scores";
    let bad = edited(&g.model, dir.path(), "model-scores.gguf", |b| {
        let at = entry(b, key);
        assert_eq!(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()), 9, "an array");
        assert_eq!(u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()), 6, "of f32");
        b[at + 4..at + 8].copy_from_slice(&5u32.to_le_bytes()); // i32: same size, wrong type
    });
    refused(
        &mut run_with(&bad, None),
        &bad,
        &format!("metadata key {key:?} holds an array"),
    );
}

#[test]
fn model_with_an_unknown_tensor_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = mm();
    let name = "output_norm.weight";
    let bad = edited(&g.model, dir.path(), "model-type.gguf", |b| {
        let at = entry(b, name);
        let n_dims = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let ty = at + 4 + 8 * n_dims;
        b[ty..ty + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    });
    refused(
        &mut info(&bad),
        &bad,
        &format!("tensor {name:?} has ggml type 4294967295"),
    );
}

#[test]
fn valid_files_pass_the_check() {
    let g = mm();
    ok(&mut info(&g.model));
    ok(&mut info(g.mmproj.as_ref().unwrap()));
    for outtype in ["f16", "q8_0"] {
        ok(&mut info(&converted("tiny-medgemma-text", outtype).model));
    }
    // The full-size synthetic model of the main checkout, when it is there (2.5 GB: only its header is read).
    let synthetic = root().join("../main/models/synthetic-medgemma-4b-q4_k_m.gguf");
    if synthetic.exists() {
        ok(&mut info(&synthetic));
    }
}

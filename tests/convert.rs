//! The converter's outputs load and run in our runtime, at every output type, for both architectures.

use crate::util::*;

fn loads_and_answers(checkpoint: &str, outtype: &str) {
    let gguf = converted(checkpoint, outtype);
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&gguf.model)
        .args(["-n", "4", "What is a fever?"]);
    let out = ok(&mut cmd);
    assert!(!out.is_empty());
    if let Some(mmproj) = &gguf.mmproj {
        let mut cmd = medgemma();
        cmd.arg("run").arg("-m").arg(&gguf.model).arg("--mmproj").arg(mmproj);
        cmd.arg("--image")
            .arg(fixtures().join("images/chest.png"))
            .args(["-n", "4", "Describe."]);
        ok(&mut cmd);
    }
}

#[test]
fn mm_fixture_all_types_load() {
    for t in ["f32", "f16", "bf16", "q8_0"] {
        loads_and_answers("tiny-medgemma-mm", t);
    }
}

#[test]
fn text_fixture_all_types_load() {
    for t in ["f32", "f16", "bf16", "q8_0"] {
        loads_and_answers("tiny-medgemma-text", t);
    }
}

//! `pull --convert`: a model built here from a Hugging Face checkpoint. Downloads the checkpoint's safetensors,
//! config and tokenizer files into the shared cache, runs our converter (`scripts/convert_hf_to_gguf.py`, with the
//! Python that has `scripts/requirements.txt`), quantises the text model with the engine, and records the result
//! in medgemma's folder so that `list` and `-m NAME:QUANT` find it.
//!
//! Owns: choosing the checkpoint files, finding Python and the converter, and placing the result atomically (a
//! half-built model is never registered). The conversion itself is the script's; quantising is the engine's.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::download::Hub;
use super::local::{ConvertedBuild, ConvertedStore, LocalModel};
use crate::engine::{self, QuantizeOptions};
use crate::gguf::GgufHeader;
use crate::model_info::file_type_name;
use crate::settings::QuantType;

/// Files of a checkpoint the converter reads.
pub fn wanted(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    !file.contains('/')
        && (name.ends_with(".safetensors")
            || matches!(
                name,
                "config.json"
                    | "model.safetensors.index.json"
                    | "tokenizer.json"
                    | "tokenizer.model"
                    | "tokenizer_config.json"
                    | "special_tokens_map.json"
                    | "generation_config.json"
                    | "preprocessor_config.json"
                    | "processor_config.json"
                    | "chat_template.json"
                    | "chat_template.jinja"
            ))
}

/// The converter script: MEDGEMMA_CONVERTER, else the one of the source tree this binary was built from.
pub fn converter_script() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MEDGEMMA_CONVERTER").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/convert_hf_to_gguf.py");
    if built_from.is_file() {
        return Ok(built_from);
    }
    bail!(
        "cannot find the converter scripts/convert_hf_to_gguf.py (looked in {}); set MEDGEMMA_CONVERTER to its path \
         in a medgemma checkout",
        built_from.display()
    )
}

/// The Python to run it: MEDGEMMA_PYTHON, else the checkout's `.venv` (made by scripts/setup-python), else
/// `python3`; it must import numpy and gguf.
pub fn python(script: &Path) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("MEDGEMMA_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) => vec![PathBuf::from(p)],
        None => {
            let venv = script
                .parent()
                .and_then(Path::parent)
                .map(|root| root.join(".venv/bin/python"));
            venv.into_iter().chain([PathBuf::from("python3")]).collect()
        }
    };
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", "import numpy, gguf"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(p.clone());
        }
    }
    bail!(
        "no Python with the converter's packages (numpy, gguf) found (tried {}); run scripts/setup-python in the \
         medgemma checkout, or `pip install -r scripts/requirements.txt` and set MEDGEMMA_PYTHON to that python",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Downloads, converts and quantises `checkpoint` into the converted store as `name:quant`.
pub fn convert(
    hub: &Hub,
    checkpoint: &str,
    name: &str,
    quant: QuantType,
    threads: i32,
    verbose: bool,
) -> Result<LocalModel> {
    let quant_name = quant.name().to_ascii_lowercase();
    let script = converter_script()?;
    let python = python(&script)?;
    let command = format!("medgemma pull --convert {checkpoint} --quant {quant_name}");
    let files: Vec<String> = if hub.is_offline() {
        Vec::new()
    } else {
        hub.repo_files(checkpoint)?.into_iter().filter(|f| wanted(f)).collect()
    };
    let files = if files.is_empty() && hub.is_offline() {
        // Offline: a checkpoint already in the cache still converts.
        vec!["config.json".to_string()]
    } else {
        files
    };
    if !hub.is_offline() && !files.iter().any(|f| f == "config.json") {
        bail!("{checkpoint} has no config.json: not a Hugging Face checkpoint (for GGUF files use --repo/--file)");
    }
    let mut snapshot = None;
    for f in &files {
        let p = hub.file(checkpoint, f, &command)?;
        if f == "config.json" {
            snapshot = p.parent().map(Path::to_path_buf);
        }
    }
    let snapshot = snapshot.context("config.json")?;
    let commit = snapshot.file_name().unwrap_or_default().to_string_lossy().into_owned();

    let store = ConvertedStore::new(&super::local::medgemma_home());
    std::fs::create_dir_all(store.dir()).with_context(|| format!("cannot create {}", store.dir().display()))?;
    let work = tempfile::Builder::new()
        .prefix(".convert-")
        .tempdir_in(store.dir())
        .with_context(|| format!("cannot create a work folder in {}", store.dir().display()))?;
    eprintln!(
        "medgemma: converting {checkpoint} to GGUF (text model F16) with {}",
        script.display()
    );
    let status = Command::new(&python)
        .arg(&script)
        .arg(&snapshot)
        .args(["--outtype", "f16", "--name", name, "--outdir"])
        .arg(work.path())
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !status.success() {
        bail!("the converter failed on {checkpoint} ({status}); its message is above");
    }
    let (mut text, mut mmproj) = (None, None);
    for e in std::fs::read_dir(work.path())?.filter_map(|e| e.ok()) {
        let p = e.path();
        match GgufHeader::read(&p) {
            Ok(h) if h.is_mmproj() => mmproj = Some((p, h.get_u64("general.file_type").map(file_type_name))),
            _ if p.extension().is_some_and(|x| x == "gguf") => text = Some(p),
            _ => {}
        }
    }
    let text = text.context("the converter wrote no model file")?;
    let build_dir = work.path().join("build");
    std::fs::create_dir_all(&build_dir)?;
    let model_file = format!("{name}-{}.gguf", quant.name());
    if quant == QuantType::F16 {
        std::fs::rename(&text, build_dir.join(&model_file))?;
    } else {
        eprintln!("medgemma: quantising to {}", quant.name());
        let options = QuantizeOptions {
            quant_type: quant,
            allow_requantize: false,
            threads,
            verbose,
        };
        engine::quantize(&text, &build_dir.join(&model_file), &options)?;
    }
    let mmproj_file = match &mmproj {
        Some((p, file_type)) => {
            let n = mmproj_file_name(p, file_type.as_deref());
            eprintln!(
                "medgemma: vision projector {} ({n})",
                file_type.as_deref().unwrap_or("of unknown type")
            );
            std::fs::rename(p, build_dir.join(&n))?;
            Some(n)
        }
        None => None,
    };
    let record = ConvertedBuild {
        name: name.to_string(),
        quant: quant_name.clone(),
        checkpoint: checkpoint.to_string(),
        commit,
        model: model_file,
        mmproj: mmproj_file,
    };
    std::fs::write(build_dir.join("build.json"), serde_json::to_vec_pretty(&record)?)?;
    let target = store.build_dir(name, &quant_name);
    std::fs::create_dir_all(target.parent().expect("name folder"))?;
    if target.exists() {
        std::fs::remove_dir_all(&target).with_context(|| format!("cannot replace {}", target.display()))?;
    }
    std::fs::rename(&build_dir, &target).with_context(|| format!("cannot move the build into {}", target.display()))?;
    store
        .find(name, &quant_name)
        .with_context(|| format!("the build in {} cannot be read back", target.display()))
}

/// The name of a converted mmproj: `mmproj-<TYPE>.gguf` with the type its header says the converter wrote (F32
/// by default), or the converter's own file name when the header does not say (or names no known type).
fn mmproj_file_name(written: &Path, file_type: Option<&str>) -> String {
    match file_type {
        Some(t) if t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => format!("mmproj-{t}.gguf"),
        _ => written
            .file_name()
            .map_or_else(|| "mmproj.gguf".into(), |n| n.to_string_lossy().into_owned()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mmproj_names_say_their_type() {
        let written = std::path::Path::new("/w/mmproj-tiny-f32.gguf");
        assert_eq!(super::mmproj_file_name(written, Some("F32")), "mmproj-F32.gguf");
        assert_eq!(super::mmproj_file_name(written, Some("Q8_0")), "mmproj-Q8_0.gguf");
        assert_eq!(super::mmproj_file_name(written, None), "mmproj-tiny-f32.gguf");
        assert_eq!(
            super::mmproj_file_name(written, Some("file type 99")),
            "mmproj-tiny-f32.gguf"
        );
    }

    #[test]
    fn checkpoint_files() {
        for f in [
            "config.json",
            "model-00001-of-00002.safetensors",
            "tokenizer.model",
            "model.safetensors.index.json",
        ] {
            assert!(super::wanted(f), "{f}");
        }
        for f in [
            "README.md",
            ".gitattributes",
            "onnx/model.safetensors",
            "pytorch_model.bin",
        ] {
            assert!(!super::wanted(f), "{f}");
        }
    }
}

//! The models on this machine, by name: registry builds and files pulled with `--repo` in the Hugging Face cache,
//! and models converted here (`pull --convert`) in medgemma's own folder (MEDGEMMA_HOME, default
//! `~/.local/share/medgemma`), as `models/<name>/<quant>/` holding the GGUF files and a `build.json`.
//!
//! Owns: turning `-m NAME[:QUANT]` into files (pulling a registry build that is not local yet, when online),
//! what `medgemma list` shows and what `medgemma rm` removes. Downloads go through [`Hub`]; nothing here talks
//! HTTP itself.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::download::Hub;
use super::model_ref::{ModelName, ModelRef};
use super::registry::{Build, Registry};
use crate::gguf::GgufHeader;
use crate::model_info::{file_type_name, human_bytes};

/// Where a local model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A registry build, downloaded into the Hugging Face cache.
    Registry,
    /// Any GGUF pulled with `--repo/--file` (or by another tool) into the Hugging Face cache.
    Hub,
    /// Converted and quantised here from a Hugging Face checkpoint.
    Converted,
}

/// A model on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct LocalModel {
    /// The registry or conversion name, or the repository id for other hub files.
    pub name: String,
    pub quant: String,
    /// Bytes of the model and its mmproj together.
    pub size: u64,
    pub model: PathBuf,
    pub mmproj: Option<PathBuf>,
    pub source: Source,
    pub repo: Option<String>,
    pub file: Option<String>,
}

impl LocalModel {
    pub fn id(&self) -> String {
        format!("{}:{}", self.name, self.quant)
    }
}

/// What `-m` resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub model: PathBuf,
    pub mmproj: Option<PathBuf>,
}

/// medgemma's own folder for models built here.
pub fn medgemma_home() -> PathBuf {
    let get = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    get("MEDGEMMA_HOME")
        .or_else(|| get("XDG_DATA_HOME").map(|d| d.join("medgemma")))
        .or_else(|| get("HOME").map(|h| h.join(".local/share/medgemma")))
        .unwrap_or_else(|| PathBuf::from(".medgemma"))
}

/// The record of a converted model, `models/<name>/<quant>/build.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConvertedBuild {
    pub name: String,
    pub quant: String,
    /// The checkpoint it was made from, `owner/repo`.
    pub checkpoint: String,
    pub commit: String,
    pub model: String,
    pub mmproj: Option<String>,
}

/// Converted models live in `<home>/models/<name>/<quant>/`.
pub struct ConvertedStore {
    dir: PathBuf,
}

impl ConvertedStore {
    pub fn new(home: &Path) -> ConvertedStore {
        ConvertedStore {
            dir: home.join("models"),
        }
    }

    pub fn build_dir(&self, name: &str, quant: &str) -> PathBuf {
        self.dir.join(name).join(quant)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn find(&self, name: &str, quant: &str) -> Option<LocalModel> {
        self.read(&self.build_dir(name, quant))
    }

    fn read(&self, dir: &Path) -> Option<LocalModel> {
        let text = std::fs::read_to_string(dir.join("build.json")).ok()?;
        let b: ConvertedBuild = serde_json::from_str(&text).ok()?;
        let model = dir.join(&b.model);
        let mmproj = b.mmproj.as_ref().map(|m| dir.join(m));
        let size = [Some(&model), mmproj.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        model.is_file().then_some(LocalModel {
            name: b.name,
            quant: b.quant,
            size,
            model,
            mmproj,
            source: Source::Converted,
            repo: Some(b.checkpoint),
            file: None,
        })
    }

    pub fn all(&self) -> Vec<LocalModel> {
        let mut out = Vec::new();
        let Ok(names) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for name in names.filter_map(|e| e.ok()) {
            let Ok(quants) = std::fs::read_dir(name.path()) else {
                continue;
            };
            for q in quants.filter_map(|e| e.ok()) {
                out.extend(self.read(&q.path()));
            }
        }
        out.sort_by_key(LocalModel::id);
        out
    }
}

/// Resolves `-m` (or the default model when absent) to files: a path as given; a converted model; a registry
/// build from the cache, pulled first when it is not there and downloads are allowed.
pub fn resolve(model: Option<&str>, hub: &Hub, registry: &Registry) -> Result<ModelFiles> {
    let name = match model {
        Some(text) => match ModelRef::parse(text)? {
            ModelRef::Path(path) => {
                return Ok(ModelFiles {
                    model: path,
                    mmproj: None,
                })
            }
            ModelRef::Name(name) => name,
        },
        None => registry.default_model()?,
    };
    let quant = name.quant_or(&registry.default_quant).to_string();
    if let Some(local) = ConvertedStore::new(&medgemma_home()).find(&name.name, &quant) {
        return Ok(ModelFiles {
            model: local.model,
            mmproj: local.mmproj,
        });
    }
    let build = registry.find(&name).with_context(|| {
        if model.is_none() {
            "no -m/--model given, and the default model is not in the registry".to_string()
        } else {
            format!("-m {name}")
        }
    })?;
    if let Some(files) = cached_build(hub, &build) {
        return Ok(files);
    }
    if hub.is_offline() {
        let missing = if hub.cache().cached(&build.repo, "main", &build.model.file).is_none() {
            &build.model.file
        } else {
            &build.mmproj.as_ref().expect("only the mmproj can be missing").file
        };
        let err = hub.not_cached(&build.repo, missing, &format!("medgemma pull {}", build.id()));
        return Err(anyhow::Error::new(err).context(if model.is_none() {
            format!("no -m/--model given, so the default model {} is used, and it is not downloaded yet (or pass -m/--model MODEL.gguf)", build.id())
        } else {
            format!("{} is not downloaded yet", build.id())
        }));
    }
    eprintln!(
        "medgemma: {} is not downloaded yet; pulling it from {} (about {}). Licence: {}",
        build.id(),
        build.repo,
        human_bytes(build.model.approx_bytes + build.mmproj.as_ref().map_or(0, |m| m.approx_bytes)),
        build.licence
    );
    pull_build(hub, &build)
}

/// The build's files when all are in the cache.
fn cached_build(hub: &Hub, build: &Build) -> Option<ModelFiles> {
    let model = hub.cache().cached(&build.repo, "main", &build.model.file)?;
    let mmproj = match &build.mmproj {
        Some(m) => Some(hub.cache().cached(&build.repo, "main", &m.file)?),
        None => None,
    };
    Some(ModelFiles { model, mmproj })
}

/// Downloads (or brings up to date) a registry build and checks that its files are what they claim to be.
pub fn pull_build(hub: &Hub, build: &Build) -> Result<ModelFiles> {
    let command = format!("medgemma pull {}", build.id());
    let model = hub.file(&build.repo, &build.model.file, &command)?;
    check_gguf(&model, false)?;
    let mmproj = match &build.mmproj {
        Some(m) => {
            let p = hub.file(&build.repo, &m.file, &command)?;
            check_gguf(&p, true)?;
            Some(p)
        }
        None => None,
    };
    Ok(ModelFiles { model, mmproj })
}

/// A downloaded file must be a GGUF model (or, for `mmproj`, a GGUF vision projector).
pub fn check_gguf(path: &Path, mmproj: bool) -> Result<()> {
    let header = GgufHeader::read(path).with_context(|| format!("the downloaded file {}", path.display()))?;
    match (mmproj, header.is_mmproj()) {
        (false, true) => bail!(
            "{} is a vision projector (mmproj), not a language model; pull the model file (and give this one as --mmproj-file)",
            path.display()
        ),
        (true, false) => bail!(
            "{} is a language model, not a vision projector (mmproj); check the --mmproj-file name",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// Everything on this machine that `-m`, `list` and `rm` know: converted models, registry builds and other GGUF
/// files in the Hugging Face cache.
pub fn local_models(hub: &Hub, registry: &Registry) -> Vec<LocalModel> {
    let mut out = ConvertedStore::new(&medgemma_home()).all();
    let files: Vec<_> = hub
        .cache()
        .files()
        .into_iter()
        .filter(|f| f.file.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    // Registry builds first, so that the mmproj files they use are known before the other files are listed.
    let (builds, others): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|f| registry.build_of_file(&f.repo, &f.file).is_some());
    for f in builds.into_iter().chain(others) {
        if let Some(build) = registry.build_of_file(&f.repo, &f.file) {
            let mmproj = build
                .mmproj
                .as_ref()
                .and_then(|m| hub.cache().cached(&build.repo, "main", &m.file));
            let mmproj_size = mmproj
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len());
            out.push(LocalModel {
                name: build.name.clone(),
                quant: build.quant.clone(),
                size: f.size + mmproj_size,
                model: f.path.clone(),
                mmproj,
                source: Source::Registry,
                repo: Some(f.repo.clone()),
                file: Some(f.file.clone()),
            });
            continue;
        }
        let is_registry_mmproj = registry
            .models
            .iter()
            .any(|m| m.repo == f.repo && m.mmproj.as_ref().is_some_and(|p| p.file == f.file));
        let in_use = is_registry_mmproj && out.iter().any(|m| m.mmproj.as_deref() == Some(f.path.as_path()));
        if in_use {
            continue;
        }
        let quant = match GgufHeader::read(&f.path) {
            Ok(h) if h.is_mmproj() => "mmproj".to_string(),
            Ok(h) => h
                .get_u64("general.file_type")
                .map_or_else(|| "unknown".into(), |t| file_type_name(t).to_ascii_lowercase()),
            Err(_) => "not-gguf".to_string(),
        };
        out.push(LocalModel {
            name: f.repo.clone(),
            quant,
            size: f.size,
            model: f.path.clone(),
            mmproj: None,
            source: Source::Hub,
            repo: Some(f.repo.clone()),
            file: Some(f.file.clone()),
        });
    }
    out
}

/// Removes the local models matching `NAME[:QUANT]` (every quantisation when none is given). An mmproj goes
/// only when no remaining model uses it. Returns what was removed and the bytes freed.
pub fn remove(hub: &Hub, registry: &Registry, name: &ModelName) -> Result<(Vec<String>, u64)> {
    let all = local_models(hub, registry);
    let (gone, kept): (Vec<LocalModel>, Vec<LocalModel>) = all
        .into_iter()
        .partition(|m| m.name == name.name && name.quant.as_ref().is_none_or(|q| *q == m.quant));
    if gone.is_empty() {
        bail!("{name} is not on this machine; `medgemma list` shows what is");
    }
    let mut freed = 0;
    let mut removed = Vec::new();
    for m in &gone {
        match m.source {
            Source::Converted => {
                let dir = m.model.parent().expect("build folder");
                freed += m.size;
                std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
                if let Some(parent) = dir.parent() {
                    let _ = std::fs::remove_dir(parent); // only when empty
                }
            }
            Source::Registry | Source::Hub => {
                let (repo, file) = (
                    m.repo.as_deref().expect("hub file"),
                    m.file.as_deref().expect("hub file"),
                );
                freed += hub
                    .cache()
                    .remove(repo, file)
                    .with_context(|| format!("cannot remove {repo}/{file}"))?;
                if let Some(mmproj) = &m.mmproj {
                    let shared = kept.iter().any(|k| k.mmproj.as_ref() == Some(mmproj));
                    let mfile = registry
                        .model(&m.name)
                        .and_then(|r| r.mmproj.as_ref())
                        .map(|f| f.file.clone());
                    if let (false, Some(mfile)) = (shared, mfile) {
                        freed += hub
                            .cache()
                            .remove(repo, &mfile)
                            .with_context(|| format!("cannot remove {repo}/{mfile}"))?;
                    }
                }
            }
        }
        removed.push(m.id());
    }
    Ok((removed, freed))
}

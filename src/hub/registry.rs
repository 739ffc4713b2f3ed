//! The registry of known MedGemma GGUF builds (`models/registry.json`): which Hugging Face repository and file
//! hold each name and quantisation, and the matching vision projector (mmproj).
//!
//! Owns: reading the registry and looking a name up. The file is embedded in the binary at build time
//! (`include_str!`), so `medgemma` works from any folder; `MEDGEMMA_REGISTRY=FILE.json` replaces it (mirrors,
//! private builds, tests). Pure apart from reading that one file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::model_ref::{ModelName, ModelNameError};

/// The registry compiled into the binary.
pub const EMBEDDED: &str = include_str!("../../models/registry.json");

/// The environment variable that points at another registry file.
pub const REGISTRY_ENV: &str = "MEDGEMMA_REGISTRY";

#[derive(Debug, Clone, Deserialize)]
pub struct Registry {
    /// The model `medgemma run` uses without `-m`, as `NAME:QUANT`.
    pub default: String,
    /// The quantisation used when a name comes without one.
    pub default_quant: String,
    pub models: Vec<RegistryModel>,
}

/// One model of the registry, with its quantisations.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RegistryModel {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The Hugging Face checkpoint the GGUF files were made from (for `pull --convert` and the licence page).
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub licence: String,
    /// The repository holding the GGUF files, `owner/name`.
    pub repo: String,
    pub quants: BTreeMap<String, RegistryFile>,
    /// The vision projector; absent for text-only models.
    #[serde(default)]
    pub mmproj: Option<RegistryFile>,
}

/// A file of a repository.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct RegistryFile {
    pub file: String,
    /// About how big the file is; the hub's own size decides.
    #[serde(default)]
    pub approx_bytes: u64,
}

/// A name and quantisation resolved to files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub name: String,
    pub quant: String,
    pub repo: String,
    pub model: RegistryFile,
    pub mmproj: Option<RegistryFile>,
    pub licence: String,
}

impl Build {
    /// `NAME:QUANT`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.name, self.quant)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read the model registry {} (from {REGISTRY_ENV}): {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the model registry {origin} is not valid: {source}")]
    Invalid {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unknown model {name:?}; known models: {known}. For any other GGUF use `medgemma pull --repo OWNER/REPO --file FILE.gguf`, or pass a .gguf path to -m")]
    UnknownName { name: String, known: String },
    #[error(
        "{name} has no {quant} build in the registry; available: {available} (e.g. `medgemma pull {name}:{first}`)"
    )]
    UnknownQuant {
        name: String,
        quant: String,
        available: String,
        first: String,
    },
    #[error(
        "the model registry's \"default\" is not NAME:QUANT; fix it in the file {REGISTRY_ENV} names, or unset \
             {REGISTRY_ENV} to use the built-in registry"
    )]
    BadDefault {
        #[source]
        source: ModelNameError,
    },
}

impl Registry {
    /// The registry named by `MEDGEMMA_REGISTRY`, or the embedded one.
    pub fn load() -> Result<Registry, RegistryError> {
        match std::env::var_os(REGISTRY_ENV).filter(|v| !v.is_empty()) {
            Some(path) => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|source| RegistryError::Read {
                    path: path.clone(),
                    source,
                })?;
                Registry::parse(&text, &path.display().to_string())
            }
            None => Registry::parse(EMBEDDED, "models/registry.json (embedded)"),
        }
    }

    pub fn parse(text: &str, origin: &str) -> Result<Registry, RegistryError> {
        serde_json::from_str(text).map_err(|source| RegistryError::Invalid {
            origin: origin.to_string(),
            source,
        })
    }

    /// The model of this name, if known.
    pub fn model(&self, name: &str) -> Option<&RegistryModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The build of `name` (with the default quantisation when none is given).
    pub fn find(&self, name: &ModelName) -> Result<Build, RegistryError> {
        let model = self.model(&name.name).ok_or_else(|| RegistryError::UnknownName {
            name: name.name.clone(),
            known: self
                .models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let quant = name.quant_or(&self.default_quant).to_string();
        let file = model.quants.get(&quant).ok_or_else(|| RegistryError::UnknownQuant {
            name: model.name.clone(),
            quant: quant.clone(),
            available: model.quants.keys().cloned().collect::<Vec<_>>().join(", "),
            first: model.quants.keys().next().cloned().unwrap_or_default(),
        })?;
        Ok(Build {
            name: model.name.clone(),
            quant,
            repo: model.repo.clone(),
            model: file.clone(),
            mmproj: model.mmproj.clone(),
            licence: model.licence.clone(),
        })
    }

    /// The build that holds `repo`/`file` as its model, if any (to name files found in the cache).
    pub fn build_of_file(&self, repo: &str, file: &str) -> Option<Build> {
        self.models.iter().find_map(|m| {
            let (quant, _) = m.quants.iter().find(|(_, f)| m.repo == repo && f.file == file)?;
            self.find(&ModelName {
                name: m.name.clone(),
                quant: Some(quant.clone()),
            })
            .ok()
        })
    }

    /// The default model, `NAME:QUANT`.
    pub fn default_model(&self) -> Result<ModelName, RegistryError> {
        ModelName::parse(&self.default).map_err(|source| RegistryError::BadDefault { source })
    }

    /// Every build, in registry order.
    pub fn builds(&self) -> Vec<Build> {
        self.models
            .iter()
            .flat_map(|m| {
                m.quants.keys().filter_map(|q| {
                    self.find(&ModelName {
                        name: m.name.clone(),
                        quant: Some(q.clone()),
                    })
                    .ok()
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> Registry {
        Registry::parse(EMBEDDED, "embedded").unwrap()
    }

    #[test]
    fn embedded_registry_is_complete() {
        let r = embedded();
        for name in [
            "medgemma-4b-it",
            "medgemma-1.5-4b-it",
            "medgemma-27b-text-it",
            "medgemma-27b-it",
        ] {
            let m = r.model(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(m.quants.contains_key("q4_k_m"), "{name}");
            assert!(m.repo.contains('/'), "{name}");
            assert!(!m.licence.is_empty(), "{name}");
            for f in m.quants.values().chain(m.mmproj.iter()) {
                assert!(f.file.ends_with(".gguf") && f.approx_bytes > 0, "{name}: {f:?}");
            }
        }
        assert!(r.model("medgemma-27b-text-it").unwrap().mmproj.is_none(), "text-only");
        assert!(r.model("medgemma-27b-it").unwrap().mmproj.is_some());
        let default = r.default_model().unwrap();
        let build = r.find(&default).unwrap();
        assert_eq!(build.id(), "medgemma-4b-it:q4_k_m");
        assert_eq!(build.model.file, "medgemma-4b-it-Q4_K_M.gguf");
        assert_eq!(build.mmproj.unwrap().file, "mmproj-F16.gguf");
    }

    #[test]
    fn lookup_with_and_without_quant() {
        let r = embedded();
        let b = r.find(&ModelName::parse("medgemma-27b-text-it").unwrap()).unwrap();
        assert_eq!(
            (b.quant.as_str(), b.model.file.as_str()),
            ("q4_k_m", "medgemma-27b-text-it-Q4_K_M.gguf")
        );
        let b = r.find(&ModelName::parse("medgemma-4b-it:Q8_0").unwrap()).unwrap();
        assert_eq!(b.model.file, "medgemma-4b-it-Q8_0.gguf");
        assert_eq!(
            r.build_of_file("unsloth/medgemma-4b-it-GGUF", "medgemma-4b-it-Q8_0.gguf")
                .unwrap()
                .id(),
            "medgemma-4b-it:q8_0"
        );
        assert!(r
            .build_of_file("unsloth/medgemma-4b-it-GGUF", "mmproj-F16.gguf")
            .is_none());
        assert_eq!(r.builds().len(), 8);
    }

    #[test]
    fn unknown_names_and_quants_say_what_exists() {
        let r = embedded();
        let err = r
            .find(&ModelName::parse("medgemma-9b").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("medgemma-9b") && err.contains("medgemma-4b-it") && err.contains("--repo"),
            "{err}"
        );
        let err = r
            .find(&ModelName::parse("medgemma-4b-it:q2_k").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("q2_k") && err.contains("q4_k_m, q8_0"), "{err}");
        assert!(Registry::parse("{", "x").is_err());
        let bad = Registry::parse(r#"{"default": "no good", "default_quant": "q8_0", "models": []}"#, "x").unwrap();
        let err = bad.default_model().unwrap_err();
        assert!(matches!(err, RegistryError::BadDefault { .. }), "{err}");
        assert!(err.to_string().contains(REGISTRY_ENV), "{err}");
    }
}

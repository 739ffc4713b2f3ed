//! Eval runs on disk: a folder DIR made by `medgemma eval --output DIR` holds `eval.json` (what was run: the
//! classes, how answers were made) and `predictions.jsonl` (one record per labelled item); from them this module
//! makes the report (report.json, report.md, confusion-matrix.png and, with probabilities, reliability.png) and
//! compares two runs.
//!
//! Owns: the two file formats (the contract with the run mode), their checks (line-numbered errors naming the file),
//! turning records into metric items, and writing the report files atomically. Must not: load a model or run items
//! (`commands/eval_run.rs`), print (the command does), or compute metrics itself (`eval/metrics.rs`).

pub mod compare;
mod glyphs;
mod markdown;
pub mod metrics;
pub mod plots;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::write_atomically;
use compare::{CompareError, Comparison};
use metrics::{Item, Metrics, MetricsError};

/// The file names inside an eval folder.
pub const META_JSON: &str = "eval.json";
pub const PREDICTIONS_JSONL: &str = "predictions.jsonl";
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";
pub const CONFUSION_PNG: &str = "confusion-matrix.png";
pub const RELIABILITY_PNG: &str = "reliability.png";

/// The version of eval.json this build writes and reads.
pub const META_VERSION: u32 = 1;

/// The one-line caution every report carries.
pub const CAUTION: &str = "Public benchmarks may be in the model's training data; these figures are from your own \
                           data, which MedGemma's model card recommends for validation. Research use only, not for \
                           clinical diagnosis.";

/// One line of predictions.jsonl (its field names are the file format: keep them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    /// The true label, one of the run's classes.
    pub label: String,
    /// The model's answer, one of the classes; `None` when there is no valid answer (counted wrong).
    pub prediction: Option<String>,
    /// A probability per class, when the run scored every class (`--choices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<BTreeMap<String, f64>>,
    /// Why generation stopped: "stop", "length", ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// eval.json: what the run was. Keys this build does not know are kept when the file is written again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMeta {
    pub version: u32,
    /// The labels, in the report's order; for two classes the second is ROC AUC's positive class.
    pub classes: Vec<String>,
    /// How answers were made: "choices" or "schema".
    pub mode: String,
    /// The answer's property compared with the label (mode "schema").
    #[serde(default)]
    pub field: Option<String>,
    /// The model's file name.
    #[serde(default)]
    pub model: Option<String>,
    /// The labelled data's file name.
    #[serde(default)]
    pub input: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What can go wrong reading an eval folder or writing its report; each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("not an eval folder: {} has no {META_JSON} (made by medgemma eval --output DIR)", dir.display())]
    NotEvalFolder { dir: PathBuf },
    #[error(
        "{} is missing: the run has no predictions yet (medgemma eval --input LABELLED.jsonl --output {} writes them)",
        path.display(),
        path.parent().unwrap_or(Path::new(".")).display()
    )]
    NoPredictionsFile { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}; it is written by medgemma eval --output DIR", path.display())]
    BadMeta { path: PathBuf, reason: String },
    #[error("{} line {line}: {reason}{hint}", path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
        hint: &'static str,
    },
    #[error("{} line {line}: id {id:?} is already on line {first}; each item must be recorded once", path.display())]
    DuplicateId {
        path: PathBuf,
        line: usize,
        id: String,
        first: usize,
    },
    #[error("{} holds no predictions: nothing to report (run medgemma eval --input ... --output DIR first)", path.display())]
    Empty { path: PathBuf },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode {}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the runs have different classes ({} has {a:?}, {} has {b:?}): only runs over the same labels compare",
        dir_a.display(),
        dir_b.display()
    )]
    DifferentClasses {
        dir_a: PathBuf,
        dir_b: PathBuf,
        a: Vec<String>,
        b: Vec<String>,
    },
    #[error("comparing {} with {}", dir_a.display(), dir_b.display())]
    Compare {
        dir_a: PathBuf,
        dir_b: PathBuf,
        #[source]
        source: CompareError,
    },
    #[error("{}", path.display())]
    Metrics {
        path: PathBuf,
        #[source]
        source: MetricsError,
    },
}

impl EvalMeta {
    /// Reads and checks DIR/eval.json: version 1, at least one class, no empty or repeated class.
    pub fn read(dir: &Path) -> Result<EvalMeta, EvalError> {
        let path = dir.join(META_JSON);
        let bytes = match crate::files::read_regular(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EvalError::NotEvalFolder { dir: dir.to_path_buf() })
            }
            Err(source) => return Err(EvalError::Read { path, source }),
        };
        let bad = |reason: String| EvalError::BadMeta {
            path: path.clone(),
            reason,
        };
        let meta: EvalMeta = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not an eval.json ({e})")))?;
        if meta.version != META_VERSION {
            return Err(bad(format!(
                "version {} is not the {META_VERSION} this medgemma reads (a newer medgemma wrote it?)",
                meta.version
            )));
        }
        if meta.classes.is_empty() {
            return Err(bad("no classes".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for class in &meta.classes {
            if class.is_empty() {
                return Err(bad("an empty class name".into()));
            }
            if !seen.insert(class.as_str()) {
                return Err(bad(format!("class {class:?} is listed twice")));
            }
        }
        Ok(meta)
    }

    /// Writes DIR/eval.json atomically.
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        let path = dir.join(META_JSON);
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|source| EvalError::Encode {
            path: path.clone(),
            source,
        })?;
        bytes.push(b'\n');
        write_atomically(&path, &bytes).map_err(|source| EvalError::Write { path, source })
    }
}

/// Reads every record of a predictions.jsonl; blank lines are skipped, ids must be unique.
#[cfg(test)]
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>, EvalError> {
    Ok(read_numbered(path)?.into_iter().map(|(_, record)| record).collect())
}

/// The records of a predictions.jsonl with their line numbers (from 1).
fn read_numbered(path: &Path) -> Result<Vec<(usize, Prediction)>, EvalError> {
    let text = match crate::files::read_regular_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EvalError::NoPredictionsFile {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(EvalError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let cut_last_line = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut records = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Prediction = serde_json::from_str(line).map_err(|e| EvalError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason: format!("not a prediction record ({e})"),
            hint: if cut_last_line && i + 1 == lines.len() {
                " (a cut last line: run the same medgemma eval command again to resume, which repairs it)"
            } else {
                ""
            },
        })?;
        if let Some(&first) = first_line.get(&record.id) {
            return Err(EvalError::DuplicateId {
                path: path.to_path_buf(),
                line: i + 1,
                id: record.id,
                first,
            });
        }
        first_line.insert(record.id.clone(), i + 1);
        records.push((i + 1, record));
    }
    Ok(records)
}

/// The records of `path` as metric items over `classes`, each with its id: labels must be classes, predictions
/// classes or null, probabilities one finite value in [0, 1] for each class and none for anything else.
fn items(path: &Path, classes: &[String]) -> Result<Vec<(String, Item)>, EvalError> {
    let records = read_numbered(path)?;
    if records.is_empty() {
        return Err(EvalError::Empty {
            path: path.to_path_buf(),
        });
    }
    let index: HashMap<&str, usize> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    records
        .into_iter()
        .map(|(line, r)| {
            let bad = |reason: String| EvalError::BadLine {
                path: path.to_path_buf(),
                line,
                reason: format!("item {:?}: {reason}", r.id),
                hint: "",
            };
            let class = |v: &str, what: &str| {
                index.get(v).copied().ok_or_else(|| {
                    bad(format!(
                        "{what} {v:?} is not one of the run's classes {classes:?} (eval.json)"
                    ))
                })
            };
            let label = class(&r.label, "label")?;
            let prediction = r.prediction.as_deref().map(|p| class(p, "prediction")).transpose()?;
            let probabilities = match &r.probabilities {
                None => None,
                Some(map) => {
                    if let Some(extra) = map.keys().find(|k| !index.contains_key(k.as_str())) {
                        return Err(bad(format!("a probability for {extra:?}, which is not a class")));
                    }
                    let mut p = Vec::with_capacity(classes.len());
                    for c in classes {
                        match map.get(c) {
                            Some(&v) if v.is_finite() && (0.0..=1.0).contains(&v) => p.push(v),
                            Some(v) => return Err(bad(format!("probability {v} of {c:?} is not in [0, 1]"))),
                            None => return Err(bad(format!("no probability for class {c:?}"))),
                        }
                    }
                    Some(p)
                }
            };
            Ok((
                r.id,
                Item {
                    label,
                    prediction,
                    probabilities,
                },
            ))
        })
        .collect()
}

/// report.json: the run's meta, every metric, and the caution.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: Option<String>,
    pub input: Option<String>,
    pub mode: Option<String>,
    pub field: Option<String>,
    #[serde(flatten)]
    pub metrics: Metrics,
    pub caution: &'static str,
}

/// Reads DIR's eval.json and predictions.jsonl and computes the report, writing nothing.
pub fn compute_report(dir: &Path) -> Result<Report, EvalError> {
    let meta = EvalMeta::read(dir)?;
    let path = dir.join(PREDICTIONS_JSONL);
    let items: Vec<Item> = items(&path, &meta.classes)?.into_iter().map(|(_, item)| item).collect();
    let metrics = metrics::compute(&meta.classes, &items).map_err(|source| EvalError::Metrics { path, source })?;
    Ok(Report {
        model: meta.model,
        input: meta.input,
        mode: Some(meta.mode),
        field: meta.field,
        metrics,
        caution: CAUTION,
    })
}

/// Computes DIR's report and writes DIR/report.json, report.md, confusion-matrix.png and (when some item has
/// probabilities) reliability.png, each atomically; a stale reliability.png is removed when there is none.
pub fn write_report(dir: &Path) -> Result<Report, EvalError> {
    let report = compute_report(dir)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        write_atomically(&path, bytes).map_err(|source| EvalError::Write { path, source })
    };
    let json_path = dir.join(REPORT_JSON);
    let mut json = serde_json::to_vec_pretty(&report).map_err(|source| EvalError::Encode {
        path: json_path,
        source,
    })?;
    json.push(b'\n');
    write(REPORT_JSON, &json)?;
    write(REPORT_MD, markdown::render(&report).as_bytes())?;
    write(
        CONFUSION_PNG,
        &plots::png_bytes(&plots::confusion_png(&report.metrics.confusion_matrix)),
    )?;
    match &report.metrics.calibration {
        Some(c) => write(RELIABILITY_PNG, &plots::png_bytes(&plots::reliability_png(c)))?,
        None => match std::fs::remove_file(dir.join(RELIABILITY_PNG)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(EvalError::Write {
                    path: dir.join(RELIABILITY_PNG),
                    source: e,
                })
            }
            _ => {}
        },
    }
    Ok(report)
}

/// Compares the runs in folders `a` and `b` (McNemar on the items both hold); refuses different class lists.
pub fn compare_runs(a: &Path, b: &Path) -> Result<Comparison, EvalError> {
    let (meta_a, meta_b) = (EvalMeta::read(a)?, EvalMeta::read(b)?);
    if meta_a.classes != meta_b.classes {
        return Err(EvalError::DifferentClasses {
            dir_a: a.to_path_buf(),
            dir_b: b.to_path_buf(),
            a: meta_a.classes,
            b: meta_b.classes,
        });
    }
    let items_a = items(&a.join(PREDICTIONS_JSONL), &meta_a.classes)?;
    let items_b = items(&b.join(PREDICTIONS_JSONL), &meta_b.classes)?;
    compare::compare(&meta_a.classes, &items_a, &items_b).map_err(|source| EvalError::Compare {
        dir_a: a.to_path_buf(),
        dir_b: b.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;

//! Jobs of a batch: one JSON object per line of the input file, or one job per image of a folder.
//!
//! Owns: parsing and checking each line (a bad line becomes a failed job with its line number, never a crash),
//! unique ids, `--shard K/N`, and turning a job into a [`Conversation`]. Pure except for listing a folder.
//!
//! A job line: `{"id": ..., "prompt": TEXT, "images": [PATH, ...], "series": DIR, "system": TEXT, "max_tokens":
//! N, "temperature": T, "seed": S, "format": "json" | {JSON Schema}, "label": TEXT}`, or `"messages": [...]` (the `run --messages` format, content lists included)
//! instead of `"prompt"`. A `"series"` job's conversation is one user turn `[Series(DIR), Text(prompt)]`: the
//! image loader ([`crate::prompt_images::ImageLoader::load`]) puts Google's instruction before the series and
//! replaces it with its slices and their labels before the prompt is built.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::conversation::{Conversation, ConversationError, ConversationFile, Part, Role, Turn};
use crate::settings::{Allowed, ValueError};
use crate::structured::OutputFormat;

/// One job as written in the input file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobLine {
    id: serde_json::Value,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<ConversationFile>,
    #[serde(default)]
    images: Vec<PathBuf>,
    /// A folder of DICOM slices, asked about with `prompt`.
    #[serde(default)]
    series: Option<PathBuf>,
    #[serde(default)]
    system: Option<String>,
    /// Checked by [`crate::settings::max_tokens`], like `--max-tokens`.
    #[serde(default)]
    max_tokens: Option<serde_json::Value>,
    /// Checked by [`crate::settings::temperature`], like `--temp`.
    #[serde(default)]
    temperature: Option<serde_json::Value>,
    #[serde(default)]
    seed: Option<u32>,
    /// The answer's shape: "json" (one JSON object) or a JSON Schema object.
    #[serde(default)]
    format: Option<serde_json::Value>,
    /// The expected answer (`medgemma eval`'s labelled data; batch copies it into the record).
    #[serde(default)]
    label: Option<serde_json::Value>,
}

/// Why a line of the input cannot run; the text becomes the job's `"error"` in the results.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("line {line}: not valid JSON: {reason}")]
    NotJson { line: usize, reason: String },
    #[error("line {line}: not UTF-8 text; save the input as UTF-8")]
    NotUtf8 { line: usize },
    #[error("line {line}: every job needs an \"id\" (a non-empty string)")]
    MissingId { line: usize },
    #[error("line {line}: duplicate id {id:?} (first used on line {first})")]
    DuplicateId { line: usize, id: String, first: usize },
    /// A field of the wrong type or an unknown field (serde's text names it).
    #[error("line {line}: {reason}")]
    BadField { line: usize, reason: String },
    /// A sampling value outside the range its flag accepts.
    #[error("line {line}: \"{field}\" is {value}: {error}")]
    BadValue {
        line: usize,
        field: &'static str,
        value: String,
        error: ValueError,
    },
    #[error("line {line}: {problem}")]
    Conversation { line: usize, problem: JobProblem },
    #[error("line {line}: \"format\": {reason}")]
    BadFormat { line: usize, reason: String },
    #[error("line {line}: \"label\" must be a non-empty string (or a number)")]
    BadLabel { line: usize },
}

/// What is wrong with the conversation a job describes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobProblem {
    #[error("give \"prompt\" or \"messages\", not both")]
    PromptAndMessages,
    #[error("a job needs a \"prompt\" or \"messages\"")]
    NoPrompt,
    #[error("\"prompt\" is empty and the job has no \"images\": give a question")]
    EmptyPrompt,
    #[error("\"system\" given twice (field and system message)")]
    SystemTwice,
    #[error("\"images\" needs a user message")]
    ImagesWithoutUserMessage,
    #[error("\"series\" goes with \"prompt\"; in \"messages\", put it in a user message's content as {{\"type\": \"series\", \"series\": \"DIR\"}}")]
    SeriesWithMessages,
    #[error("give \"series\" or \"images\", not both; to ask about both, use \"messages\" with a content list")]
    SeriesAndImages,
    #[error(transparent)]
    Messages(#[from] ConversationError),
}

/// Why `--images DIR` gives no jobs.
#[derive(Debug, thiserror::Error)]
pub enum ImageFolderError {
    #[error("--images {}", dir.display())]
    Read {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--images {}: no PNG, JPEG, BMP, TIFF, WebP or DICOM (.dcm) files found", dir.display())]
    Empty { dir: PathBuf },
}

/// Why `--shard` is refused (clap names the flag and the value before this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("expected K/N, e.g. 2/8")]
    NoSlash,
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("K must be between 1 and N (got {index}/{count})")]
    OutOfRange { index: u32, count: u32 },
}

/// A job ready to run, or the reason it cannot run.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub input: Result<Conversation, JobError>,
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub seed: Option<u32>,
    /// The job's own answer format (else the command's).
    pub format: Option<OutputFormat>,
    /// The expected answer, when the line has one.
    pub label: Option<String>,
}

impl Job {
    fn failed(id: String, error: JobError) -> Job {
        Job {
            id,
            input: Err(error),
            max_tokens: None,
            temperature: None,
            seed: None,
            format: None,
            label: None,
        }
    }
}

/// Parses the lines of a JSONL input. Image paths are relative to `base` (the input file's folder). A line that
/// is not UTF-8 is a failed job of its own, like a line that is not JSON: the other lines still run.
pub fn parse_jobs(bytes: &[u8], base: &Path) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let mut job = match std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(line)) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => parse_line(line, n, base),
            Err(_) => Job::failed(format!("line:{n}"), JobError::NotUtf8 { line: n }),
        };
        if let Some(&first) = first_line.get(&job.id) {
            // A line without an id of its own keeps its own error; only a line whose id is taken is a duplicate.
            let own_id = !matches!(
                job.input,
                Err(JobError::NotJson { .. } | JobError::MissingId { .. } | JobError::NotUtf8 { .. })
            );
            if own_id {
                job = Job::failed(
                    String::new(),
                    JobError::DuplicateId {
                        line: n,
                        id: job.id,
                        first,
                    },
                );
            }
            job.id = line_id(n, &first_line);
        }
        first_line.insert(job.id.clone(), n);
        jobs.push(job);
    }
    jobs
}

/// The id of a line that cannot use its own: `line:N`, or `line:N#2`, ... when another job's id is already that,
/// so that ids stay unique (the results file and resuming key on them).
fn line_id(n: usize, taken: &HashMap<String, usize>) -> String {
    let id = format!("line:{n}");
    if !taken.contains_key(&id) {
        return id;
    }
    (2..)
        .map(|k| format!("line:{n}#{k}"))
        .find(|id| !taken.contains_key(id))
        .expect("a free id")
}

fn parse_line(line: &str, n: usize, base: &Path) -> Job {
    let anon = format!("line:{n}");
    let raw: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Job::failed(
                anon,
                JobError::NotJson {
                    line: n,
                    reason: e.to_string(),
                },
            )
        }
    };
    let id = match raw.get("id") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(num)) => num.to_string(),
        _ => return Job::failed(anon, JobError::MissingId { line: n }),
    };
    let job: JobLine = match serde_json::from_value(raw.clone()) {
        Ok(j) => j,
        Err(e) => {
            return Job::failed(
                id,
                JobError::BadField {
                    line: n,
                    reason: field_error(&raw).unwrap_or_else(|| e.to_string()),
                },
            )
        }
    };
    let _ = &job.id;
    let sampling = sampling_of(&job, n);
    let (max_tokens, temperature) = match sampling {
        Ok(values) => values,
        Err(error) => return Job::failed(id, error),
    };
    let format = match job.format.as_ref().map(|v| format_of(v, n)).transpose() {
        Ok(format) => format,
        Err(error) => return Job::failed(id, error),
    };
    let label = match &job.label {
        None => None,
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(num)) => Some(num.to_string()),
        Some(_) => return Job::failed(id, JobError::BadLabel { line: n }),
    };
    let input = conversation_of(&job, base).map_err(|problem| JobError::Conversation { line: n, problem });
    Job {
        id,
        input,
        max_tokens,
        temperature,
        seed: job.seed,
        format,
        label,
    }
}

/// A job's "format": "json", or a JSON Schema (checked like `--json-schema`).
fn format_of(value: &serde_json::Value, line: usize) -> Result<OutputFormat, JobError> {
    match value {
        serde_json::Value::String(s) if s == "json" => Ok(OutputFormat::JsonObject),
        serde_json::Value::Object(_) => crate::structured::Schema::from_value(value)
            .map(OutputFormat::Schema)
            .map_err(|e| JobError::BadFormat {
                line,
                reason: e.to_string(),
            }),
        _ => Err(JobError::BadFormat {
            line,
            reason: "expected \"json\" or a JSON Schema object".into(),
        }),
    }
}

/// Which field of a job line serde refused, and why: `"images": invalid type: string "x.png", expected a
/// sequence` (serde's own text names an unknown field, but not the field of a value of the wrong type). Each field
/// is tried alone with the line's id; `messages` errors already name the message and field.
fn field_error(raw: &serde_json::Value) -> Option<String> {
    let object = raw.as_object()?;
    object.iter().find_map(|(key, value)| {
        let mut alone = serde_json::Map::new();
        alone.insert("id".into(), object.get("id")?.clone());
        alone.insert(key.clone(), value.clone());
        let error = serde_json::from_value::<JobLine>(serde_json::Value::Object(alone)).err()?;
        // A conversation's own errors already say which message and field.
        Some(if key == "messages" {
            error.to_string()
        } else {
            format!("\"{key}\": {error}")
        })
    })
}

/// The job's `max_tokens` and `temperature`, held to the ranges of `--max-tokens` and `--temp`.
fn sampling_of(job: &JobLine, line: usize) -> Result<(Option<usize>, Option<f32>), JobError> {
    let bad = |field, value: &serde_json::Value, error| JobError::BadValue {
        line,
        field,
        value: value.to_string(),
        error,
    };
    let max_tokens = match &job.max_tokens {
        None => None,
        Some(v) => {
            let n = v.as_u64().ok_or(ValueError {
                allowed: Allowed::OneOrMore,
            });
            Some(
                n.and_then(crate::settings::max_tokens)
                    .map_err(|e| bad("max_tokens", v, e))?,
            )
        }
    };
    let temperature = match &job.temperature {
        None => None,
        Some(v) => {
            let t = v.as_f64().ok_or(ValueError {
                allowed: Allowed::ZeroOrMore,
            });
            Some(
                t.and_then(crate::settings::temperature)
                    .map_err(|e| bad("temperature", v, e))?,
            )
        }
    };
    Ok((max_tokens, temperature))
}

fn conversation_of(job: &JobLine, base: &Path) -> Result<Conversation, JobProblem> {
    let mut conversation = match (&job.prompt, &job.messages) {
        (Some(_), Some(_)) => return Err(JobProblem::PromptAndMessages),
        (None, None) => return Err(JobProblem::NoPrompt),
        (_, Some(_)) if job.series.is_some() => return Err(JobProblem::SeriesWithMessages),
        (Some(_), None) if job.series.is_some() && !job.images.is_empty() => return Err(JobProblem::SeriesAndImages),
        (Some(prompt), None) if prompt.trim().is_empty() && job.images.is_empty() && job.series.is_none() => {
            return Err(JobProblem::EmptyPrompt)
        }
        (Some(prompt), None) => match &job.series {
            Some(dir) => Conversation {
                system: job.system.clone(),
                turns: vec![Turn::user_parts(vec![
                    Part::Series(dir.clone()),
                    Part::Text(prompt.clone()),
                ])],
            },
            None => Conversation::single(job.system.clone(), prompt.clone(), job.images.clone()),
        },
        (None, Some(messages)) => {
            let mut c = Conversation::from_messages(messages.clone().into_messages())?;
            if job.system.is_some() {
                if c.system.is_some() {
                    return Err(JobProblem::SystemTwice);
                }
                c.system = job.system.clone();
            }
            if !job.images.is_empty() {
                // After the turn's leading images, before anything else: where "images" puts them in a message.
                let last = c.turns.iter_mut().rev().find(|t| t.role == Role::User);
                let parts = &mut last.ok_or(JobProblem::ImagesWithoutUserMessage)?.parts;
                let at = parts.iter().take_while(|p| matches!(p, Part::Image(_))).count();
                parts.splice(at..at, job.images.iter().cloned().map(Part::Image));
            }
            c
        }
    };
    conversation.check_ready_to_answer()?;
    conversation.resolve_images(base);
    Ok(conversation)
}

/// One job per image file under `dir` (recursively, sorted), id = the path relative to `dir`.
pub fn image_folder_jobs(dir: &Path, prompt: &str, system: Option<&str>) -> Result<Vec<Job>, ImageFolderError> {
    let mut files = Vec::new();
    collect_images(dir, &mut files).map_err(|source| ImageFolderError::Read {
        dir: dir.to_path_buf(),
        source,
    })?;
    files.sort();
    if files.is_empty() {
        return Err(ImageFolderError::Empty { dir: dir.to_path_buf() });
    }
    Ok(files
        .into_iter()
        .map(|path| {
            let id = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
            let input = Ok(Conversation::single(
                system.map(str::to_string),
                prompt.to_string(),
                vec![path],
            ));
            Job {
                id,
                input,
                max_tokens: None,
                temperature: None,
                seed: None,
                format: None,
                label: None,
            }
        })
        .collect())
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_images(&path, out)?;
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "dcm"].contains(&e.to_ascii_lowercase().as_str())
        }) {
            out.push(path);
        }
    }
    Ok(())
}

/// `--shard K/N`: this worker's share of the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        let (k, n) = s.split_once('/').ok_or(ShardError::NoSlash)?;
        let number = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| ShardError::NotANumber(t.to_string()))
        };
        let (index, count) = (number(k)?, number(n)?);
        if count == 0 || index == 0 || index > count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether this shard takes the job with `id`: by a stable hash of the id (FNV-1a), so that every worker
    /// agrees whatever order it reads the jobs in, and every job lands in exactly one shard.
    pub fn takes(&self, id: &str) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % u64::from(self.count)) as u32 + 1 == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_not_utf8_or_a_field_of_the_wrong_type_fails_that_job_alone() {
        let text = b"{\"id\": \"a\", \"prompt\": \"\xff\"}\r\n{\"id\": \"b\", \"prompt\": \"x\", \"images\": \"y.png\"}\n{\"id\": \"c\", \"prompt\": \"ok\"}\n";
        let jobs = parse_jobs(text, Path::new("/data"));
        assert_eq!(jobs.len(), 3);
        let e = jobs[0].input.as_ref().unwrap_err().to_string();
        assert_eq!(e, "line 1: not UTF-8 text; save the input as UTF-8");
        let e = jobs[1].input.as_ref().unwrap_err().to_string();
        assert!(e.starts_with("line 2: \"images\": invalid type"), "{e}");
        assert!(jobs[2].input.is_ok());
    }

    #[test]
    fn parses_good_and_bad_lines() {
        let text = r#"{"id": "a", "prompt": "Hi", "images": ["x.png"], "max_tokens": 5}
{"id": "b", "messages": [{"role": "user", "content": "Q"}], "system": "S"}
not json
{"prompt": "no id"}
{"id": "a", "prompt": "dup"}
{"id": "c"}
{"id": "d", "prompt": "x", "colour": "red"}

{"id": 7, "prompt": "numeric id"}"#;
        let jobs = parse_jobs(text.as_bytes(), Path::new("/data"));
        assert_eq!(jobs.len(), 8);
        let a = jobs[0].input.as_ref().unwrap();
        assert_eq!(a.images().collect::<Vec<_>>(), [&PathBuf::from("/data/x.png")]);
        assert_eq!(jobs[0].max_tokens, Some(5));
        assert_eq!(jobs[1].input.as_ref().unwrap().system.as_deref(), Some("S"));
        assert_eq!(jobs[2].id, "line:3");
        assert!(jobs[2]
            .input
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        assert_eq!(jobs[3].id, "line:4");
        assert!(jobs[4].input.as_ref().unwrap_err().to_string().contains("duplicate id"));
        assert_eq!(jobs[4].id, "line:5");
        assert_eq!(
            jobs[5].input.as_ref().unwrap_err().to_string(),
            "line 6: a job needs a \"prompt\" or \"messages\""
        );
        assert_eq!(
            jobs[4].input.as_ref().unwrap_err().to_string(),
            "line 5: duplicate id \"a\" (first used on line 1)"
        );
        assert!(jobs[6].input.as_ref().unwrap_err().to_string().contains("colour"));
        assert_eq!(jobs[7].id, "7");
    }

    /// Found by fuzzing (fuzz::batch): a job whose id was `line:N` and a bad line N both got the id `line:N`, so
    /// that resuming took the bad line's error record for the job (or the job's answer for the bad line).
    #[test]
    fn ids_stay_unique_when_a_job_is_named_like_a_line() {
        let text = "{\"id\": \"line:2\", \"prompt\": \"q\"}\nnot json\n{\"id\": \"line:2\", \"prompt\": \"dup\"}\n{\"prompt\": \"no id\"}\n{\"id\": \"line:4\", \"prompt\": \"q\"}";
        let jobs = parse_jobs(text.as_bytes(), Path::new("/data"));
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["line:2", "line:2#2", "line:3", "line:4", "line:5"]);
        let err = |i: usize| jobs[i].input.as_ref().unwrap_err().to_string();
        assert!(
            err(1).contains("not valid JSON"),
            "a bad line keeps its own error: {}",
            err(1)
        );
        assert_eq!(err(2), "line 3: duplicate id \"line:2\" (first used on line 1)");
        assert!(err(3).contains("needs an \"id\""), "{}", err(3));
        assert_eq!(err(4), "line 5: duplicate id \"line:4\" (first used on line 4)");
    }

    #[test]
    fn sampling_values_are_held_to_the_flag_ranges() {
        let text = r#"{"id": "t", "prompt": "q", "temperature": -1}
{"id": "big", "prompt": "q", "temperature": 1e39}
{"id": "n0", "prompt": "q", "max_tokens": 0}
{"id": "nf", "prompt": "q", "max_tokens": 2.5}
{"id": "ts", "prompt": "q", "temperature": "hot"}
{"id": "ok", "prompt": "q", "temperature": 0.7, "max_tokens": 3}
{"id": "empty", "prompt": "  "}
{"id": "image-only", "prompt": "", "images": ["x.png"]}"#;
        let jobs = parse_jobs(text.as_bytes(), Path::new("/data"));
        let err = |i: usize| jobs[i].input.as_ref().unwrap_err().to_string();
        assert_eq!(err(0), "line 1: \"temperature\" is -1: must be a number of 0 or more");
        assert_eq!(
            err(1),
            "line 2: \"temperature\" is 1e+39: must be a number of 0 or more"
        );
        assert_eq!(
            err(2),
            "line 3: \"max_tokens\" is 0: must be a whole number of 1 or more"
        );
        assert_eq!(
            err(3),
            "line 4: \"max_tokens\" is 2.5: must be a whole number of 1 or more"
        );
        assert_eq!(
            err(4),
            "line 5: \"temperature\" is \"hot\": must be a number of 0 or more"
        );
        assert_eq!(jobs[0].id, "t");
        assert_eq!((jobs[5].temperature, jobs[5].max_tokens), (Some(0.7), Some(3)));
        assert!(jobs[5].input.is_ok());
        assert_eq!(
            err(6),
            "line 7: \"prompt\" is empty and the job has no \"images\": give a question"
        );
        assert!(jobs[7].input.is_ok());
    }

    #[test]
    fn content_lists_and_series() {
        let text = r#"{"id": "list", "messages": [{"role": "user", "content": [{"type": "text", "text": "A"}, {"type": "image", "image": "x.png"}]}]}
{"id": "extra", "images": ["z.png"], "messages": [{"role": "user", "content": [{"type": "image", "image": "y.png"}, {"type": "text", "text": "B"}, {"type": "image", "image": "w.png"}]}]}
{"id": "series", "prompt": "Describe.", "series": "ct", "system": "S"}
{"id": "series-empty", "prompt": "", "series": "ct"}
{"id": "series-messages", "messages": [{"role": "user", "content": "q"}], "series": "ct"}
{"id": "series-images", "prompt": "q", "series": "ct", "images": ["x.png"]}
{"id": "bad-part", "messages": [{"role": "user", "content": [{"type": "image", "image": "data:image/png;base64,AA"}]}]}"#;
        let jobs = parse_jobs(text.as_bytes(), Path::new("/data"));
        let parts = |i: usize| jobs[i].input.as_ref().unwrap().turns[0].parts.clone();
        assert_eq!(parts(0), [Part::Text("A".into()), Part::Image("/data/x.png".into())]);
        // "images" go after the leading images of the last user message, as in a message's own "images".
        let images: Vec<_> = jobs[1].input.as_ref().unwrap().images().cloned().collect();
        assert_eq!(images, ["/data/y.png", "/data/z.png", "/data/w.png"].map(PathBuf::from));
        let series = jobs[2].input.as_ref().unwrap();
        assert_eq!(series.system.as_deref(), Some("S"));
        assert_eq!(
            series.turns[0].parts,
            [Part::Series("/data/ct".into()), Part::Text("Describe.".into())]
        );
        assert!(jobs[3].input.is_ok(), "a series alone is a question");
        let err = |i: usize| jobs[i].input.as_ref().unwrap_err().to_string();
        assert!(
            err(4).starts_with("line 5: \"series\" goes with \"prompt\""),
            "{}",
            err(4)
        );
        assert!(
            err(5).starts_with("line 6: give \"series\" or \"images\", not both"),
            "{}",
            err(5)
        );
        assert!(
            err(6).starts_with("line 7: message 1, part 1: data: URLs are not supported"),
            "{}",
            err(6)
        );
    }

    #[test]
    fn shards_partition_the_jobs() {
        let ids: Vec<String> = (0..200).map(|i| format!("job-{i}")).collect();
        let shards: Vec<Shard> = (1..=3).map(|k| format!("{k}/3").parse().unwrap()).collect();
        for id in &ids {
            assert_eq!(shards.iter().filter(|s| s.takes(id)).count(), 1);
        }
        for s in &shards {
            assert!(ids.iter().filter(|id| s.takes(id)).count() > 40);
        }
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert_eq!("x".parse::<Shard>(), Err(ShardError::NoSlash));
        assert_eq!(
            "4/3".parse::<Shard>().unwrap_err().to_string(),
            "K must be between 1 and N (got 4/3)"
        );
    }
}

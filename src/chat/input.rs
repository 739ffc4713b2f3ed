//! Reading chat input: line editing with persistent history on a terminal, plain lines from a pipe, and `"""`
//! blocks for multi-line messages in both.
//!
//! Owns: the history file (in the user's state directory; off with `--no-history` or MEDGEMMA_NO_HISTORY=1,
//! since medical text may be sensitive) and turning raw lines into whole inputs. Never writes to stdout.

use std::io::BufRead;
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor};

/// What the user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A whole input: one line, a `"""` block, or a paste.
    Text(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D, or the end of piped input.
    Eof,
}

/// Why chat input cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The editor's error is in the text, not the chain, so that it is printed once.
    #[error("cannot start the line editor: {0}")]
    Editor(ReadlineError),
}

/// Collects `"""` blocks: lines between a `"""` line and the next one form one input.
#[derive(Debug, Default)]
pub struct BlockAssembler {
    open: Option<Vec<String>>,
}

impl BlockAssembler {
    /// Feeds one line; returns a complete input when there is one.
    pub fn push(&mut self, line: &str) -> Option<String> {
        let is_fence = line.trim() == "\"\"\"";
        match (&mut self.open, is_fence) {
            (None, true) => {
                self.open = Some(Vec::new());
                None
            }
            (None, false) => Some(line.to_string()),
            (Some(lines), false) => {
                lines.push(line.to_string());
                None
            }
            (Some(_), true) => self.open.take().map(|lines| lines.join("\n")),
        }
    }

    /// True inside a block.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }
}

/// Where input comes from.
pub enum InputSource {
    Terminal {
        editor: Box<DefaultEditor>,
        history: Option<PathBuf>,
        blocks: BlockAssembler,
    },
    Piped {
        lines: std::io::Lines<std::io::StdinLock<'static>>,
        blocks: BlockAssembler,
    },
}

/// The history file: `$XDG_STATE_HOME/medgemma/chat_history`, or `~/.local/state/medgemma/chat_history`.
pub fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("medgemma").join("chat_history"))
}

impl InputSource {
    /// A line editor when stdin is a terminal, plain lines otherwise.
    pub fn new(interactive: bool, keep_history: bool) -> Result<InputSource, InputError> {
        if !interactive {
            return Ok(InputSource::Piped {
                lines: std::io::stdin().lock().lines(),
                blocks: BlockAssembler::default(),
            });
        }
        let config = Config::builder().auto_add_history(false).bracketed_paste(true).build();
        let mut editor = DefaultEditor::with_config(config).map_err(InputError::Editor)?;
        let history = if keep_history { history_path() } else { None };
        if let Some(path) = &history {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = editor.load_history(path);
        }
        Ok(InputSource::Terminal {
            editor: Box::new(editor),
            history,
            blocks: BlockAssembler::default(),
        })
    }

    /// Reads the next whole input.
    pub fn read(&mut self) -> Input {
        match self {
            InputSource::Piped { lines, blocks } => loop {
                match lines.next() {
                    Some(Ok(line)) => {
                        if !blocks.is_open() && line.trim().is_empty() {
                            continue;
                        }
                        if let Some(text) = blocks.push(&line) {
                            return Input::Text(text);
                        }
                    }
                    _ => return Input::Eof,
                }
            },
            InputSource::Terminal {
                editor,
                history,
                blocks,
            } => loop {
                let prompt = if blocks.is_open() { "... " } else { ">>> " };
                match editor.readline(prompt) {
                    Ok(line) => {
                        if !blocks.is_open() && line.trim().is_empty() {
                            continue;
                        }
                        // A bracketed paste arrives as one string with newlines: one input.
                        let complete = if line.contains('\n') && !blocks.is_open() {
                            Some(line)
                        } else {
                            blocks.push(&line)
                        };
                        if let Some(text) = complete {
                            let _ = editor.add_history_entry(text.as_str());
                            if let Some(path) = history.as_ref() {
                                let _ = editor.save_history(path);
                            }
                            return Input::Text(text);
                        }
                    }
                    Err(ReadlineError::Interrupted) => {
                        *blocks = BlockAssembler::default();
                        return Input::Interrupted;
                    }
                    Err(_) => return Input::Eof,
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_join_lines() {
        let mut b = BlockAssembler::default();
        assert_eq!(b.push("hello"), Some("hello".into()));
        assert_eq!(b.push("\"\"\""), None);
        assert!(b.is_open());
        assert_eq!(b.push("line one"), None);
        assert_eq!(b.push(""), None);
        assert_eq!(b.push("line three"), None);
        assert_eq!(b.push("  \"\"\"  "), Some("line one\n\nline three".into()));
        assert!(!b.is_open());
    }

    #[test]
    fn history_lives_in_the_state_directory() {
        let p = history_path().unwrap();
        assert!(p.ends_with("medgemma/chat_history"));
    }
}

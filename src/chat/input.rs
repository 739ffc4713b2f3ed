//! Reading chat input: line editing with persistent history on a terminal, plain lines from a pipe, and `"""`
//! blocks for multi-line messages in both.
//!
//! Owns: the history file (in the user's state directory; off with `--no-history` or MEDGEMMA_NO_HISTORY=1,
//! since medical text may be sensitive) and turning raw lines into whole inputs; a piped line that is not UTF-8 is
//! reported by its number and skipped, and the lines after it are read. Never writes to stdout.

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
    /// A piped line (numbered from 1) that is not UTF-8 text: skipped, the next line is read after it.
    NotUtf8 { line: usize },
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
        stdin: std::io::StdinLock<'static>,
        /// Lines read so far.
        line: usize,
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
                stdin: std::io::stdin().lock(),
                line: 0,
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
            InputSource::Piped { stdin, line, blocks } => loop {
                let text = match read_line(stdin) {
                    PipedLine::Text(text) => text,
                    PipedLine::NotUtf8 => {
                        *line += 1;
                        return Input::NotUtf8 { line: *line };
                    }
                    PipedLine::End => return Input::Eof,
                };
                *line += 1;
                if !blocks.is_open() && text.trim().is_empty() {
                    continue;
                }
                if let Some(text) = blocks.push(&text) {
                    return Input::Text(text);
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

/// One line of piped input.
#[derive(Debug, PartialEq)]
enum PipedLine {
    /// The line without its `\n` or `\r\n`.
    Text(String),
    /// A whole line (consumed) that is not UTF-8.
    NotUtf8,
    /// The end of input, or a read error.
    End,
}

/// Reads one line as bytes, so that a line that is not UTF-8 is consumed whole and the next one can be read.
fn read_line(reader: &mut impl BufRead) -> PipedLine {
    let mut bytes = Vec::new();
    match reader.read_until(b'\n', &mut bytes) {
        Ok(0) | Err(_) => return PipedLine::End,
        Ok(_) => {}
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    String::from_utf8(bytes).map_or(PipedLine::NotUtf8, PipedLine::Text)
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
    fn a_line_that_is_not_utf8_is_skipped_whole() {
        let mut input: &[u8] = b"first\r\nbad \xff\xfe line\nlast";
        assert_eq!(read_line(&mut input), PipedLine::Text("first".into()));
        assert_eq!(read_line(&mut input), PipedLine::NotUtf8);
        assert_eq!(read_line(&mut input), PipedLine::Text("last".into()));
        assert_eq!(read_line(&mut input), PipedLine::End);
    }

    #[test]
    fn history_lives_in_the_state_directory() {
        let p = history_path().unwrap();
        assert!(p.ends_with("medgemma/chat_history"));
    }
}

//! Parsing what the user typed in chat: a message, or a slash command with its arguments.
//!
//! Owns: the command names, their help text, and argument checks (bad values are errors, the session goes on).
//! Pure.

use std::path::PathBuf;

/// A setting changed with `/set`.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    Temperature(f32),
    TopK(i32),
    TopP(f32),
    MinP(f32),
    Seed(u32),
    MaxTokens(usize),
    Thinking(bool),
    /// The shape of the next answers: read and checked by the chat when set.
    Format(FormatChoice),
}

/// `/set format`'s values.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatChoice {
    Off,
    Json,
    Schema(PathBuf),
    Grammar(PathBuf),
}

/// One line (or block) of chat input.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatInput {
    Message(String),
    Help,
    Image(Vec<PathBuf>),
    Series(PathBuf),
    System(String),
    Clear,
    Undo,
    Retry,
    Drop,
    Save(PathBuf),
    Load(PathBuf),
    Set(Setting),
    Show,
    Stats,
    Quit,
}

pub const HELP: &str = "\
Commands:
  /image PATH...        attach images to the next message (needs --mmproj)
  /series DIR           attach a CT/MR series (a folder of DICOM files, or a multi-frame file) to the next
                        message: Google's instruction, each slice with \"SLICE k\", then your question
  /system TEXT          set or replace the system prompt
  /clear                forget the conversation
  /undo                 drop the last exchange
  /retry                answer the last message again
  /drop                 forget the oldest exchange (the system prompt stays), to make room in the context
  /save FILE            save the conversation as JSON (images by path and SHA-256)
  /load FILE            load a saved conversation
  /set temp|top-k|top-p|min-p|seed|max-tokens VALUE
  /set thinking on|off  show the thinking block (MedGemma 1.5, 27B)
  /set format json|off  answers as one JSON object (or free text again); also
  /set format schema FILE.json, /set format grammar FILE.gbnf
  /show                 model, context use, settings
  /stats                timings of the last answer
  /quit, /exit, Ctrl-D  leave
Multi-line input: a line with \"\"\" starts and ends a block; pasted text is taken whole.";

/// Why an input is not a command the chat can run; the session goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("/{name} takes no arguments")]
    NoArguments { name: String },
    #[error("usage: /image PATH... (then type the message)")]
    ImageUsage,
    #[error("usage: /series DIR (a folder of DICOM slices, or a multi-frame DICOM file; then type the question)")]
    SeriesUsage,
    #[error("usage: /{name} FILE")]
    FileUsage { name: String },
    #[error("unknown command /{name}; /help lists the commands (start a message with // to send a literal /)")]
    Unknown { name: String },
    #[error("{}", SET_USAGE)]
    SetUsage,
    #[error("/set {key}: {value:?} is not {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("/set: unknown setting {key:?}; {}", SET_USAGE)]
    UnknownSetting { key: String },
}

const SET_USAGE: &str = "usage: /set temp|top-k|top-p|min-p|seed|max-tokens VALUE, /set thinking on|off, or /set \
                         format json|off|schema FILE|grammar FILE";

/// Parses one input. Text that does not start with `/` is a message; `//text` sends `/text` as a message.
pub fn parse(input: &str) -> Result<ChatInput, CommandError> {
    let trimmed = input.trim();
    if let Some(rest) = trimmed.strip_prefix("//") {
        return Ok(ChatInput::Message(format!("/{rest}")));
    }
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Ok(ChatInput::Message(input.to_string()));
    };
    let (name, args) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(n, a)| (n, a.trim()));
    let no_args = |c: ChatInput| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(CommandError::NoArguments { name: name.into() })
        }
    };
    match name {
        "help" | "?" => no_args(ChatInput::Help),
        "image" => {
            let paths: Vec<PathBuf> = args.split_whitespace().map(PathBuf::from).collect();
            if paths.is_empty() {
                return Err(CommandError::ImageUsage);
            }
            Ok(ChatInput::Image(paths))
        }
        "series" if args.is_empty() => Err(CommandError::SeriesUsage),
        "series" => Ok(ChatInput::Series(PathBuf::from(args))),
        "system" => Ok(ChatInput::System(args.to_string())),
        "clear" => no_args(ChatInput::Clear),
        "undo" => no_args(ChatInput::Undo),
        "retry" => no_args(ChatInput::Retry),
        "drop" => no_args(ChatInput::Drop),
        "save" | "load" if args.is_empty() => Err(CommandError::FileUsage { name: name.into() }),
        "save" => Ok(ChatInput::Save(PathBuf::from(args))),
        "load" => Ok(ChatInput::Load(PathBuf::from(args))),
        "set" => parse_set(args).map(ChatInput::Set),
        "show" => no_args(ChatInput::Show),
        "stats" => no_args(ChatInput::Stats),
        "quit" | "exit" | "bye" => no_args(ChatInput::Quit),
        other => Err(CommandError::Unknown { name: other.into() }),
    }
}

fn parse_set(args: &str) -> Result<Setting, CommandError> {
    let (key, value) = args
        .split_once(char::is_whitespace)
        .map(|(k, v)| (k, v.trim()))
        .ok_or(CommandError::SetUsage)?;
    let num = |expected: &'static str| CommandError::BadValue {
        key: key.into(),
        value: value.into(),
        expected,
    };
    match key {
        "temp" | "temperature" => match value.parse::<f32>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Setting::Temperature(v)),
            _ => Err(num("a number >= 0")),
        },
        "top-k" => value
            .parse::<i32>()
            .ok()
            .filter(|v| *v >= 0)
            .map(Setting::TopK)
            .ok_or_else(|| num("an integer >= 0")),
        "top-p" => unit(value)
            .map(Setting::TopP)
            .ok_or_else(|| num("a number between 0 and 1")),
        "min-p" => unit(value)
            .map(Setting::MinP)
            .ok_or_else(|| num("a number between 0 and 1")),
        "seed" => value
            .parse::<u32>()
            .map(Setting::Seed)
            .map_err(|_| num("an integer >= 0")),
        "max-tokens" => value
            .parse::<usize>()
            .ok()
            .filter(|v| *v > 0)
            .map(Setting::MaxTokens)
            .ok_or_else(|| num("an integer >= 1")),
        "thinking" => match value {
            "on" | "true" | "1" => Ok(Setting::Thinking(true)),
            "off" | "false" | "0" => Ok(Setting::Thinking(false)),
            _ => Err(num("on or off")),
        },
        "format" => match value.split_once(char::is_whitespace).map(|(k, v)| (k, v.trim())) {
            None if value == "json" => Ok(Setting::Format(FormatChoice::Json)),
            None if value == "off" || value == "text" => Ok(Setting::Format(FormatChoice::Off)),
            Some(("schema", file)) if !file.is_empty() => Ok(Setting::Format(FormatChoice::Schema(file.into()))),
            Some(("grammar", file)) if !file.is_empty() => Ok(Setting::Format(FormatChoice::Grammar(file.into()))),
            _ => Err(num("json, off, schema FILE.json or grammar FILE.gbnf")),
        },
        _ => Err(CommandError::UnknownSetting { key: key.into() }),
    }
}

fn unit(value: &str) -> Option<f32> {
    value.parse::<f32>().ok().filter(|v| (0.0..=1.0).contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_commands() {
        assert_eq!(
            parse("What is sepsis?"),
            Ok(ChatInput::Message("What is sepsis?".into()))
        );
        assert_eq!(parse("//etc/hosts"), Ok(ChatInput::Message("/etc/hosts".into())));
        assert_eq!(
            parse("/image a.png  b.png"),
            Ok(ChatInput::Image(vec!["a.png".into(), "b.png".into()]))
        );
        assert_eq!(
            parse("/system You are terse."),
            Ok(ChatInput::System("You are terse.".into()))
        );
        assert_eq!(parse(" /quit "), Ok(ChatInput::Quit));
        assert_eq!(parse("/set temp 0.7"), Ok(ChatInput::Set(Setting::Temperature(0.7))));
        assert_eq!(parse("/set max-tokens 64"), Ok(ChatInput::Set(Setting::MaxTokens(64))));
        assert_eq!(parse("/set thinking on"), Ok(ChatInput::Set(Setting::Thinking(true))));
        assert_eq!(
            parse("/set format json"),
            Ok(ChatInput::Set(Setting::Format(FormatChoice::Json)))
        );
        assert_eq!(
            parse("/set format off"),
            Ok(ChatInput::Set(Setting::Format(FormatChoice::Off)))
        );
        assert_eq!(
            parse("/set format schema  report schema.json"),
            Ok(ChatInput::Set(Setting::Format(FormatChoice::Schema(
                "report schema.json".into()
            ))))
        );
        assert_eq!(
            parse("/set format grammar g.gbnf"),
            Ok(ChatInput::Set(Setting::Format(FormatChoice::Grammar("g.gbnf".into()))))
        );
        assert_eq!(
            error("/set format yaml"),
            "/set format: \"yaml\" is not json, off, schema FILE.json or grammar FILE.gbnf"
        );
        assert!(parse("/set format schema").is_err());
        assert_eq!(parse("/save chat.json"), Ok(ChatInput::Save("chat.json".into())));
    }

    fn error(input: &str) -> String {
        parse(input).unwrap_err().to_string()
    }

    #[test]
    fn bad_input_is_an_error_not_a_message() {
        assert_eq!(
            error("/frobnicate"),
            "unknown command /frobnicate; /help lists the commands (start a message with // to send a literal /)"
        );
        assert_eq!(error("/set temp hot"), "/set temp: \"hot\" is not a number >= 0");
        assert_eq!(
            error("/set top-p 2"),
            "/set top-p: \"2\" is not a number between 0 and 1"
        );
        assert_eq!(
            error("/set colour red"),
            "/set: unknown setting \"colour\"; usage: /set temp|top-k|top-p|min-p|seed|max-tokens VALUE, /set \
             thinking on|off, or /set format json|off|schema FILE|grammar FILE"
        );
        assert_eq!(
            error("/set temp"),
            "usage: /set temp|top-k|top-p|min-p|seed|max-tokens VALUE, /set thinking on|off, or /set format \
             json|off|schema FILE|grammar FILE"
        );
        assert_eq!(error("/image"), "usage: /image PATH... (then type the message)");
        assert_eq!(error("/load"), "usage: /load FILE");
        assert_eq!(error("/clear now"), "/clear takes no arguments");
    }

    #[test]
    fn series_takes_one_path_with_spaces() {
        assert_eq!(
            parse("/series CT scans/series 2"),
            Ok(ChatInput::Series("CT scans/series 2".into()))
        );
        assert_eq!(parse("/series"), Err(CommandError::SeriesUsage));
    }
}

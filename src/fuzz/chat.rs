//! Fuzz target `chat`: what the user types in chat ([`BlockAssembler`], [`command::parse`]) and the
//! conversation state those inputs drive ([`ChatState`]), as `commands/chat.rs` applies them.
//!
//! Owns: random sessions: lines built from the command grammar (every command, good and bad arguments, `//`
//! escapes, `"""` blocks, hostile text), and a stand-in for the model whose answers succeed, are interrupted or
//! fail. Checks after every step: no panic; the conversation stays one that `/save` writes and `/load` reads back
//! (optional system prompt, alternating turns starting with the user's, images only on user turns); `/undo`
//! removes one exchange and never goes below empty; `/retry` and `/drop` act exactly when there is something to
//! act on, and a refused command changes nothing.

use super::prompt::{hostile_conversation, hostile_text};
use super::Rng;
use crate::chat::command::{self, ChatInput};
use crate::chat::input::BlockAssembler;
use crate::chat::state::{Answer, ChatState, ChatStateError};
use crate::conversation::{Conversation, Role};
use crate::settings::SamplingSettings;

const COMMANDS: &[&str] = &[
    "/help", "/?", "/image", "/series", "/system", "/clear", "/undo", "/retry", "/drop", "/save", "/load", "/set",
    "/show", "/stats", "/quit", "/exit", "/bye", "//", "/", "/unknown", "/UNDO",
];

const SET_ARGS: &[&str] = &[
    "temp 0.7",
    "temperature 0",
    "temp -1",
    "temp NaN",
    "temp inf",
    "temp 1e39",
    "top-k 5",
    "top-k -1",
    "top-k 99999999999",
    "top-p 0.5",
    "top-p 1.5",
    "min-p 0",
    "min-p nan",
    "seed 4294967295",
    "seed 4294967296",
    "seed -1",
    "max-tokens 0",
    "max-tokens 1",
    "max-tokens 18446744073709551616",
    "thinking on",
    "thinking off",
    "thinking maybe",
    "colour red",
    "temp",
    "",
];

/// One typed line.
fn line(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 | 1 => hostile_text(rng),
        2 => "\"\"\"".into(),
        3 => format!("/set {}", rng.pick(SET_ARGS)),
        4 => format!("/image {}", rng.pick(&["a.png", "a.png b.png", "  ", "x\u{0}.png"])),
        _ => {
            let cmd = rng.pick(COMMANDS);
            let args = match rng.below(3) {
                0 => String::new(),
                1 => format!(" {}", hostile_text(rng)),
                _ => rng.pick(&[" ", "\t", " saved.json", " \u{a0}x"]).to_string(),
            };
            let pad = rng.pick(&["", " ", "\t", "\u{3000}"]);
            format!("{pad}{cmd}{args}{pad}")
        }
    }
}

/// What the stand-in model does with an answer.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Answered,
    Interrupted,
    Failed,
}

#[derive(Debug)]
struct Input {
    system: Option<String>,
    /// Each typed line, with the outcome of the answer it may ask for, and a conversation for `/load`.
    steps: Vec<(String, Outcome, Conversation)>,
}

fn generate(rng: &mut Rng) -> Input {
    let steps = (0..rng.range(1, 24))
        .map(|_| {
            let outcome = rng.pick(&[
                Outcome::Answered,
                Outcome::Answered,
                Outcome::Interrupted,
                Outcome::Failed,
            ]);
            (line(rng), outcome, hostile_conversation(rng))
        })
        .collect();
    Input {
        system: rng.one_in(2).then(|| hostile_text(rng)),
        steps,
    }
}

/// The conversation reads back as `/load` reads a saved chat.
fn assert_valid(state: &ChatState) {
    let c = state.conversation();
    let back = Conversation::from_messages(c.to_messages());
    assert_eq!(back.as_ref(), Ok(c), "the chat's conversation is not one /load accepts");
}

fn answer(state: &mut ChatState, answer: Answer, outcome: Outcome, reply: &str) {
    match outcome {
        Outcome::Answered => state.answered(answer, reply, vec![1, 2, 3], false),
        Outcome::Interrupted => state.answered(answer, reply, vec![1], true),
        Outcome::Failed => state.answer_failed(answer),
    }
}

fn check(input: &Input) -> String {
    let mut state = ChatState::new(input.system.clone(), SamplingSettings::default());
    let mut blocks = BlockAssembler::default();
    let mut most_turns = 0;
    for (text, outcome, loadable) in &input.steps {
        let Some(whole) = blocks.push(text) else { continue };
        let Ok(cmd) = command::parse(&whole) else { continue };
        let before = state.clone();
        let turns = before.conversation().turns.len();
        match cmd {
            ChatInput::Message(text) => {
                if let Some(a) = state.send(text) {
                    let last = state.conversation().turns.last().expect("a sent message is a turn");
                    assert_eq!(last.role, Role::User);
                    answer(&mut state, a, *outcome, "reply");
                }
            }
            ChatInput::Image(paths) => {
                let n = paths.len();
                assert_eq!(state.attach(paths), n);
            }
            ChatInput::Series(path) => state.attach_series(path),
            ChatInput::System(text) => {
                let set = state.set_system(text.clone());
                assert_eq!(set, !text.is_empty());
            }
            ChatInput::Clear => {
                state.clear();
                assert!(state.conversation().turns.is_empty());
            }
            ChatInput::Undo => match state.undo() {
                Ok(left) => {
                    assert!(turns > 0 && left < turns && turns - left <= 2, "{turns} -> {left}");
                    assert_eq!(left, state.conversation().turns.len());
                }
                Err(e) => {
                    assert_eq!(e, ChatStateError::NothingToUndo);
                    assert_eq!(turns, 0, "undo refused with turns left");
                    assert_eq!(state, before, "a refused undo changes nothing");
                }
            },
            ChatInput::Retry => match state.retry() {
                Ok(a) => {
                    assert_eq!(before.conversation().turns.last().map(|t| t.role), Some(Role::Model));
                    answer(&mut state, a, *outcome, "again");
                }
                Err(_) => {
                    assert_ne!(before.conversation().turns.last().map(|t| t.role), Some(Role::Model));
                    assert_eq!(state, before);
                }
            },
            ChatInput::Drop => match state.drop_oldest() {
                Ok(left) => assert_eq!(left + 2, turns),
                Err(_) => {
                    assert!(turns < 2);
                    assert_eq!(state, before);
                }
            },
            ChatInput::Load(_) => {
                if let Some(a) = state.load(loadable.clone()) {
                    answer(&mut state, a, *outcome, "loaded");
                }
            }
            ChatInput::Set(setting) => state.set(setting),
            ChatInput::Help | ChatInput::Save(_) | ChatInput::Show | ChatInput::Stats | ChatInput::Quit => {}
        }
        assert_valid(&state);
        let s = state.sampling();
        assert!(s.temperature.is_finite() && s.temperature >= 0.0);
        assert!((0.0..=1.0).contains(&s.top_p) && (0.0..=1.0).contains(&s.min_p));
        assert!(s.top_k >= 0 && s.max_tokens >= 1);
        most_turns = most_turns.max(state.conversation().turns.len());
    }
    format!("up to {} turns", most_turns.min(4))
}

#[test]
fn chat() {
    super::run("chat", 2, generate, check);
}

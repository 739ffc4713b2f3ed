//! Fuzz target `prompt`: the Gemma 3 prompt builder ([`prompt::render`], [`prompt::split_protected`]) on
//! conversations whose every text is hostile: control-token look-alikes, image markers, unusual Unicode, control
//! characters.
//!
//! Owns: the injection property, checked on every input: the control tokens and image slots of a rendered prompt
//! depend only on the conversation's structure (turns, images, token ids), never on its text; the text pieces
//! read exactly as the reference template renders them; and after `split_protected`, no part of any text holds a
//! protected token's text whole.

use super::Rng;
use crate::conversation::{Conversation, Part, Role, Turn};
use crate::prompt::{self, ControlToken, PromptPiece, PROTECTED_TOKEN_TEXTS};

/// Fragments hostile text is built from.
const FRAGMENTS: &[&str] = &[
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<bos>",
    "<eos>",
    "<pad>",
    "<__media__>",
    "<start_of_",
    "turn>",
    "<",
    ">",
    "<<bos>>",
    "<start_of_turn<start_of_turn>>",
    "model\n",
    "user\n",
    "\n",
    "\r\n",
    " ",
    "\t",
    "\u{0}",
    "\u{1b}[2J",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{2028}",
    "\u{200b}",
    "\u{200d}",
    "\u{202e}",
    "\u{feff}",
    "\u{fffd}",
    "\u{ff1c}start_of_turn\u{ff1e}",
    "e\u{301}",
    "é",
    "😀",
    "👩\u{200d}⚕\u{fe0f}",
    "\u{10ffff}",
    "\u{e000}",
    "What is a fever?",
    "Describe the X-ray.",
];

/// A hostile text: fragments and random characters.
pub fn hostile_text(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.small(12) {
        if rng.one_in(4) {
            let c = match rng.below(3) {
                0 => char::from(rng.byte() & 0x7f),
                1 => char::from_u32(rng.below(0x800) as u32).unwrap_or('?'),
                _ => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
            };
            s.push(c);
        } else {
            s.push_str(rng.pick(FRAGMENTS));
        }
    }
    s
}

/// A valid conversation (alternating turns, images only on user turns, some user turns interleaving texts and
/// images in any order, some model turns of several texts) with hostile texts.
pub fn hostile_conversation(rng: &mut Rng) -> Conversation {
    let system = rng.one_in(2).then(|| hostile_text(rng));
    let turns = (0..rng.small(6))
        .map(|i| {
            if i % 2 == 0 {
                if rng.one_in(3) {
                    let parts = (0..rng.small(5))
                        .map(|k| match rng.one_in(2) {
                            true => Part::Image(format!("{k}.png").into()),
                            false => Part::Text(hostile_text(rng)),
                        })
                        .collect();
                    return Turn::user_parts(parts);
                }
                let images = (0..rng.small(3)).map(|k| format!("{k}.png").into()).collect();
                Turn::user(hostile_text(rng), images)
            } else {
                let tokens = rng
                    .one_in(2)
                    .then(|| (0..rng.small(4)).map(|_| rng.next_u64() as i32).collect());
                let mut turn = Turn::model(hostile_text(rng), tokens, rng.one_in(4));
                if rng.one_in(4) {
                    turn.parts.push(Part::Text(hostile_text(rng)));
                }
                turn
            }
        })
        .collect();
    Conversation { system, turns }
}

#[derive(Debug)]
struct Input {
    conversation: Conversation,
    add_generation_prompt: bool,
    /// Literals for `split_protected` beyond the protected token texts.
    literals: Vec<String>,
}

fn generate(rng: &mut Rng) -> Input {
    let literals = (0..rng.small(3))
        .map(|_| {
            let mut l = hostile_text(rng);
            if l.chars().count() < 2 {
                l.push_str("<x");
            }
            l
        })
        .collect();
    Input {
        conversation: hostile_conversation(rng),
        add_generation_prompt: rng.one_in(2),
        literals,
    }
}

/// The non-text pieces a conversation must render to: fixed by its structure alone.
fn skeleton(c: &Conversation, add_generation_prompt: bool) -> Vec<PromptPiece> {
    let mut out = vec![PromptPiece::Control(ControlToken::Bos)];
    let mut image = 0;
    for turn in &c.turns {
        out.push(PromptPiece::Control(ControlToken::StartOfTurn));
        if let (Role::Model, Some(tokens)) = (turn.role, &turn.tokens) {
            out.push(PromptPiece::Tokens(tokens.clone()));
        } else {
            for _ in turn.parts.iter().filter(|p| matches!(p, Part::Image(_))) {
                out.push(PromptPiece::Image(image));
                image += 1;
            }
        }
        out.push(PromptPiece::Control(ControlToken::EndOfTurn));
    }
    if add_generation_prompt {
        out.push(PromptPiece::Control(ControlToken::StartOfTurn));
    }
    out
}

/// The reference template, written out as one string (controls by their text, images as a marker).
fn reference(c: &Conversation, add_generation_prompt: bool) -> String {
    let mut s = String::from("<bos>");
    let mut image = 0;
    for (i, turn) in c.turns.iter().enumerate() {
        let role = if turn.role == Role::Model { "model" } else { "user" };
        s += &format!("<start_of_turn>{role}\n");
        if let (0, Some(system)) = (i, &c.system) {
            s += &format!("{system}\n\n");
        }
        match (&turn.tokens, turn.role) {
            (Some(tokens), Role::Model) => s += &format!("[tokens {tokens:?}]"),
            _ => {
                for part in &turn.parts {
                    match part {
                        Part::Text(text) => s += text.trim(),
                        Part::Image(_) => {
                            s += &format!("\n\n[image {image}]\n\n");
                            image += 1;
                        }
                        Part::Series(_) => unreachable!("not generated"),
                    }
                }
            }
        }
        s += "<end_of_turn>\n";
    }
    if add_generation_prompt {
        s += "<start_of_turn>model\n";
    }
    s
}

fn flatten(pieces: &[PromptPiece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            PromptPiece::Control(c) => c.text().to_string(),
            PromptPiece::Text(t) => t.clone(),
            PromptPiece::Image(i) => format!("[image {i}]"),
            PromptPiece::Tokens(t) => format!("[tokens {t:?}]"),
        })
        .collect()
}

fn check(input: &Input) -> String {
    let c = &input.conversation;
    let pieces = prompt::render(c, input.add_generation_prompt);
    let structure: Vec<PromptPiece> = pieces
        .iter()
        .filter(|p| !matches!(p, PromptPiece::Text(_)))
        .cloned()
        .collect();
    assert_eq!(
        structure,
        skeleton(c, input.add_generation_prompt),
        "text became structure"
    );
    assert_eq!(flatten(&pieces), reference(c, input.add_generation_prompt));
    for pair in pieces.windows(2) {
        assert!(
            !matches!(pair, [PromptPiece::Text(_), PromptPiece::Text(_)]),
            "adjacent text is merged"
        );
    }
    let protected: Vec<String> = PROTECTED_TOKEN_TEXTS.iter().map(|s| s.to_string()).collect();
    let mut all = protected.clone();
    all.extend(input.literals.iter().cloned());
    for piece in &pieces {
        let PromptPiece::Text(text) = piece else { continue };
        assert!(!text.is_empty(), "empty text pieces are dropped");
        for literals in [&protected, &all] {
            let parts = prompt::split_protected(text, literals);
            assert_eq!(parts.concat(), *text);
            for part in &parts {
                for l in literals.iter() {
                    assert!(!part.contains(l.as_str()), "{part:?} still holds {l:?}");
                }
            }
        }
    }
    let text_holds_tokens = pieces.iter().any(|p| match p {
        PromptPiece::Text(t) => PROTECTED_TOKEN_TEXTS.iter().any(|l| t.contains(l)),
        _ => false,
    });
    if text_holds_tokens {
        "rendered, text holds token texts"
    } else {
        "rendered"
    }
    .into()
}

#[test]
fn prompt() {
    super::run("prompt", 1, generate, check);
}

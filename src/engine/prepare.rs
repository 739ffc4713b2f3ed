//! Turning a rendered prompt into what llama.cpp evaluates: control tokens by id, text tokenized with special-token
//! parsing off (and protected literals split), saved answer tokens checked, images preprocessed by mtmd.

use std::path::PathBuf;

use llama_cpp_2::mtmd::{MtmdBitmap, MtmdInputChunkType, MtmdInputChunks, MtmdInputText};
use llama_cpp_2::token::LlamaToken;

use super::error::EngineError;
use super::model::Engine;
use crate::conversation::Conversation;
use crate::image_input::ImageInput;
use crate::prompt::{self, PromptPiece};

/// One position-holding item of a prepared prompt, for reports: a text token, or one image-embedding position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptItem {
    Token(i32),
    ImageEmbedding,
}

pub(super) enum Part {
    Tokens(Vec<LlamaToken>),
    Image { path: PathBuf, chunks: MtmdInputChunks },
}

/// Number of KV positions a part takes.
pub(super) fn part_len(part: &Part) -> usize {
    match part {
        Part::Tokens(t) => t.len(),
        Part::Image { chunks, .. } => chunks.total_tokens(),
    }
}

/// What occupies one KV position, for matching a new prompt against what the context already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Slot {
    Token(i32),
    /// The n-th embedding position of the image with this SHA-256.
    Image(std::sync::Arc<str>, u32),
}

/// A prompt turned into tokens and preprocessed images, ready to evaluate.
pub struct PreparedPrompt {
    pub(super) parts: Vec<Part>,
    pub(super) items: Vec<PromptItem>,
    pub(super) slots: Vec<Slot>,
}

impl PreparedPrompt {
    /// How many leading positions can be kept from a cache that holds `cached`: the common prefix, less at least
    /// one position (sampling needs fresh logits), backed off to the start of an image it would split.
    pub(super) fn reusable_prefix(&self, cached: &[Slot]) -> usize {
        let common = cached.iter().zip(&self.slots).take_while(|(a, b)| a == b).count();
        let mut keep = common.min(self.n_tokens().saturating_sub(1));
        let mut start = 0;
        for part in &self.parts {
            let len = part_len(part);
            if matches!(part, Part::Image { .. }) && keep > start && keep < start + len {
                keep = start;
            }
            start += len;
        }
        keep
    }

    /// Number of KV positions the prompt takes.
    pub fn n_tokens(&self) -> usize {
        self.items.len()
    }

    /// The prompt as tokens and image-embedding positions, in order.
    pub fn items(&self) -> &[PromptItem] {
        &self.items
    }
}

impl Engine {
    /// Renders, tokenizes and preprocesses `conversation` (with its images already read, in prompt order).
    pub fn prepare(&self, conversation: &Conversation, images: &[ImageInput]) -> Result<PreparedPrompt, EngineError> {
        let pieces = prompt::render(conversation, true);
        self.prepare_pieces(&pieces, images)
    }

    /// Tokenizes rendered pieces. Text is tokenized with special-token parsing off; control tokens go in by id.
    pub fn prepare_pieces(&self, pieces: &[PromptPiece], images: &[ImageInput]) -> Result<PreparedPrompt, EngineError> {
        let vocab = self.model.vocab();
        let mut parts: Vec<Part> = Vec::new();
        let mut items = Vec::new();
        let mut image_shas: Vec<std::sync::Arc<str>> = Vec::new();
        fn push_tokens(parts: &mut Vec<Part>, items: &mut Vec<PromptItem>, tokens: Vec<LlamaToken>) {
            items.extend(tokens.iter().map(|t| PromptItem::Token(t.0)));
            // (slots are derived from items and images after the loop)
            match parts.last_mut() {
                Some(Part::Tokens(prev)) => prev.extend(tokens),
                _ => parts.push(Part::Tokens(tokens)),
            }
        }
        for piece in pieces {
            match piece {
                PromptPiece::Control(c) => {
                    let token = self.controls[c.text()];
                    push_tokens(&mut parts, &mut items, vec![token]);
                }
                PromptPiece::Text(text) => {
                    let mut tokens = Vec::new();
                    for part in prompt::split_protected(text, &self.split_literals) {
                        tokens.extend(vocab.tokenize(part.as_bytes(), false, false));
                    }
                    if let Some((_, name)) = self.protected_ids.iter().find(|(id, _)| tokens.contains(id)) {
                        return Err(EngineError::ForgedControlToken { token: name.clone() });
                    }
                    push_tokens(&mut parts, &mut items, tokens);
                }
                PromptPiece::Tokens(ids) => {
                    let n_vocab = self.model.n_vocab();
                    if let Some(bad) = ids.iter().find(|&&t| t < 0 || t >= n_vocab) {
                        return Err(EngineError::BadTokenId { token: *bad, n_vocab });
                    }
                    let tokens: Vec<LlamaToken> = ids.iter().map(|&t| LlamaToken(t)).collect();
                    if let Some((_, name)) = self.protected_ids.iter().find(|(id, _)| tokens.contains(id)) {
                        return Err(EngineError::ForgedControlToken { token: name.clone() });
                    }
                    push_tokens(&mut parts, &mut items, tokens);
                }
                PromptPiece::Image(index) => {
                    let vision = self.vision.as_ref().ok_or(EngineError::ImagesWithoutMmproj)?;
                    let image = &images[*index];
                    let (w, h) = image.rgb.dimensions();
                    let encode_err = |reason: String| EngineError::ImageEncode {
                        path: image.path.clone(),
                        reason,
                    };
                    let mut bitmap =
                        MtmdBitmap::from_image_data(w, h, image.rgb.as_raw()).map_err(|e| encode_err(e.to_string()))?;
                    bitmap.set_id(&image.sha256).map_err(|e| encode_err(e.to_string()))?;
                    let text = MtmdInputText {
                        text: llama_cpp_2::mtmd::mtmd_default_marker().to_string(),
                        add_special: false,
                        parse_special: true,
                    };
                    let chunks = vision
                        .ctx
                        .borrow()
                        .tokenize(text, &[&bitmap])
                        .map_err(|e| encode_err(e.to_string()))?;
                    let mut these = Vec::new();
                    for i in 0..chunks.len() {
                        let chunk = chunks.get(i).expect("index in range");
                        match chunk.chunk_type() {
                            MtmdInputChunkType::Text => {
                                these.extend(
                                    chunk
                                        .text_tokens()
                                        .unwrap_or(&[])
                                        .iter()
                                        .map(|t| PromptItem::Token(t.0)),
                                );
                            }
                            _ => these.extend(std::iter::repeat_n(PromptItem::ImageEmbedding, chunk.n_tokens())),
                        }
                    }
                    items.extend(these);
                    image_shas.push(image.sha256.as_str().into());
                    parts.push(Part::Image {
                        path: image.path.clone(),
                        chunks,
                    });
                }
            }
        }
        let mut slots = Vec::with_capacity(items.len());
        let mut image_n = 0usize;
        let mut k = 0u32;
        let mut prev_image = false;
        for item in &items {
            match item {
                PromptItem::Token(t) => {
                    if prev_image {
                        image_n += 1;
                        k = 0;
                    }
                    prev_image = false;
                    slots.push(Slot::Token(*t));
                }
                PromptItem::ImageEmbedding => {
                    prev_image = true;
                    slots.push(Slot::Image(image_shas[image_n].clone(), k));
                    k += 1;
                }
            }
        }
        Ok(PreparedPrompt { parts, items, slots })
    }
}

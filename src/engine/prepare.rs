//! Turning a rendered prompt into what llama.cpp evaluates: control tokens by id, text tokenized with special-token
//! parsing off (and protected literals split), saved answer tokens checked, images preprocessed by mtmd.

use std::path::PathBuf;
use std::sync::Arc;

use llama_cpp_2::mtmd::{MtmdBitmap, MtmdInputChunkType, MtmdInputChunks, MtmdInputText};
use llama_cpp_2::token::LlamaToken;

use super::error::EngineError;
use super::image_encoder::pixels_key;
use super::layout::{Position, PromptLayout};
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

/// What llama.cpp evaluates for one span of the layout.
pub(crate) enum Payload {
    Tokens(Vec<LlamaToken>),
    /// An image with its marker tokens, as mtmd chunks (evaluated whole).
    Image(ImageChunks),
}

/// One image ready to evaluate: its preprocessed mtmd chunks (shared by every prompt that holds the same pixels),
/// the key of its pixels (the embedding caches' and the layout's), and its path for messages.
pub(crate) struct ImageChunks {
    pub(crate) path: PathBuf,
    pub(crate) pixels: Arc<str>,
    pub(crate) chunks: Arc<MtmdInputChunks>,
}

/// Preprocessed images kept for the next prompt (chat turns, batch jobs about the same image): mtmd's resize and
/// normalisation run once per image. About 10 MB each (896 x 896 x 3 floats).
pub(super) const PREPARED_IMAGES_KEPT: usize = 8;

/// A prompt turned into tokens and preprocessed images, ready to evaluate: the pure [`PromptLayout`] and, for each
/// of its spans, the payload llama.cpp evaluates.
pub struct PreparedPrompt {
    pub(crate) layout: PromptLayout,
    pub(crate) payloads: Vec<Payload>,
}

impl PreparedPrompt {
    /// Number of KV positions the prompt takes.
    pub fn n_tokens(&self) -> usize {
        self.layout.n_positions()
    }

    /// The prompt as tokens and image-embedding positions, in order.
    pub fn items(&self) -> Vec<PromptItem> {
        self.layout
            .positions()
            .iter()
            .map(|p| match p {
                Position::Token(t) => PromptItem::Token(*t),
                Position::Image(..) => PromptItem::ImageEmbedding,
            })
            .collect()
    }
}

/// The mtmd chunks of one image (its marker tokens and preprocessed pixels), with the key of its pixels as the
/// bitmap id; preprocessed once per distinct image and kept for the next prompts.
pub(crate) fn image_chunks(engine: &Engine, image: &ImageInput) -> Result<ImageChunks, EngineError> {
    let vision = engine.vision.as_ref().ok_or(EngineError::ImagesWithoutMmproj)?;
    let (w, h) = image.rgb.dimensions();
    let pixels: Arc<str> = pixels_key(w, h, image.rgb.as_raw()).into();
    let found = {
        let mut kept = vision.prepared.borrow_mut();
        kept.iter().position(|(k, _)| *k == pixels).map(|i| {
            let entry = kept.remove(i);
            let chunks = entry.1.clone();
            kept.push(entry);
            chunks
        })
    };
    let chunks = match found {
        Some(chunks) => chunks,
        None => {
            let encode_err = |reason: String| EngineError::ImageEncode {
                path: image.path.clone(),
                reason,
            };
            let mut bitmap =
                MtmdBitmap::from_image_data(w, h, image.rgb.as_raw()).map_err(|e| encode_err(e.to_string()))?;
            bitmap.set_id(&pixels).map_err(|e| encode_err(e.to_string()))?;
            let text = MtmdInputText {
                text: llama_cpp_2::mtmd::mtmd_default_marker().to_string(),
                add_special: false,
                parse_special: true,
            };
            let chunks: Arc<MtmdInputChunks> = vision
                .ctx
                .borrow()
                .tokenize(text, &[&bitmap])
                .map_err(|e| encode_err(e.to_string()))?
                .into();
            let mut kept = vision.prepared.borrow_mut();
            kept.push((pixels.clone(), chunks.clone()));
            if kept.len() > PREPARED_IMAGES_KEPT {
                kept.remove(0);
            }
            chunks
        }
    };
    Ok(ImageChunks {
        path: image.path.clone(),
        pixels,
        chunks,
    })
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
        let mut layout = PromptLayout::default();
        let mut payloads: Vec<Payload> = Vec::new();
        let push_tokens = |layout: &mut PromptLayout, payloads: &mut Vec<Payload>, tokens: Vec<LlamaToken>| {
            if tokens.is_empty() {
                return;
            }
            layout.push_tokens(tokens.iter().map(|t| t.0));
            match payloads.last_mut() {
                Some(Payload::Tokens(prev)) => prev.extend(tokens),
                _ => payloads.push(Payload::Tokens(tokens)),
            }
        };
        for piece in pieces {
            match piece {
                PromptPiece::Control(c) => {
                    let token = self.controls[c.text()];
                    push_tokens(&mut layout, &mut payloads, vec![token]);
                }
                PromptPiece::Text(text) => {
                    let mut tokens = Vec::new();
                    for part in prompt::split_protected(text, &self.split_literals) {
                        tokens.extend(vocab.tokenize(part.as_bytes(), false, false));
                    }
                    if let Some((_, name)) = self.protected_ids.iter().find(|(id, _)| tokens.contains(id)) {
                        return Err(EngineError::ForgedControlToken { token: name.clone() });
                    }
                    push_tokens(&mut layout, &mut payloads, tokens);
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
                    push_tokens(&mut layout, &mut payloads, tokens);
                }
                PromptPiece::Image(index) => {
                    let image = image_chunks(self, &images[*index])?;
                    let chunks = &image.chunks;
                    let mut positions = Vec::with_capacity(chunks.total_tokens());
                    let mut k = 0u32;
                    for i in 0..chunks.len() {
                        let chunk = chunks.get(i).expect("index in range");
                        match chunk.chunk_type() {
                            MtmdInputChunkType::Text => positions
                                .extend(chunk.text_tokens().unwrap_or(&[]).iter().map(|t| Position::Token(t.0))),
                            _ => {
                                for _ in 0..chunk.n_tokens() {
                                    positions.push(Position::Image(image.pixels.clone(), k));
                                    k += 1;
                                }
                            }
                        }
                    }
                    layout.push_image(positions);
                    payloads.push(Payload::Image(image));
                }
            }
        }
        debug_assert_eq!(layout.spans().len(), payloads.len());
        Ok(PreparedPrompt { layout, payloads })
    }
}

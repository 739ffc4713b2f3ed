//! From generated token ids to text: thinking blocks routed apart, characters split across tokens joined.
//! Shared by every generation loop so that they all produce the same text from the same tokens.

use llama_cpp_2::token::LlamaToken;

use super::decoder::{GeneratedToken, Generation};
use super::model::Engine;
use crate::thinking::{Routed, ThinkingFilter};
use crate::utf8_stream::Utf8Stream;

pub(super) struct TokenText {
    filter: ThinkingFilter,
    answer: Utf8Stream,
    thinking: Utf8Stream,
}

impl TokenText {
    pub(super) fn new(engine: &Engine) -> Self {
        let (open, close) = engine.thinking;
        TokenText {
            filter: ThinkingFilter::new(open, close),
            answer: Utf8Stream::default(),
            thinking: Utf8Stream::default(),
        }
    }

    /// Adds one generated (non end-of-generation) token to `out`; returns what the caller may show.
    pub(super) fn push(&mut self, engine: &Engine, token: LlamaToken, out: &mut Generation) -> GeneratedToken {
        let bytes = engine.model.vocab().token_to_piece(token, false, None);
        match self.filter.route(token.0, String::new()) {
            Routed::Marker => GeneratedToken {
                text: String::new(),
                thinking: self.filter.in_thinking(),
            },
            Routed::Thinking(_) => {
                let text = self.thinking.push(&bytes);
                out.thinking.push_str(&text);
                GeneratedToken { text, thinking: true }
            }
            Routed::Answer(_) => {
                let text = self.answer.push(&bytes);
                out.text.push_str(&text);
                GeneratedToken { text, thinking: false }
            }
        }
    }

    /// Flushes incomplete characters at the end; returns answer text not yet shown.
    pub(super) fn finish(&mut self, out: &mut Generation) -> Option<String> {
        out.thinking.push_str(&self.thinking.finish());
        let rest = self.answer.finish();
        out.text.push_str(&rest);
        (!rest.is_empty()).then_some(rest)
    }
}

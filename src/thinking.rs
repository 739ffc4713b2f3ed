//! Separating MedGemma's thinking block (`<unused94>thought\n ... <unused95>`, emitted by MedGemma 1.5 and the 27B
//! models) from the answer, as tokens stream out.
//!
//! Owns: routing each generated piece to the answer or to the thinking stream. Pure: the engine tells it which
//! token ids open and close a thinking block; it never sees the model.

/// Where a generated piece belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    Answer(String),
    Thinking(String),
    /// A thinking marker token itself: shown nowhere.
    Marker,
}

/// Streaming router for thinking blocks.
#[derive(Debug, Clone)]
pub struct ThinkingFilter {
    open: Option<i32>,
    close: Option<i32>,
    inside: bool,
}

impl ThinkingFilter {
    /// `open`/`close` are the ids of `<unused94>`/`<unused95>` when the vocabulary has them.
    pub fn new(open: Option<i32>, close: Option<i32>) -> Self {
        ThinkingFilter {
            open,
            close,
            inside: false,
        }
    }

    /// Routes one generated token (its id and its text).
    pub fn route(&mut self, token: i32, piece: String) -> Routed {
        if Some(token) == self.open && self.open.is_some() {
            self.inside = true;
            return Routed::Marker;
        }
        if Some(token) == self.close && self.close.is_some() {
            self.inside = false;
            return Routed::Marker;
        }
        if self.inside {
            Routed::Thinking(piece)
        } else {
            Routed::Answer(piece)
        }
    }

    /// True while inside a thinking block.
    pub fn in_thinking(&self) -> bool {
        self.inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_thinking_between_markers() {
        let mut f = ThinkingFilter::new(Some(94), Some(95));
        let out: Vec<Routed> = [(94, ""), (7, "thought\n"), (8, "hmm"), (95, ""), (9, "Answer")]
            .into_iter()
            .map(|(t, p)| f.route(t, p.to_string()))
            .collect();
        assert_eq!(
            out,
            vec![
                Routed::Marker,
                Routed::Thinking("thought\n".into()),
                Routed::Thinking("hmm".into()),
                Routed::Marker,
                Routed::Answer("Answer".into())
            ]
        );
        assert!(!f.in_thinking());
    }

    #[test]
    fn without_markers_everything_is_answer() {
        let mut f = ThinkingFilter::new(None, None);
        assert_eq!(f.route(94, "x".into()), Routed::Answer("x".into()));
    }
}

//! The prompt layout: what each KV position of a prompt will hold (a token id, or the k-th embedding of an image
//! known by its SHA-256), which spans of positions are text and which are images, and the decisions made from it:
//! how much of a prompt a sequence already holds, whether to copy another sequence's stream, and what is left to
//! evaluate.
//!
//! Owns: positions, spans and the reuse rules. Pure: no llama.cpp types, so every decision is unit tested without
//! a model. Must not: hold FFI payloads (token vectors and image chunks live in `prepare::PreparedPrompt`, which
//! pairs each span with its payload).

use std::sync::Arc;

/// What occupies one KV position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    Token(i32),
    /// The n-th embedding position of the image with this SHA-256.
    Image(Arc<str>, u32),
}

/// A run of positions evaluated together: text tokens, or one image (its text markers are separate text spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) image: bool,
}

impl Span {
    pub(crate) fn end(&self) -> usize {
        self.start + self.len
    }
}

/// A prompt as positions and spans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PromptLayout {
    positions: Vec<Position>,
    spans: Vec<Span>,
}

/// Below this many positions gained, copying another sequence's stream (one pass over its whole KV buffer) costs
/// about as much as evaluating the positions again.
pub(crate) const MIN_COPY_GAIN: usize = 8;

/// Where a sequence's prompt starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Keep the first `keep` positions the sequence itself holds (0: start empty).
    Own { keep: usize },
    /// Replace the sequence's stream by a copy of sequence `source`'s, then keep its first `keep` positions.
    Copy { source: usize, keep: usize },
}

/// What to evaluate of one span: positions `from..span.end()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Index of the span in the layout.
    pub(crate) span: usize,
    /// First position to evaluate (inside the span; an image span is always evaluated whole).
    pub(crate) from: usize,
    /// True for the prompt's last span: its last position must produce logits.
    pub(crate) last: bool,
}

impl PromptLayout {
    /// Appends a text span (merged with a text span just before it).
    pub(crate) fn push_tokens(&mut self, tokens: impl IntoIterator<Item = i32>) {
        let start = self.positions.len();
        self.positions.extend(tokens.into_iter().map(Position::Token));
        let len = self.positions.len() - start;
        if len == 0 {
            return;
        }
        match self.spans.last_mut() {
            Some(span) if !span.image => span.len += len,
            _ => self.spans.push(Span {
                start,
                len,
                image: false,
            }),
        }
    }

    /// Appends an image span: the image's embedding positions and the marker tokens evaluated with them.
    pub(crate) fn push_image(&mut self, positions: impl IntoIterator<Item = Position>) {
        let start = self.positions.len();
        self.positions.extend(positions);
        let len = self.positions.len() - start;
        if len > 0 {
            self.spans.push(Span {
                start,
                len,
                image: true,
            });
        }
    }

    pub(crate) fn n_positions(&self) -> usize {
        self.positions.len()
    }

    pub(crate) fn positions(&self) -> &[Position] {
        &self.positions
    }

    pub(crate) fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// How many leading positions can be kept from a sequence that holds `held`: the common prefix, less at least
    /// one position (sampling needs fresh logits at the last one), backed off to the start of an image it would
    /// split (an image is encoded and evaluated whole).
    pub(crate) fn reusable_prefix(&self, held: &[Position]) -> usize {
        let common = held.iter().zip(&self.positions).take_while(|(a, b)| a == b).count();
        let mut keep = common.min(self.positions.len().saturating_sub(1));
        for span in &self.spans {
            if span.image && keep > span.start && keep < span.end() {
                keep = span.start;
            }
        }
        keep
    }

    /// Where sequence `seq` should start from, given what every sequence holds (`held[i]` for sequence i): its own
    /// prefix, or a copy of another sequence's stream when that gains at least [`MIN_COPY_GAIN`] positions (the
    /// longest such prefix; the lowest sequence number among equals).
    pub(crate) fn plan_reuse(&self, seq: usize, held: &[&[Position]]) -> Reuse {
        let own = self.reusable_prefix(held[seq]);
        let best_other = held
            .iter()
            .enumerate()
            .filter(|&(o, _)| o != seq)
            .map(|(o, h)| (o, self.reusable_prefix(h)))
            .max_by_key(|&(o, k)| (k, std::cmp::Reverse(o)));
        match best_other {
            Some((source, keep)) if keep >= own + MIN_COPY_GAIN => Reuse::Copy { source, keep },
            _ => Reuse::Own { keep: own },
        }
    }

    /// The spans (or the tails of text spans) still to evaluate once the first `keep` positions are held.
    pub(crate) fn pending(&self, keep: usize) -> Vec<Pending> {
        let n = self.spans.len();
        self.spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.end() > keep)
            .map(|(i, s)| Pending {
                span: i,
                from: if s.image { s.start } else { keep.max(s.start) },
                last: i + 1 == n,
            })
            .collect()
    }
}

/// Picks the free sequence that holds the longest prefix of `layout` (the lowest number among equals).
pub(crate) fn best_free_sequence(layout: &PromptLayout, held: &[&[Position]], free: &[bool]) -> Option<usize> {
    (0..held.len())
        .filter(|&s| free[s])
        .max_by_key(|&s| (layout.reusable_prefix(held[s]), std::cmp::Reverse(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(s: &str) -> Arc<str> {
        s.into()
    }

    fn image(s: &str, n: u32) -> impl Iterator<Item = Position> {
        let sha = sha(s);
        (0..n).map(move |k| Position::Image(sha.clone(), k))
    }

    /// System text, then an image of 4 positions, then question text.
    fn layout(system: &[i32], img: Option<&str>, question: &[i32]) -> PromptLayout {
        let mut l = PromptLayout::default();
        l.push_tokens(system.iter().copied());
        if let Some(img) = img {
            l.push_tokens([100]);
            l.push_image(image(img, 4));
            l.push_tokens([101]);
        }
        l.push_tokens(question.iter().copied());
        l
    }

    #[test]
    fn text_spans_merge_and_images_stand_alone() {
        let l = layout(&[1, 2, 3], Some("a"), &[7, 8]);
        assert_eq!(l.n_positions(), 3 + 1 + 4 + 1 + 2);
        let kinds: Vec<(usize, usize, bool)> = l.spans().iter().map(|s| (s.start, s.len, s.image)).collect();
        assert_eq!(kinds, vec![(0, 4, false), (4, 4, true), (8, 3, false)]);
        assert_eq!(l.positions()[5], Position::Image(sha("a"), 1));
    }

    #[test]
    fn prefix_keeps_the_common_part_less_one() {
        let l = layout(&[1, 2, 3], None, &[4, 5]);
        assert_eq!(l.reusable_prefix(&[]), 0);
        let held: Vec<Position> = [1, 2, 3, 9].into_iter().map(Position::Token).collect();
        assert_eq!(l.reusable_prefix(&held), 3);
        // The same prompt again: everything but the last position (its logits are needed).
        assert_eq!(l.reusable_prefix(l.positions()), l.n_positions() - 1);
        // A longer history (e.g. an earlier answer) does not matter beyond the prompt.
        let mut longer = l.positions().to_vec();
        longer.push(Position::Token(42));
        assert_eq!(l.reusable_prefix(&longer), l.n_positions() - 1);
    }

    #[test]
    fn prefix_never_splits_an_image() {
        let a = layout(&[1, 2], Some("a"), &[5]);
        let b = layout(&[1, 2], Some("b"), &[5]);
        // Same system and marker, another image: keep up to the image's start.
        assert_eq!(a.reusable_prefix(b.positions()), 3);
        // Cached half an image (a cache cut inside it): back off to the image's start.
        let half = &a.positions()[..5];
        assert_eq!(a.reusable_prefix(half), 3);
        // The whole image held: keep it.
        assert_eq!(a.reusable_prefix(&a.positions()[..7]), 7);
    }

    #[test]
    fn prompt_ending_in_an_image_reevaluates_the_whole_image() {
        let mut l = PromptLayout::default();
        l.push_tokens([1]);
        l.push_image(image("x", 4));
        // Everything held: keeping all but one position would split the image, so it is evaluated again.
        assert_eq!(l.reusable_prefix(l.positions()), 1);
        assert_eq!(
            l.pending(1),
            vec![Pending {
                span: 1,
                from: 1,
                last: true
            }]
        );
    }

    #[test]
    fn pending_starts_inside_text_and_skips_held_spans() {
        let l = layout(&[1, 2, 3], Some("a"), &[7, 8]);
        assert_eq!(l.pending(0).len(), 3);
        assert_eq!(
            l.pending(9),
            vec![Pending {
                span: 2,
                from: 9,
                last: true
            }]
        );
        let p = l.pending(2);
        assert_eq!(
            p[0],
            Pending {
                span: 0,
                from: 2,
                last: false
            }
        );
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn copy_only_when_it_gains_enough() {
        let system: Vec<i32> = (1..=20).collect();
        let job = layout(&system, None, &[50, 51]);
        let other = layout(&system, None, &[60]);
        let empty: Vec<Position> = Vec::new();
        // Sequence 1 is empty; sequence 0 holds the same 20-token system prompt: copy from 0.
        assert_eq!(
            job.plan_reuse(1, &[other.positions(), &empty]),
            Reuse::Copy { source: 0, keep: 20 }
        );
        // Sequence 1 itself holds 15 of them: a gain of 5 < MIN_COPY_GAIN, keep its own.
        let own = &other.positions()[..15];
        assert_eq!(job.plan_reuse(1, &[other.positions(), own]), Reuse::Own { keep: 15 });
        // A short shared prefix is never copied.
        let short = layout(&[1, 2, 3], None, &[9]);
        assert_eq!(job.plan_reuse(1, &[short.positions(), &empty]), Reuse::Own { keep: 0 });
    }

    #[test]
    fn copy_prefers_the_longest_then_the_lowest_sequence() {
        let system: Vec<i32> = (1..=30).collect();
        let job = layout(&system, Some("img"), &[5]);
        let with_image = layout(&system, Some("img"), &[6]);
        let without = layout(&system, None, &[6]);
        let empty: Vec<Position> = Vec::new();
        let held = [
            without.positions(),
            with_image.positions(),
            with_image.positions(),
            &empty,
        ];
        // 30 system + marker + 4 image positions + marker = 36 from sequences 1 and 2: the lower wins.
        assert_eq!(job.plan_reuse(3, &held), Reuse::Copy { source: 1, keep: 36 });
    }

    #[test]
    fn best_free_sequence_prefers_its_own_prefix() {
        let job = layout(&[1, 2, 3, 4], None, &[9]);
        let a = layout(&[7], None, &[9]);
        let b = layout(&[1, 2, 3, 4], None, &[8]);
        let empty: Vec<Position> = Vec::new();
        let held = [a.positions(), b.positions(), &empty];
        assert_eq!(best_free_sequence(&job, &held, &[true, true, true]), Some(1));
        assert_eq!(best_free_sequence(&job, &held, &[true, false, true]), Some(0));
        assert_eq!(best_free_sequence(&job, &held, &[false, false, false]), None);
    }
}

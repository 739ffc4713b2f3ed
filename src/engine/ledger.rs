//! The sequence ledger: what every KV position of every sequence holds, kept equal to llama.cpp's cache.
//!
//! Owns: the per-sequence position lists and the rules that keep them true: a position is recorded only after the
//! decode that wrote it succeeded; a removal that llama.cpp refuses clears the whole sequence (ledger and cache),
//! so the two never diverge. Pure: the scheduler applies each change to llama.cpp and reports the outcome here.

use super::layout::Position;

#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    seqs: Vec<Vec<Position>>,
}

impl Ledger {
    pub(crate) fn new(n_seq: usize) -> Ledger {
        Ledger {
            seqs: vec![Vec::new(); n_seq],
        }
    }

    /// What every sequence holds, by sequence number.
    pub(crate) fn all(&self) -> Vec<&[Position]> {
        self.seqs.iter().map(Vec::as_slice).collect()
    }

    pub(crate) fn len(&self, seq: usize) -> usize {
        self.seqs[seq].len()
    }

    /// Records that the cache dropped sequence `seq`'s positions from `keep` on (`removed`: llama.cpp did it);
    /// when it could not, the caller cleared the whole sequence and so does the ledger. Returns what is kept.
    pub(crate) fn truncated(&mut self, seq: usize, keep: usize, removed: bool) -> usize {
        let keep = if removed { keep.min(self.seqs[seq].len()) } else { 0 };
        self.seqs[seq].truncate(keep);
        keep
    }

    /// Records that sequence `dst` now holds the first `keep` positions of `src` (`copied`: the copy and the tail
    /// removal succeeded; otherwise `dst` was cleared). Returns what `dst` holds.
    pub(crate) fn copied(&mut self, src: usize, dst: usize, keep: usize, copied: bool) -> usize {
        if !copied {
            self.seqs[dst].clear();
            return 0;
        }
        let keep = keep.min(self.seqs[src].len());
        let prefix = self.seqs[src][..keep].to_vec();
        self.seqs[dst] = prefix;
        keep
    }

    /// Records positions written by a successful decode at the end of sequence `seq`.
    pub(crate) fn extend(&mut self, seq: usize, positions: &[Position]) {
        self.seqs[seq].extend_from_slice(positions);
    }

    pub(crate) fn push(&mut self, seq: usize, position: Position) {
        self.seqs[seq].push(position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ids: &[i32]) -> Vec<Position> {
        ids.iter().map(|&t| Position::Token(t)).collect()
    }

    #[test]
    fn a_refused_removal_forgets_the_whole_sequence() {
        let mut l = Ledger::new(2);
        l.extend(0, &tokens(&[1, 2, 3, 4]));
        assert_eq!(l.truncated(0, 2, true), 2);
        assert_eq!(l.all()[0], tokens(&[1, 2]).as_slice());
        assert_eq!(l.truncated(0, 1, false), 0);
        assert!(l.all()[0].is_empty());
    }

    #[test]
    fn a_copy_takes_the_source_prefix_or_nothing() {
        let mut l = Ledger::new(3);
        l.extend(0, &tokens(&[1, 2, 3, 4, 5]));
        l.extend(1, &tokens(&[9]));
        assert_eq!(l.copied(0, 1, 3, true), 3);
        assert_eq!(l.all()[1], tokens(&[1, 2, 3]).as_slice());
        assert_eq!(l.all()[0].len(), 5, "the source is unchanged");
        assert_eq!(l.copied(0, 2, 3, false), 0);
        assert!(l.all()[2].is_empty());
        assert_eq!(l.all().len(), 3);
    }

    #[test]
    fn keeping_more_than_held_keeps_what_is_held() {
        let mut l = Ledger::new(1);
        l.extend(0, &tokens(&[1, 2]));
        assert_eq!(l.truncated(0, 10, true), 2);
        l.push(0, Position::Token(3));
        assert_eq!(l.len(0), 3);
    }
}

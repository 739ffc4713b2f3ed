//! Stop strings (OpenAI's `stop`, ollama's `options.stop`): where an answer ends, and how much of a streamed answer
//! can be sent before a stop string might still begin in it.
//!
//! Owns: the matching rule (the earliest occurrence of any stop string ends the answer, which excludes it) and
//! the hold-back rule (text that could be the start of a stop string is held until it is not). Pure; must not
//! know about the engine or HTTP.

/// The stop strings of one answer and how far its text has been sent.
#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    text: String,
    sent: usize,
    stopped: bool,
}

/// What to send after a piece of the answer arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Text that can be sent now (possibly empty).
    pub text: String,
    /// A stop string was found: the answer ends here.
    pub stopped: bool,
}

impl StopStrings {
    /// Empty stop strings are dropped (they would end every answer before it began).
    pub fn new(stops: Vec<String>) -> StopStrings {
        StopStrings {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..StopStrings::default()
        }
    }

    /// Adds the next piece of the answer; returns what can be sent now.
    pub fn push(&mut self, piece: &str) -> Piece {
        if self.stopped {
            return Piece {
                text: String::new(),
                stopped: true,
            };
        }
        self.text.push_str(piece);
        // A stop string may straddle pieces: search from where a match could begin.
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.sent.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i))
            .min();
        if let Some(end) = found {
            self.stopped = true;
            self.text.truncate(end.max(self.sent));
            return Piece {
                text: self.take(self.text.len()),
                stopped: true,
            };
        }
        let hold = self.held_back();
        Piece {
            text: self.take(self.text.len() - hold),
            stopped: false,
        }
    }

    /// The rest of the text, when the answer ended without a stop string.
    pub fn finish(&mut self) -> String {
        self.take(self.text.len())
    }

    /// The whole answer so far, a stop string cut off.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a stop string ended the answer.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    fn take(&mut self, end: usize) -> String {
        let end = end.max(self.sent);
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        out
    }

    /// Bytes at the end of the text that are the beginning of some stop string (held until the next piece).
    fn held_back(&self) -> usize {
        let unsent = &self.text[self.sent..];
        let mut held = 0;
        for stop in &self.stops {
            for (i, _) in unsent.char_indices() {
                let tail = &unsent[i..];
                if tail.len() < stop.len() && stop.starts_with(tail) {
                    held = held.max(tail.len());
                    break;
                }
            }
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let mut s = StopStrings::new(stops.iter().map(|s| s.to_string()).collect());
        let mut sent = Vec::new();
        for p in pieces {
            let out = s.push(p);
            sent.push(out.text);
            if out.stopped {
                return (sent, true, s.text().to_string());
            }
        }
        sent.push(s.finish());
        (sent, false, s.text().to_string())
    }

    #[test]
    fn no_stops_sends_everything_at_once() {
        let (sent, stopped, text) = run(&[], &["Pneu", "monia"]);
        assert_eq!(sent, ["Pneu", "monia", ""]);
        assert!(!stopped);
        assert_eq!(text, "Pneumonia");
    }

    #[test]
    fn a_stop_inside_one_piece_cuts_there() {
        let (sent, stopped, text) = run(&["\n\n"], &["Effusion.\n\nMore"]);
        assert_eq!(sent, ["Effusion."]);
        assert!(stopped);
        assert_eq!(text, "Effusion.");
    }

    #[test]
    fn a_stop_across_pieces_is_held_then_cut() {
        let (sent, stopped, text) = run(&["END"], &["yes E", "N", "D and more"]);
        assert_eq!(sent, ["yes ", "", ""]);
        assert!(stopped);
        assert_eq!(text, "yes ");
    }

    #[test]
    fn a_false_start_is_released() {
        let (sent, stopped, text) = run(&["END"], &["yes E", "ND2".get(..0).unwrap(), "x"]);
        assert_eq!(sent.concat(), "yes Ex");
        assert!(!stopped);
        assert_eq!(text, "yes Ex");
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let (_, stopped, text) = run(&["b", "a"], &["xxabyy"]);
        assert!(stopped);
        assert_eq!(text, "xx");
    }

    #[test]
    fn multibyte_text_is_held_on_char_boundaries() {
        let (sent, stopped, text) = run(&["µg/"], &["5 µ", "g/kg"]);
        assert_eq!(sent, ["5 ", ""]);
        assert!(stopped);
        assert_eq!(text, "5 ");
        let (sent, _, text) = run(&["µg/"], &["5 µ", "m"]);
        assert_eq!(sent.concat(), "5 µm");
        assert_eq!(text, "5 µm");
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        let (_, stopped, text) = run(&[""], &["abc"]);
        assert!(!stopped);
        assert_eq!(text, "abc");
    }
}

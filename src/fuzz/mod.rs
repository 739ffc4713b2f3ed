//! Fuzzing on stable Rust, as ordinary unit tests: `cargo test --release --lib fuzz` (`scripts/fuzz` for long runs).
//!
//! Owns: the harness every target shares: a deterministic PRNG (SplitMix64), byte mutators (bit flips, byte
//! insert/delete/duplicate, splices, interesting integers, truncation, length-field inflation, dictionary words),
//! the iteration budget and seed, and the replay report of an input that panics. One file per target builds
//! VALID inputs first (structure-aware: small GGUFs, conversations, jobs, command sequences, PNGs) and mutates
//! them, then checks both "no panic" and the properties its module promises.
//!
//! Environment:
//! - `MEDGEMMA_FUZZ_ITERATIONS=N`: inputs per cheap target (default [`DEFAULT_ITERATIONS`]); a target whose
//!   input costs more (a file written, an image decoded) runs `N / weight` of them.
//! - `MEDGEMMA_FUZZ_SEED=S`: the run's seed (decimal or 0x hex; default [`DEFAULT_SEED`]).
//! - `MEDGEMMA_FUZZ_FIRST=I`: the first iteration to run (default 0). Every input depends only on the seed, the
//!   target and its iteration number, so a failure replays alone:
//!   `MEDGEMMA_FUZZ_SEED=S MEDGEMMA_FUZZ_FIRST=I MEDGEMMA_FUZZ_ITERATIONS=1 cargo test --release --lib fuzz::T`.
//!
//! Must not: run anything slow per input (no model, no network), or depend on the order the tests run in.
//! Release builds do not check arithmetic overflow; `scripts/fuzz --debug` runs the same targets with the checks.

mod batch;
mod chat;
mod conversation;
mod dicom;
mod gguf;
pub(crate) mod image;
mod prompt;
mod results;
mod utf8_stream;

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Inputs per cheap target in a default (CI) run: 265,000 inputs over the 9 targets (50,000 each for gguf,
/// prompt, conversation and utf8_stream; 25,000 for batch and chat; 5,000 for image and results, which write a
/// file per input, and for dicom, which decodes one). Measured on two shared cores in release mode: 20 s for
/// `cargo test --release --lib fuzz`, 27 s one test at a time (`RUST_TEST_THREADS=1`, as scripts/test runs them),
/// before the dicom target, which adds 0.3 s.
pub const DEFAULT_ITERATIONS: u64 = 50_000;

/// The default seed: a fixed one, so that CI runs the same inputs every time.
pub const DEFAULT_SEED: u64 = 0x6d65_6467_656d_6d61;

/// SplitMix64: tiny, fast, and good enough to drive mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A reference to one of `items` (which must not be empty).
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A small number, most often tiny: 0..=max with a bias towards 0.
    pub fn small(&mut self, max: usize) -> usize {
        let bound = self.range(0, max);
        self.range(0, bound)
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// Integers that break parsers: zeros, ones, sign bits, all ones, the edges of each width.
pub const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
];

/// Byte mutations. `dictionary` holds words worth inserting (magic numbers, tokens, keywords); `corpus` holds
/// other valid inputs to splice from.
pub struct Mutator<'a> {
    pub dictionary: &'a [&'a [u8]],
    pub corpus: &'a [Vec<u8>],
    /// Length fields are read little-endian (GGUF) or big-endian (PNG).
    pub big_endian: bool,
}

impl Mutator<'_> {
    /// Applies one to four stacked mutations.
    pub fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        for _ in 0..rng.range(1, 4) {
            self.mutate_once(rng, data);
        }
    }

    fn mutate_once(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let len = data.len();
        match rng.below(11) {
            0 if len > 0 => {
                for _ in 0..rng.range(1, 4) {
                    let i = rng.below(len);
                    data[i] ^= 1 << rng.below(8);
                }
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.byte();
            }
            2 => {
                let at = rng.below(len + 1);
                let n = rng.range(1, 16);
                let bytes = rng.bytes(n);
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = rng.range(1, 16.min(len - at));
                data.drain(at..at + n);
            }
            4 if len > 0 => {
                // Duplicate a chunk somewhere else.
                let at = rng.below(len);
                let n = rng.range(1, 64.min(len - at));
                let chunk = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, chunk);
            }
            5 if !self.corpus.is_empty() => {
                // Splice: our prefix, another input's suffix.
                let other = rng.choose(self.corpus);
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            6 => self.interesting(rng, data),
            7 if len > 0 => {
                data.truncate(rng.below(len));
            }
            8 => self.inflate_length(rng, data),
            9 if !self.dictionary.is_empty() => {
                let word = rng.pick(self.dictionary);
                let at = rng.below(len + 1);
                if rng.one_in(2) || at + word.len() > len {
                    data.splice(at..at, word.iter().copied());
                } else {
                    data[at..at + word.len()].copy_from_slice(word);
                }
            }
            _ => {
                // Overwrite a chunk with a copy of another part of the input.
                if len > 1 {
                    let from = rng.below(len);
                    let to = rng.below(len);
                    let n = rng.range(1, 8).min(len - from).min(len - to);
                    data.copy_within(from..from + n, to);
                }
            }
        }
    }

    /// Writes an interesting integer (1, 2, 4 or 8 bytes wide) at an aligned position, or anywhere.
    fn interesting(&self, rng: &mut Rng, data: &mut [u8]) {
        let width = rng.pick(&[1usize, 2, 4, 8]);
        if data.len() < width {
            return;
        }
        let align = if rng.one_in(2) { width } else { 1 };
        let at = rng.below((data.len() - width) / align + 1) * align;
        let mut value = rng.pick(INTERESTING);
        if rng.one_in(4) {
            value = value.wrapping_neg();
        }
        self.write_int(&mut data[at..at + width], value);
    }

    /// Finds a field holding a small number (a count or a length) and makes it claim more than there is:
    /// one more, the bytes left plus one, double, or huge.
    fn inflate_length(&self, rng: &mut Rng, data: &mut [u8]) {
        let width = rng.pick(&[4usize, 8]);
        if data.len() < width {
            return;
        }
        for _ in 0..16 {
            let at = rng.below(data.len() - width + 1);
            let value = self.read_int(&data[at..at + width]);
            if value == 0 || value > 1 << 16 {
                continue;
            }
            let left = (data.len() - at - width) as u64;
            let new = match rng.below(5) {
                0 => value + 1,
                1 => left + 1,
                2 => value * 2 + rng.below(16) as u64,
                3 => value + rng.range(1, 4096) as u64,
                _ => 1 << rng.range(20, 63),
            };
            self.write_int(&mut data[at..at + width], new);
            return;
        }
    }

    fn read_int(&self, bytes: &[u8]) -> u64 {
        let mut buf = [0u8; 8];
        if self.big_endian {
            buf[8 - bytes.len()..].copy_from_slice(bytes);
            u64::from_be_bytes(buf)
        } else {
            buf[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(buf)
        }
    }

    fn write_int(&self, out: &mut [u8], value: u64) {
        let n = out.len();
        if self.big_endian {
            out.copy_from_slice(&value.to_be_bytes()[8 - n..]);
        } else {
            out.copy_from_slice(&value.to_le_bytes()[..n]);
        }
    }
}

/// Bytes shown as an escaped string (`b"GGUF\x03\x00..."`), so that a failing input can be pasted into a test.
pub struct Bytes(pub Vec<u8>);

impl Debug for Bytes {
    /// The first 16 KiB (a larger input is replayed by its seed and iteration).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 16 << 10;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        let more = if self.0.len() > SHOWN { "..." } else { "" };
        write!(f, "b\"{}\"{more} ({} bytes)", shown.escape_ascii(), self.0.len())
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim().replace('_', "");
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number")))
}

/// The seed of this run.
pub fn seed() -> u64 {
    env_u64("MEDGEMMA_FUZZ_SEED").unwrap_or(DEFAULT_SEED)
}

/// The name of the variant a value's `Debug` text starts with, and of the variant nested under `field` (`what`,
/// `error`, ...), e.g. `Damaged/Short`: an outcome label.
pub fn variant(value: &impl Debug, field: &str) -> String {
    let text = format!("{value:?}");
    let name = |t: &str| -> String { t.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut label = name(&text);
    if let Some(at) = text.find(&format!("{field}: ")) {
        label = format!("{label}/{}", name(&text[at + field.len() + 2..]));
    }
    label
}

/// A stable number for a target's name (FNV-1a), so that each target draws its own inputs from the seed.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs one target: for each iteration, `generate` draws an input from an Rng that depends only on (seed, target,
/// iteration), and `check` runs it; a panic in either is reported with what replays it, then fails the test.
/// Returns how many inputs ran, after asserting that the whole budget ran. `weight` divides the budget for
/// targets whose input costs more than a parse.
///
/// `check` returns what became of the input (e.g. `accepted`, `refused: Damaged/Short`); the tally is printed at
/// the end, to show at a glance whether the mutations still reach past the first check.
pub fn run<I: Debug>(
    target: &str,
    weight: u64,
    mut generate: impl FnMut(&mut Rng) -> I,
    mut check: impl FnMut(&I) -> String,
) -> u64 {
    let iterations = (env_u64("MEDGEMMA_FUZZ_ITERATIONS").unwrap_or(DEFAULT_ITERATIONS) / weight).max(1);
    let first = env_u64("MEDGEMMA_FUZZ_FIRST").unwrap_or(0);
    let seed = seed();
    let started = std::time::Instant::now();
    let mut ran = 0u64;
    let mut outcomes: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for iteration in first..first + iterations {
        let mut rng = Rng::new(seed ^ name_hash(target) ^ iteration.wrapping_mul(0xd1b5_4a32_d192_ed03));
        let _ = rng.next_u64();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let input = generate(&mut rng);
            match catch_unwind(AssertUnwindSafe(|| check(&input))) {
                Ok(outcome) => *outcomes.entry(outcome).or_default() += 1,
                Err(panic) => {
                    eprintln!("fuzz target {target}: the input that panicked:\n{input:#?}");
                    std::panic::resume_unwind(panic);
                }
            }
        }));
        if let Err(panic) = outcome {
            eprintln!(
                "fuzz target {target}: panic at seed {seed:#x}, iteration {iteration}. Replay it alone with:\n  \
                 MEDGEMMA_FUZZ_SEED={seed:#x} MEDGEMMA_FUZZ_FIRST={iteration} MEDGEMMA_FUZZ_ITERATIONS={weight} \
                 cargo test --release --lib fuzz::{target} -- --nocapture"
            );
            std::panic::resume_unwind(panic);
        }
        ran += 1;
    }
    let tally: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
    eprintln!(
        "fuzz target {target}: {ran} inputs (seed {seed:#x}, iterations {first}..{}) in {:.1} s: {}",
        first + iterations,
        started.elapsed().as_secs_f64(),
        tally.join(", ")
    );
    assert_eq!(ran, iterations, "fuzz target {target} ran fewer inputs than its budget");
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rng_is_deterministic_and_mutations_stay_bounded() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(
            (0..8).map(|_| a.next_u64()).collect::<Vec<_>>(),
            (0..8).map(|_| b.next_u64()).collect::<Vec<_>>()
        );
        let corpus = vec![b"GGUF\x03\0\0\0".to_vec()];
        let m = Mutator {
            dictionary: &[b"GGUF"],
            corpus: &corpus,
            big_endian: false,
        };
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let mut data = corpus[0].clone();
            m.mutate(&mut rng, &mut data);
            assert!(data.len() < 4096);
        }
        assert_eq!(
            format!("{:?}", Bytes(b"a\0\xff".to_vec())),
            "b\"a\\x00\\xff\" (3 bytes)"
        );
    }
}

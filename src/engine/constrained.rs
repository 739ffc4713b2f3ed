//! Constrained decoding: each next token is drawn exactly as llama.cpp's sampler chain would draw it with the
//! grammar sampler first in the chain, without running the grammar over all 262K tokens of the vocabulary at
//! every step.
//!
//! Owns: one answer's grammar sampler and the draw under it. Must not: decode, or touch the KV cache.
//!
//! Why it is exact. The chain after the grammar is: repetition penalty (optional), then greedy, or top-k, top-p,
//! min-p, temperature and a seeded draw. The grammar only removes tokens (sets their logit to -inf). So:
//! - greedy: the answer is the highest-logit token the grammar allows; candidates are checked in descending
//!   logit order, one token at a time, until one is allowed;
//! - top-k with k > 0: top-k keeps the k highest-logit allowed tokens, and everything after it (top-p, min-p,
//!   temperature, the draw) sees only those k; checking candidates in descending order until k are allowed gives
//!   exactly that set, in the order top-k leaves it;
//! - otherwise (top-k 0), or when the first [`MAX_CHECKED`] candidates hold fewer than k allowed tokens, the
//!   grammar runs over the whole vocabulary, as llama.cpp does.
//!
//! The repetition penalty (when on) is applied to all logits first, as it comes first in the chain. Control
//! tokens (turn markers, image slots, thinking markers) are never allowed inside a constrained answer: the grammar
//! engine matches a control token by its text, so a JSON string could otherwise hold `<start_of_image>`; only the
//! end-of-turn tokens stay, which the grammar allows once the answer is complete.

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use super::error::EngineError;
use super::model::Engine;
use crate::settings::SamplingSettings;

/// Candidates checked one by one before the grammar runs over the whole vocabulary instead.
const MAX_CHECKED: usize = 2048;

/// Test hook: `MEDGEMMA_GRAMMAR_FULL_SCAN=1` runs the grammar over the whole vocabulary at every step, as
/// llama.cpp's own chain does; the tests compare answers with and without it (they must be identical).
fn full_scan_only() -> bool {
    static FULL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FULL.get_or_init(|| std::env::var_os("MEDGEMMA_GRAMMAR_FULL_SCAN").is_some_and(|v| v == "1"))
}

pub(crate) struct Constrained {
    grammar: LlamaSampler,
    penalties: Option<LlamaSampler>,
    /// Top-k (when on) .. the draw, or greedy.
    rest: LlamaSampler,
    /// How many allowed candidates decide the draw: 1 (greedy), k (top-k), 0 (all of them).
    keep: usize,
    banned: Vec<LlamaToken>,
    /// Buffers reused from token to token (a row of the vocabulary, and candidate indices).
    candidates: Vec<LlamaTokenData>,
    order: Vec<usize>,
    /// How many steps needed the whole vocabulary, and the time spent drawing (reported in the answer's stats).
    pub(crate) full_scans: usize,
    pub(crate) time: std::time::Duration,
}

impl Engine {
    /// llama.cpp's grammar sampler for `gbnf` (root rule `root`); an error when llama.cpp cannot parse it.
    pub(crate) fn grammar_sampler(&self, gbnf: &str) -> Result<LlamaSampler, EngineError> {
        LlamaSampler::grammar(&self.model, gbnf, "root")
            .map_err(|e| EngineError::Grammar(format!("llama.cpp could not parse the grammar ({e})")))
    }

    /// Checks that llama.cpp accepts the grammar, before any answer needs it.
    pub fn check_grammar(&self, gbnf: &str) -> Result<(), EngineError> {
        self.grammar_sampler(gbnf).map(drop)
    }

    /// Token ids a constrained answer may never contain: control tokens, image slots and thinking markers, but
    /// not the end-of-turn tokens.
    fn banned_in_constrained(&self) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        let mut ids: Vec<LlamaToken> = self.protected_ids.iter().map(|(t, _)| *t).collect();
        ids.extend([self.thinking.0, self.thinking.1].into_iter().flatten().map(LlamaToken));
        ids.retain(|&t| !vocab.is_eog(t));
        ids.sort_by_key(|t| t.0);
        ids.dedup();
        ids
    }
}

impl Constrained {
    pub(crate) fn new(engine: &Engine, settings: &SamplingSettings, gbnf: &str) -> Result<Constrained, EngineError> {
        let grammar = engine.grammar_sampler(gbnf)?;
        // The draw sees only the candidates the grammar allows: 1 decides greedy, k decides top-k.
        let keep = if settings.is_greedy() {
            1
        } else {
            settings.top_k.max(0) as usize
        };
        Ok(Constrained {
            grammar,
            penalties: super::sampling::penalties(settings, engine.model.n_vocab()),
            rest: LlamaSampler::chain_simple(super::sampling::draw(settings)),
            keep,
            banned: engine.banned_in_constrained(),
            candidates: Vec::new(),
            order: Vec::new(),
            full_scans: 0,
            time: std::time::Duration::ZERO,
        })
    }

    /// Draws the next token from `logits` (one row) and accepts it into the grammar and the chain; `None` when
    /// the grammar allows no token at all (a dead end: the answer ends there, and its check says it is incomplete).
    pub(crate) fn sample(&mut self, logits: &[f32]) -> Option<LlamaToken> {
        let started = std::time::Instant::now();
        let token = self.draw(logits);
        self.time += started.elapsed();
        token
    }

    fn draw(&mut self, logits: &[f32]) -> Option<LlamaToken> {
        let mut row = std::mem::take(&mut self.candidates);
        row.clear();
        row.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
        );
        let mut all = LlamaTokenDataArray::new(row, false);
        if let Some(p) = self.penalties.as_mut() {
            all.apply_sampler(p);
        }
        for t in &self.banned {
            if let Some(d) = all.data.get_mut(t.0 as usize) {
                d.set_logit(f32::NEG_INFINITY);
            }
        }
        let mut chosen = match self.allowed_head(&all) {
            Some(head) => {
                self.candidates = all.data;
                LlamaTokenDataArray::new(head, true)
            }
            None => {
                self.full_scans += 1;
                all.apply_sampler(&mut self.grammar);
                all
            }
        };
        chosen.apply_sampler(&mut self.rest);
        let token = chosen
            .selected
            .and_then(|i| chosen.data.get(i))
            .filter(|d| d.logit() > f32::NEG_INFINITY)
            .map(LlamaTokenData::id);
        if chosen.data.capacity() > self.candidates.capacity() {
            self.candidates = chosen.data;
        }
        let token = token?;
        self.grammar.accept(token);
        if let Some(p) = self.penalties.as_mut() {
            p.accept(token);
        }
        self.rest.accept(token);
        Some(token)
    }

    /// The `keep` highest-logit candidates the grammar allows, in descending order; `None` when they cannot be
    /// found among the first [`MAX_CHECKED`] (or `keep` is 0: every allowed token counts).
    fn allowed_head(&mut self, all: &LlamaTokenDataArray) -> Option<Vec<LlamaTokenData>> {
        if self.keep == 0 || full_scan_only() {
            return None;
        }
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend((0..all.data.len()).filter(|&i| all.data[i].logit() > f32::NEG_INFINITY));
        let window = MAX_CHECKED.min(order.len());
        if window == 0 {
            self.order = order;
            return None;
        }
        let by_logit_desc = |a: &usize, b: &usize| all.data[*b].logit().total_cmp(&all.data[*a].logit()).then(a.cmp(b));
        if window < order.len() {
            order.select_nth_unstable_by(window - 1, by_logit_desc);
            order.truncate(window);
        }
        order.sort_unstable_by(by_logit_desc);
        let mut head = Vec::with_capacity(self.keep);
        for &i in &order {
            let candidate = all.data[i];
            let mut one = LlamaTokenDataArray::new(vec![candidate], false);
            one.apply_sampler(&mut self.grammar);
            if one.data[0].logit() > f32::NEG_INFINITY {
                head.push(candidate);
                if head.len() == self.keep {
                    break;
                }
            }
        }
        self.order = order;
        (head.len() == self.keep).then_some(head)
    }
}

//! Unit tests of the pre-check: GGUF headers built in memory (a tiny valid gemma3 model and gemma3 mmproj), each
//! broken in one way, read with `GgufHeader::parse`. The published malicious shapes (REFERENCE.md §9) are pinned
//! one test each.

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::gguf::{GgufError, GgufTensorInfo, GgufValue as V};

const PATH: &str = "/models/bad.gguf";

/// A GGUF file under construction: metadata in file order, tensors (name, dims, ggml type) in table order, and
/// optional offsets that replace the packed ones.
#[derive(Clone)]
struct Gguf {
    kv: Vec<(String, V)>,
    tensors: Vec<(String, Vec<u64>, u32)>,
    offsets: HashMap<String, u64>,
    /// Bytes of tensor data the file claims to hold beyond the packed data (negative: fewer).
    extra_len: i64,
    /// The file length the reader is told, instead of the packed data's end.
    claimed_len: Option<u64>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn type_tag(v: &V) -> u32 {
    match v {
        V::U8(_) => 0,
        V::I8(_) => 1,
        V::U16(_) => 2,
        V::I16(_) => 3,
        V::U32(_) => 4,
        V::I32(_) => 5,
        V::F32(_) => 6,
        V::Bool(_) => 7,
        V::String(_) => 8,
        V::Array(_) => 9,
        V::U64(_) => 10,
        V::I64(_) => 11,
        V::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &V) {
    match v {
        V::U8(x) => out.push(*x),
        V::I8(x) => out.extend(x.to_le_bytes()),
        V::U16(x) => out.extend(x.to_le_bytes()),
        V::I16(x) => out.extend(x.to_le_bytes()),
        V::U32(x) => out.extend(x.to_le_bytes()),
        V::I32(x) => out.extend(x.to_le_bytes()),
        V::F32(x) => out.extend(x.to_le_bytes()),
        V::Bool(x) => out.push(u8::from(*x)),
        V::String(s) => put_str(out, s),
        V::Array(items) => {
            out.extend(items.first().map_or(4, type_tag).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        V::U64(x) => out.extend(x.to_le_bytes()),
        V::I64(x) => out.extend(x.to_le_bytes()),
        V::F64(x) => out.extend(x.to_le_bytes()),
    }
}

fn s(text: &str) -> V {
    V::String(text.into())
}

impl Gguf {
    fn set(mut self, key: &str, value: V) -> Self {
        match self.kv.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.kv.push((key.into(), value)),
        }
        self
    }

    fn without(mut self, key: &str) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self.tensors.retain(|(n, _, _)| n != key);
        self
    }

    fn tensor(mut self, name: &str, dims: &[u64], ty: u32) -> Self {
        match self.tensors.iter_mut().find(|(n, _, _)| n == name) {
            Some(t) => *t = (name.into(), dims.to_vec(), ty),
            None => self.tensors.push((name.into(), dims.to_vec(), ty)),
        }
        self
    }

    fn dims(self, name: &str, dims: &[u64]) -> Self {
        let ty = self.tensors.iter().find(|(n, _, _)| n == name).expect("tensor").2;
        self.tensor(name, dims, ty)
    }

    fn offset(mut self, name: &str, offset: u64) -> Self {
        self.offsets.insert(name.into(), offset);
        self
    }

    fn alignment(&self) -> u64 {
        match self.kv.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, V::U32(a))) if a.is_power_of_two() => (*a).into(),
            _ => 32,
        }
    }

    /// The header bytes and the length the whole file claims.
    fn bytes(&self) -> (Vec<u8>, u64) {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut out, k);
            out.extend(type_tag(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let align = self.alignment();
        let mut offset = 0u64;
        let mut end = 0u64;
        for (name, dims, ty) in &self.tensors {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            let at = self.offsets.get(name).copied().unwrap_or(offset);
            out.extend(at.to_le_bytes());
            let info = GgufTensorInfo {
                name: name.clone(),
                dims: dims.clone(),
                ggml_type: *ty,
                offset: at,
            };
            let size = info.n_bytes().unwrap_or(0);
            end = end.max(at.saturating_add(size));
            offset = at.saturating_add(size).div_ceil(align).saturating_mul(align);
        }
        let data_offset = (out.len() as u64).div_ceil(align) * align;
        let len = data_offset.saturating_add(end).saturating_add_signed(self.extra_len);
        (out, self.claimed_len.unwrap_or(len))
    }

    fn parse(&self) -> Result<GgufHeader, GgufError> {
        let (bytes, len) = self.bytes();
        GgufHeader::parse(bytes.as_slice(), len, Path::new(PATH))
    }

    fn header(&self) -> GgufHeader {
        self.parse()
            .unwrap_or_else(|e| panic!("the test file does not parse: {e}"))
    }

    /// The pre-check's refusal, as the user reads it.
    fn refused(&self) -> String {
        let err = check(&self.header()).expect_err("the pre-check should refuse this file");
        let text = err.to_string();
        assert!(text.starts_with(PATH), "the message names the file: {text}");
        assert!(text.contains("download or") || text.contains("mmproj"), "a fix: {text}");
        text
    }

    /// The refusal, from the header reader or the pre-check.
    fn refused_anywhere(&self) -> String {
        match self.parse() {
            Err(e) => e.to_string(),
            Ok(h) => check(&h).expect_err("refused").to_string(),
        }
    }
}

const N_EMBD: u64 = 8;
const N_LAYER: u32 = 2;
const N_HEAD: u64 = 2;
const N_HEAD_KV: u64 = 1;
const HEAD: u64 = 4;
const N_FF: u64 = 32;
const F32: u32 = 0;
const F16: u32 = 1;
const Q8_0: u32 = 8;

fn vocab() -> (Vec<V>, Vec<V>, Vec<V>) {
    let mut tokens: Vec<V> = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
        .iter()
        .map(|t| s(t))
        .collect();
    let mut types = vec![V::I32(3); tokens.len()];
    for b in 0..4 {
        tokens.push(s(&format!("<0x{b:02X}>")));
        types.push(V::I32(6));
    }
    for word in ["a", "b", "c", "ab", "bc", "abc"] {
        tokens.push(s(word));
        types.push(V::I32(1));
    }
    let scores = (0..tokens.len()).map(|i| V::F32(-(i as f32))).collect();
    (tokens, scores, types)
}

/// A small valid gemma3 model: 2 layers, 16 tokens, Q8_0 matrices and F32 norms.
fn model() -> Gguf {
    let (tokens, scores, types) = vocab();
    let n_vocab = tokens.len() as u64;
    let kv: Vec<(&str, V)> = vec![
        ("general.architecture", s("gemma3")),
        ("general.name", s("tiny")),
        ("general.alignment", V::U32(32)),
        ("gemma3.context_length", V::U32(2048)),
        ("gemma3.embedding_length", V::U32(N_EMBD as u32)),
        ("gemma3.block_count", V::U32(N_LAYER)),
        ("gemma3.feed_forward_length", V::U32(N_FF as u32)),
        ("gemma3.attention.head_count", V::U32(N_HEAD as u32)),
        ("gemma3.attention.head_count_kv", V::U32(N_HEAD_KV as u32)),
        ("gemma3.attention.key_length", V::U32(HEAD as u32)),
        ("gemma3.attention.value_length", V::U32(HEAD as u32)),
        ("gemma3.rope.dimension_count", V::U32(HEAD as u32)),
        ("gemma3.attention.layer_norm_rms_epsilon", V::F32(1e-6)),
        ("gemma3.rope.freq_base", V::F32(1e6)),
        ("gemma3.rope.scaling.type", s("linear")),
        ("gemma3.rope.scaling.factor", V::F32(8.0)),
        ("gemma3.attention.sliding_window", V::U32(16)),
        (
            "gemma3.attention.sliding_window_pattern",
            V::Array(vec![V::Bool(true), V::Bool(false)]),
        ),
        ("tokenizer.ggml.model", s("llama")),
        ("tokenizer.ggml.tokens", V::Array(tokens)),
        ("tokenizer.ggml.scores", V::Array(scores)),
        ("tokenizer.ggml.token_type", V::Array(types)),
        ("tokenizer.ggml.bos_token_id", V::U32(2)),
        ("tokenizer.ggml.eos_token_id", V::U32(1)),
        ("tokenizer.ggml.eot_token_id", V::U32(5)),
        ("tokenizer.ggml.add_bos_token", V::Bool(true)),
    ];
    let mut g = Gguf {
        kv: kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        tensors: Vec::new(),
        offsets: HashMap::new(),
        extra_len: 0,
        claimed_len: None,
    };
    // Q8_0 needs rows of 32: only ffn_down has them; the rest is F16/F32, as llama.cpp falls back for narrow rows.
    g = g.tensor("token_embd.weight", &[N_EMBD, n_vocab], F16);
    g = g.tensor("output_norm.weight", &[N_EMBD], F32);
    let (q, kv) = (HEAD * N_HEAD, HEAD * N_HEAD_KV);
    for i in 0..N_LAYER {
        let b = |x: &str| format!("blk.{i}.{x}.weight");
        g = g
            .tensor(&b("attn_norm"), &[N_EMBD], F32)
            .tensor(&b("attn_q"), &[N_EMBD, q], F32)
            .tensor(&b("attn_k"), &[N_EMBD, kv], F32)
            .tensor(&b("attn_v"), &[N_EMBD, kv], F32)
            .tensor(&b("attn_output"), &[q, N_EMBD], F32)
            .tensor(&b("post_attention_norm"), &[N_EMBD], F32)
            .tensor(&b("attn_k_norm"), &[HEAD], F32)
            .tensor(&b("attn_q_norm"), &[HEAD], F32)
            .tensor(&b("ffn_norm"), &[N_EMBD], F32)
            .tensor(&b("ffn_gate"), &[N_EMBD, N_FF], F32)
            .tensor(&b("ffn_up"), &[N_EMBD, N_FF], F32)
            .tensor(&b("ffn_down"), &[N_FF, N_EMBD], Q8_0)
            .tensor(&b("post_ffw_norm"), &[N_EMBD], F32);
    }
    g
}

const V_EMBD: u64 = 32;
const V_HEADS: u64 = 2;
const V_FF: u64 = 64;
const V_LAYERS: u32 = 2;
const IMAGE: u64 = 64;
const PATCH: u64 = 8;

/// A small valid gemma3 vision projector (architecture clip), shaped like the converted test fixture.
fn mmproj() -> Gguf {
    let kv: Vec<(&str, V)> = vec![
        ("general.architecture", s("clip")),
        ("general.file_type", V::U32(0)),
        ("clip.has_vision_encoder", V::Bool(true)),
        ("clip.projector_type", s("gemma3")),
        ("clip.vision.image_size", V::U32(IMAGE as u32)),
        ("clip.vision.patch_size", V::U32(PATCH as u32)),
        ("clip.vision.embedding_length", V::U32(V_EMBD as u32)),
        ("clip.vision.feed_forward_length", V::U32(V_FF as u32)),
        ("clip.vision.block_count", V::U32(V_LAYERS)),
        ("clip.vision.attention.head_count", V::U32(V_HEADS as u32)),
        ("clip.vision.attention.layer_norm_epsilon", V::F32(1e-6)),
        ("clip.vision.projection_dim", V::U32(N_EMBD as u32)),
        ("clip.vision.image_mean", V::Array(vec![V::F32(0.5); 3])),
        ("clip.vision.image_std", V::Array(vec![V::F32(0.5); 3])),
        ("clip.use_gelu", V::Bool(true)),
        ("clip.vision.projector.scale_factor", V::U32(2)),
    ];
    let mut g = Gguf {
        kv: kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        tensors: Vec::new(),
        offsets: HashMap::new(),
        extra_len: 0,
        claimed_len: None,
    };
    let per_side = IMAGE / PATCH;
    g = g.tensor("mm.input_projection.weight", &[N_EMBD, V_EMBD], F32).tensor(
        "mm.soft_emb_norm.weight",
        &[V_EMBD],
        F32,
    );
    for i in 0..V_LAYERS {
        let b = |x: &str| format!("v.blk.{i}.{x}");
        for x in ["attn_q", "attn_k", "attn_v", "attn_out"] {
            g = g.tensor(&b(&format!("{x}.weight")), &[V_EMBD, V_EMBD], F16).tensor(
                &b(&format!("{x}.bias")),
                &[V_EMBD],
                F32,
            );
        }
        g = g
            .tensor(&b("ffn_down.weight"), &[V_FF, V_EMBD], F16)
            .tensor(&b("ffn_down.bias"), &[V_EMBD], F32)
            .tensor(&b("ffn_up.weight"), &[V_EMBD, V_FF], F16)
            .tensor(&b("ffn_up.bias"), &[V_FF], F32);
        for x in ["ln1", "ln2"] {
            g = g
                .tensor(&b(&format!("{x}.weight")), &[V_EMBD], F32)
                .tensor(&b(&format!("{x}.bias")), &[V_EMBD], F32);
        }
    }
    g.tensor("v.patch_embd.bias", &[V_EMBD], F32)
        .tensor("v.patch_embd.weight", &[PATCH, PATCH, 3, V_EMBD], F16)
        .tensor("v.position_embd.weight", &[V_EMBD, per_side * per_side], F32)
        .tensor("v.post_ln.bias", &[V_EMBD], F32)
        .tensor("v.post_ln.weight", &[V_EMBD], F32)
}

fn assert_has(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "{p:?} not in: {text}");
    }
}

// ---- valid files pass ----

#[test]
fn the_valid_files_pass() {
    check(&model().header()).unwrap();
    check(&mmproj().header()).unwrap();
    // A fused QKV, per-layer arrays, an untied output and swapped legacy ffn names are all valid.
    let (q, kv) = (HEAD * N_HEAD, HEAD * N_HEAD_KV);
    let fused = model()
        .without("blk.0.attn_q.weight")
        .without("blk.0.attn_k.weight")
        .without("blk.0.attn_v.weight")
        .tensor("blk.0.attn_qkv.weight", &[N_EMBD, q + 2 * kv], F32)
        .tensor("output.weight", &[N_EMBD, 16], F16)
        .set("gemma3.feed_forward_length", V::Array(vec![V::I32(N_FF as i32); 2]));
    check(&fused.header()).unwrap();
    let swapped = mmproj()
        .dims("v.blk.0.ffn_down.weight", &[V_EMBD, V_FF])
        .dims("v.blk.0.ffn_down.bias", &[V_FF])
        .dims("v.blk.0.ffn_up.weight", &[V_FF, V_EMBD])
        .dims("v.blk.0.ffn_up.bias", &[V_EMBD]);
    check(&swapped.header()).unwrap();
}

#[test]
fn other_architectures_get_the_general_rules_only() {
    let g = Gguf {
        kv: vec![("general.architecture".into(), s("llama"))],
        tensors: vec![("w".into(), vec![4], F32)],
        offsets: HashMap::new(),
        extra_len: 0,
        claimed_len: None,
    };
    check(&g.header()).unwrap();
    let e = g.clone().tensor("w", &[4], 77).refused();
    assert_has(&e, &["tensor \"w\"", "ggml type 77"]);
    let e = g.without("general.architecture").refused();
    assert_has(&e, &["general.architecture"]);
}

// ---- metadata types ----

#[test]
fn hyper_parameters_of_the_wrong_type_are_refused() {
    // §9: `block_count` of the wrong type (a division by zero in older readers).
    let e = model().set("gemma3.block_count", s("34")).refused();
    assert_has(&e, &["\"gemma3.block_count\"", "the string \"34\"", "a u32"]);
    let e = model().set("gemma3.block_count", V::U64(2)).refused();
    assert_has(&e, &["\"gemma3.block_count\"", "u64 (2)"]);
    let e = model()
        .set("gemma3.attention.layer_norm_rms_epsilon", V::F64(1e-6))
        .refused();
    assert_has(&e, &["gemma3.attention.layer_norm_rms_epsilon", "an f32"]);
    let e = model()
        .set("gemma3.attention.head_count", V::Array(vec![s("x"), s("y")]))
        .refused();
    assert_has(&e, &["gemma3.attention.head_count"]);
    let e = model().set("general.name", V::U32(1)).refused();
    assert_has(&e, &["general.name", "a string"]);
    let e = model().set("tokenizer.ggml.add_bos_token", V::U8(1)).refused();
    assert_has(&e, &["tokenizer.ggml.add_bos_token", "a bool"]);
}

#[test]
fn required_keys_are_named_when_missing() {
    for key in [
        "gemma3.block_count",
        "gemma3.embedding_length",
        "gemma3.context_length",
        "gemma3.attention.head_count",
        "gemma3.feed_forward_length",
        "gemma3.attention.layer_norm_rms_epsilon",
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
    ] {
        let e = model().without(key).refused();
        assert_has(&e, &[&format!("lacks the metadata key {key:?}")]);
    }
    for key in [
        "clip.vision.embedding_length",
        "clip.vision.image_size",
        "clip.vision.patch_size",
        "clip.vision.image_mean",
        "clip.vision.attention.layer_norm_epsilon",
    ] {
        let e = mmproj().without(key).refused();
        assert_has(&e, &[&format!("lacks the metadata key {key:?}")]);
    }
}

#[test]
fn clip_keys_of_the_wrong_type_are_refused() {
    // clip.cpp's getters abort the process on these.
    let e = mmproj().set("clip.has_vision_encoder", V::U32(1)).refused();
    assert_has(&e, &["clip.has_vision_encoder", "a bool"]);
    let e = mmproj().set("clip.vision.image_size", V::I32(64)).refused();
    assert_has(&e, &["clip.vision.image_size", "a u32"]);
    let e = mmproj().set("clip.projector_type", V::U32(3)).refused();
    assert_has(&e, &["clip.projector_type", "a string"]);
    let e = mmproj().set("clip.minicpmv_version", V::U32(2)).refused();
    assert_has(&e, &["clip.minicpmv_version", "an i32"]);
    let e = mmproj()
        .set("clip.vision.image_mean", V::Array(vec![V::F64(0.5); 3]))
        .refused();
    assert_has(&e, &["clip.vision.image_mean", "an array of 3 f32"]);
}

// ---- the tokenizer ----

#[test]
fn tokenizer_arrays_of_the_wrong_type_are_refused() {
    // §9: token scores declared int8 but read as f32.
    let e = model()
        .set("tokenizer.ggml.scores", V::Array(vec![V::I8(0); 16]))
        .refused();
    assert_has(
        &e,
        &["\"tokenizer.ggml.scores\"", "an array of 16 i8", "an array of f32"],
    );
    let e = model()
        .set("tokenizer.ggml.token_type", V::Array(vec![V::U8(1); 16]))
        .refused();
    assert_has(&e, &["\"tokenizer.ggml.token_type\"", "an array of i32"]);
    let e = model()
        .set("tokenizer.ggml.tokens", V::Array(vec![V::U32(1); 16]))
        .refused();
    assert_has(&e, &["\"tokenizer.ggml.tokens\"", "an array of strings"]);
    let e = model().set("tokenizer.ggml.tokens", s("abc")).refused();
    assert_has(&e, &["\"tokenizer.ggml.tokens\""]);
    let e = model()
        .set("tokenizer.ggml.merges", V::Array(vec![V::I32(1)]))
        .refused();
    assert_has(&e, &["\"tokenizer.ggml.merges\""]);
}

#[test]
fn tokenizer_arrays_shorter_than_the_vocabulary_are_refused() {
    // §9: tokenizer arrays shorter than the vocabulary (reads past the array).
    let e = model()
        .set("tokenizer.ggml.scores", V::Array(vec![V::F32(0.0); 3]))
        .refused();
    assert_has(&e, &["\"tokenizer.ggml.scores\" has 3 entries, but 16 are needed"]);
    let e = model()
        .set("tokenizer.ggml.token_type", V::Array(vec![V::I32(1); 15]))
        .refused();
    assert_has(&e, &["\"tokenizer.ggml.token_type\" has 15 entries"]);
    // A vocabulary longer than the embedding's rows.
    let (mut tokens, mut scores, mut types) = vocab();
    tokens.push(s("extra"));
    scores.push(V::F32(0.0));
    types.push(V::I32(1));
    let e = model()
        .set("tokenizer.ggml.tokens", V::Array(tokens))
        .set("tokenizer.ggml.scores", V::Array(scores))
        .set("tokenizer.ggml.token_type", V::Array(types))
        .refused();
    assert_has(&e, &["tensor \"token_embd.weight\" has shape [8, 16]", "[8, 17]"]);
    let e = model().set("tokenizer.ggml.tokens", V::Array(vec![])).refused();
    assert_has(&e, &["\"tokenizer.ggml.tokens\""]);
    let e = model().set("gemma3.vocab_size", V::U32(20)).refused();
    assert_has(&e, &["\"gemma3.vocab_size\" is 20"]);
}

#[test]
fn malformed_byte_tokens_are_refused() {
    // §9: byte tokens like <0x-1> (a write at index -1).
    for bad in ["<0x-1>", "<0x1>", "<0x123>", "<0xZZ>", "<0x1G>", "0x41", "<0x41", ""] {
        let (mut tokens, scores, types) = vocab();
        tokens[6] = s(bad);
        let e = model()
            .set("tokenizer.ggml.tokens", V::Array(tokens))
            .set("tokenizer.ggml.scores", V::Array(scores))
            .set("tokenizer.ggml.token_type", V::Array(types))
            .refused();
        assert_has(&e, &["\"tokenizer.ggml.tokens\"", "token 6 is typed as a byte"]);
    }
    // The same text on a normal token is only text.
    let (mut tokens, _, _) = vocab();
    tokens[10] = s("<0x-1>");
    check(&model().set("tokenizer.ggml.tokens", V::Array(tokens)).header()).unwrap();
}

#[test]
fn repeated_tokens_and_unknown_token_types_are_refused() {
    let (mut tokens, _, mut types) = vocab();
    tokens[11] = s("a");
    let e = model().set("tokenizer.ggml.tokens", V::Array(tokens)).refused();
    assert_has(&e, &["\"tokenizer.ggml.tokens\"", "token 11 \"a\" repeats token 10"]);
    types[3] = V::I32(-1);
    let e = model().set("tokenizer.ggml.token_type", V::Array(types)).refused();
    assert_has(&e, &["\"tokenizer.ggml.token_type\"", "token 3 has type -1"]);
}

#[test]
fn special_token_ids_outside_the_vocabulary_are_refused() {
    for key in [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.seperator_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.fim_pre_token_id",
    ] {
        let e = model().set(key, V::U32(16)).refused();
        assert_has(&e, &[&format!("{key:?} is 16, outside the vocabulary of 16 tokens")]);
        let e = model().set(key, V::I32(-1)).refused();
        assert_has(&e, &[key, "a u32"]);
    }
    check(&model().set("tokenizer.ggml.padding_token_id", V::U32(15)).header()).unwrap();
}

// ---- hyper-parameters ----

#[test]
fn block_counts_outside_llama_cpps_limits_are_refused() {
    // §9: block_count above 512 (out-of-bounds writes into llama.cpp's per-layer arrays).
    for n in [0, 513, u32::MAX] {
        let e = model().set("gemma3.block_count", V::U32(n)).refused();
        assert_has(&e, &[&format!("\"gemma3.block_count\" is {n}"), "from 1 to 512"]);
    }
    let e = mmproj().set("clip.vision.block_count", V::U32(100_000)).refused();
    assert_has(&e, &["\"clip.vision.block_count\" is 100000"]);
}

#[test]
fn head_counts_and_lengths_out_of_range_are_refused() {
    let e = model().set("gemma3.attention.head_count", V::U32(0)).refused();
    assert_has(&e, &["\"gemma3.attention.head_count\" is 0"]);
    let e = model().set("gemma3.attention.head_count_kv", V::U32(0)).refused();
    assert_has(&e, &["\"gemma3.attention.head_count_kv\" is 0"]);
    let e = model().set("gemma3.attention.head_count_kv", V::U32(3)).refused();
    assert_has(&e, &["\"gemma3.attention.head_count_kv\" is 3", "divide"]);
    let e = model().set("gemma3.attention.key_length", V::U32(0)).refused();
    assert_has(&e, &["\"gemma3.attention.key_length\" is 0"]);
    let e = model().set("gemma3.embedding_length", V::U32(0)).refused();
    assert_has(&e, &["\"gemma3.embedding_length\" is 0"]);
    let e = model().set("gemma3.feed_forward_length", V::U32(0)).refused();
    assert_has(&e, &["\"gemma3.feed_forward_length\" is 0"]);
    let e = model().set("gemma3.context_length", V::U32(0)).refused();
    assert_has(&e, &["\"gemma3.context_length\" is 0"]);
    let e = model().set("gemma3.context_length", V::U32(u32::MAX)).refused();
    assert_has(&e, &["\"gemma3.context_length\" is 4294967295"]);
    let e = model().set("gemma3.rope.dimension_count", V::U32(64)).refused();
    assert_has(&e, &["\"gemma3.rope.dimension_count\" is 64"]);
    let e = model().set("gemma3.expert_count", V::U32(8)).refused();
    assert_has(&e, &["\"gemma3.expert_count\" is 8"]);
}

#[test]
fn per_layer_arrays_must_have_one_entry_per_layer() {
    let e = model()
        .set("gemma3.attention.head_count", V::Array(vec![V::U32(2); 3]))
        .refused();
    assert_has(&e, &["\"gemma3.attention.head_count\" has 3 entries, but 2 are needed"]);
    let e = model()
        .set(
            "gemma3.attention.sliding_window_pattern",
            V::Array(vec![V::Bool(true); 600]),
        )
        .refused();
    assert_has(&e, &["\"gemma3.attention.sliding_window_pattern\" has 600 entries"]);
    let e = model()
        .set("gemma3.feed_forward_length", V::Array(vec![V::I32(32), V::I32(-16)]))
        .refused();
    assert_has(&e, &["\"gemma3.feed_forward_length\" is -16"]);
    let e = model()
        .set("gemma3.attention.head_count", V::Array(vec![V::U32(2), V::U32(1)]))
        .refused();
    assert_has(&e, &["\"gemma3.attention.head_count\" is 1", "layer 1 differs"]);
}

#[test]
fn floats_that_are_not_finite_and_positive_are_refused() {
    for x in [0.0, -1e-6, f32::NAN, f32::INFINITY] {
        let e = model()
            .set("gemma3.attention.layer_norm_rms_epsilon", V::F32(x))
            .refused();
        assert_has(&e, &["\"gemma3.attention.layer_norm_rms_epsilon\" is"]);
        let e = model().set("gemma3.rope.freq_base", V::F32(x)).refused();
        assert_has(&e, &["\"gemma3.rope.freq_base\" is"]);
        let e = mmproj()
            .set("clip.vision.attention.layer_norm_epsilon", V::F32(x))
            .refused();
        assert_has(&e, &["\"clip.vision.attention.layer_norm_epsilon\" is"]);
    }
    let e = model().set("gemma3.rope.scaling.factor", V::F32(f32::NAN)).refused();
    assert_has(&e, &["\"gemma3.rope.scaling.factor\" is NaN"]);
    // An unknown rope scaling type trips an assertion in llama.cpp.
    let e = model().set("gemma3.rope.scaling.type", s("cubic")).refused();
    assert_has(&e, &["\"gemma3.rope.scaling.type\" is \"cubic\""]);
}

#[test]
fn vision_hyper_parameters_out_of_range_are_refused() {
    let e = mmproj().set("clip.vision.image_size", V::U32(0)).refused();
    assert_has(&e, &["\"clip.vision.image_size\" is 0"]);
    let e = mmproj().set("clip.vision.patch_size", V::U32(0)).refused();
    assert_has(&e, &["\"clip.vision.patch_size\" is 0"]);
    let e = mmproj().set("clip.vision.patch_size", V::U32(7)).refused();
    assert_has(
        &e,
        &["\"clip.vision.patch_size\" is 7", "divide clip.vision.image_size (64)"],
    );
    let e = mmproj().set("clip.vision.attention.head_count", V::U32(3)).refused();
    assert_has(&e, &["\"clip.vision.attention.head_count\" is 3", "divide"]);
    let e = mmproj().set("clip.vision.projector.scale_factor", V::U32(3)).refused();
    assert_has(&e, &["\"clip.vision.projector.scale_factor\" is 3"]);
    let e = mmproj().set("clip.vision.embedding_length", V::U32(0)).refused();
    assert_has(&e, &["\"clip.vision.embedding_length\" is 0"]);
    let e = mmproj()
        .set("clip.vision.image_std", V::Array(vec![V::F32(0.5); 2]))
        .refused();
    assert_has(&e, &["\"clip.vision.image_std\" has 2 entries, but 3 are needed"]);
    let e = mmproj()
        .set(
            "clip.vision.image_mean",
            V::Array(vec![V::F32(0.5), V::F32(f32::NAN), V::F32(0.5)]),
        )
        .refused();
    assert_has(&e, &["\"clip.vision.image_mean\" is NaN"]);
    let e = mmproj()
        .set("clip.vision.image_std", V::Array(vec![V::F32(0.0); 3]))
        .refused();
    assert_has(&e, &["\"clip.vision.image_std\" is 0"]);
    let e = mmproj().set("clip.use_silu", V::Bool(true)).refused();
    assert_has(&e, &["\"clip.use_silu\""]);
}

#[test]
fn projector_types_other_than_gemma3_are_refused() {
    // §9: a projector type that does not match the mmproj.
    let e = mmproj().set("clip.projector_type", s("mlp")).refused();
    assert_has(
        &e,
        &["\"clip.projector_type\" names the projector type \"mlp\"", "mmproj"],
    );
    let e = mmproj().without("clip.projector_type").refused();
    assert_has(&e, &["clip.projector_type"]);
    let moved = mmproj()
        .without("clip.projector_type")
        .set("clip.vision.projector_type", s("gemma3"));
    check(&moved.header()).unwrap();
}

// ---- the tensor table ----

#[test]
fn unknown_and_negative_ggml_types_are_refused() {
    // §9: negative or unknown ggml types.
    for ty in [4, 31, 43, 1000, u32::MAX] {
        let e = model().tensor("output_norm.weight", &[N_EMBD], ty).refused_anywhere();
        assert_has(&e, &["\"output_norm.weight\""]);
        let e = model().tensor("output_norm.weight", &[N_EMBD], ty).refused();
        assert_has(&e, &[&format!("ggml type {ty}")]);
    }
}

#[test]
fn bad_dimensions_are_refused() {
    let e = model().dims("output_norm.weight", &[0]).refused();
    assert_has(&e, &["tensor \"output_norm.weight\" has a dimension of 0"]);
    let e = model().dims("output_norm.weight", &[N_EMBD, 1, 1, 1, 1]).refused();
    assert_has(&e, &["tensor \"output_norm.weight\" has 5 dimensions"]);
    // Rows that are not whole blocks of their quantised type.
    let e = model().dims("blk.0.ffn_down.weight", &[N_FF + 1, N_EMBD]).refused();
    assert_has(
        &e,
        &[
            "tensor \"blk.0.ffn_down.weight\" has rows of 33 elements",
            "32-element blocks of its type Q8_0",
        ],
    );
    let long = "x".repeat(64);
    let e = model().tensor(&long, &[4], F32).refused();
    assert_has(&e, &[&long, "a name of 64 bytes"]);
}

#[test]
fn element_and_byte_counts_that_overflow_are_refused() {
    // §9: tensor `ne` products overflowing, and the accumulated data size overflowing.
    let e = model().tensor("huge", &[1 << 32, 1 << 32], F32).refused_anywhere();
    assert_has(&e, &["\"huge\""]);
    // The reader is told the file is as long as any file can be, so that only the pre-check stands in the way.
    let mut g = model();
    g.claimed_len = Some(u64::MAX);
    let e = g.clone().tensor("huge", &[1 << 62, 2], F32).refused();
    assert_has(
        &e,
        &["tensor \"huge\" with dimensions [4611686018427387904, 2] is too large"],
    );
    let e = g.clone().tensor("huge", &[1 << 61], F32).refused();
    assert_has(&e, &["tensor \"huge\"", "too large"]);
    // Each tensor fits a 64-bit size, their sum does not.
    let n = (1 << 61) - 8;
    let e = g
        .tensor("a", &[n], F32)
        .tensor("b", &[n], F32)
        .tensor("c", &[n], F32)
        .refused();
    assert_has(&e, &["tensor \"b\"", "past what a 64-bit file offset can hold"]);
    let mut g = model().tensor("a", &[1 << 60], F32);
    g.claimed_len = Some(1 << 20);
    let e = g.refused_anywhere();
    assert_has(&e, &["\"a\"", "truncated"]);
}

#[test]
fn alignment_that_is_zero_not_a_power_of_two_or_huge_is_refused() {
    // §9: alignment 0, not a power of two, or huge.
    for a in [0, 3, 48, 1 << 21, 1 << 31] {
        let e = model()
            .set("general.alignment", V::U32(a))
            .parse()
            .unwrap_err()
            .to_string();
        assert_has(&e, &[PATH, "\"general.alignment\"", &format!("is {a}")]);
    }
    let e = model()
        .set("general.alignment", V::U64(32))
        .parse()
        .unwrap_err()
        .to_string();
    assert_has(&e, &["\"general.alignment\"", "not a u32"]);
    for a in [1, 64, 1 << 20] {
        check(&model().set("general.alignment", V::U32(a)).header()).unwrap();
    }
}

#[test]
fn misaligned_overlapping_and_gapped_offsets_are_refused() {
    // §9: overlapping or misaligned offsets.
    let e = model().offset("output_norm.weight", 4).refused_anywhere();
    assert_has(
        &e,
        &["tensor \"output_norm.weight\" starts at data offset 4, not a multiple of the alignment 32"],
    );
    let e = model().offset("output_norm.weight", 0).refused();
    assert_has(
        &e,
        &["tensor \"output_norm.weight\" starts at data offset 0, inside tensor \"token_embd.weight\""],
    );
    let e = model().offset("blk.1.ffn_up.weight", 0).refused();
    assert_has(
        &e,
        &[
            "tensor \"blk.1.ffn_up.weight\"",
            "inside tensor \"blk.1.ffn_gate.weight\"",
        ],
    );
    let e = model().offset("token_embd.weight", 64).refused();
    assert_has(
        &e,
        &["tensor \"token_embd.weight\" starts at data offset 64, but llama.cpp expects 0"],
    );
}

#[test]
fn tensor_data_past_the_end_of_the_file_is_refused() {
    // §9: offset + size past the end of the file (reads that leak memory).
    let mut g = model();
    g.extra_len = -1;
    let e = g.parse().unwrap_err().to_string();
    assert_has(&e, &[PATH, "\"blk.1.post_ffw_norm.weight\"", "truncated"]);
    let e = model().offset("output_norm.weight", 1 << 40).refused_anywhere();
    assert_has(&e, &["\"output_norm.weight\""]);
}

#[test]
fn header_faults_from_the_reader_name_the_file() {
    // §9: n_kv or n_tensors overflowing size computations.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(u64::MAX.to_le_bytes());
    bytes.extend(u64::MAX.to_le_bytes());
    let e = GgufHeader::parse(bytes.as_slice(), 160, Path::new(PATH))
        .unwrap_err()
        .to_string();
    assert_has(&e, &[PATH, "claims"]);
    // §9: a string length of 1 GiB in a 160-byte file.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend((1u64 << 30).to_le_bytes());
    bytes.resize(160, b'a');
    let e = GgufHeader::parse(bytes.as_slice(), 160, Path::new(PATH))
        .unwrap_err()
        .to_string();
    assert_has(&e, &[PATH, "needs 1073741824 more bytes"]);
    // §9: array counts beyond the file, and nested arrays.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    put_str(&mut bytes, "tokenizer.ggml.tokens");
    bytes.extend(9u32.to_le_bytes());
    bytes.extend(8u32.to_le_bytes());
    bytes.extend((1u64 << 40).to_le_bytes());
    let len = bytes.len() as u64;
    let e = GgufHeader::parse(bytes.as_slice(), len, Path::new(PATH))
        .unwrap_err()
        .to_string();
    assert_has(&e, &[PATH, "\"tokenizer.ggml.tokens\"", "more than the file can hold"]);
    let nested = V::Array(vec![V::Array(vec![V::Array(vec![V::Array(vec![V::U32(1)])])])]);
    let e = model()
        .set("tokenizer.ggml.merges", nested)
        .parse()
        .unwrap_err()
        .to_string();
    assert_has(&e, &["\"tokenizer.ggml.merges\"", "nested too deeply"]);
    let e = model()
        .set("tokenizer.ggml.merges", V::Array(vec![V::Array(vec![s("a b")])]))
        .refused();
    assert_has(&e, &["\"tokenizer.ggml.merges\"", "an array of strings"]);
}

// ---- the tensors an architecture needs ----

#[test]
fn missing_model_tensors_are_named() {
    for name in [
        "token_embd.weight",
        "output_norm.weight",
        "blk.0.attn_q.weight",
        "blk.1.attn_k_norm.weight",
        "blk.1.ffn_down.weight",
        "blk.1.post_ffw_norm.weight",
    ] {
        let e = model().without(name).refused();
        assert_has(
            &e,
            &[&format!("tensor {name:?} is missing; llama.cpp's gemma3 needs it")],
        );
    }
}

#[test]
fn model_tensors_of_the_wrong_shape_are_named() {
    let e = model().dims("blk.0.attn_q.weight", &[16, 4]).refused();
    assert_has(
        &e,
        &["tensor \"blk.0.attn_q.weight\" has shape [16, 4], but the metadata implies [8, 8]"],
    );
    let e = model().dims("blk.1.attn_k.weight", &[N_EMBD, 8]).refused();
    assert_has(
        &e,
        &["tensor \"blk.1.attn_k.weight\" has shape [8, 8], but the metadata implies [8, 4]"],
    );
    let e = model().dims("blk.0.attn_q_norm.weight", &[8]).refused();
    assert_has(&e, &["\"blk.0.attn_q_norm.weight\""]);
    let e = model().dims("output_norm.weight", &[N_EMBD, 2]).refused();
    assert_has(&e, &["\"output_norm.weight\""]);
    // Trailing dimensions of 1 are the same shape, as in llama.cpp.
    check(&model().dims("output_norm.weight", &[N_EMBD, 1, 1]).header()).unwrap();
    // A wrongly shaped fused QKV is named too.
    let e = model().tensor("blk.0.attn_qkv.weight", &[N_EMBD, 99], F32).refused();
    assert_has(&e, &["\"blk.0.attn_qkv.weight\""]);
}

#[test]
fn missing_projector_tensors_are_named() {
    // These two loaded silently before: clip.cpp treats them as optional.
    for name in [
        "v.blk.0.attn_q.weight",
        "v.patch_embd.weight",
        "v.position_embd.weight",
        "v.blk.1.ln2.weight",
        "v.blk.1.ffn_up.weight",
        "v.post_ln.weight",
        "mm.input_projection.weight",
        "mm.soft_emb_norm.weight",
    ] {
        let e = mmproj().without(name).refused();
        assert_has(&e, &[&format!("tensor {name:?} is missing; llama.cpp's clip needs it")]);
    }
}

#[test]
fn projector_tensors_of_the_wrong_shape_are_named() {
    // This one aborted the process in clip's warmup (GGML_ASSERT ggml_can_mul_mat).
    let e = mmproj().dims("v.blk.0.attn_q.weight", &[64, 16]).refused();
    assert_has(
        &e,
        &["tensor \"v.blk.0.attn_q.weight\" has shape [64, 16], but the metadata implies [32, 32]"],
    );
    let e = mmproj().dims("v.blk.0.attn_q.bias", &[16]).refused();
    assert_has(&e, &["\"v.blk.0.attn_q.bias\""]);
    let e = mmproj()
        .dims("v.patch_embd.weight", &[PATCH, PATCH, 1, V_EMBD * 3])
        .refused();
    assert_has(&e, &["\"v.patch_embd.weight\""]);
    let e = mmproj().dims("v.position_embd.weight", &[V_EMBD, 32]).refused();
    assert_has(&e, &["\"v.position_embd.weight\"", "[32, 64]"]);
    let e = mmproj().dims("mm.input_projection.weight", &[V_EMBD, N_EMBD]).refused();
    assert_has(
        &e,
        &["\"mm.input_projection.weight\" has shape [32, 8], but the metadata implies [32, 32]"],
    );
    // The output width is the tensor's own (clip.cpp reads it there); whether it fits the model is checked apart.
    check(
        &mmproj()
            .dims("mm.input_projection.weight", &[N_EMBD * 2, V_EMBD])
            .header(),
    )
    .unwrap();
    let e = mmproj().tensor("v.blk.0.attn_q_norm.weight", &[7], F32).refused();
    assert_has(&e, &["\"v.blk.0.attn_q_norm.weight\""]);
    check(&mmproj().tensor("v.blk.0.attn_q_norm.weight", &[16], F32).header()).unwrap();
}

/// A header as large as a 27B model's (62 layers, a 262K vocabulary) is checked in well under a second.
#[test]
fn a_large_header_is_checked_quickly() {
    let n_vocab = 262_144u64;
    let tokens: Vec<V> = (0..n_vocab).map(|i| s(&format!("t{i}"))).collect();
    let mut g = model()
        .set("gemma3.block_count", V::U32(62))
        .set("gemma3.attention.sliding_window_pattern", V::U32(6))
        .set("tokenizer.ggml.tokens", V::Array(tokens))
        .set("tokenizer.ggml.scores", V::Array(vec![V::F32(0.0); n_vocab as usize]))
        .set("tokenizer.ggml.token_type", V::Array(vec![V::I32(1); n_vocab as usize]))
        .dims("token_embd.weight", &[N_EMBD, n_vocab]);
    let layer0: Vec<_> = g
        .tensors
        .iter()
        .filter(|t| t.0.starts_with("blk.0."))
        .cloned()
        .collect();
    for i in 2..62 {
        for (name, dims, ty) in &layer0 {
            g = g.tensor(&name.replacen("blk.0.", &format!("blk.{i}."), 1), dims, *ty);
        }
    }
    let h = g.header();
    let started = std::time::Instant::now();
    check(&h).unwrap();
    assert!(started.elapsed().as_secs_f64() < 2.0, "{:?}", started.elapsed());
}

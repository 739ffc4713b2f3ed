//! Fuzz target `gguf`: the GGUF header reader ([`GgufHeader::parse`]) on in-memory files, and what is built on a
//! header it accepts (model facts, the retyped copy plan used by `quantize`).
//!
//! Owns: a generator of small VALID GGUF files (every metadata type, arrays nested up to the reader's limit, empty
//! arrays and strings, several tensors of known and unknown types, with or without `general.alignment`), which
//! the byte mutators then damage. Checks: no panic, a refusal is a typed [`GgufError`], and an accepted header
//! keeps its promises (the data it describes lies inside the file, the metadata spans tile the header in order,
//! a copy planned from it reads back the same).

use std::path::Path;

use super::{Bytes, Mutator, Rng};
use crate::gguf::{GgufError, GgufHeader, RetypedLayout};

/// Builds one GGUF value of type `ty` (nested arrays up to `depth` 2, the reader's limit).
fn value(rng: &mut Rng, out: &mut Vec<u8>, ty: u32, depth: u32) {
    match ty {
        0 | 1 | 7 => out.push(rng.byte() & if ty == 7 { 1 } else { 0xff }),
        2 | 3 => out.extend_from_slice(&(rng.next_u64() as u16).to_le_bytes()),
        4 | 5 => out.extend_from_slice(&(rng.next_u64() as u32).to_le_bytes()),
        6 => out.extend_from_slice(&(rng.below(1 << 20) as f32 / 7.0).to_le_bytes()),
        8 => string(out, rng.pick(WORDS)),
        9 => {
            let inner = if depth >= 2 {
                rng.below(9) as u32
            } else {
                rng.below(13) as u32
            };
            let inner = if depth >= 2 && inner == 9 { 8 } else { inner };
            let n = rng.small(6);
            out.extend_from_slice(&inner.to_le_bytes());
            out.extend_from_slice(&(n as u64).to_le_bytes());
            for _ in 0..n {
                value(rng, out, inner, depth + 1);
            }
        }
        10 | 11 => out.extend_from_slice(&rng.next_u64().to_le_bytes()),
        _ => out.extend_from_slice(&(rng.below(1 << 30) as f64 / 3.0).to_le_bytes()),
    }
}

const WORDS: &[&str] = &[
    "",
    "gemma3",
    "clip",
    "MedGemma 4B",
    "gemma3.embedding_length",
    "<start_of_turn>",
    "é😀\u{0}",
    "tokenizer.ggml.tokens",
];

const KEYS: &[&str] = &[
    "general.architecture",
    "general.name",
    "general.file_type",
    "gemma3.embedding_length",
    "gemma3.context_length",
    "gemma3.block_count",
    "gemma3.attention.head_count",
    "gemma3.rope.scaling.factor",
    "clip.vision.image_size",
    "clip.vision.patch_size",
    "clip.vision.projection_dim",
    "clip.vision.projector.scale_factor",
    "clip.projector_type",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.chat_template",
];

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A valid GGUF: a few metadata entries of random types under distinct keys, a few tensors of distinct names,
/// then the data every tensor needs.
pub fn valid_gguf(rng: &mut Rng) -> Vec<u8> {
    let mut kv = Vec::new();
    let mut n_kv = 0u64;
    let mut keys: Vec<String> = Vec::new();
    let alignment = match rng.below(4) {
        0 => Some(rng.pick(&[1u32, 8, 16, 32, 64])),
        _ => None,
    };
    if let Some(a) = alignment {
        string(&mut kv, "general.alignment");
        kv.extend_from_slice(&4u32.to_le_bytes());
        kv.extend_from_slice(&a.to_le_bytes());
        n_kv += 1;
        keys.push("general.alignment".into());
    }
    if rng.one_in(2) {
        string(&mut kv, "general.architecture");
        kv.extend_from_slice(&8u32.to_le_bytes());
        string(&mut kv, rng.pick(&["gemma3", "clip", "llama", ""]));
        n_kv += 1;
        keys.push("general.architecture".into());
    }
    for i in 0..rng.small(8) {
        let key = format!(
            "{}{}",
            rng.pick(KEYS),
            if rng.one_in(3) { format!(".{i}") } else { String::new() }
        );
        if keys.contains(&key) {
            continue;
        }
        string(&mut kv, &key);
        let ty = rng.below(13) as u32;
        kv.extend_from_slice(&ty.to_le_bytes());
        value(rng, &mut kv, ty, 0);
        n_kv += 1;
        keys.push(key);
    }
    let align = u64::from(alignment.unwrap_or(32));
    let mut tensors = Vec::new();
    let mut data_len = 0u64;
    let n_tensors = rng.small(4);
    for i in 0..n_tensors {
        // At most 2^13 elements, so that the data stays small.
        let mut dims: Vec<u64> = (0..rng.range(1, 4))
            .map(|_| rng.pick(&[1u64, 2, 3, 32, 64, 256]))
            .collect();
        if dims.iter().product::<u64>() > 1 << 13 {
            dims = vec![rng.pick(&[32u64, 256])];
        }
        let ty = rng.pick(&[0u32, 1, 2, 8, 12, 30, 5, 99]);
        let info = crate::gguf::GgufTensorInfo {
            name: format!("blk.{i}.w"),
            dims: dims.clone(),
            ggml_type: ty,
            offset: data_len,
        };
        string(&mut tensors, &info.name);
        tensors.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in &dims {
            tensors.extend_from_slice(&d.to_le_bytes());
        }
        tensors.extend_from_slice(&ty.to_le_bytes());
        tensors.extend_from_slice(&data_len.to_le_bytes());
        data_len = (data_len + info.n_bytes().unwrap_or(0)).div_ceil(align) * align;
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&rng.range(2, 3).to_le_bytes()[..4]);
    out.extend_from_slice(&(n_tensors as u64).to_le_bytes());
    out.extend_from_slice(&n_kv.to_le_bytes());
    out.extend_from_slice(&kv);
    out.extend_from_slice(&tensors);
    while !(out.len() as u64).is_multiple_of(align) {
        out.push(0);
    }
    out.resize(out.len() + data_len as usize, 0);
    out
}

/// Words worth writing into a GGUF: the magic, type tags, common keys.
const DICTIONARY: &[&[u8]] = &[
    b"GGUF",
    b"\x09\x00\x00\x00",
    b"\x08\x00\x00\x00",
    b"\x0c\x00\x00\x00",
    b"\x0d\x00\x00\x00",
    b"general.alignment",
    b"general.architecture",
    b"\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"\xc3\x28",
];

fn generate(rng: &mut Rng) -> Bytes {
    let mut bytes = valid_gguf(rng);
    if !rng.one_in(10) {
        let corpus = [valid_gguf(rng)];
        let m = Mutator {
            dictionary: DICTIONARY,
            corpus: &corpus,
            big_endian: false,
        };
        m.mutate(rng, &mut bytes);
    }
    Bytes(bytes)
}

fn check(input: &Bytes) -> String {
    let bytes = &input.0;
    let path = Path::new("fuzz.gguf");
    let header = match GgufHeader::parse(bytes.as_slice(), bytes.len() as u64, path) {
        Ok(header) => header,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    GgufError::NotGguf { .. } | GgufError::Version { .. } | GgufError::Damaged { .. }
                ),
                "an in-memory parse cannot fail with {e:?}"
            );
            assert!(e.to_string().contains("fuzz.gguf"), "the error names the file: {e}");
            return format!("refused: {}", super::variant(&e, "what"));
        }
    };
    // The reader's checks hold for every header it accepts; the pre-check then refuses with an error naming the file.
    check_accepted(&header, bytes);
    match crate::gguf_check::check(&header) {
        Ok(()) => "accepted".into(),
        Err(e) => {
            assert!(e.to_string().contains("fuzz.gguf"), "the error names the file: {e}");
            "accepted, refused by the pre-check".into()
        }
    }
}

/// What an accepted header promises.
fn check_accepted(header: &GgufHeader, bytes: &[u8]) {
    let len = bytes.len() as u64;
    assert_eq!(header.file_len, len);
    assert!(header.data_end() <= len, "the data lies inside the file");
    assert!(header.data_offset <= len);
    assert_eq!(header.data_offset % header.alignment(), 0);
    assert_eq!(
        header.kv_spans.len(),
        header.metadata.len(),
        "one span per key, no duplicates"
    );
    let mut at = 24;
    for span in &header.kv_spans {
        assert_eq!(span.start, at, "spans tile the metadata in file order");
        assert!(span.end > span.start && span.end <= header.data_offset);
        at = span.end;
    }
    let mut names = std::collections::HashSet::new();
    for t in &header.tensors {
        assert!(names.insert(&t.name), "tensor names are unique");
        assert!(t.checked_n_elements().is_some());
        assert!(t.dims.len() <= 8);
    }
    // What `info`, `batch`'s sidecar and the engine's checks read from a header.
    let info = crate::model_info::GgufInfo::from_header(header);
    let _ = info.lines().render();
    let _ = crate::model_info::is_quantized(header);
    let _ = crate::model_info::check_headers_fit(header, header);
    for value in header.metadata.values() {
        let _ = (value.as_u64(), value.as_f64(), value.as_str(), value.as_bool());
    }
    check_retyped_copy(header, bytes);
}

/// `quantize` plans a copy with the same metadata and new tensor types: with the same types, the copy must read
/// back with the same keys, values and tensor table.
fn check_retyped_copy(header: &GgufHeader, bytes: &[u8]) {
    let types: Vec<u32> = header.tensors.iter().map(|t| t.ggml_type).collect();
    if header.tensors.iter().any(|t| t.n_bytes().is_none()) {
        return;
    }
    let mut kv = |s: &crate::gguf::KvSpan| Ok(bytes[s.start as usize..s.end as usize].to_vec());
    let plan = RetypedLayout::plan(header, &mut kv, &[], &types).expect("every type is known");
    let end = plan
        .offsets
        .iter()
        .zip(&plan.sizes)
        .map(|(o, s)| o + s)
        .max()
        .unwrap_or(0);
    if end > 1 << 24 {
        return;
    }
    let mut copy = plan.header.clone();
    copy.resize(copy.len() + end as usize, 0);
    let back = GgufHeader::parse(copy.as_slice(), copy.len() as u64, Path::new("copy.gguf"))
        .unwrap_or_else(|e| panic!("the planned copy does not read back: {e}"));
    // Values compare by their bytes (a float may be NaN, which is not equal to itself).
    let entries = |h: &GgufHeader, b: &[u8]| -> Vec<Vec<u8>> {
        h.kv_spans
            .iter()
            .map(|s| b[s.start as usize..s.end as usize].to_vec())
            .collect()
    };
    assert_eq!(entries(&back, &copy), entries(header, bytes));
    let table = |h: &GgufHeader| -> Vec<(String, Vec<u64>, u32)> {
        h.tensors
            .iter()
            .map(|t| (t.name.clone(), t.dims.clone(), t.ggml_type))
            .collect()
    };
    assert_eq!(table(&back), table(header));
}

#[test]
fn gguf() {
    // The generator's files are valid before mutation.
    let mut rng = Rng::new(super::seed());
    for _ in 0..200 {
        let bytes = valid_gguf(&mut rng);
        let header = GgufHeader::parse(bytes.as_slice(), bytes.len() as u64, Path::new("seed.gguf"))
            .unwrap_or_else(|e| panic!("a generated file is invalid: {e}\n{:?}", Bytes(bytes.clone())));
        check_accepted(&header, &bytes);
    }
    super::run("gguf", 1, generate, check);
}

/// Found while fuzzing: a header's counts and lengths are only checked against the file's length, and the reader
/// allocates for them before reading: in a large file (a 16 GB model), a damaged tensor count or string length
/// made it ask for terabytes, and the process aborted ("memory allocation of 4398046511104 bytes failed") instead
/// of reporting a damaged file. The fuzz target cannot reach it (its files are in memory, so their claimed length is
/// their real one).
#[test]
fn counts_in_a_large_file_do_not_allocate_what_they_claim() {
    let claimed_len = 64u64 << 30;
    let mut tensors = b"GGUF".to_vec();
    tensors.extend_from_slice(&3u32.to_le_bytes());
    tensors.extend_from_slice(&claimed_len.to_le_bytes()); // n_tensors: no more than the file's length
    tensors.extend_from_slice(&0u64.to_le_bytes());
    let mut key = b"GGUF".to_vec();
    key.extend_from_slice(&3u32.to_le_bytes());
    key.extend_from_slice(&0u64.to_le_bytes());
    key.extend_from_slice(&1u64.to_le_bytes());
    key.extend_from_slice(&(claimed_len - 40).to_le_bytes()); // a key as long as the rest of the file
    for header in [tensors, key] {
        let r = GgufHeader::parse(header.as_slice(), claimed_len, Path::new("large.gguf"));
        assert!(matches!(r, Err(GgufError::Damaged { .. })), "{r:?}");
    }
}

//! A gemma3 model: the hyper-parameters `llama-model.cpp` (`load_hparams`) and `models/gemma3.cpp` read, and the
//! tensors with the shapes they imply.

use super::meta::{is_layer_flag, out_of_range, Meta};
use super::tensors::Tensors;
use super::{tokenizer, Fault, MAX_LAYERS};
use crate::gguf::GgufValue;

/// The rope scaling types llama.cpp knows; any other string trips an assertion in `load_hparams`.
const ROPE_SCALING_TYPES: [&str; 4] = ["none", "linear", "yarn", "longrope"];

pub(super) fn check(m: &Meta, tensors: &Tensors) -> Result<(), Fault> {
    let k = |s: &str| format!("gemma3.{s}");
    let n_layer = m
        .u32_in(
            &k("block_count"),
            true,
            1,
            MAX_LAYERS,
            "llama.cpp's LLAMA_MAX_LAYERS is 512",
        )?
        .unwrap_or(1);
    let n_embd = m
        .u32_in(
            &k("embedding_length"),
            true,
            1,
            i32::MAX as u32,
            "a positive 32-bit count",
        )?
        .unwrap_or(1) as u64;
    m.u32_in(
        &k("context_length"),
        true,
        1,
        i32::MAX as u32,
        "llama.cpp reports it as a 32-bit int",
    )?;
    let n_head = m
        .per_layer(&k("attention.head_count"), true, n_layer, 1)?
        .unwrap_or_default();
    let n_head_kv = m
        .per_layer(&k("attention.head_count_kv"), false, n_layer, 1)?
        .unwrap_or_else(|| n_head.clone());
    for (i, (&q, &kv)) in n_head.iter().zip(&n_head_kv).enumerate() {
        if !q.is_multiple_of(kv) {
            return Err(out_of_range(
                &k("attention.head_count_kv"),
                kv,
                format!("it must divide gemma3.attention.head_count ({q} in layer {i})"),
            ));
        }
    }
    let n_ff = m
        .per_layer(&k("feed_forward_length"), true, n_layer, 1)?
        .unwrap_or_default();
    // llama.cpp's gemma3 sizes every layer's tensors by layer 0's values but builds each layer's graph with its own
    // (a reshape that asserts when they differ): per-layer arrays must hold one value.
    for (key, values) in [
        ("attention.head_count", &n_head),
        ("attention.head_count_kv", &n_head_kv),
        ("feed_forward_length", &n_ff),
    ] {
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| **v != values[0]) {
            return Err(out_of_range(
                &k(key),
                v,
                format!(
                    "gemma3 layers all have the same value (layer 0 has {}, layer {i} differs)",
                    values[0]
                ),
            ));
        }
    }
    let (n_head, n_head_kv, n_ff) = (n_head[0] as u64, n_head_kv[0] as u64, n_ff[0] as u64);
    let default_head = n_embd / n_head;
    let head_k = m
        .u32_in(
            &k("attention.key_length"),
            false,
            1,
            u32::MAX,
            "a head has at least one dimension",
        )?
        .map_or(default_head, u64::from);
    let head_v = m
        .u32_in(
            &k("attention.value_length"),
            false,
            1,
            u32::MAX,
            "a head has at least one dimension",
        )?
        .map_or(default_head, u64::from);
    if head_k == 0 {
        return Err(out_of_range(
            &k("embedding_length"),
            n_embd,
            format!("it gives heads of 0 dimensions with {n_head} heads; set gemma3.attention.key_length"),
        ));
    }
    m.u32_in(
        &k("rope.dimension_count"),
        false,
        1,
        head_k as u32,
        "rope turns at most the key length's dimensions",
    )?;
    for key in [
        "attention.key_length_swa",
        "attention.value_length_swa",
        "rope.dimension_count_swa",
    ] {
        m.u32_in(&k(key), false, 1, u32::MAX, "a head has at least one dimension")?;
    }
    m.f32_finite(&k("attention.layer_norm_rms_epsilon"), true, true)?;
    m.f32_finite(&k("rope.freq_base"), false, true)?;
    m.f32_finite(&k("rope.freq_base_swa"), false, true)?;
    if let Some(t) = m.string(&k("rope.scaling.type"), false)? {
        if !ROPE_SCALING_TYPES.contains(&t) {
            return Err(out_of_range(
                &k("rope.scaling.type"),
                format!("{t:?}"),
                "llama.cpp knows only none, linear, yarn and longrope (it aborts on others)",
            ));
        }
    }
    for key in [
        "rope.scaling.factor",
        "rope.scale_linear",
        "rope.scaling.attn_factor",
        "final_logit_softcapping",
        "attn_logit_softcapping",
    ] {
        m.f32_finite(&k(key), false, false)?;
    }
    m.u32(&k("rope.scaling.original_context_length"), false)?;
    m.bool(&k("rope.scaling.finetuned"))?;
    m.u32_in(
        &k("attention.sliding_window"),
        false,
        1,
        u32::MAX,
        "Gemma 3's local layers attend to that many tokens; 0 would leave them nothing",
    )?;
    match m.get(&k("attention.sliding_window_pattern"), false)? {
        Some(GgufValue::Array(_)) => {
            let key = k("attention.sliding_window_pattern");
            let flags = m
                .array(&key, false, "a u32 or an array of bool, one per layer", is_layer_flag)?
                .unwrap_or_default();
            if flags.len() != n_layer as usize {
                return Err(Fault::ArrayLength {
                    key,
                    len: flags.len(),
                    expected: n_layer.into(),
                    why: "one per layer, as block_count says".into(),
                });
            }
        }
        _ => {
            m.u32(&k("attention.sliding_window_pattern"), false)?;
        }
    }
    // gemma3 has no experts and no next-token layers; llama.cpp asserts on inconsistent expert counts.
    for key in [
        "expert_count",
        "expert_used_count",
        "expert_group_count",
        "expert_group_used_count",
        "nextn_predict_layers",
    ] {
        if let Some(n) = m.u32(&k(key), false)? {
            if n != 0 {
                return Err(out_of_range(&k(key), n, "gemma3 has none, so it must be 0"));
            }
        }
    }
    let vocab_size = m.u32(&k("vocab_size"), false)?;
    let n_vocab = tokenizer::check(m)? as u64;
    if let Some(v) = vocab_size {
        if u64::from(v) != n_vocab {
            return Err(out_of_range(
                &k("vocab_size"),
                v,
                format!("tokenizer.ggml.tokens holds {n_vocab} tokens"),
            ));
        }
    }

    let t = tensors;
    t.need("token_embd.weight", &[n_embd, n_vocab])?;
    t.need("output_norm.weight", &[n_embd])?;
    t.allow("output.weight", &[n_embd, n_vocab])?;
    let (q, kv_k, kv_v) = (head_k * n_head, head_k * n_head_kv, head_v * n_head_kv);
    for i in 0..n_layer {
        let b = |s: &str| format!("blk.{i}.{s}.weight");
        t.need(&b("attn_norm"), &[n_embd])?;
        if t.has(&b("attn_qkv")) {
            t.need(&b("attn_qkv"), &[n_embd, q + kv_k + kv_v])?;
        } else {
            t.need(&b("attn_q"), &[n_embd, q])?;
            t.need(&b("attn_k"), &[n_embd, kv_k])?;
            t.need(&b("attn_v"), &[n_embd, kv_v])?;
        }
        t.need(&b("attn_output"), &[q, n_embd])?;
        t.need(&b("post_attention_norm"), &[n_embd])?;
        t.need(&b("attn_k_norm"), &[head_k])?;
        t.need(&b("attn_q_norm"), &[head_k])?;
        t.need(&b("ffn_norm"), &[n_embd])?;
        t.need(&b("ffn_gate"), &[n_embd, n_ff])?;
        t.need(&b("ffn_up"), &[n_embd, n_ff])?;
        t.need(&b("ffn_down"), &[n_ff, n_embd])?;
        t.need(&b("post_ffw_norm"), &[n_embd])?;
    }
    Ok(())
}

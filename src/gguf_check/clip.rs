//! A vision projector (architecture clip) with Gemma 3's projector: the keys `tools/mtmd/clip.cpp` reads (its
//! getters abort on a wrong type), and the tensors `load_tensors` and `models/siglip.cpp` use, with their shapes.

use super::meta::{is_f32, is_i32, out_of_range, Meta};
use super::tensors::Tensors;
use super::{Fault, MAX_LAYERS};

pub(super) fn check(m: &Meta, tensors: &Tensors) -> Result<(), Fault> {
    // clip.cpp's getters abort on a value of the wrong type, so every key it reads is checked here.
    for key in [
        "clip.has_vision_encoder",
        "clip.has_audio_encoder",
        "clip.has_gen_audio_encoder",
        "clip.use_gelu",
        "clip.use_silu",
    ] {
        m.bool(key)?;
    }
    if m.bool("clip.use_gelu")? == Some(true) && m.bool("clip.use_silu")? == Some(true) {
        return Err(out_of_range(
            "clip.use_silu",
            true,
            "clip.use_gelu is true too, and a projector has one activation",
        ));
    }
    m.i32("clip.minicpmv_version")?;
    m.u32("clip.minicpmv_query_num", false)?;
    m.string("clip.vision.mm_patch_merge_type", false)?;
    let mut projector = ("clip.projector_type", m.string("clip.projector_type", false)?);
    if projector.1.is_none_or(str::is_empty) {
        projector = (
            "clip.vision.projector_type",
            m.string("clip.vision.projector_type", false)?,
        );
    }
    match projector.1 {
        Some("gemma3") => {}
        Some(other) => {
            return Err(Fault::UnknownProjector {
                key: projector.0.into(),
                value: other.into(),
            })
        }
        None => {
            return Err(Fault::MissingKey {
                key: "clip.projector_type".into(),
            })
        }
    }

    let v = |s: &str| format!("clip.vision.{s}");
    let int = i32::MAX as u32;
    let positive = "a positive 32-bit count";
    let n_embd = m.u32_in(&v("embedding_length"), true, 1, int, positive)?.unwrap_or(1) as u64;
    let n_head = m
        .u32_in(&v("attention.head_count"), true, 1, int, positive)?
        .unwrap_or(1) as u64;
    let d_head = match m.u32_in(&v("attention.head_dim"), false, 1, int, positive)? {
        Some(d) => d as u64,
        None if !n_embd.is_multiple_of(n_head) => {
            return Err(out_of_range(
                &v("attention.head_count"),
                n_head,
                format!("it must divide clip.vision.embedding_length ({n_embd})"),
            ))
        }
        None => n_embd / n_head,
    };
    let n_head_kv = m
        .u32_in(&v("attention.head_count_kv"), false, 1, int, positive)?
        .map_or(n_head, u64::from);
    if !n_head.is_multiple_of(n_head_kv) {
        return Err(out_of_range(
            &v("attention.head_count_kv"),
            n_head_kv,
            format!("it must divide clip.vision.attention.head_count ({n_head})"),
        ));
    }
    let n_ff = m
        .u32_in(&v("feed_forward_length"), true, 1, int, positive)?
        .unwrap_or(1) as u64;
    let n_layer = m
        .u32_in(
            &v("block_count"),
            true,
            1,
            MAX_LAYERS,
            "a vision encoder of 1 to 512 layers",
        )?
        .unwrap_or(1);
    m.u32_in(&v("projection_dim"), true, 1, int, positive)?;
    m.f32_finite(&v("attention.layer_norm_epsilon"), true, true)?;
    let image_size = m.u32_in(&v("image_size"), true, 1, int, positive)?.unwrap_or(1) as u64;
    let patch_size = m.u32_in(&v("patch_size"), true, 1, int, positive)?.unwrap_or(1) as u64;
    if !image_size.is_multiple_of(patch_size) {
        return Err(out_of_range(
            &v("patch_size"),
            patch_size,
            format!("it must divide clip.vision.image_size ({image_size})"),
        ));
    }
    let per_side = image_size / patch_size;
    // clip.cpp's default for gemma3 is 4 patches a side per image token.
    let merge = m
        .u32_in(&v("projector.scale_factor"), false, 1, int, positive)?
        .map_or(4, u64::from);
    if !per_side.is_multiple_of(merge) {
        return Err(out_of_range(
            &v("projector.scale_factor"),
            merge,
            format!("it must divide the {per_side} patches a side (clip.vision.image_size / clip.vision.patch_size)"),
        ));
    }
    for key in [v("image_mean"), v("image_std")] {
        let values = m.array(&key, true, "an array of 3 f32", is_f32)?.unwrap_or_default();
        if values.len() != 3 {
            return Err(Fault::ArrayLength {
                key,
                len: values.len(),
                expected: 3,
                why: "one per colour channel".into(),
            });
        }
        let is_std = key.ends_with("std");
        for x in values {
            let x = x.as_f64().unwrap_or(f64::NAN);
            if !x.is_finite() || (is_std && x == 0.0) {
                let rule = if is_std {
                    "each entry must be a finite number other than 0"
                } else {
                    "each entry must be a finite number"
                };
                return Err(out_of_range(&key, x, rule));
            }
        }
    }
    for key in [v("feature_layer"), v("image_grid_pinpoints")] {
        m.array(&key, false, "an array of i32", is_i32)?;
    }

    let t = tensors;
    t.need("v.patch_embd.weight", &[patch_size, patch_size, 3, n_embd])?;
    t.allow("v.patch_embd.bias", &[n_embd])?;
    t.need("v.position_embd.weight", &[n_embd, per_side * per_side])?;
    let (q, kv) = (n_head * d_head, n_head_kv * d_head);
    for i in 0..n_layer {
        let b = |s: &str, what: &str| format!("v.blk.{i}.{s}.{what}");
        if t.has(&b("attn_qkv", "weight")) {
            t.need(&b("attn_qkv", "weight"), &[n_embd, q + 2 * kv])?;
            t.allow(&b("attn_qkv", "bias"), &[q + 2 * kv])?;
        } else {
            for (name, width) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)] {
                t.need(&b(name, "weight"), &[n_embd, width])?;
                t.allow(&b(name, "bias"), &[width])?;
            }
        }
        t.need(&b("attn_out", "weight"), &[q, n_embd])?;
        t.allow(&b("attn_out", "bias"), &[n_embd])?;
        // clip.cpp asserts a per-head q/k norm's width; a whole-width one is applied before the heads split.
        for name in ["attn_q_norm", "attn_k_norm"] {
            let width = if t
                .by_name
                .get(b(name, "weight").as_str())
                .is_some_and(|x| x.dims.first() == Some(&d_head))
            {
                d_head
            } else {
                n_embd
            };
            t.allow(&b(name, "weight"), &[width])?;
        }
        for name in ["ln1", "ln2"] {
            t.need(&b(name, "weight"), &[n_embd])?;
            t.allow(&b(name, "bias"), &[n_embd])?;
        }
        // Older conversions swap ffn_up and ffn_down; clip.cpp swaps them back when ffn_down is [n_embd, n_ff].
        let swapped = t
            .by_name
            .get(b("ffn_down", "weight").as_str())
            .is_some_and(|x| x.dims.first() == Some(&n_embd) && n_embd != n_ff);
        let (up, down) = if swapped {
            ("ffn_down", "ffn_up")
        } else {
            ("ffn_up", "ffn_down")
        };
        t.need(&b(up, "weight"), &[n_embd, n_ff])?;
        t.allow(&b(up, "bias"), &[n_ff])?;
        t.need(&b(down, "weight"), &[n_ff, n_embd])?;
        t.allow(&b(down, "bias"), &[n_embd])?;
    }
    t.need("v.post_ln.weight", &[n_embd])?;
    t.allow("v.post_ln.bias", &[n_embd])?;
    // Its output width is whatever the tensor holds: clip.cpp takes the width from it, not from
    // clip.vision.projection_dim, and mtmd refuses (cleanly) a width other than the text model's; the fit of the
    // two files is checked apart (model_info::check_headers_fit).
    let projector = "mm.input_projection.weight";
    let width = t
        .by_name
        .get(projector)
        .and_then(|x| x.dims.first().copied())
        .unwrap_or(1);
    t.need(projector, &[width, n_embd])?;
    t.need("mm.soft_emb_norm.weight", &[n_embd])?;
    Ok(())
}

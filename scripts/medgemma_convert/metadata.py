"""The GGUF key/value metadata of the text model (arch `gemma3`) and of the mmproj (arch `clip`, projector `gemma3`).

Owns: which keys llama.cpp reads and their types, all written explicitly from the checkpoint rather than left to
llama.cpp's defaults. Must not decide anything the config checks have not already validated.
"""

from __future__ import annotations

from gguf import GGUFWriter, LlamaFileType
from gguf.constants import GGML_QUANT_VERSION, Keys

from .config import TextParams, VisionParams
from .tokenizer import Vocabulary

TEXT_ARCH = "gemma3"
CLIP_ARCH = "clip"
FILE_TYPES = {"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16, "bf16": LlamaFileType.MOSTLY_BF16,
              "q8_0": LlamaFileType.MOSTLY_Q8_0}


def add_text_metadata(w: GGUFWriter, name: str, outtype: str, t: TextParams, vocab: Vocabulary) -> None:
    w.add_name(name)
    w.add_file_type(FILE_TYPES[outtype])
    w.add_quantization_version(GGML_QUANT_VERSION)
    w.add_context_length(t.context_length)
    w.add_embedding_length(t.hidden_size)
    w.add_block_count(t.block_count)
    w.add_feed_forward_length(t.ffn_length)
    w.add_head_count(t.head_count)
    w.add_head_count_kv(t.head_count_kv)
    w.add_key_length(t.head_dim)
    w.add_value_length(t.head_dim)
    w.add_rope_dimension_count(t.head_dim)
    w.add_layer_norm_rms_eps(t.rms_eps)
    w.add_rope_freq_base(t.rope.freq_base)
    w.add_string(Keys.Rope.SCALING_TYPE.format(arch=TEXT_ARCH), t.rope.scaling_type)
    if t.rope.scaling_type != "none":
        w.add_rope_scaling_factor(t.rope.scaling_factor)
    if t.sliding_window > 0:
        w.add_sliding_window(t.sliding_window)
        w.add_rope_freq_base_swa(t.rope.freq_base_swa)
    w.add_sliding_window_pattern([bool(x) for x in t.swa_layers])
    if t.final_logit_softcapping:
        w.add_final_logit_softcapping(t.final_logit_softcapping)
    add_vocabulary(w, vocab)


def add_vocabulary(w: GGUFWriter, vocab: Vocabulary) -> None:
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(vocab.tokens)
    w.add_token_scores(vocab.scores)
    w.add_token_types(vocab.types)
    ids = vocab.special_ids
    w.add_bos_token_id(ids["bos"])
    w.add_eos_token_id(ids["eos"])
    if "unk" in ids:
        w.add_unk_token_id(ids["unk"])
    if "pad" in ids:
        w.add_pad_token_id(ids["pad"])
    if "eot" in ids:
        w.add_eot_token_id(ids["eot"])
    w.add_add_bos_token(vocab.add_bos)
    w.add_add_eos_token(vocab.add_eos)
    w.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.chat_template:
        w.add_chat_template(vocab.chat_template)


def add_mmproj_metadata(w: GGUFWriter, name: str, outtype: str, v: VisionParams) -> None:
    w.add_name(name)
    w.add_file_type(FILE_TYPES[outtype])
    w.add_quantization_version(GGML_QUANT_VERSION)
    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type("gemma3")
    w.add_vision_image_size(v.image_size)
    w.add_vision_patch_size(v.patch_size)
    w.add_vision_embedding_length(v.hidden_size)
    w.add_vision_feed_forward_length(v.ffn_length)
    w.add_vision_block_count(v.block_count)
    w.add_vision_head_count(v.head_count)
    w.add_vision_attention_layernorm_eps(v.layer_norm_eps)
    w.add_vision_projection_dim(v.projection_dim)
    w.add_vision_image_mean(list(v.image_mean))
    w.add_vision_image_std(list(v.image_std))
    w.add_vision_use_gelu(True)
    w.add_vision_projector_scale_factor(v.scale_factor)

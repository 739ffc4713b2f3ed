#!/usr/bin/env python3
"""Make the tiny MedGemma test fixtures and their Hugging Face reference outputs.

What it writes (under --out, default tests/fixtures):

  hf/tiny-medgemma-mm/     Gemma3ForConditionalGeneration (SigLIP tower + projector + Gemma 3 text model), laid out
                           like google/medgemma-4b-it: config.json, model.safetensors (bf16), tokenizer.model,
                           tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json,
                           preprocessor_config.json, processor_config.json.
  hf/tiny-medgemma-text/   Gemma3ForCausalLM laid out like google/medgemma-27b-text-it (no processor files).
  hf/tiny-medgemma-gentle/ the same structure, config and tokenizer as tiny-medgemma-text, but a gain-neutral
                           initialisation (see below), for testing quantised weight types.
  images/chest.png         64x64 synthetic chest-X-ray-like picture (grey, stored as RGB).
  images/skin.png          64x64 synthetic skin-lesion picture (colour).
  reference/tiny-medgemma-mm.json, reference/tiny-medgemma-text.json, reference/tiny-medgemma-gentle.json
                           prompt ids, last-position logits, greedy continuations and top-1 margins computed by
                           transformers in float32 (eager attention) from the bf16 checkpoints.
  reference/README.md      what the files are and how to regenerate them.

It needs torch, transformers, sentencepiece, safetensors, numpy and pillow (scripts/requirements-fixtures.txt):
a developer-machine tool. Its outputs are committed; the Rust tests never run it. Nothing is downloaded: the tokenizer
is trained here on an embedded corpus, the weights are drawn from fixed seeds and the images are drawn with numpy.

Reruns with the same library versions write the same bytes (fixed seeds, one torch thread, deterministic algorithms,
sorted JSON, PNGs without metadata).

Choices that matter (and why):
  * Geometry: vocab 512, hidden 64, FFN 128, 8 layers (5 sliding : 1 global: layer 5 global, the others sliding),
    4 query / 2 KV heads, head_dim 16, sliding window 16 (shorter than the long prompts, so the local/global split is
    exercised), rope 1e6 with linear x8 on global layers, 1e4 on local layers. Vision: SigLIP, image 64, patch 8
    (8x8 patches), hidden 32, FFN 64, 2 layers, 2 heads, average-pooled to 4x4 = 16 image tokens. This is what a
    spike found to work through llama.cpp (shared/REFERENCE.md section 7). query_pre_attn_scalar = head_dim, because
    llama.cpp ignores the key and scales by 1/sqrt(head_dim).
  * config.json is written by hand in the transformers 4.5x layout of the real release (rope_scaling,
    rope_local_base_freq, sliding_window_pattern) rather than by transformers 5 (rope_parameters / layer_types), which
    older readers mis-read. The script reloads it and checks the effective rope parameters and layer types.
  * Tensor names follow the real release: mm `language_model.model.*`, `vision_tower.vision_model.*`,
    `multi_modal_projector.*`; text `model.*`. The LM head is tied to the token embedding and is not stored. The
    script reloads each checkpoint and fails on missing, unexpected or mismatched keys.
  * Initialisation gives peaked outputs (a clear top-1 at every step, so an engine with small numeric differences
    still picks the same tokens): embeddings N(0, 0.5^2), linear weights N(0, 1/fan_in), Gemma norms (used as 1 + w)
    post-attention/post-FFN about 6, final about 4, q/k about 0.7, the others about 0; a projector with large
    weights (std 1) so the image changes the output. Logit std is then about 20.
    With purely Gaussian embeddings the top two of 512 logits are often nearly tied: over ~100 checked steps (5 cases
    x 20 tokens) the smallest margin was 0.003-0.2 for every seed tried. So each token-embedding row is also scaled
    by exp(N(0, EMBED_ROW_LOG_STD^2)) (log-normal row norms: with tied embeddings a few large rows stand out at the
    top, which widens the top-1 gap). 0.25 is a compromise: larger values (0.5-0.8) give margins of 1-28 but greedy
    paths that repeat one token 20 times (a copy of the input embedding through the residual stream), which would hide
    position/KV-cache bugs; 0 gives varied paths but near-ties. Seeds are then searched in order: the first whose
    margins (logit gap first - second, at the last prompt position and at every greedy step) are all
    >= MIN_MARGIN, whose greedy paths are not a single repeated token, and (mm) whose image matters is kept.
    The blank-image check compares the image case's logits with the same prompt on a uniform grey image.
    Note that scaling the final norm would raise margins trivially but scales numeric differences alike: the margin
    relative to the logit std is what protects a test, and the README records both.
  * The gentle checkpoint (tiny-medgemma-gentle) drops all of that gain: every Gemma norm weight is 0 (so each
    RMSNorm is identity-scaled, 1 + 0), linear weights N(0, 1/fan_in), token embeddings N(0, 1) with no log-normal
    row scaling (only the x0.05 shrink of the never-generated tokens' rows, as above), its own seed
    (GENTLE_SEED_BASE) and no seed search or margin requirement. The high-gain fixtures amplify rounding so much that
    a q8_0 GGUF of them is far from f32 (logit cosine about 0.96); this one keeps quantisation error near its
    arithmetic size, so a quantised type can be tested with a bound derived from its rounding. Its margins are
    recorded but may be small, so compare its greedy ids only where the margins allow. With embeddings N(0, 1) the
    input embedding (times sqrt(hidden) = 8 on input) dominates the residual stream over the 16 unit-RMS sublayer
    outputs, so with the tied head every greedy path repeats the last prompt token ("\\n") with a margin of about 30
    and a logit std of about 8.5; GENTLE_EMBED_STD = 0.125 (scaled input RMS 1) would give varied paths, a logit std
    of about 1 and margins of 0.01-0.8.
  * Tokenizer: SentencePiece BPE, vocab 512, byte fallback, identity normalisation, no dummy prefix, split digits,
    whitespace-only pieces allowed, like Gemma's. Specials keep Gemma's order where Gemma has one: pad 0, eos 1,
    bos 2, unk 3, <mask> 4; then <start_of_turn>, <end_of_turn>, <start_of_image>, <end_of_image>,
    <image_soft_token> as user-defined pieces (5-9), and "\\n", "\\n\\n" as user-defined pieces (10, 11) so that
    newlines never merge with text (Gemma has both as single tokens; the processor puts "\\n\\n" around each image).
    tokenizer.json is produced by transformers' own SentencePiece conversion and then the Gemma specials are marked
    special, as in the real tokenizer.json/tokenizer_config.json (transformers 5's save_pretrained would write neither
    tokenizer.model nor added_tokens_decoder).
  * Prompts: the chat template (Gemma 3's, verbatim) is rendered to text and tokenised with add_special_tokens=False,
    so the one <bos> is the template's. A user message with images is rendered as [image]*n + [text]: images before
    the text within that message (the runtime's layout); the processor then replaces each <start_of_image> with
    "\\n\\n<start_of_image>" + 16 x <image_soft_token> + "<end_of_image>\\n\\n", which the script verifies.
  * Images are square so the reference processor (which stretches) and llama.cpp's mtmd (which pads) agree.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------------- geometry

VOCAB_SIZE = 512
TEXT_GEOMETRY: dict[str, Any] = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
    head_dim=16, sliding_window=16, sliding_window_pattern=6, max_position_embeddings=2048)
IMAGE_SIZE = 64
VISION_GEOMETRY: dict[str, Any] = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_channels=3,
    image_size=IMAGE_SIZE, patch_size=8)
EMBED_ROW_LOG_STD = 0.25         # token-embedding row norms are log-normal: see init_weights
MM_TOKENS_PER_IMAGE = 16          # 8x8 patches average-pooled 2x2 -> 4x4
MAX_NEW_TOKENS = 20
MIN_MARGIN = 0.5                  # required top-1 margin at every checked step
MIN_DISTINCT = 2                  # a greedy path must not be one token repeated (it would hide position bugs)
SEEDS_TO_TRY = 60                 # seeds searched (in order) for one that meets MIN_MARGIN

# Seeds: the text-only model's text weights differ from the mm model's.
MM_SEED_BASE = 1000
TEXT_SEED_BASE = 2000
GENTLE_SEED_BASE = 3000           # the gain-neutral text-only checkpoint: this one seed, no search
GENTLE_EMBED_STD = 1.0            # its token-embedding std (Gemma scales embeddings by sqrt(hidden) = 8 on input)

# --------------------------------------------------------------------------------------------------- tokenizer

# Gemma's special tokens in Gemma's order (pad 0, eos 1, bos 2, unk 3, mask 4); the rest follow as user-defined pieces.
PAD, EOS, BOS, UNK, MASK = "<pad>", "<eos>", "<bos>", "<unk>", "<mask>"
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"
BOI, EOI, IMAGE_TOKEN = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
USER_DEFINED = [MASK, START_OF_TURN, END_OF_TURN, BOI, EOI, IMAGE_TOKEN, "\n", "\n\n"]
SPECIAL_TOKENS = [PAD, EOS, BOS, UNK, MASK, START_OF_TURN, END_OF_TURN, BOI, EOI, IMAGE_TOKEN]

# Gemma 3's chat template, verbatim from google/gemma-3-4b-it and google/medgemma-4b-it (tokenizer_config.json).
CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n")

# Training text for the tokenizer: English with medical vocabulary, covering the test prompts. Paragraphs are separated
# by blank lines; each paragraph is one training sentence.
CORPUS = """\
The patient is a 64-year-old man with a history of hypertension and type 2 diabetes who presents with fever, cough and shortness of breath for three days.
On examination the temperature is 38.9 C, the heart rate is 104 beats per minute and the oxygen saturation is 91% on room air.
The chest X-ray shows a right lower lobe consolidation with air bronchograms and a small pleural effusion.

What are the symptoms of pneumonia? The common symptoms of pneumonia are fever, chills, cough with sputum, chest pain when breathing and shortness of breath.
Older patients may present with confusion and a low body temperature instead of fever.

You are a helpful medical assistant. You are an expert radiologist. You are an expert dermatologist.
Describe this chest X-ray. Describe this skin lesion. Compare these two images.
The lungs are clear. The heart size is normal. There is no pneumothorax. There is no pleural effusion. The mediastinum is not widened.

Findings: the cardiac silhouette is within normal limits. The lungs are well expanded. There is patchy opacity in the left lower lobe, which may represent atelectasis or pneumonia.
Impression: left lower lobe opacity, clinical correlation is recommended. A follow-up radiograph in six weeks is suggested.

The skin lesion is an irregular pigmented macule of 7 mm with an uneven border and two colours. The differential diagnosis includes melanoma and a dysplastic naevus; a biopsy is recommended.
Asymmetry, border irregularity, colour variation, diameter above 6 mm and evolution are the warning signs of melanoma.

Hypertension is treated with lifestyle changes and medicines such as ACE inhibitors, calcium channel blockers and thiazide diuretics.
Diabetes is managed with diet, exercise, metformin and insulin when needed. The blood glucose and the HbA1c should be checked regularly.

What should I do if I have a headache and a stiff neck? A headache with fever and a stiff neck can be a sign of meningitis, which is an emergency: seek medical care now.
How is asthma treated? Asthma is treated with inhaled corticosteroids and a short-acting bronchodilator for symptoms.
What is the first-line treatment? What dose should I take? Is it serious?

The heart, the lungs, the liver, the kidneys and the brain. Blood pressure 150/95 mmHg, pulse 88, respiratory rate 22, SpO2 94%.
Take two tablets of paracetamol 500 mg every six hours as needed for pain or fever, and drink plenty of water.
Antibiotics such as amoxicillin are used for bacterial pneumonia; viral pneumonia usually needs supportive care.
"""

# --------------------------------------------------------------------------------------------------- test cases

SYSTEM_TEXT = "You are a helpful medical assistant."
SYSTEM_IMAGE = "You are an expert radiologist."
LONG_NOTE = (
    "Clinical note: a 64-year-old man with hypertension and type 2 diabetes presents with three days of fever, "
    "productive cough and shortness of breath. Temperature 38.9 C, heart rate 104, respiratory rate 22, blood "
    "pressure 150/95 mmHg, oxygen saturation 91% on room air. The chest X-ray shows a right lower lobe "
    "consolidation with air bronchograms and a small pleural effusion. He takes metformin and an ACE inhibitor. "
    "What is the most likely diagnosis, and what is the first-line treatment?")

MM_CASES: list[dict[str, Any]] = [
    {"name": "short", "messages": [
        {"role": "system", "content": SYSTEM_TEXT},
        {"role": "user", "content": "What are the symptoms of pneumonia?", "images": []}]},
    {"name": "long", "messages": [
        {"role": "user", "content": LONG_NOTE, "images": []}]},
    {"name": "image", "messages": [
        {"role": "system", "content": SYSTEM_IMAGE},
        {"role": "user", "content": "Describe this chest X-ray.", "images": ["images/chest.png"]}]},
    {"name": "two_images", "messages": [
        {"role": "user", "content": "Compare these two images.", "images": ["images/chest.png", "images/skin.png"]}]},
    {"name": "multi_turn", "messages": [
        {"role": "system", "content": SYSTEM_TEXT},
        {"role": "user", "content": "How is asthma treated?", "images": []},
        {"role": "model", "content": "Asthma is treated with inhaled corticosteroids and a short-acting "
                                     "bronchodilator for symptoms."},
        {"role": "user", "content": "What should I do if I have a headache and a stiff neck?", "images": []}]},
]
TEXT_CASES: list[dict[str, Any]] = [c for c in MM_CASES if c["name"] in ("short", "long", "multi_turn")]
BLANK_IMAGE_CASE = "image"        # the case whose logits are compared against a uniform grey image

# --------------------------------------------------------------------------------------------------- helpers


def die(message: str) -> None:
    """Stop with a clear error."""
    print(f"make_fixtures: error: {message}", file=sys.stderr)
    sys.exit(1)


def dump_json(path: Path, value: Any, indent: int | None = 2, sort_keys: bool = True) -> None:
    """Write JSON deterministically (sorted keys unless told, LF, trailing newline)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(value, f, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
        f.write("\n")


def dump_reference(path: Path, value: dict[str, Any]) -> None:
    """A reference file in the schema's key order, each list of numbers on one line."""
    text = json.dumps(value, indent=1, ensure_ascii=False)
    text = re.sub(r"\[\s*([-+0-9.eE]+(?:,\s*[-+0-9.eE]+)*)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]", text)
    if json.loads(text) != value:
        die("reference JSON reformatting changed its content")
    path.write_text(text + "\n", encoding="utf-8", newline="\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write tiny MedGemma-shaped Hugging Face checkpoints, test images and transformers reference "
                    "outputs (see the module docstring).")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"),
                        help="fixture root to write into (default: tests/fixtures)")
    parser.add_argument("--min-margin", type=float, default=MIN_MARGIN,
                        help=f"required top-1 logit margin at every checked step (default: {MIN_MARGIN})")
    return parser.parse_args(argv)


def setup_determinism() -> None:
    """One thread and deterministic kernels, so that reruns write the same bytes."""
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --------------------------------------------------------------------------------------------------- tokenizer files


def train_sentencepiece() -> bytes:
    """Train the SentencePiece BPE model (Gemma-style options) on CORPUS; returns the serialized model."""
    import sentencepiece as spm
    paragraphs = [p for p in CORPUS.split("\n\n") if p.strip()]
    # Each paragraph once as is and once joined by "\n\n" to the next, so the newline pieces are seen in context.
    sentences = paragraphs + [a + "\n\n" + b for a, b in zip(paragraphs, paragraphs[1:])]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, model_type="bpe", vocab_size=VOCAB_SIZE,
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=1.0, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece=PAD, eos_piece=EOS,
        bos_piece=BOS, unk_piece=UNK, user_defined_symbols=USER_DEFINED, num_threads=1, minloglevel=2,
        max_sentence_length=100_000, seed_sentencepiece_size=100_000, shuffle_input_sentence=False)
    return model.getvalue()


def special_ids(sp_model: bytes) -> dict[str, int]:
    """Ids of the special tokens in the trained model; checks Gemma's order for pad/eos/bos/unk."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_proto=sp_model)
    if sp.get_piece_size() != VOCAB_SIZE:
        die(f"tokenizer has {sp.get_piece_size()} pieces, expected {VOCAB_SIZE}")
    ids = {t: sp.piece_to_id(t) for t in SPECIAL_TOKENS}
    if [ids[PAD], ids[EOS], ids[BOS], ids[UNK]] != [0, 1, 2, 3]:
        die(f"unexpected special ids {ids}")
    return ids


def tokenizer_config(ids: dict[str, int], added: list[dict[str, Any]]) -> dict[str, Any]:
    """tokenizer_config.json as in the real release: specials, added_tokens_decoder, chat template, image tokens."""
    decoder = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
               for a in sorted(added, key=lambda a: a["id"])}
    return {
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder,
        "bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK, "mask_token": MASK,
        "boi_token": BOI, "eoi_token": EOI, "image_token": IMAGE_TOKEN,
        "extra_special_tokens": {"boi_token": BOI, "eoi_token": EOI, "image_token": IMAGE_TOKEN},
        "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "model_max_length": 1000000000000000019884624838656, "padding_side": "left",
        "processor_class": "Gemma3Processor", "sp_model_kwargs": None, "spaces_between_special_tokens": False,
        "tokenizer_class": "GemmaTokenizer", "use_default_system_prompt": False}


def write_tokenizer(folder: Path, sp_model: bytes) -> dict[str, int]:
    """tokenizer.model, tokenizer.json (transformers' conversion of it, Gemma specials marked special),
    tokenizer_config.json and special_tokens_map.json; returns the special-token ids."""
    from transformers import AutoTokenizer
    ids = special_ids(sp_model)
    (folder / "tokenizer.model").write_bytes(sp_model)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokenizer.model").write_bytes(sp_model)
        dump_json(Path(tmp) / "tokenizer_config.json", {"tokenizer_class": "GemmaTokenizer", "bos_token": BOS,
                                                        "eos_token": EOS, "pad_token": PAD, "unk_token": UNK,
                                                        "mask_token": MASK})
        converted = AutoTokenizer.from_pretrained(tmp)
        tok_json = json.loads(converted.backend_tokenizer.to_str())
    special_set = set(ids.values())
    for a in tok_json["added_tokens"]:
        a["special"] = a["id"] in special_set
    dump_json(folder / "tokenizer.json", tok_json, indent=None)
    dump_json(folder / "tokenizer_config.json", tokenizer_config(ids, tok_json["added_tokens"]), sort_keys=False)
    dump_json(folder / "special_tokens_map.json", {
        "bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK, "mask_token": MASK,
        "boi_token": BOI, "eoi_token": EOI, "image_token": IMAGE_TOKEN})
    return ids


def check_tokenizer(folder: Path, sp_model: bytes, ids: dict[str, int]) -> None:
    """The transformers tokenizer loaded from the folder must agree with SentencePiece and type the specials right."""
    import sentencepiece as spm
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder)
    sp = spm.SentencePieceProcessor(model_proto=sp_model)
    samples = [CORPUS, LONG_NOTE, "  two  spaces\n\n\nand 12345 émigré 😀", "x\n\n<start_of_image>y"]
    for s in samples:
        if tok(s, add_special_tokens=False).input_ids != sp.encode(s):
            die(f"tokenizer.json and tokenizer.model disagree on {s[:40]!r}")
    for name, i in ids.items():
        if tok.convert_tokens_to_ids(name) != i:
            die(f"token {name} does not map to {i}")
        if not tok.added_tokens_decoder[i].special:
            die(f"token {name} ({i}) is not typed special")
    rendered = tok(f"{START_OF_TURN}user\nhi{END_OF_TURN}", add_special_tokens=False).input_ids
    if rendered[0] != ids[START_OF_TURN] or ids[END_OF_TURN] not in rendered:
        die("<start_of_turn>/<end_of_turn> are not single tokens")


# --------------------------------------------------------------------------------------------------- configs


def text_config(ids: dict[str, int]) -> dict[str, Any]:
    """The Gemma 3 text config in the transformers 4.5x layout of the real release."""
    g = TEXT_GEOMETRY
    return {
        "attention_bias": False, "attention_dropout": 0.0, "attn_logit_softcapping": None,
        "cache_implementation": "hybrid", "final_logit_softcapping": None, "head_dim": g["head_dim"],
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": g["hidden_size"], "initializer_range": 0.02,
        "intermediate_size": g["intermediate_size"], "max_position_embeddings": g["max_position_embeddings"],
        "model_type": "gemma3_text", "num_attention_heads": g["num_attention_heads"],
        "num_hidden_layers": g["num_hidden_layers"], "num_key_value_heads": g["num_key_value_heads"],
        "query_pre_attn_scalar": g["head_dim"], "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000.0,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "rope_theta": 1000000.0,
        "sliding_window": g["sliding_window"], "sliding_window_pattern": g["sliding_window_pattern"],
        "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": VOCAB_SIZE}


def mm_config(ids: dict[str, int]) -> dict[str, Any]:
    """config.json of the multimodal checkpoint (Gemma3ForConditionalGeneration), 4.5x layout."""
    vision = {"attention_dropout": 0.0, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-06,
              "model_type": "siglip_vision_model", "torch_dtype": "bfloat16", "vision_use_head": False,
              **VISION_GEOMETRY}
    return {
        "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": ids[BOI],
        "eoi_token_index": ids[EOI], "eos_token_id": [ids[EOS], ids[END_OF_TURN]],
        "image_token_index": ids[IMAGE_TOKEN], "initializer_range": 0.02,
        "mm_tokens_per_image": MM_TOKENS_PER_IMAGE, "model_type": "gemma3", "text_config": text_config(ids),
        "torch_dtype": "bfloat16", "transformers_version": "4.51.3", "vision_config": vision}


def causal_config(ids: dict[str, int]) -> dict[str, Any]:
    """config.json of the text-only checkpoint (Gemma3ForCausalLM), 4.5x layout like medgemma-27b-text-it."""
    return {"architectures": ["Gemma3ForCausalLM"], "bos_token_id": ids[BOS],
            "eos_token_id": [ids[EOS], ids[END_OF_TURN]], "pad_token_id": ids[PAD],
            "transformers_version": "4.51.3", **text_config(ids)}


def generation_config(ids: dict[str, int]) -> dict[str, Any]:
    """generation_config.json as in the real release (its sampling defaults too; the reference decodes greedily)."""
    return {"bos_token_id": ids[BOS], "cache_implementation": "hybrid", "do_sample": True,
            "eos_token_id": [ids[EOS], ids[END_OF_TURN]], "pad_token_id": ids[PAD], "top_k": 64, "top_p": 0.95,
            "transformers_version": "4.51.3"}


def write_processor_files(folder: Path) -> None:
    """preprocessor_config.json and processor_config.json (Gemma3ImageProcessor at the tiny image size)."""
    dump_json(folder / "preprocessor_config.json", {
        "do_convert_rgb": None, "do_normalize": True, "do_pan_and_scan": False, "do_rescale": True,
        "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Gemma3ImageProcessor",
        "image_seq_length": MM_TOKENS_PER_IMAGE, "image_std": [0.5, 0.5, 0.5], "pan_and_scan_max_num_crops": None,
        "pan_and_scan_min_crop_size": None, "pan_and_scan_min_ratio_to_activate": None,
        "processor_class": "Gemma3Processor", "resample": 2, "rescale_factor": 1 / 255,
        "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}})
    dump_json(folder / "processor_config.json",
              {"image_seq_length": MM_TOKENS_PER_IMAGE, "processor_class": "Gemma3Processor"})


def check_loaded_config(config: Any) -> None:
    """transformers must read the 4.5x layout with the rope scaling and the 5:1 layer pattern intact."""
    text = config.get_text_config()
    rope = text.rope_parameters
    full, local = rope.get("full_attention", {}), rope.get("sliding_attention", {})
    if (full.get("rope_type"), full.get("factor"), full.get("rope_theta")) != ("linear", 8.0, 1000000.0):
        die(f"rope scaling lost on reload: {rope}")
    if local.get("rope_type") != "default" or local.get("rope_theta") != 10000.0:
        die(f"local rope wrong on reload: {rope}")
    expected = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                for i in range(TEXT_GEOMETRY["num_hidden_layers"])]
    if list(text.layer_types) != expected:
        die(f"layer types wrong on reload: {text.layer_types}")
    if text.sliding_window != TEXT_GEOMETRY["sliding_window"] or text.query_pre_attn_scalar != text.head_dim:
        die("sliding window or query_pre_attn_scalar wrong on reload")


# --------------------------------------------------------------------------------------------------- weights


def init_std_or_value(name: str, shape: tuple[int, ...], gentle: bool = False) -> tuple[float, float]:
    """(mean, std) for a parameter, by its transformers 5 module name (see the docstring for the reasons).
    `gentle`: the gain-neutral text-only rules (norms exactly 0, i.e. identity-scaled; embeddings N(0, 1))."""
    if gentle:
        if "vision_tower" in name or "multi_modal_projector" in name:
            die(f"the gentle initialisation is text-only: {name}")
        if name.endswith("embed_tokens.weight"):
            return 0.0, GENTLE_EMBED_STD
        if name.endswith("norm.weight"):                           # every Gemma RMSNorm, used as 1 + w
            return 0.0, 0.0
        if len(shape) == 2:
            return 0.0, 1.0 / math.sqrt(shape[1])
        die(f"no gentle initialisation rule for {name} {shape}")
    if name.endswith("embed_tokens.weight"):
        return 0.0, 0.5
    if "vision_tower" in name:
        if name.endswith("position_embedding.weight"):
            return 0.0, 0.5
        if "layer_norm" in name or "post_layernorm" in name:        # LayerNorm: used as w, not 1 + w
            return (1.0, 0.1) if name.endswith("weight") else (0.0, 0.1)
        if name.endswith("bias"):
            return 0.0, 0.1
        fan_in = int(np.prod(shape[1:]))                            # linear [out, in]; conv [out, c, kh, kw]
        return 0.0, 1.0 / math.sqrt(fan_in)
    if name.endswith("mm_input_projection_weight"):
        return 0.0, 1.0                                             # large: image embeddings must matter
    if name.endswith("mm_soft_emb_norm.weight"):
        return 0.0, 0.1
    if name.endswith(("post_attention_layernorm.weight", "post_feedforward_layernorm.weight")):
        return 6.0, 0.3
    if name.endswith(("q_norm.weight", "k_norm.weight")):
        return 0.7, 0.1
    if name.endswith("norm.weight") and "layers." not in name:     # the final norm
        return 4.0, 0.2
    if name.endswith("layernorm.weight"):                          # input / pre-feedforward norms
        return 0.0, 0.1
    if len(shape) == 2:
        return 0.0, 1.0 / math.sqrt(shape[1])
    die(f"no initialisation rule for {name} {shape}")
    raise AssertionError


def init_weights(model: Any, seed: int, quiet_ids: list[int], gentle: bool = False) -> None:
    """Draw every parameter from a seeded generator, in sorted-name order. Token-embedding rows get log-normal
    norms (see the module docstring). The rows of `quiet_ids` (tokens a real model never generates: <pad>, <bos>,
    <unk>, <mask>, <start_of_image>, <end_of_image>, <image_soft_token>) are shrunk x0.05: with tied embeddings their
    logits stay near 0, so greedy paths never contain them (transformers rejects a generated <image_soft_token>, and
    <unk>/<pad> in a reference text would test nothing useful). <image_soft_token>'s row is never an input either:
    image features replace it. `gentle`: init_std_or_value's gentle rules and no log-normal row scaling (the quiet
    rows are still shrunk)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            mean, std = init_std_or_value(name, tuple(p.shape), gentle)
            if std == 0.0:
                p.fill_(mean)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean)
            if name.endswith("embed_tokens.weight"):
                if not gentle:
                    rows = torch.exp(torch.randn(p.shape[0], 1, generator=gen) * EMBED_ROW_LOG_STD)
                    p.mul_(rows)
                p[quiet_ids] *= 0.05


def release_name(name: str, multimodal: bool) -> str | None:
    """A transformers 5 state-dict key as named in the real release, or None for the tied LM head."""
    if name == "lm_head.weight":
        return None
    if not multimodal:
        return name
    for old, new in [("model.language_model.", "language_model.model."),
                     ("model.vision_tower.vision_model.", "vision_tower.vision_model."),
                     ("model.vision_tower.", "vision_tower.vision_model."),
                     ("model.multi_modal_projector.", "multi_modal_projector.")]:
        if name.startswith(old):
            return new + name[len(old):]
    die(f"unexpected state-dict key {name}")
    raise AssertionError


def save_weights(model: Any, path: Path, multimodal: bool) -> None:
    """model.safetensors in bfloat16 with the real release's tensor names."""
    import torch
    from safetensors.torch import save_file
    tensors = {}
    for name, t in model.state_dict().items():
        new = release_name(name, multimodal)
        if new is not None:
            tensors[new] = t.detach().to(torch.bfloat16).contiguous()
    save_file(tensors, str(path), metadata={"format": "pt"})
    path.chmod(0o644)                                               # safetensors creates it 0600


def load_reference(folder: Path, multimodal: bool) -> Any:
    """Load the bf16 checkpoint in float32 with eager attention; fail on any key problem."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3ForConditionalGeneration
    cls = Gemma3ForConditionalGeneration if multimodal else Gemma3ForCausalLM
    model, info = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager",
                                      output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        die(f"{folder.name}: loading problems {problems}")
    if model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        die(f"{folder.name}: lm_head is not tied to the token embedding")
    check_loaded_config(model.config)
    model.eval()
    return model


def check_weights_roundtrip(model: Any, path: Path, multimodal: bool) -> None:
    """Every stored bf16 tensor must equal the reloaded float32 parameter exactly."""
    import torch
    from safetensors.torch import load_file
    stored = load_file(str(path))
    state = model.state_dict()
    for name, t in state.items():
        new = release_name(name, multimodal)
        if new is None:
            continue
        if not torch.equal(stored[new].to(torch.float32), t):
            die(f"tensor {new} changed on reload")


# --------------------------------------------------------------------------------------------------- images


def chest_image() -> np.ndarray:
    """A chest-X-ray-like grey picture: dark lung fields, bright spine, ribs, heart shadow and diaphragm."""
    n = IMAGE_SIZE
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / (n - 1)
    img = np.full((n, n), 0.55)
    for cx in (0.3, 0.7):                                           # lung fields
        lung = ((x - cx) / 0.17) ** 2 + ((y - 0.5) / 0.33) ** 2 < 1.0
        img[lung] = 0.18 + 0.1 * y[lung]
    for k in range(6):                                              # ribs: bright arcs over the lungs
        arc = np.abs(y - (0.22 + 0.11 * k) - 0.08 * (x - 0.5) ** 2 * 4) < 0.018
        img[arc & (np.abs(x - 0.5) > 0.06)] += 0.25
    img[np.abs(x - 0.5) < 0.05] = 0.85                              # spine
    heart = ((x - 0.56) / 0.14) ** 2 + ((y - 0.62) / 0.13) ** 2 < 1.0
    img[heart] = 0.7
    img[y > 0.84 + 0.05 * np.cos(6 * x)] = 0.8                      # diaphragm / abdomen
    img = np.clip(img, 0.0, 1.0)
    grey = np.round(img * 255).astype(np.uint8)
    return np.stack([grey, grey, grey], axis=-1)


def skin_image() -> np.ndarray:
    """A skin-lesion-like colour picture: skin tone with a gradient, an irregular two-tone brown lesion."""
    n = IMAGE_SIZE
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / (n - 1)
    skin = np.stack([0.93 - 0.1 * y, 0.76 - 0.08 * y, 0.64 - 0.05 * x], axis=-1)
    r = np.hypot(x - 0.52, y - 0.47)
    theta = np.arctan2(y - 0.47, x - 0.52)
    edge = 0.25 + 0.04 * np.sin(5 * theta) + 0.03 * np.cos(3 * theta + 1.0)
    lesion = r < edge
    inner = r < 0.5 * edge
    img = skin.copy()
    img[lesion] = [0.45, 0.28, 0.18]
    img[inner] = [0.25, 0.14, 0.10]
    img[(np.abs(x - 0.2) < 0.01) & (y > 0.7)] = [0.8, 0.3, 0.3]     # a red scratch
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def write_images(folder: Path) -> dict[str, Path]:
    """The test PNGs (no metadata, fixed compression) and their paths by fixture-relative name."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, pixels in (("chest.png", chest_image()), ("skin.png", skin_image())):
        path = folder / name
        Image.fromarray(pixels, mode="RGB").save(path, format="PNG", optimize=False, compress_level=9)
        paths[f"images/{name}"] = path
    return paths


# --------------------------------------------------------------------------------------------------- references


def reference_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runtime's messages in transformers' form: role model -> assistant, images before the text."""
    out = []
    for m in messages:
        role = {"model": "assistant"}.get(m["role"], m["role"])
        images = m.get("images") or []
        if images:
            content: Any = [{"type": "image"} for _ in images] + [{"type": "text", "text": m["content"]}]
        else:
            content = m["content"]
        out.append({"role": role, "content": content})
    return out


def encode_case(case: dict[str, Any], tokenizer: Any, processor: Any, root: Path,
                ids: dict[str, int]) -> dict[str, Any]:
    """Model inputs for a case: the rendered template, tokenised without adding another <bos>."""
    from PIL import Image
    text = tokenizer.apply_chat_template(reference_messages(case["messages"]), tokenize=False,
                                         add_generation_prompt=True)
    images = [Image.open(root / p).convert("RGB") for m in case["messages"] for p in (m.get("images") or [])]
    if images:
        inputs = processor(text=text, images=images, add_special_tokens=False, return_tensors="pt")
    else:
        inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    check_prompt(inputs["input_ids"][0].tolist(), text, len(images), tokenizer, ids)
    return dict(inputs)


def check_prompt(prompt: list[int], text: str, n_images: int, tokenizer: Any, ids: dict[str, int]) -> None:
    """Exactly one <bos>, first; each image expanded to \\n\\n BOI + soft tokens + EOI \\n\\n."""
    if prompt[0] != ids[BOS] or prompt.count(ids[BOS]) != 1:
        die(f"prompt must start with exactly one <bos>: {prompt[:5]}")
    if prompt.count(ids[IMAGE_TOKEN]) != n_images * MM_TOKENS_PER_IMAGE:
        die("wrong number of image soft tokens")
    expanded = text.replace(BOI, f"\n\n{BOI}{IMAGE_TOKEN * MM_TOKENS_PER_IMAGE}{EOI}\n\n")
    if prompt != tokenizer(expanded, add_special_tokens=False).input_ids:
        die("processor's image expansion is not \\n\\n<start_of_image> + soft tokens + <end_of_image>\\n\\n")


def top1_margin(logits: Any) -> float:
    """Gap between the largest and the second largest logit."""
    import torch
    top = torch.topk(logits.float(), 2).values
    return float(top[0] - top[1])


def next_logits(model: Any, inputs: dict[str, Any], ids: list[int]) -> Any:
    """Logits at the last position of prompt + generated ids (full recompute, no cache: simple and exact)."""
    import torch
    feed = dict(inputs)
    n_extra = len(ids) - inputs["input_ids"].shape[1]
    feed["input_ids"] = torch.tensor([ids])
    feed["attention_mask"] = torch.ones(1, len(ids), dtype=torch.long)
    if "token_type_ids" in feed:
        feed["token_type_ids"] = torch.cat([inputs["token_type_ids"],
                                            torch.zeros(1, n_extra, dtype=torch.long)], dim=1)
    with torch.no_grad():
        return model(**feed, use_cache=False).logits[0, -1]


def greedy(model: Any, inputs: dict[str, Any], eos_ids: list[int]) -> tuple[list[int], list[float], Any]:
    """Greedy continuation; returns (new ids, margin at each step, logits at the last prompt position)."""
    import torch
    seq = inputs["input_ids"][0].tolist()
    new: list[int] = []
    margins: list[float] = []
    first = None
    for _ in range(MAX_NEW_TOKENS):
        logits = next_logits(model, inputs, seq + new)
        if first is None:
            first = logits
        margins.append(top1_margin(logits))
        token = int(torch.argmax(logits))
        new.append(token)
        if token in eos_ids:
            break
    check_against_generate(model, inputs, new, eos_ids)
    return new, margins, first


def check_against_generate(model: Any, inputs: dict[str, Any], new: list[int], eos_ids: list[int]) -> None:
    """transformers' own generate (with its KV cache) must give the same greedy ids."""
    import torch
    with torch.no_grad():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW_TOKENS, eos_token_id=eos_ids,
                             pad_token_id=0, top_k=None, top_p=None)
    got = out[0, inputs["input_ids"].shape[1]:].tolist()
    if got != new:
        die(f"generate() disagrees with the step-by-step greedy loop: {got} vs {new}")


def run_case(model: Any, case: dict[str, Any], tokenizer: Any, processor: Any, root: Path,
             ids: dict[str, int]) -> dict[str, Any]:
    """One reference case in the output schema."""
    eos_ids = [ids[EOS], ids[END_OF_TURN]]
    inputs = encode_case(case, tokenizer, processor, root, ids)
    new, margins, last = greedy(model, inputs, eos_ids)
    return {
        "name": case["name"], "messages": case["messages"], "prompt_ids": inputs["input_ids"][0].tolist(),
        "last_logits": [round(float(v), 5) for v in last], "top1_margin_last": round(margins[0], 5),
        "greedy_ids": new, "greedy_text": tokenizer.decode(new, skip_special_tokens=False),
        "min_top1_margin_greedy": round(min(margins), 5)}


def blank_image_effect(model: Any, case: dict[str, Any], tokenizer: Any, processor: Any, root: Path,
                       ids: dict[str, int]) -> tuple[float, bool]:
    """Max abs change of the last-position logits when the case's image is replaced by a uniform grey one, and
    whether the top-1 token changes."""
    import torch
    from PIL import Image
    real = encode_case(case, tokenizer, processor, root, ids)
    with tempfile.TemporaryDirectory() as tmp:
        grey = Path(tmp) / "images"
        grey.mkdir()
        blank_case = json.loads(json.dumps(case))
        for m in blank_case["messages"]:
            for i, p in enumerate(m.get("images") or []):
                Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (128, 128, 128)).save(grey / f"blank{i}.png")
                m["images"][i] = f"images/blank{i}.png"
        blank = encode_case(blank_case, tokenizer, processor, Path(tmp), ids)
    a = next_logits(model, real, real["input_ids"][0].tolist())
    b = next_logits(model, blank, blank["input_ids"][0].tolist())
    return float((a - b).abs().max()), bool(torch.argmax(a) != torch.argmax(b))


# --------------------------------------------------------------------------------------------------- checkpoints


def write_checkpoint(folder: Path, multimodal: bool, seed: int, sp_model: bytes,
                     gentle: bool = False) -> dict[str, int]:
    """One complete checkpoint folder, weights drawn from `seed` (gain-neutral rules if `gentle`); returns the
    special-token ids."""
    import torch
    from transformers import AutoConfig, Gemma3ForCausalLM, Gemma3ForConditionalGeneration
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ids = write_tokenizer(folder, sp_model)
    config = mm_config(ids) if multimodal else causal_config(ids)
    dump_json(folder / "config.json", config)
    dump_json(folder / "generation_config.json", generation_config(ids))
    if multimodal:
        write_processor_files(folder)
    hf_config = AutoConfig.from_pretrained(folder)
    check_loaded_config(hf_config)
    torch.manual_seed(seed)
    cls = Gemma3ForConditionalGeneration if multimodal else Gemma3ForCausalLM
    model = cls._from_config(hf_config, dtype=torch.float32, attn_implementation="eager")
    init_weights(model, seed, [ids[t] for t in (PAD, BOS, UNK, MASK, BOI, EOI, IMAGE_TOKEN)], gentle)
    save_weights(model, folder / "model.safetensors", multimodal)
    return ids


def build_and_reference(folder: Path, root: Path, multimodal: bool, seed_base: int, cases: list[dict[str, Any]],
                        sp_model: bytes, min_margin: float,
                        gentle: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Try seeds until every margin is >= min_margin (and, for mm, the image matters); returns the reference.
    `gentle`: the gain-neutral initialisation, seed_base only, no margin or distinct-token requirement."""
    import torch
    import transformers
    from transformers import AutoProcessor, AutoTokenizer
    for seed in range(seed_base, seed_base + (1 if gentle else SEEDS_TO_TRY)):
        ids = write_checkpoint(folder, multimodal, seed, sp_model, gentle)
        check_tokenizer(folder, sp_model, ids)
        model = load_reference(folder, multimodal)
        check_weights_roundtrip(model, folder / "model.safetensors", multimodal)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        processor = AutoProcessor.from_pretrained(folder) if multimodal else None
        results = [run_case(model, c, tokenizer, processor, root, ids) for c in cases]
        worst = min(min(r["top1_margin_last"], r["min_top1_margin_greedy"]) for r in results)
        distinct = min(len(set(r["greedy_ids"])) - min(MIN_DISTINCT, len(r["greedy_ids"])) for r in results)
        stops = sum(r["greedy_ids"][-1] in (ids[EOS], ids[END_OF_TURN]) for r in results)
        blank = None
        if multimodal:
            case = next(c for c in cases if c["name"] == BLANK_IMAGE_CASE)
            blank = blank_image_effect(model, case, tokenizer, processor, root, ids)
        print(f"{folder.name}: seed {seed}: worst margin {worst:.3f}"
              + (f", blank image max |dlogit| {blank[0]:.2f}, top-1 changes {blank[1]}" if blank else "")
              + ("" if distinct >= 0 else ", a greedy path repeats one token") + f", {stops} case(s) stop")
        if not gentle and (worst < min_margin or distinct < 0 or (blank is not None and blank[0] < 2.0)):
            continue
        reference = {
            "checkpoint": folder.name, "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "image_token_id": ids[IMAGE_TOKEN] if multimodal else None,
            "tokens_per_image": MM_TOKENS_PER_IMAGE if multimodal else None,
            "cases": results}
        stats = {"seed": seed, "ids": ids, "blank": blank,
                 "logit_std": {r["name"]: float(np.std(r["last_logits"])) for r in results}}
        return reference, stats
    die(f"{folder.name}: no seed in {seed_base}..{seed_base + SEEDS_TO_TRY - 1} gives margins >= {min_margin}")
    raise AssertionError


README = """\
# Reference outputs for the tiny MedGemma fixtures

Written by `scripts/make_fixtures.py` (needs the packages in `scripts/requirements-fixtures.txt`; developer machine
only, the outputs are committed):

    /path/to/venv/bin/python scripts/make_fixtures.py            # writes tests/fixtures/

- `../hf/tiny-medgemma-mm/`: Gemma3ForConditionalGeneration with medgemma-4b-it's structure (SigLIP tower,
  16 image tokens per image), bf16 safetensors in the real release's tensor names, config.json in the
  transformers 4.5x layout, tokenizer.model + tokenizer.json + tokenizer_config.json (chat template,
  added_tokens_decoder), processor files.
- `../hf/tiny-medgemma-text/`: Gemma3ForCausalLM with the same tokenizer and different weights.
- `../hf/tiny-medgemma-gentle/`: like tiny-medgemma-text (same structure, config and tokenizer) with a gain-neutral
  initialisation (all norm weights 0, linear N(0, 1/fan_in), embeddings N(0, 1)), for quantised-type tests; its
  reference `tiny-medgemma-gentle.json` has the same schema, but its margins were not required to exceed anything
  (at embedding std 1 the input embedding dominates the residual stream: every greedy path repeats `\\n`).
- `../images/*.png`: 64x64 square synthetic test images.
- `tiny-medgemma-mm.json`, `tiny-medgemma-text.json`: per case, the conversation in the runtime's format
  (roles system/user/model, `images` relative to tests/fixtures/, placed before the text of their message), the
  prompt ids (exactly one `<bos>`; each image as `\\n\\n<start_of_image>` + 16 `<image_soft_token>` +
  `<end_of_image>\\n\\n`), the logits at the last prompt position, the greedy continuation (20 tokens at most, stopping
  on `<eos>` or `<end_of_turn>`, the stop id included) and the smallest top-1 margin (logit gap between first and
  second) at the last position and along the greedy path.
- `tiny-medgemma-mm-interleaved.json`: written by `scripts/processor_prompt_ids.py` (transformers, no torch), not by
  this script: conversations whose messages interleave text and images (content lists), and the processor's prompt
  ids for each (tests/messages.rs). That script first checks that it reproduces `tiny-medgemma-mm.json`'s ids.

The references come from transformers in float32 with eager attention, loading the bf16 checkpoint.
Compare logits with a tolerance (an f32 llama.cpp run differed by about 0.1 at a logit std of about 20 in a spike)
and greedy ids exactly; the margins below say how much numeric slack the greedy paths have.

## Numbers from the last run
"""


def readme_numbers(name: str, ref: dict[str, Any], stats: dict[str, Any]) -> str:
    """The generated part of reference/README.md for one checkpoint."""
    lines = [f"### {name}", "", f"- weight seed: {stats['seed']}",
             "- special-token ids: " + ", ".join(f"`{t}` {i}" for t, i in stats["ids"].items())]
    if stats["blank"]:
        lines.append(f"- image case with a uniform grey image instead of chest.png: max |logit change| "
                     f"{stats['blank'][0]:.2f}, top-1 changes: {stats['blank'][1]}")
    lines += ["", "| case | prompt ids | logit std (last) | top-1 margin (last) | min margin (greedy) | greedy ids |",
              "|---|---|---|---|---|---|"]
    for c in ref["cases"]:
        lines.append(f"| {c['name']} | {len(c['prompt_ids'])} | {stats['logit_std'][c['name']]:.1f} | "
                     f"{c['top1_margin_last']:.3f} | {c['min_top1_margin_greedy']:.3f} | {len(c['greedy_ids'])} |")
    return "\n".join(lines) + "\n"



def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        die(f"{e}; install scripts/requirements-fixtures.txt")
    if transformers.__version__ != "5.23.0":
        print(f"make_fixtures: warning: transformers {transformers.__version__}, references were made with 5.23.0",
              file=sys.stderr)
    setup_determinism()
    transformers.utils.logging.disable_progress_bar()
    root: Path = args.out
    (root / "hf").mkdir(parents=True, exist_ok=True)
    (root / "reference").mkdir(parents=True, exist_ok=True)
    write_images(root / "images")
    sp_model = train_sentencepiece()
    readme = README
    for name, multimodal, seed_base, cases, gentle in (
            ("tiny-medgemma-mm", True, MM_SEED_BASE, MM_CASES, False),
            ("tiny-medgemma-text", False, TEXT_SEED_BASE, TEXT_CASES, False),
            ("tiny-medgemma-gentle", False, GENTLE_SEED_BASE, TEXT_CASES, True)):
        ref, stats = build_and_reference(root / "hf" / name, root, multimodal, seed_base, cases, sp_model,
                                         args.min_margin, gentle)
        dump_reference(root / "reference" / f"{name}.json", ref)
        readme += "\n" + readme_numbers(name, ref, stats)
        for c in ref["cases"]:
            print(f"  {c['name']}: {len(c['prompt_ids'])} prompt ids, margin last {c['top1_margin_last']:.3f}, "
                  f"min greedy {c['min_top1_margin_greedy']:.3f}, greedy {c['greedy_text']!r}")
    (root / "reference" / "README.md").write_text(readme, encoding="utf-8")


if __name__ == "__main__":
    main()

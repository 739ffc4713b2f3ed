#!/usr/bin/env python3
"""Reference prompt token ids for interleaved conversations (text and images in any order within a message), made
by the Hugging Face processor of the tiny multimodal fixture, for tests/messages.rs and tests/series_prompt.rs.

Owns: the interleaved cases (content lists in the Hugging Face and OpenAI shapes, image paths relative to
tests/fixtures), turning them into transformers' form (image parts -> {"type": "image"}, images in prompt order),
rendering them with the checkpoint's own chat template (add_generation_prompt, no second <bos>) and running the
checkpoint's processor (AutoProcessor: Gemma3Processor) on the text and the images; the series cases, laid out
exactly as Google's MedGemma 1.5 CT notebook lays out a series (instruction, each slice's image followed by
"SLICE k", the question), with the slice count of one series of scripts/make_dicom_series_fixtures.py. Before writing, it recomputes
every case of reference/tiny-medgemma-mm.json the same way and stops if one differs from the committed ids, so the
processor here is the one that made the fixtures. Must not: download anything, or load a model (no torch needed).

Writes tests/fixtures/reference/tiny-medgemma-mm-interleaved.json. Needs transformers, jinja2 and pillow (no torch;
a developer-machine tool, like make_fixtures.py; the Rust tests read the committed output):

    python scripts/processor_prompt_ids.py
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
CHECKPOINT = "tiny-medgemma-mm"

CASES: list[dict[str, Any]] = [
    {"name": "slices", "messages": [
        {"role": "system", "content": "You are an expert radiologist."},
        {"role": "user", "content": [
            {"type": "text", "text": "Compare the slices. "},
            {"type": "image", "image": "images/chest.png"},
            {"type": "text", "text": "SLICE 1"},
            {"type": "image_url", "image_url": {"url": "images/skin.png"}},
            {"type": "text", "text": "SLICE 2"},
            {"type": "text", "text": " Which one is abnormal?\n"}]}]},
    {"name": "image_last_then_second_turn", "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Describe this chest X-ray:"},
            {"type": "image", "path": "images/chest.png"}]},
        {"role": "assistant", "content": "The lungs are clear."},
        {"role": "user", "content": [
            {"type": "text", "text": "And this one?"},
            {"type": "image", "url": "images/skin.png"},
            {"type": "text", "text": "Is it the same patient?"}]}]},
]

# A series prompt as `medgemma run --series SOURCE [--system S] [--series-instruction I] QUESTION` builds it from
# a folder of scripts/make_dicom_series_fixtures.py: SOURCE, its modality and how many slices the recipe keeps.
# The image parts repeat one committed picture: the processor's ids depend on the number of images, not their
# pixels (tests/series_prompt.rs checks the pixels separately, against `medgemma preview`).
SERIES_CASES: list[dict[str, Any]] = [
    {"name": "series_mr_10", "source": "mr", "modality": "MR", "slices": 10,
     "system": "You are an expert radiologist.", "instruction": None,
     "question": "Which slice is the brightest?"},
    {"name": "series_ct_multiframe_6", "source": "ct_multiframe.dcm", "modality": "CT", "slices": 6,
     "system": None, "instruction": None, "question": " Is there free fluid? \n"},
    {"name": "series_ct_own_instruction", "source": "disagree", "modality": "CT", "slices": 5,
     "system": None, "instruction": "Look at these five axial slices.", "question": "Describe them."},
]
SLICE_PICTURE = "images/chest.png"


def google_instruction(modality: str) -> str:
    """The text Google's CT notebook puts before the slices (MRI for MR)."""
    kind = "MRI" if modality == "MR" else modality
    return (f"You are an instructor teaching medical students. You are analyzing a contiguous block of {kind} "
            "slices. Please review the slices provided below carefully.")


def series_messages(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation of a series case: [system], one user turn [instruction, (image, "SLICE k")..., question]."""
    instruction = case["instruction"] or google_instruction(case["modality"])
    content: list[dict[str, Any]] = [{"type": "text", "text": instruction}]
    for k in range(1, case["slices"] + 1):
        content += [{"type": "image", "image": SLICE_PICTURE}, {"type": "text", "text": f"SLICE {k}"}]
    content.append({"type": "text", "text": case["question"]})
    system = [{"role": "system", "content": case["system"]}] if case["system"] else []
    return [*system, {"role": "user", "content": content}]


def die(message: str) -> None:
    print(f"processor_prompt_ids.py: {message}", file=sys.stderr)
    sys.exit(1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write the Hugging Face processor's prompt token ids for the "
                                                 "interleaved test conversations.")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="the fixtures folder (default: %(default)s)")
    return parser.parse_args(argv)


def image_path(part: dict[str, Any]) -> str:
    """The path of an image part in one of the shapes medgemma reads (local paths only here)."""
    if part["type"] == "image_url":
        url = part["image_url"]
        value = url["url"] if isinstance(url, dict) else url
    else:
        value = next((part[k] for k in ("image", "path", "url") if k in part), None)
    if not isinstance(value, str) or ":" in value:
        die(f"image part {part!r}: give a path relative to the fixtures folder")
    return value


def to_transformers(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Messages in transformers' form (role model -> assistant; "images" before the text; image parts as
    {"type": "image"}), and the image paths in prompt order."""
    out, images = [], []
    for number, m in enumerate(messages, 1):
        role = {"model": "assistant"}.get(m["role"], m["role"])
        content = m.get("content", "")
        if isinstance(content, str):
            paths = list(m.get("images") or [])
            images += paths
            if paths:
                content = [{"type": "image"} for _ in paths] + [{"type": "text", "text": content}]
        else:
            parts = []
            for part in content:
                if part.get("type") == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif part.get("type") in ("image", "image_url"):
                    images.append(image_path(part))
                    parts.append({"type": "image"})
                else:
                    die(f"message {number}: part type {part.get('type')!r} is not supported here")
            content = parts
        out.append({"role": role, "content": content})
    return out, images


def prompt_ids(processor: Any, fixtures: Path, messages: list[dict[str, Any]]) -> list[int]:
    """The processor's input_ids for a conversation, as make_fixtures.py computes them."""
    from PIL import Image
    hf_messages, paths = to_transformers(messages)
    tokenizer = processor.tokenizer
    text = tokenizer.apply_chat_template(hf_messages, tokenize=False, add_generation_prompt=True)
    if paths:
        images = [Image.open(fixtures / p).convert("RGB") for p in paths]
        ids = processor(text=text, images=images, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = ids[0] if ids and isinstance(ids[0], list) else ids
    return [int(i) for i in ids]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import transformers
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(args.fixtures / "hf" / CHECKPOINT)
    committed = json.loads((args.fixtures / "reference" / f"{CHECKPOINT}.json").read_text())
    for case in committed["cases"]:
        if prompt_ids(processor, args.fixtures, case["messages"]) != case["prompt_ids"]:
            die(f"case {case['name']}: this processor's ids differ from reference/{CHECKPOINT}.json "
                f"(made with transformers {committed['transformers_version']})")
    tokenizer = processor.tokenizer
    reference = {
        "checkpoint": CHECKPOINT, "transformers_version": transformers.__version__,
        "image_token_id": tokenizer.convert_tokens_to_ids(tokenizer.image_token),
        "cases": [{**case, "prompt_ids": prompt_ids(processor, args.fixtures, case["messages"])} for case in CASES],
        "series_cases": [{**case, "messages": series_messages(case),
                          "prompt_ids": prompt_ids(processor, args.fixtures, series_messages(case))}
                         for case in SERIES_CASES]}
    out = args.fixtures / "reference" / f"{CHECKPOINT}-interleaved.json"
    out.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out} ({len(CASES)} cases, {len(SERIES_CASES)} series cases; the {len(committed['cases'])} "
          "committed cases reproduced)")


if __name__ == "__main__":
    main()

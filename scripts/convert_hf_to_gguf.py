#!/usr/bin/env python3
"""Convert a Hugging Face MedGemma (Gemma 3) checkpoint to GGUF for llama.cpp.

Writes OUT_DIR/<name>-<type>.gguf (arch gemma3) and, for Gemma3ForConditionalGeneration checkpoints,
OUT_DIR/mmproj-<name>-<mmproj type>.gguf (arch clip, projector gemma3). Needs numpy and gguf only (see
scripts/requirements.txt); tensors are streamed, so a 27B checkpoint converts within a few GiB of RAM.

Example:
    python scripts/convert_hf_to_gguf.py models/medgemma-4b-it --outtype q8_0 --outdir models/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from medgemma_convert import ConversionError  # noqa: E402
from medgemma_convert.checkpoint import list_tensors  # noqa: E402
from medgemma_convert.config import load_config  # noqa: E402
from medgemma_convert.metadata import CLIP_ARCH, TEXT_ARCH, add_mmproj_metadata, add_text_metadata  # noqa: E402
from medgemma_convert.tensors import plan_tensors  # noqa: E402
from medgemma_convert.tokenizer import load_vocabulary  # noqa: E402
from medgemma_convert.writer import clean_up_on_sigterm, progress, write_gguf  # noqa: E402

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
MMPROJ_OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a Hugging Face MedGemma / Gemma 3 checkpoint (Gemma3ForConditionalGeneration or "
                    "Gemma3ForCausalLM, safetensors) to GGUF for llama.cpp.")
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder with config.json, tokenizer files and "
                        "model.safetensors (or model.safetensors.index.json and its shards)")
    parser.add_argument("--outtype", choices=OUTTYPES, required=True,
                        help="tensor type of the text model; 1-D tensors (norms) always stay f32, and q8_0 falls "
                             "back to f16 for tensors whose rows are not a multiple of 32")
    parser.add_argument("--outdir", type=Path, required=True, help="folder for the GGUF files (created if missing)")
    parser.add_argument("--mmproj-outtype", choices=MMPROJ_OUTTYPES, default=None,
                        help="tensor type of the vision projector file's matrices (default: f32, which encodes "
                             "images fastest on CPUs; f16 halves the file); the patch and position embeddings and 1-D tensors stay f32, q8_0 falls back "
                             "to f16 for rows that are not a multiple of 32 and for mm.input_projection.weight")
    parser.add_argument("--name", default=None,
                        help="model name for general.name and the file names (default: the checkpoint folder name)")
    return parser.parse_args(argv)


def output_paths(args: argparse.Namespace, name: str, mmproj_type: str) -> tuple[Path, Path]:
    return (args.outdir / f"{name}-{args.outtype}.gguf", args.outdir / f"mmproj-{name}-{mmproj_type}.gguf")


def refuse_overwriting_inputs(checkpoint: Path, outputs: list[Path]) -> None:
    inputs = {p.resolve() for p in checkpoint.iterdir()}
    for path in outputs:
        if path.resolve() in inputs:
            raise ConversionError(f"output {path} would overwrite a file of the checkpoint; choose another --outdir")


def convert(args: argparse.Namespace) -> list[Path]:
    checkpoint: Path = args.checkpoint
    if not checkpoint.is_dir():
        raise ConversionError(f"checkpoint folder {checkpoint} does not exist")
    name = args.name or checkpoint.absolute().name
    # F32 by default: on CPUs it encodes images fastest of all types (README, "Vision projector types").
    mmproj_type = args.mmproj_outtype or "f32"
    model_path, mmproj_path = output_paths(args, name, mmproj_type)

    progress(f"reading {checkpoint}")
    cfg = load_config(checkpoint, progress)
    vocab = load_vocabulary(checkpoint, cfg.text.vocab_size, progress)
    text_plans, vision_plans = plan_tensors(list_tensors(checkpoint), cfg, args.outtype, mmproj_type, progress)
    outputs = [model_path] + ([mmproj_path] if cfg.vision else [])
    args.outdir.mkdir(parents=True, exist_ok=True)
    refuse_overwriting_inputs(checkpoint, outputs)

    temporaries: list[Path] = []
    try:
        temporaries.append(write_gguf(model_path, TEXT_ARCH,
                                      lambda w: add_text_metadata(w, name, args.outtype, cfg.text, vocab), text_plans))
        if cfg.vision:
            vision = cfg.vision
            temporaries.append(write_gguf(mmproj_path, CLIP_ARCH,
                                          lambda w: add_mmproj_metadata(w, name, mmproj_type, vision), vision_plans))
        for tmp, final in zip(temporaries, outputs):
            os.replace(tmp, final)
    finally:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
    return outputs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clean_up_on_sigterm()
    try:
        outputs = convert(args)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    for path in outputs:
        progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

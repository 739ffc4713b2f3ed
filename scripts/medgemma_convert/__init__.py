"""Conversion of Hugging Face MedGemma (Gemma 3) checkpoints to GGUF for llama.cpp.

The package owns reading a checkpoint (config, tokenizer, safetensors shards) without torch, checking that llama.cpp
would compute the same model, and streaming the tensors into a text GGUF (arch `gemma3`) and, for multimodal
checkpoints, an mmproj GGUF (arch `clip`, projector `gemma3`). It must not load a whole checkpoint into memory.
"""


class ConversionError(Exception):
    """An input the converter refuses; the message is printed as `error: <message>` without a traceback."""

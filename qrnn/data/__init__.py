"""Real data for the qrnn experiments: PTB (char/word), text8, and the Free Spoken Digit Dataset.

Files come from the mirror folder ``$QRNN_DATA`` (or ``root=``), then the user cache
(``$QRNN_CACHE``, else ``$XDG_CACHE_HOME/qrnn`` / ``~/.cache/qrnn``), then a verified download.
Every file is checked against its known hash; data files are never part of this repository.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from .batching import LMBatches, lm_batches, num_lm_batches, padding_mask, speech_batches
from .sources import (
    ChecksumError,
    DataNotFoundError,
    DownloadError,
    FileSpec,
    UnknownDatasetError,
    cache_dir,
    data_root,
)
from .speech import (
    FSDD_SPEAKERS,
    AudioError,
    FeatureConfig,
    SpeechData,
    SpeechSplit,
    compute_features,
    load_fsdd,
    read_wav,
)
from .text import FILES, TEXT8_SPLIT, TextCorpus, load_text, ptb_word_to_char

DATASETS = ("ptb-char", "ptb-word", "text8", "fsdd")


def known_files() -> list[FileSpec]:
    """Every data file whose hash qrnn knows: the text corpora and the FSDD recordings."""
    from .speech import RECORDINGS, fsdd_manifest, parse_manifest

    fsdd = [FileSpec(f"{RECORDINGS}/{n}", d) for n, d in parse_manifest(fsdd_manifest())]
    return [*FILES.values(), *fsdd]


def verify_data(root=None, cache=None, progress: bool = True) -> dict[str, list]:
    """Hash every local copy of :func:`known_files` again (``qrnn data verify``): the mirror
    (``root`` or ``$QRNN_DATA``) and the cache; :func:`qrnn.data.sources.verify_files`."""
    from .sources import verify_files

    return verify_files(known_files(), data_root(root), cache_dir(cache), progress)


def load(name: str, **kwargs):
    """``load_text`` for the text corpora, ``load_fsdd`` for ``"fsdd"``."""
    if name == "fsdd":
        return load_fsdd(**kwargs)
    return load_text(name, **kwargs)


__all__ = [
    "DATASETS",
    "FILES",
    "FSDD_SPEAKERS",
    "TEXT8_SPLIT",
    "AudioError",
    "ChecksumError",
    "DataNotFoundError",
    "DownloadError",
    "FeatureConfig",
    "FileSpec",
    "LMBatches",
    "SpeechData",
    "SpeechSplit",
    "TextCorpus",
    "UnknownDatasetError",
    "cache_dir",
    "compute_features",
    "data_root",
    "known_files",
    "lm_batches",
    "load",
    "load_fsdd",
    "load_text",
    "num_lm_batches",
    "padding_mask",
    "ptb_word_to_char",
    "read_wav",
    "speech_batches",
    "verify_data",
]

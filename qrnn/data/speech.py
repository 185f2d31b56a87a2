"""Free Spoken Digit Dataset (FSDD v1.0.10): verified recordings, log-mel/MFCC features, splits.

Recordings are ``{digit}_{speaker}_{index}.wav`` (8 kHz, 16-bit mono; 6 speakers x 10 digits x
50). Splits:

* ``standard``: upstream rule, index 0-4 -> test (300), 5-49 -> train; validation is a
  deterministic, digit-stratified ``valid_fraction`` of train (``seed``).
* ``speakers``: whole speakers held out. Default: test speaker ``theo``, validation speaker
  ``nicolas``, training on the other four (2,000 recordings). With ``valid_speakers=()`` the
  validation set is a stratified fraction of the training speakers instead.
* ``fold0`` .. ``fold9``: fold ``f`` of the 10 folds of :func:`qrnn.pooled.fsdd_fold`.

Features are computed with librosa, cached in ``<cache>/fsdd/features-<key>.pt`` (key: hash of
the extraction settings, the recordings manifest and the librosa version), and normalised per
feature with mean/std of the training split only.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..pooled import fsdd_fold
from .sources import (
    DataNotFoundError,
    DownloadError,
    UnknownDatasetError,
    atomic_write,
    data_root,
    download,
    verified_log,
    verify,
)
from .sources import FileSpec as _FileSpec
from .sources import cache_dir as resolve_cache_dir

__all__ = ["FSDD_SPEAKERS", "FSDD_URL", "AudioError", "FeatureConfig", "SpeechData", "SpeechSplit",
           "compute_features", "fsdd_manifest", "load_fsdd", "read_wav"]  # fmt: skip

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/v1.0.10.tar.gz"
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
RECORDINGS = "fsdd/recordings"
FEATURE_VERSION = 1  # bump when the extraction code changes
FSDD_SPLITS = ("standard", "speakers", *(f"fold{f}" for f in range(10)))  # 10 folds


class AudioError(ValueError):
    """A recording that cannot be read or does not have the expected format."""


@dataclass(frozen=True)
class FeatureConfig:
    """Feature extraction settings (the one place they live).

    ``kind`` is ``"logmel"`` (``log(mel power + log_offset)``, ``n_mels`` features) or ``"mfcc"``
    (``n_mfcc`` coefficients of the dB mel spectrogram). Windows are Hann, ``win_ms`` long every
    ``hop_ms``; ``max_frames`` truncates long utterances (applied after the cache).
    """

    sample_rate: int = 8000
    kind: str = "logmel"
    n_mels: int = 40
    n_mfcc: int = 13
    n_fft: int = 256
    win_ms: float = 25.0
    hop_ms: float = 10.0
    fmin: float = 0.0
    fmax: float | None = None
    log_offset: float = 1e-6
    max_frames: int | None = None

    def __post_init__(self):
        if self.kind not in ("logmel", "mfcc"):
            raise ValueError(f"FeatureConfig.kind must be 'logmel' or 'mfcc', got {self.kind!r}")
        if self.win_length > self.n_fft:
            raise ValueError(f"window {self.win_length} samples exceeds n_fft {self.n_fft}")

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def n_features(self) -> int:
        return self.n_mels if self.kind == "logmel" else self.n_mfcc

    def key(self, manifest_sha256: str) -> str:
        """Cache key: extraction settings (not ``max_frames``) + manifest + librosa version."""
        import librosa

        d = asdict(self)
        d.pop("max_frames")
        blob = json.dumps([d, manifest_sha256, librosa.__version__, FEATURE_VERSION])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class SpeechSplit:
    """One split: normalised features ``(T_i, F)`` float32, labels, speakers, file names."""

    features: list[torch.Tensor]
    labels: torch.Tensor
    speakers: list[str]
    names: list[str]

    def __len__(self) -> int:
        return len(self.features)

    @property
    def lengths(self) -> torch.Tensor:
        return torch.tensor([f.shape[0] for f in self.features], dtype=torch.long)

    def stats(self) -> dict:
        lengths = self.lengths
        return {
            "count": len(self),
            "class_counts": torch.bincount(self.labels, minlength=10).tolist(),
            "speakers": {s: self.speakers.count(s) for s in sorted(set(self.speakers))},
            "frames": {
                "min": int(lengths.min()) if len(self) else 0,
                "mean": float(lengths.float().mean()) if len(self) else 0.0,
                "max": int(lengths.max()) if len(self) else 0,
            },
        }


@dataclass
class SpeechData:
    """FSDD splits plus the normalisation and provenance needed for run records."""

    train: SpeechSplit
    valid: SpeechSplit
    test: SpeechSplit
    split: str
    features: FeatureConfig
    mean: torch.Tensor
    std: torch.Tensor
    info: dict = field(default_factory=dict)

    n_classes = 10

    @property
    def n_features(self) -> int:
        return int(self.mean.numel())

    def stats(self) -> dict:
        """JSON-able summary: split sizes, class balance, speakers, features, hashes."""
        return {
            "dataset": "fsdd",
            "split": self.split,
            "splits": {s: getattr(self, s).stats() for s in ("train", "valid", "test")},
            "features": asdict(self.features),
            "n_features": self.n_features,
            "normalization": {"mean": self.mean.tolist(), "std": self.std.tolist()},
            **self.info,
        }


# --------------------------------------------------------------------------- manifest & files


def fsdd_manifest() -> str:
    """The packaged listing ``sha256  fsdd/recordings/<name>.wav`` (3,000 lines)."""
    return resources.files(__package__).joinpath("fsdd_sha256.txt").read_text(encoding="ascii")


def parse_manifest(text: str) -> list[tuple[str, str]]:
    """``[(name, sha256)]`` in listing order."""
    out = []
    for line in text.splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            out.append((rel.strip().rsplit("/", 1)[-1], digest))
    return out


def _parse_name(name: str) -> tuple[int, str, int]:
    """``"7_jackson_32.wav"`` -> ``(7, "jackson", 32)``."""
    try:
        digit, speaker, index = name.removesuffix(".wav").split("_")
        return int(digit), speaker, int(index)
    except ValueError:
        raise ValueError(f"recording name {name!r} is not digit_speaker_index.wav") from None


def _verify_folder(folder: Path, entries, origin: str, log) -> None:
    missing = [n for n, _ in entries if not (folder / n).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{origin} folder {folder} lacks {len(missing)} of {len(entries)} FSDD recordings "
            f"(e.g. {missing[:3]}); provide the complete recordings/ folder of FSDD v1.0.10"
        )
    for name, digest in entries:
        verify(folder / name, _FileSpec(f"{RECORDINGS}/{name}", digest), log, origin)


def _download_recordings(url: str, dest: Path, entries, log, progress: bool) -> None:
    """Fetch the release archive, keep only listed recordings, verify each, then move in."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    archive = dest.parent / "fsdd-archive.tar.gz"
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".recordings."))
    wanted = dict(entries)
    try:
        download(url, archive, None, progress=progress)  # no published archive hash
        with tarfile.open(archive) as tf:
            for m in tf:
                name = m.name.rsplit("/", 1)[-1]
                if m.isfile() and "/recordings/" in m.name and name in wanted:
                    (tmp / name).write_bytes(tf.extractfile(m).read())
        _verify_folder(tmp, entries, "downloaded", None)
        os.replace(tmp, dest)
        for name, _ in entries:  # remember the checks under the final paths
            verify(dest / name, _FileSpec(f"{RECORDINGS}/{name}", wanted[name]), log, "cache")
    except DownloadError as e:
        raise DataNotFoundError(
            f"FSDD recordings not found and the download failed ({e}). Set QRNN_DATA (or root=) "
            f"to a folder containing {RECORDINGS}/, or put the recordings in {dest}."
        ) from e
    except (tarfile.TarError, EOFError) as e:
        raise DownloadError(f"downloaded FSDD archive from {url} is not a valid tar.gz: {e}") from e
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _resolve_recordings(root, cache, download_ok, entries, url, progress) -> tuple[Path, str]:
    with verified_log(cache) as log:
        places = (("mirror", root), ("cache", cache))  # no mirror without a root
        candidates = [(origin, p / RECORDINGS) for origin, p in places if p is not None]
        for origin, folder in candidates:
            if folder.is_dir():
                _verify_folder(folder, entries, origin, log)
                return folder, origin
        if not download_ok:
            where = ", ".join(str(f) for _, f in candidates)
            raise DataNotFoundError(
                f"FSDD recordings not found; looked in {where}"
                + ("" if root is not None else " (QRNN_DATA is not set)")
                + f". Set QRNN_DATA (or root=) to a folder containing {RECORDINGS}/, or allow "
                f"download=True to fetch {url}."
            )
        _download_recordings(url, cache / RECORDINGS, entries, log, progress)
        return cache / RECORDINGS, "download"


# --------------------------------------------------------------------------- audio & features


def read_wav(path: str | os.PathLike, sample_rate: int = 8000) -> np.ndarray:
    """Samples of a wav file as float32 in [-1, 1], mono, resampled to ``sample_rate``."""
    import librosa
    import soundfile

    path = Path(path)
    try:
        y, sr = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, TypeError, ValueError) as e:  # LibsndfileError: RuntimeError
        raise AudioError(f"cannot read wav file {path}: {e}") from e
    if y.shape[0] == 0:
        raise AudioError(f"wav file {path} has no samples")
    y = y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]
    if sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)


class _Extractor:
    def __init__(self, cfg: FeatureConfig):
        import librosa

        self.cfg, self.librosa = cfg, librosa
        self.mel = librosa.filters.mel(
            sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
        )

    def __call__(self, y: np.ndarray) -> np.ndarray:
        c, lr = self.cfg, self.librosa
        spec = lr.stft(y, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length)
        mel = self.mel @ (np.abs(spec) ** 2)
        if c.kind == "logmel":
            out = np.log(mel + c.log_offset)
        else:
            out = lr.feature.mfcc(S=lr.power_to_db(mel), n_mfcc=c.n_mfcc)
        return out.T.astype(np.float32)


def compute_features(y: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """``(T, F)`` features of one waveform (no normalisation, no truncation)."""
    return _Extractor(cfg)(y)


def _features(folder: Path, names: list[str], cfg: FeatureConfig, cache: Path, key: str):
    """Raw features for ``names`` (from the cache file if present): list of ``(T_i, F)``."""
    path = cache / "fsdd" / f"features-{key}.pt"
    with contextlib.suppress(Exception):  # unreadable/stale cache: recompute
        blob = torch.load(path, weights_only=True)
        if blob["names"] == names:
            return list(torch.split(blob["feats"], blob["lengths"].tolist())), "cache"
    ex = _Extractor(cfg)
    feats = [torch.from_numpy(ex(read_wav(folder / n, cfg.sample_rate))) for n in names]
    blob = {
        "names": names,
        "lengths": torch.tensor([f.shape[0] for f in feats], dtype=torch.long),
        "feats": torch.cat(feats),
        "config": json.dumps(asdict(cfg)),
    }
    buf = io.BytesIO()
    torch.save(blob, buf)
    with contextlib.suppress(OSError):
        atomic_write(path, buf.getvalue())
    return feats, "computed"


# --------------------------------------------------------------------------- splits


def _stratified_pick(idx: list[int], labels: list[int], fraction: float, gen) -> set[int]:
    """Deterministic ``fraction`` of ``idx`` per label."""
    picked = set()
    for lab in sorted(set(labels[i] for i in idx)):
        group = [i for i in idx if labels[i] == lab]
        perm = torch.randperm(len(group), generator=gen).tolist()
        picked.update(group[p] for p in perm[: round(fraction * len(group))])
    return picked


def _split_ids(split: str, names: list[str], fields, fraction: float, seed: int, held) -> tuple:
    """``(train, valid, test)`` recording indices of ``split``; ``fields``: each recording's
    digit, speaker and index, ``held``: the test and the validation speakers."""
    (digits, speakers, index), (test_speakers, valid_speakers) = fields, held
    gen, all_idx = torch.Generator().manual_seed(seed), range(len(names))
    if split == "standard":
        test = [i for i in all_idx if index[i] <= 4]
        rest = [i for i in all_idx if index[i] > 4]
        valid = _stratified_pick(rest, digits, fraction, gen)
    elif split.startswith("fold"):  # valid_fraction and seed play no part
        part = {k: v.tolist() for k, v in fsdd_fold(names, int(split[4:]), k=10).items()}
        test, valid, rest = part["test"], set(part["valid"]), part["train"] + part["valid"]
    else:
        test = [i for i in all_idx if speakers[i] in test_speakers]
        rest = [i for i in all_idx if speakers[i] not in test_speakers]
        if valid_speakers:
            valid = {i for i in rest if speakers[i] in valid_speakers}
        else:
            valid = _stratified_pick(rest, digits, fraction, gen)
    train = [i for i in rest if i not in valid]
    if not train:
        raise ValueError(f"the {split!r} split leaves no training recordings")
    return train, sorted(valid), test


def _normalised_splits(raw: list[torch.Tensor], cfg: FeatureConfig, parts, fields, names):
    """``([train, valid, test], mean, std)``: the ``parts`` (index lists) as splits, features cut
    to ``cfg.max_frames`` and normalised with the mean and std of the training frames."""
    digits, speakers, _ = fields
    if cfg.max_frames is not None:
        raw = [f[: cfg.max_frames] for f in raw]
    frames = torch.cat([raw[i] for i in parts[0]])
    mean, std = frames.mean(0), frames.std(0).clamp_min(1e-5)
    splits = [
        SpeechSplit(
            [(raw[i] - mean) / std for i in ids],
            torch.tensor([digits[i] for i in ids], dtype=torch.long),
            [speakers[i] for i in ids],
            [names[i] for i in ids],
        )
        for ids in parts
    ]
    return splits, mean, std


def load_fsdd(
    split: str = "standard",
    features: FeatureConfig = FeatureConfig(),
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    valid_fraction: float = 0.1,
    seed: int = 0,
    test_speakers: tuple[str, ...] = ("theo",),
    valid_speakers: tuple[str, ...] = ("nicolas",),
    download: bool = True,
    *,
    manifest: str | None = None,
    url: str = FSDD_URL,
    progress: bool = True,
) -> SpeechData:
    """Load FSDD as normalised feature sequences; see the module docstring for the splits.

    ``manifest`` overrides the packaged recordings listing (``sha256  path`` lines), ``url``
    the release archive used when neither mirror nor cache has the recordings.
    """
    if split not in FSDD_SPLITS:
        raise UnknownDatasetError(f"unknown FSDD split {split!r}; use {', '.join(FSDD_SPLITS)}")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    text = fsdd_manifest() if manifest is None else manifest
    entries = parse_manifest(text)
    manifest_sha = hashlib.sha256(text.encode()).hexdigest()
    names = [n for n, _ in entries]
    fields = tuple(zip(*map(_parse_name, names), strict=True)) if names else ((), (), ())
    known = set(fields[1])
    for s in (*test_speakers, *valid_speakers):
        if split == "speakers" and s not in known:
            raise UnknownDatasetError(f"unknown FSDD speaker {s!r}; known: {sorted(known)}")
    if split == "speakers" and set(test_speakers) & set(valid_speakers):
        raise ValueError("test_speakers and valid_speakers overlap")
    root_p, cache = data_root(root), resolve_cache_dir(cache_dir)
    folder, origin = _resolve_recordings(root_p, cache, download, entries, url, progress)
    raw, feat_origin = _features(folder, names, features, cache, features.key(manifest_sha))
    parts = _split_ids(split, names, fields, valid_fraction, seed, (test_speakers, valid_speakers))
    splits, mean, std = _normalised_splits(raw, features, parts, fields, names)
    info = {
        "recordings": len(names),
        "recordings_sha256": manifest_sha,
        "source": {"folder": RECORDINGS, "origin": origin},  # relative: no machine paths
        "features_origin": feat_origin,
        "seed": seed,
        "valid_fraction": valid_fraction,
        "test_speakers": list(test_speakers) if split == "speakers" else None,
        "valid_speakers": list(valid_speakers) if split == "speakers" else None,
    }
    return SpeechData(*splits, split, features, mean, std, info)

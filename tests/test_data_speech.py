"""FSDD loader: real-mirror statistics and splits, a small synthetic FSDD for the error paths."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time

import numpy as np
import pytest
import soundfile
import torch

import qrnn.data as qd

MANIFEST_SHA = "8f12bbbd51d141d7b73139fc9ba83cf9aaea4b7a385284e7710430761b28b673"


# --------------------------------------------------------------------------- real mirror


@pytest.fixture(scope="session")
def fsdd(mirror, session_cache):
    t = time.perf_counter()
    data = qd.load_fsdd(root=mirror, cache_dir=session_cache, progress=False)
    data.info["load_s"] = time.perf_counter() - t
    return data


@pytest.fixture(scope="session")
def fsdd_speakers(fsdd, mirror, session_cache):
    return qd.load_fsdd("speakers", root=mirror, cache_dir=session_cache, progress=False)


def test_packaged_manifest_matches_readme():
    text = qd.speech.fsdd_manifest()
    assert hashlib.sha256(text.encode()).hexdigest() == MANIFEST_SHA
    assert len(text.splitlines()) == 3000


def test_fsdd_standard_statistics(fsdd):
    s = fsdd.stats()
    json.dumps(s)
    assert s["recordings"] == 3000 and s["recordings_sha256"] == MANIFEST_SHA
    assert s["source"]["origin"] == "mirror"
    sp = s["splits"]
    assert sp["test"]["count"] == 300 and sp["test"]["class_counts"] == [30] * 10
    assert sp["train"]["count"] + sp["valid"]["count"] == 2700
    assert sp["valid"]["class_counts"] == [27] * 10
    all_speakers = set().union(*(sp[k]["speakers"] for k in sp))
    assert all_speakers == set(qd.FSDD_SPEAKERS) and len(all_speakers) == 6
    assert all(int(n.split("_")[2].removesuffix(".wav")) <= 4 for n in fsdd.test.names)
    names = [set(getattr(fsdd, k).names) for k in ("train", "valid", "test")]
    assert sum(map(len, names)) == len(set().union(*names)) == 3000
    x = fsdd.train.features[0]
    assert x.dtype == torch.float32 and x.shape[1] == 40 == fsdd.n_features


def test_fsdd_normalization_uses_train_only(fsdd):
    frames = torch.cat(fsdd.train.features)
    assert frames.mean(0).abs().max() < 1e-3
    assert (frames.std(0) - 1).abs().max() < 1e-3
    test_frames = torch.cat(fsdd.test.features)
    assert (test_frames.mean(0).abs().max()) > 1e-3  # test statistics were not used


def test_fsdd_feature_cache_hit(fsdd, mirror, session_cache):
    t = time.perf_counter()
    again = qd.load_fsdd(root=mirror, cache_dir=session_cache, progress=False)
    cached_s = time.perf_counter() - t
    assert again.info["features_origin"] == "cache"
    assert cached_s < max(2.0, fsdd.info["load_s"])
    assert again.valid.names == fsdd.valid.names  # deterministic validation split
    assert torch.equal(again.mean, fsdd.mean)
    other = qd.load_fsdd(root=mirror, cache_dir=session_cache, seed=1, progress=False)
    assert other.valid.names != fsdd.valid.names


def test_fsdd_speaker_split(fsdd_speakers):
    d = fsdd_speakers
    assert set(d.test.speakers) == {"theo"} and set(d.valid.speakers) == {"nicolas"}
    assert not {"theo", "nicolas"} & set(d.train.speakers)
    assert (len(d.train), len(d.valid), len(d.test)) == (2000, 500, 500)
    assert d.stats()["test_speakers"] == ["theo"]


# --------------------------------------------------------------------------- synthetic FSDD


def wav_bytes(digit: int, speaker: int, index: int, sr: int = 8000) -> bytes:
    n = 1200 + 40 * index + 100 * digit
    t = np.arange(n) / sr
    y = 0.3 * np.sin(2 * np.pi * (200 + 50 * digit + 30 * speaker) * t)
    buf = io.BytesIO()
    soundfile.write(buf, y.astype(np.float32), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


@pytest.fixture
def fake_fsdd(tmp_path, monkeypatch):
    """A mirror with 2 speakers x 10 digits x 7 recordings and its manifest."""
    monkeypatch.delenv("QRNN_DATA", raising=False)
    root = tmp_path / "mirror"
    rec = root / "fsdd/recordings"
    rec.mkdir(parents=True)
    lines = []
    for s, speaker in enumerate(("alice", "bob")):
        for d in range(10):
            for i in range(7):
                name = f"{d}_{speaker}_{i}.wav"
                data = wav_bytes(d, s, i)
                (rec / name).write_bytes(data)
                lines.append(f"{hashlib.sha256(data).hexdigest()}  fsdd/recordings/{name}\n")
    return root, "".join(lines)


def test_fake_fsdd_splits(fake_fsdd, tmp_path):
    root, manifest = fake_fsdd
    d = qd.load_fsdd(root=root, cache_dir=tmp_path / "c", manifest=manifest, valid_fraction=0.2)
    assert (len(d.train), len(d.valid), len(d.test)) == (30, 10, 100)  # 1 of 4 per digit
    s = qd.load_fsdd(
        "speakers",
        root=root,
        cache_dir=tmp_path / "c",
        manifest=manifest,
        test_speakers=("bob",),
        valid_speakers=(),
        valid_fraction=0.2,
    )
    assert set(s.test.speakers) == {"bob"} and set(s.train.speakers) == {"alice"}
    assert (len(s.train), len(s.valid)) == (60, 10)
    assert s.stats()["features_origin"] == "cache"


def test_feature_config(fake_fsdd, tmp_path):
    root, manifest = fake_fsdd
    cfg = qd.FeatureConfig(kind="mfcc", max_frames=10)
    assert (cfg.win_length, cfg.hop_length) == (200, 80)
    d = qd.load_fsdd(root=root, cache_dir=tmp_path, manifest=manifest, features=cfg)
    assert d.n_features == 13 and max(f.shape[0] for f in d.test.features) == 10
    assert d.stats()["features"]["kind"] == "mfcc"
    with pytest.raises(ValueError, match="kind"):
        qd.FeatureConfig(kind="wavelets")


def test_unreadable_and_empty_wav(fake_fsdd, tmp_path):
    root, manifest = fake_fsdd
    rec = root / "fsdd/recordings"
    for name, content in [("3_alice_2.wav", b"RIFF garbage"), ("4_bob_1.wav", b"")]:
        (rec / name).write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        manifest = "".join(
            f"{digest}  fsdd/recordings/{name}\n" if line.endswith(f"/{name}\n") else line
            for line in manifest.splitlines(keepends=True)
        )
        with pytest.raises(qd.AudioError, match=re.escape(name)):
            qd.read_wav(rec / name)
    with pytest.raises(qd.AudioError, match=r"3_alice_2\.wav"):
        qd.load_fsdd(root=root, cache_dir=tmp_path, manifest=manifest)


def test_corrupt_recording_refused(fake_fsdd, tmp_path):
    root, manifest = fake_fsdd
    path = root / "fsdd/recordings/0_alice_0.wav"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(qd.ChecksumError, match=r"0_alice_0\.wav"):
        qd.load_fsdd(root=root, cache_dir=tmp_path, manifest=manifest)


def test_missing_recordings(fake_fsdd, tmp_path):
    root, manifest = fake_fsdd
    (root / "fsdd/recordings/9_bob_6.wav").unlink()
    with pytest.raises(qd.DataNotFoundError, match="lacks 1 of 140"):
        qd.load_fsdd(root=root, cache_dir=tmp_path, manifest=manifest)
    with pytest.raises(qd.DataNotFoundError, match="QRNN_DATA is not set"):
        qd.load_fsdd(cache_dir=tmp_path, manifest=manifest, download=False)


def test_bad_arguments(fake_fsdd, tmp_path):
    root, manifest = fake_fsdd
    with pytest.raises(qd.UnknownDatasetError):
        qd.load_fsdd("random", root=root, manifest=manifest)
    with pytest.raises(qd.UnknownDatasetError, match="carol"):
        qd.load_fsdd("speakers", root=root, manifest=manifest, test_speakers=("carol",))
    with pytest.raises(ValueError, match="valid_fraction"):
        qd.load_fsdd(root=root, manifest=manifest, valid_fraction=1.5)


def test_fsdd_download_from_local_server(fake_fsdd, tmp_path, http_server):
    root, manifest = fake_fsdd
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(root / "fsdd/recordings", arcname="free-spoken-digit-dataset-1.0.10/recordings")
    http_server.routes["/fsdd.tar.gz"] = (200, buf.getvalue(), None)
    cache = tmp_path / "cache"
    url = http_server.url + "/fsdd.tar.gz"
    d = qd.load_fsdd(cache_dir=cache, manifest=manifest, url=url, progress=False)
    assert d.stats()["source"]["origin"] == "download" and len(d.test) == 100
    assert not list((cache / "fsdd").glob(".*"))  # no temporary folders left
    assert not (cache / "fsdd/fsdd-archive.tar.gz").exists()
    again = qd.load_fsdd(cache_dir=cache, manifest=manifest, url=url + "x", progress=False)
    assert again.stats()["source"]["origin"] == "cache"


def test_fsdd_download_offline(fake_fsdd, tmp_path):
    _, manifest = fake_fsdd
    with pytest.raises(qd.DataNotFoundError, match="download failed"):
        qd.load_fsdd(
            cache_dir=tmp_path, manifest=manifest, url="http://127.0.0.1:9/x", progress=False
        )
    assert not (tmp_path / "fsdd/recordings").exists()

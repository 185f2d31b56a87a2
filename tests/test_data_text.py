"""PTB and text8 loaders: real-mirror statistics, char derivation, text8 via a local server."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
import torch

import qrnn.data as qd
from qrnn.data import text as qtext


@pytest.fixture(scope="module")
def ptb_char(mirror, tmp_path_factory):
    return qd.load_text("ptb-char", root=mirror, cache_dir=tmp_path_factory.mktemp("c"))


@pytest.fixture(scope="module")
def ptb_word(mirror, tmp_path_factory):
    return qd.load_text("ptb-word", root=mirror, cache_dir=tmp_path_factory.mktemp("c"))


def test_dataset_names():
    assert qd.DATASETS == ("ptb-char", "ptb-word", "text8", "fsdd")


def test_ptb_char_statistics(ptb_char):
    c = ptb_char
    assert c.train.numel() == 5_017_482
    assert (c.valid.numel(), c.test.numel()) == (393_042, 442_423)
    assert len(c.vocab) == 50 and "\n" in c.vocab and "_" in c.vocab
    assert c.train.dtype == torch.long and c.train.dim() == 1
    assert int((c.train == c.vocab.index("\n")).sum()) == 42_068
    used = {c.vocab[i] for i in set(c.test.tolist())}
    assert len(used) == 48 and not used & {"*", "4"}  # 47 printable + newline
    s = c.stats()
    json.dumps(s)
    assert s["vocab_size"] == 50
    assert s["files"]["ptb.char.train.txt"]["origin"] == "mirror"
    assert s["files"]["ptb.char.train.txt"]["sha256"] == qd.FILES["ptb.char.train.txt"].digest


def test_ptb_char_decodes_to_file(ptb_char, mirror):
    head = "".join(ptb_char.vocab[i] for i in ptb_char.train[:60].tolist())
    raw = (mirror / "ptb/ptb.char.train.txt").read_text()[:120]
    assert head == raw[0::2]


def test_ptb_word_statistics(ptb_word, mirror):
    w = ptb_word
    assert len(w.vocab) == 10_000 and qd.text.EOS in w.vocab and "<unk>" in w.vocab
    assert (w.train.numel(), w.valid.numel(), w.test.numel()) == (929_589, 73_760, 82_430)
    assert int((w.train == w.vocab.index("<unk>")).sum()) == 45_020
    first = (mirror / "ptb/ptb.train.txt").read_text().splitlines()[0].split()
    assert [w.vocab[i] for i in w.train[: len(first) + 1].tolist()] == [*first, "<eos>"]
    json.dumps(w.stats())


def test_char_rule_reproduces_published_files(mirror):
    for split in ("train", "valid", "test"):
        char = qd.ptb_word_to_char((mirror / f"ptb/ptb.{split}.txt").read_text())
        digest = hashlib.sha256(char.encode("ascii")).hexdigest()
        assert digest == qd.FILES[f"ptb.char.{split}.txt"].digest, split


def test_ptb_char_derived_from_word_only_mirror(mirror, tmp_path):
    word_only = tmp_path / "mirror"
    (word_only / "ptb").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (word_only / f"ptb/ptb.{split}.txt").symlink_to(mirror / f"ptb/ptb.{split}.txt")
    cache = tmp_path / "cache"
    c = qd.load_text("ptb-char", root=word_only, cache_dir=cache, download=False)
    files = c.stats()["files"]
    assert files["ptb.char.train.txt"]["origin"] == "derived"
    assert files["ptb.train.txt"]["origin"] == "mirror"
    assert c.train.numel() == 5_017_482 and len(c.vocab) == 50
    assert (cache / "ptb/ptb.char.test.txt").is_file()
    assert sorted(p.name for p in (word_only / "ptb").iterdir()) == [
        "ptb.test.txt",
        "ptb.train.txt",
        "ptb.valid.txt",
    ]
    again = qd.load_text("ptb-char", root=word_only, cache_dir=cache, download=False)
    assert again.stats()["files"]["ptb.char.train.txt"]["origin"] == "cache"
    assert torch.equal(again.train, c.train)


def test_char_rule_format():
    out = qd.ptb_word_to_char(" a b <unk> \n N c \n")
    assert out == "a _ b _ < u n k > \n N _ c \n "


def test_unknown_dataset():
    with pytest.raises(qd.UnknownDatasetError, match="ptb-chars"):
        qd.load_text("ptb-chars")
    with pytest.raises(ValueError):
        qd.load("mnist")


def test_missing_everything_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("QRNN_DATA", raising=False)
    with pytest.raises(qd.DataNotFoundError) as e:
        qd.load_text("ptb-word", cache_dir=tmp_path, download=False)
    assert "ptb/ptb.train.txt" in str(e.value) and "QRNN_DATA is not set" in str(e.value)


def test_missing_mirror_folder_argument(tmp_path):
    with pytest.raises(qd.DataNotFoundError, match="does not exist"):
        qd.load_text("ptb-word", root=tmp_path / "missing")


def test_empty_mirror_file_refused(tmp_path):
    (tmp_path / "ptb").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb/ptb.{split}.txt").write_bytes(b"")
    with pytest.raises(qd.ChecksumError, match="0 bytes"):
        qd.load_text("ptb-word", root=tmp_path, cache_dir=tmp_path / "c", download=False)


def test_ptb_word_download_from_local_server(http_server, tmp_path, monkeypatch):
    monkeypatch.delenv("QRNN_DATA", raising=False)
    texts = {"train": " a b c \n b c \n", "valid": " c a \n", "test": " a \n"}
    specs = {}
    for split, t in texts.items():
        body = t.encode()
        http_server.routes[f"/ptb.{split}.txt"] = (200, body, None)
        specs[f"ptb.{split}.txt"] = qd.FileSpec(
            f"ptb/ptb.{split}.txt",
            hashlib.md5(body).hexdigest(),
            algo="md5",
            url=f"{http_server.url}/ptb.{split}.txt",
        )
    c = qd.load_text("ptb-word", cache_dir=tmp_path, specs=specs, progress=False)
    assert c.vocab == ["<eos>", "a", "b", "c"]
    assert c.train.tolist() == [1, 2, 3, 0, 2, 3, 0]
    assert {f["origin"] for f in c.stats()["files"].values()} == {"download"}


def make_text8_zip(text: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("text8", text)
    return buf.getvalue()


@pytest.fixture
def text8_server(http_server, monkeypatch):
    monkeypatch.delenv("QRNN_DATA", raising=False)
    text = (b" anarchism originated as a term of abuse" * 30)[:1000]
    body = make_text8_zip(text)
    http_server.routes["/text8.zip"] = (200, body, None)
    spec = qd.FileSpec(
        "text8/text8.zip", hashlib.sha1(body).hexdigest(), "sha1", http_server.url + "/text8.zip"
    )
    return http_server, spec, text


def test_text8_download_and_split(text8_server, tmp_path):
    server, spec, text = text8_server
    c = qd.load_text(
        "text8",
        cache_dir=tmp_path,
        specs={"text8.zip": spec},
        text8_split=(800, 100, 100),
        progress=False,
    )
    assert len(c.vocab) == 27 and c.vocab[0] == " "
    assert (c.train.numel(), c.valid.numel(), c.test.numel()) == (800, 100, 100)
    decoded = "".join(c.vocab[i] for i in torch.cat([c.train, c.valid, c.test]).tolist())
    assert decoded.encode() == text
    files = c.stats()["files"]["text8.zip"]
    assert files["origin"] == "download" and files["split_sizes"] == [800, 100, 100]
    server.routes.clear()
    again = qd.load_text(
        "text8", cache_dir=tmp_path, specs={"text8.zip": spec}, text8_split=(800, 100, 100)
    )
    assert again.stats()["files"]["text8.zip"]["origin"] == "cache"


def test_text8_wrong_hash_and_bad_split(text8_server, tmp_path):
    _, spec, _ = text8_server
    bad = qd.FileSpec(spec.relpath, "0" * 40, "sha1", spec.url)
    with pytest.raises(qd.ChecksumError, match=r"0{40}"):
        qd.load_text("text8", cache_dir=tmp_path, specs={"text8.zip": bad}, progress=False)
    assert not (tmp_path / "text8/text8.zip").exists()
    with pytest.raises(ValueError, match="do not add up"):
        qd.load_text("text8", cache_dir=tmp_path, specs={"text8.zip": spec}, progress=False)


def test_default_text8_spec():
    s = qtext.FILES["text8.zip"]
    assert s.algo == "sha1" and s.url == "http://mattmahoney.net/dc/text8.zip"
    assert qd.TEXT8_SPLIT == (90_000_000, 5_000_000, 5_000_000)

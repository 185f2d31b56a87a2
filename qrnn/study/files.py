"""What the ``qrnn`` command checks and says about the files it is given: folders (writable
results, a readable data mirror), run folders and packed files (``qrnn show``, ``qrnn
export``: a ``model.npz`` must be the file its ``run.json`` names), the data files (``qrnn data
verify``) and the tables a study command wrote. Every refusal is :class:`Refused`, one line.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from .runs import find_run, packed_file, packed_summary, summary, verify_packed

__all__ = ["BadArgument", "Refused", "data_folder", "export", "show", "stamps",
           "verify_data_files", "writable_folder", "written"]  # fmt: skip

DEFAULT_RESULTS = ("runs", "results")  # show / export without --results: qrnn train's, the study's


class Refused(Exception):
    """A request refused with a message (one line, exit status 2)."""


class BadArgument(Refused):
    """An argument that names nothing usable (the command line reports it with its usage)."""


def writable_folder(folder: str | Path, what: str = "results folder", flag: str = "--results"):
    """``folder``, created if needed, after checking that files can be written in it."""
    p = Path(folder)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p, prefix=".qrnn-write-test-"):
            pass
    except OSError as e:
        raise Refused(
            f"{what} {p} cannot be created or written ({e.strerror or e}); pass {flag} a "
            "writable folder"
        ) from e
    return p


def data_folder(folder: str | None) -> str | None:
    """``--data``: None (use $QRNN_DATA, the cache or a download) or a readable folder."""
    if folder is None:
        return None
    p = Path(folder).expanduser()
    layout = "a folder laid out like the data mirror (ptb/, fsdd/recordings/)"
    if not p.is_dir():
        raise Refused(f"--data {folder}: no such folder; pass {layout}, or leave --data out")
    if not os.access(p, os.R_OK | os.X_OK):
        raise Refused(f"--data {folder}: the folder is not readable; pass {layout}")
    return str(p)


def _run(run: str, results) -> Path:
    try:
        return find_run(run, results if results is not None else DEFAULT_RESULTS)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        raise BadArgument(str(e)) from e


def show(run: str, results: str | None = None, as_json: bool = False) -> str:
    """``qrnn show``: a packed file (fully read, its tensors fit its architecture, checked
    against its run folder's record when it sits in one) or a run record (its ``model.npz``
    checked against it)."""
    from ..export import load_packed, read_packed
    from .records import load_record

    p = Path(run)
    if p.suffix == ".npz" or (p.is_file() and p.name != "run.json"):
        packed = read_packed(p)  # PackedFormatError / FileNotFoundError: one line
        load_packed(p)  # and the tensors fit the stored architecture
        checked = [
            "meta_sha256 (header and payload)"
            if packed["checked"] != "structure"
            else "structure only (a version 1 file carries no checksum of its own)"
        ]
        rec_path = p.parent / "run.json"
        if rec_path.is_file() and packed_file(p.parent).name == p.name:
            checked.append(f"{verify_packed(p.parent)} in {rec_path}")  # refuses a mismatch
        if as_json:
            return json.dumps(packed["meta"], indent=1)
        return f"{packed_summary(packed['meta'])}\nchecked  {'; '.join(checked)}"
    folder = _run(run, results)
    rec = load_record(folder)  # a corrupt record: one line
    if packed_file(folder, rec).is_file():
        verify_packed(folder, rec)  # another run's or a changed model.npz: one line
    return json.dumps(rec, indent=1) if as_json else summary(rec)


def export(run: str, out: str, results: str | None = None) -> str:
    """``qrnn export``: pack a run's best model into ``out`` after checking what it is read
    from (``model.pt``, or the ``model.npz`` its record names); returns the report line."""
    import torch

    from ..export import PackedFormatError, read_packed
    from .runs import export_run

    p = Path(run)
    if (p.is_absolute() or len(p.parts) > 1) and not p.is_dir():
        raise BadArgument(f"no run {run!r}: no such run folder")
    folder = _run(run, results)
    if not (folder / "model.pt").is_file():
        if not (folder / "model.npz").is_file():
            raise BadArgument(
                f"{folder} has neither model.pt nor the packed model.npz (the run did not "
                "finish an epoch)"
            )
        verify_packed(folder)  # the file its record names, not another run's: one line
        try:  # a committed run keeps the packed file only: export it again from there
            read_packed(folder / "model.npz")
        except (PackedFormatError, ValueError) as e:
            raise Refused(f"{e}; restore the file from the repository") from e
    else:
        try:
            torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or overwritten file: torch raises several types
            why = " ".join(str(e).split())[:200]
            raise Refused(
                f"{folder / 'model.pt'} is corrupt or truncated ({type(e).__name__}: {why}); "
                "train the run again (qrnn train ... --force) or restore the file"
            ) from e
    t0 = time.perf_counter()
    try:
        rep = export_run(folder, out)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise Refused(str(e)) from e
    if rep["ratio"] >= 1.05:
        size = f"{rep['ratio']:.1f}x smaller than"
    else:  # a float model: the container costs a little
        size = f"{1 / rep['ratio']:.2f}x the size of"
    quantized = (
        f"{rep['quantized_ratio']:.1f}x ({rep['quantized_fraction']:.0%} of the fp32 bytes)"
        if rep["quantized_ratio"]
        else "none"
    )
    return (
        f"wrote {out}: {rep['file_bytes']:,} bytes, {size} the fp32 state_dict "
        f"({rep['fp32_bytes']:,} bytes); quantized tensors {quantized}; "
        f"{time.perf_counter() - t0:.2f} s"
    )


def verify_data_files(data: str | None = None, progress: bool = True) -> str:
    """``qrnn data verify``: every data file hashed again; the report, or :class:`Refused`
    naming the bad files (each also in the report printed before it)."""
    from ..data import verify_data

    out = verify_data(data_folder(data), progress=progress)
    lines = [f"ok       {len(out['ok'])} files"]
    if out["missing"]:
        more = " ..." if len(out["missing"]) > 5 else ""
        lines.append(f"absent   {len(out['missing'])} (read when a task needs them): "
                     f"{', '.join(out['missing'][:5])}{more}")  # fmt: skip
    lines += [f"bad      {why}" for _, why in out["bad"]]
    if out["bad"]:
        print("\n".join(lines), flush=True)
        more = " ..." if len(out["bad"]) > 5 else ""
        raise Refused(
            f"{len(out['bad'])} data file(s) fail their checks: "
            f"{', '.join(str(path) for path, _ in out['bad'][:5])}{more}; replace them (a "
            "cache file: delete it to download it again)"
        )
    return "\n".join(lines)


def stamps(folder: Path) -> dict[str, int]:
    """The modification times of the tables (``*.csv``) in ``folder``."""
    return {p.name: p.stat().st_mtime_ns for p in Path(folder).glob("*.csv")}


def written(folder: Path, before: dict) -> list[str]:
    """The tables in ``folder`` created or replaced since ``before`` (:func:`stamps`)."""
    return [str(Path(folder) / n) for n, t in sorted(stamps(folder).items()) if before.get(n) != t]

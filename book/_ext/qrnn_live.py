"""Live models: the study's trained PTB-char language models, run by the reader's browser.

At build time this extension writes ``_static/live-models.js`` into the HTML output: the packed
models of one experiment of a study (``qrnn_live_results``, ``qrnn_live_experiment``,
``qrnn_live_seed`` in ``_config.yml``; one run per method of :data:`HEADLINE`) as one
JavaScript object, so the page works from ``file://`` with no request. ``book/_static/live.js``
runs them (plain JavaScript, no library): quantized matrices from their integer codes, without
multiplying by a weight. Pages that contain a ``<div class="qrnn-live">`` get the two scripts
and ``live.css``; no other page loads them.

The asset is generated at every build, into the build folder only (never into ``book/``, so
there is nothing to commit or ignore): it weighs about 3 MB, over the size worth committing, and
costs a few seconds to write from the committed ``model.npz`` files, which stay the one source.
Each model's ``model.npz`` is also copied to ``models/<run-id>.npz`` in the build, so the run id
on the page links to the file it runs. The models are read with the library's checked reader
(:func:`qrnn.export.read_packed`, after :func:`qrnn.study.runs.verify_packed` checks each file
against its ``run.json``); each coded tensor is
re-encoded with :func:`qrnn.export.encode_codes` (which checks it decodes to the same values)
and bit-packed with :func:`qrnn.export.pack_bits`, so the asset does not depend on the file's
container or format version. Asset layout, per model: ``tensors[name]`` is either
``{"shape", "f32": base85}`` (float32, little-endian) or ``{"shape", "codes": base85, "bits",
"scale", "scheme", "options"}`` (codes as in :mod:`qrnn.codes`: code ``i`` at bits
``[i*b, (i+1)*b)``, least significant bit first). Base85 is Python's ``base64.b85encode``
alphabet over big-endian 4-byte groups, the data zero-padded to a multiple of 4 bytes
(``nbytes`` gives the true length).

Build the asset by hand: ``.venv/bin/python book/_ext/qrnn_live.py OUT.js [--results
results/cpu] [--experiment main] [--seed 0]``. Part of the qrnn book, after Ott et al. 2016,
*Recurrent Neural Networks With Limited Numerical Precision*.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSET = "live-models.js"
# the headline methods, in the book's order (qrnn.viz.METHOD_COLORS)
HEADLINE = ("float", "binary-det", "binary-stoch", "ternary-det", "ternary-stoch",
            "pow2-ternary", "exponential-det", "exponential-stoch")  # fmt: skip


class LiveModelError(RuntimeError):
    """A headline model is missing or cannot run in the page (the message names the run)."""


def select_runs(results: Path, experiment: str = "main", seed: int = 0,
                methods=HEADLINE, task: str = "ptb-char") -> list[tuple[str, Path]]:  # fmt: skip
    """``[(method, run folder)]``: the one run of ``experiment`` with ``seed`` per method, read
    from ``results/grid.json``. Raises :class:`LiveModelError` when a method has none or several
    (e.g. two hidden sizes) or its run folder is missing."""
    from qrnn.study.runs import read_grid

    results = Path(results)
    grid = read_grid(results.parent, results.name)
    if not grid:
        raise LiveModelError(f"no grid.json in {results}: the live models page has no models")
    out = []
    for method in methods:
        ids = sorted(rid for rid, lab in grid.items() if lab.get("experiment") == experiment
                     and lab.get("task") == task and lab.get("method") == method
                     and lab.get("seed") == seed)  # fmt: skip
        if len(ids) != 1:
            found = ", ".join(ids) or "none"
            raise LiveModelError(
                f"live models: {results}/grid.json has {len(ids)} {task} runs of experiment "
                f"{experiment!r}, method {method}, seed {seed} ({found}); exactly one is needed"
            )
        run_dir = results / "runs" / ids[0]
        if not (run_dir / "run.json").is_file():
            raise LiveModelError(f"live models: run {ids[0]} is in the grid but {run_dir} is gone")
        out.append((method, run_dir))
    return out


def _b85(data: bytes) -> str:
    return base64.b85encode(data + b"\0" * (-len(data) % 4)).decode("ascii")


def model_entry(method: str, run_dir: Path) -> dict:
    """One model of the asset (module docstring) from a run folder, its file checked first."""
    from qrnn.export import encode_codes, pack_bits, read_packed
    from qrnn.study.runs import verify_packed

    run_id = run_dir.name
    rec = json.loads((run_dir / "run.json").read_text())
    test = (rec.get("test") or {}).get("metric")
    if rec.get("status") != "completed" or rec.get("diverged") or test is None:
        raise LiveModelError(f"live models: run {run_id} ({method}) has no finished test result")
    try:
        verify_packed(run_dir, rec)
        packed = read_packed(run_dir / (rec.get("packed") or {}).get("file", "model.npz"))
    except (OSError, ValueError) as e:
        raise LiveModelError(f"live models: run {run_id} ({method}): {e}") from None
    meta, values = packed["meta"], packed["tensors"]
    arch = meta["architecture"]
    kw = arch["kwargs"]
    shape = (kw.get("cell"), kw.get("layers"), bool(kw.get("embed")), kw.get("quantize_io"))
    if arch["family"] != "LanguageModel" or shape != ("lstm", 1, True, False):
        raise LiveModelError(
            f"live models: run {run_id} is a {arch['family']} {kw}; the page runs one-layer "
            "LSTM language models with a float embedding and output layer"
        )
    tensors, bits_total, count_total = {}, 0, 0
    for e in meta["tensors"]:
        v = values[e["name"]].numpy()
        n = math.prod(e["shape"])
        t = {"shape": e["shape"]}
        if e["storage"] == "codes":
            m = meta["methods"][e["method"]]
            codes = encode_codes(v, m["scheme"], m["options"], e["scale"])  # checks the values
            data = pack_bits(codes, m["bits"]).tobytes()
            t.update(codes=_b85(data), nbytes=len(data), bits=m["bits"], scale=e["scale"],
                     scheme=m["scheme"], options=m["options"])  # fmt: skip
            bits_total += n * m["bits"]
        else:
            data = v.astype("<f4").tobytes()
            t.update(f32=_b85(data), nbytes=len(data))
            bits_total += n * 32
        count_total += n
        tensors[e["name"]] = t
    coded = [t for t in tensors.values() if "codes" in t]
    return {
        "run_id": run_id,
        "method": method,
        "seed": rec["config"]["seed"],
        "test_bpc": test,
        "vocab": rec["data"]["vocab"],
        "hidden": kw["hidden"],
        "embed": kw["embed"],
        "sha256": (rec.get("packed") or {}).get("sha256"),
        "packed_bytes": (run_dir / "model.npz").stat().st_size,
        "fp32_bytes": 4 * count_total,
        "params": count_total,
        "weight_bits": coded[0]["bits"] if coded else 32,  # of the recurrent layer
        "bits_per_weight": bits_total / count_total,  # over the whole model
        "tensors": tensors,
    }


def build_asset(results: str | Path = "results/cpu", experiment: str = "main",
                seed: int = 0) -> str:  # fmt: skip
    """The JavaScript text of the asset: ``window.qrnnLiveAsset = {...};``."""
    from qrnn.viz import METHOD_COLORS

    results = Path(results)
    if not results.is_absolute():
        results = ROOT / results
    models = [model_entry(m, d) for m, d in select_runs(results, experiment, seed)]
    vocab = models[0]["vocab"]
    for m in models:
        if m.pop("vocab") != vocab:
            raise LiveModelError(f"live models: run {m['run_id']} has another vocabulary")
        m["color"] = METHOD_COLORS.get(m["method"], "#4d4d4d")
    rel = results.relative_to(ROOT) if results.is_relative_to(ROOT) else results
    asset = {"source": {"results": str(rel), "experiment": experiment, "seed": seed},
             "vocab": vocab, "models": models}  # fmt: skip
    head = f"/* generated by book/_ext/qrnn_live.py from {rel} (experiment {experiment}, seed "
    body = json.dumps(asset, separators=(",", ":"))
    return head + f"{seed}); do not edit */\nwindow.qrnnLiveAsset = {body};\n"


def _results(app) -> Path:
    p = Path(app.config.qrnn_live_results)
    return p if p.is_absolute() else ROOT / p


def _write_asset(app) -> None:
    if app.builder.format != "html":
        return
    from sphinx.errors import ExtensionError

    c = app.config
    try:
        text = build_asset(_results(app), c.qrnn_live_experiment, c.qrnn_live_seed)
    except LiveModelError as e:
        raise ExtensionError(str(e)) from None
    dest = Path(app.outdir) / "_static" / ASSET
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)


def _copy_models(app, exception) -> None:
    """The page links each run id to ``models/<run-id>.npz``: the file it runs."""
    if exception is not None or app.builder.format != "html":
        return
    c = app.config
    dest = Path(app.outdir) / "models"
    dest.mkdir(parents=True, exist_ok=True)
    for _, run_dir in select_runs(_results(app), c.qrnn_live_experiment, c.qrnn_live_seed):
        shutil.copyfile(run_dir / "model.npz", dest / f"{run_dir.name}.npz")


def _page_scripts(app, pagename, templatename, context, doctree) -> None:
    """The models and their runner only on the pages that show them."""
    if 'class="qrnn-live' in (context.get("body") or ""):
        app.add_js_file(ASSET, priority=600)
        app.add_js_file("live.js", priority=601)
        app.add_css_file("live.css")


def setup(app):
    app.add_config_value("qrnn_live_results", "results/cpu", "html")
    app.add_config_value("qrnn_live_experiment", "main", "html")
    app.add_config_value("qrnn_live_seed", 0, "html")
    app.connect("builder-inited", _write_asset)
    app.connect("build-finished", _copy_models)
    # before qrnn_book's de-duplication (priority 500), which replaces the page's script list
    app.connect("html-page-context", _page_scripts, priority=400)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="write the live models asset")
    p.add_argument("out")
    p.add_argument("--results", default="results/cpu")
    p.add_argument("--experiment", default="main")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    Path(a.out).write_text(build_asset(a.results, a.experiment, a.seed))

"""The live models page (book/live.md): the study's trained PTB-char models in plain JavaScript.

The asset that book/_ext/qrnn_live.py writes holds exactly the packed models; the page's
JavaScript (book/_static/live.js, run with node and in Chromium) gives the probabilities that
PyTorch computes from the same packed files (``qrnn.load_packed``); its sampler repeats per seed;
nothing in the page or its assets leaves the machine.

Tolerance: the JavaScript computes in float64, PyTorch in float32. Against a float64 PyTorch
evaluation of the same weights (the models' own quantized values, exact in both) the page agrees
to rounding (1e-9); against the float32 library evaluation, float32 rounding (relative 6e-8 per
operation, sums of up to 288 terms, carried through the recurrent state) stays far below the
1e-4 absolute bound on probabilities asked of the page.
"""

import base64
import functools
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import qrnn
from qrnn.export import decode_codes, read_packed, unpack_bits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import qrnn_live  # noqa: E402

STATIC = ROOT / "book" / "_static"
NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TEXTS = [
    "the company said it expects to report a loss for the third quarter",
    "The compnay siad it expcets a LOSS, 42% (in N.Y.)\nmr. smith's $ 1.5 billion bid",
    "in the first nine months profit rose to $ N million or N cents a share from $ N million "
    "a year earlier the company said revenue was flat and that it would cut costs by closing "
    "two plants and laying off about N workers analysts said the results were in line with "
    "expectations",
]
TOL_F32 = 1e-4  # |p_js - p_torch| against the library's float32 evaluation
TOL_F64 = 1e-9  # against float64 PyTorch on the same weights


@pytest.fixture(scope="module")
def asset(tmp_path_factory):
    """The asset built from the committed study (results/cpu, experiment main, seed 0)."""
    path = tmp_path_factory.mktemp("live") / qrnn_live.ASSET
    path.write_text(qrnn_live.build_asset("results/cpu", "main", 0))
    return path


def parse(path: Path) -> dict:
    text = path.read_text()
    m = re.search(r"^window\.qrnnLiveAsset = (.*);$", text, re.M)
    return json.loads(m.group(1))


def b85(s: str, nbytes: int) -> bytes:
    return base64.b85decode(s)[:nbytes]


def symbol_ids(text: str, vocab: list[str]) -> list[int]:
    """The page's reading of typed text: letters lower-cased, space and tab -> "_", "\\r"
    dropped, the rest skipped when not one of the symbols."""
    out = []
    for ch in text:
        if ch == "\r":
            continue
        s = "_" if ch in " \t" else ch.lower()
        if s in vocab:
            out.append(vocab.index(s))
    return out


def run_node(asset: Path, request: dict) -> dict:
    if NODE is None:
        pytest.skip("node is not installed")
    driver = """
    const fs = require("fs"), vm = require("vm");
    globalThis.window = globalThis;
    const [asset, live] = process.argv.slice(1);  // node -e: no script name
    vm.runInThisContext(fs.readFileSync(asset, "utf8"));
    vm.runInThisContext(fs.readFileSync(live, "utf8"));
    const L = window.qrnnLive, req = JSON.parse(fs.readFileSync(0, "utf8"));
    const f32 = (a) => Buffer.from(new Float32Array(a).buffer).toString("base64");
    const out = {
      models: L.models(),
      probs: (req.probs || []).map(([k, t]) => L.probs(k, t).map((r) => Array.from(r))),
      samples: (req.samples || []).map(([k, t, n, temp, seed]) => L.sample(k, t, n, temp, seed)),
      weights: (req.weights || []).map(([k, name]) => f32(L.weights(k, name))),
      symbols: (req.symbols || []).map((t) => L.symbols(t).map((x) => x.id)),
      draws: (req.draws || []).map(([seed, n]) => {
        const g = L.generator(seed); return Array.from({length: n}, g); }),
    };
    process.stdout.write(JSON.stringify(out));
    """
    r = subprocess.run(
        [NODE, "-e", driver, str(asset), str(STATIC / "live.js")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


@functools.cache
def _load(run_id: str) -> torch.nn.Module:
    return qrnn.load_packed(ROOT / "results" / "cpu" / "runs" / run_id / "model.npz")


def torch_probs(run_id: str, ids: list[int], double: bool) -> np.ndarray:
    """Rows of next-symbol probabilities after "\\n" + ids: the reloaded packed model (float32),
    or the same weights in float64."""
    model = _load(run_id)
    x = torch.tensor(ids).unsqueeze(1)  # (T, 1)
    with torch.no_grad():
        if not double:
            logits, _ = model(x)  # (T, 1, V)
        else:
            lstm = model.rnn.to_torch().double()  # the quantized weights, as float64
            h, _ = lstm(model.embed.weight.double()[x])
            logits = h @ model.out.weight.double().T + model.out.bias.double()
    return torch.softmax(logits[:, 0].double() if double else logits[:, 0], -1).double().numpy()


def test_the_rule_picks_one_run_per_headline_method():
    runs = qrnn_live.select_runs(ROOT / "results" / "cpu", "main", 0)
    assert [m for m, _ in runs] == list(qrnn_live.HEADLINE)
    grid = json.loads((ROOT / "results" / "cpu" / "grid.json").read_text())
    for method, d in runs:
        assert grid[d.name] == {**grid[d.name], "experiment": "main", "seed": 0, "method": method}


def test_a_missing_model_fails_loudly_naming_it(tmp_path):
    folder = tmp_path / "cpu"
    (folder / "runs" / "ptb-char_lstm_float_x").mkdir(parents=True)
    grid = {"ptb-char_lstm_float_x": {"experiment": "main", "task": "ptb-char",
                                      "method": "float", "seed": 0}}  # fmt: skip
    (folder / "grid.json").write_text(json.dumps(grid))
    with pytest.raises(qrnn_live.LiveModelError, match=r"run ptb-char_lstm_float_x .* is gone"):
        qrnn_live.select_runs(folder, "main", 0, methods=("float",))
    src = ROOT / "results" / "cpu" / "runs" / "ptb-char_lstm_float_ae5fec8fc0aa" / "run.json"
    shutil.copy(src, folder / "runs" / "ptb-char_lstm_float_x" / "run.json")
    with pytest.raises(qrnn_live.LiveModelError, match="method binary-det, seed 0"):
        qrnn_live.select_runs(folder, "main", 0)
    ((method, run_dir),) = qrnn_live.select_runs(folder, "main", 0, methods=("float",))
    with pytest.raises(qrnn_live.LiveModelError, match=r"run ptb-char_lstm_float_x .*missing"):
        qrnn_live.model_entry(method, run_dir)  # no model.npz


def test_the_asset_holds_exactly_the_packed_models(asset):
    data = parse(asset)
    assert data["source"] == {"results": "results/cpu", "experiment": "main", "seed": 0}
    for m in data["models"]:
        run = ROOT / "results" / "cpu" / "runs" / m["run_id"]
        rec = json.loads((run / "run.json").read_text())
        assert m["test_bpc"] == rec["test"]["metric"] and m["sha256"] == rec["packed"]["sha256"]
        assert data["vocab"] == rec["data"]["vocab"]
        packed = read_packed(run / "model.npz")
        assert list(m["tensors"]) == list(packed["tensors"])
        for name, t in m["tensors"].items():
            want = packed["tensors"][name].numpy()
            if "f32" in t:
                got = np.frombuffer(b85(t["f32"], t["nbytes"]), dtype="<f4")
            else:
                codes = unpack_bits(np.frombuffer(b85(t["codes"], t["nbytes"]), np.uint8),
                                    t["bits"], want.size)  # fmt: skip
                got = decode_codes(codes, t["scheme"], t["options"], t["scale"])
            assert np.array_equal(got.reshape(want.shape), want), (m["run_id"], name)
        n = sum(v.numel() for v in packed["tensors"].values())
        assert m["fp32_bytes"] == 4 * n == rec["packed"]["fp32_bytes"]
        assert m["packed_bytes"] == rec["packed"]["bytes"]
        assert m["bits_per_weight"] == pytest.approx(rec["model"]["storage_bits"] / n)


def test_the_javascript_decodes_the_same_weights(asset):
    data = parse(asset)
    req = [[k, name] for k, m in enumerate(data["models"]) for name in m["tensors"]]
    out = run_node(asset, {"weights": req})
    for (k, name), got in zip(req, out["weights"], strict=True):
        run = ROOT / "results" / "cpu" / "runs" / data["models"][k]["run_id"]
        want = read_packed(run / "model.npz")["tensors"][name].numpy().ravel()
        assert np.array_equal(np.frombuffer(base64.b64decode(got), "<f4"), want), (k, name)


def compare(js: np.ndarray, run_id: str, ids: list[int]):
    """(max |js - float32|, max |js - float64|) over the determined positions, which positions
    those are (float32 and float64 PyTorch within 1e-5), and the float32 probabilities."""
    p32, p64 = torch_probs(run_id, ids, double=False), torch_probs(run_id, ids, double=True)
    determined = np.abs(p32 - p64).max(1) <= 1e-5
    assert determined[:8].all(), run_id  # every text's first characters are compared
    d32 = np.abs(js - p32).max(1)[determined].max()
    d64 = np.abs(js - p64).max(1)[determined].max()
    return d32, d64, determined, p32


def test_javascript_probabilities_equal_pytorch(asset):
    """For every headline model and fixed texts: the page's next-symbol probabilities against
    PyTorch's, from the same packed file, at every position where the library's own float32
    result is determined: within 1e-5 of float64 PyTorch on the same weights. Where a model's
    state amplifies rounding (binary-stoch: about 1.5-2x per character, so float32 and float64
    PyTorch disagree visibly after some tens of characters), no float64 program can match
    float32 PyTorch there; each text's first positions must still be determined."""
    data = parse(asset)
    vocab, nl = data["vocab"], data["vocab"].index("\n")
    req = [[k, t] for k in range(len(data["models"])) for t in TEXTS]
    out = run_node(asset, {"probs": req, "symbols": TEXTS})
    for t, ids in zip(TEXTS, out["symbols"], strict=True):  # the page reads text as the rule
        assert [i for i in ids if i >= 0] == symbol_ids(t, vocab)
    report = {}
    for (k, t), rows in zip(req, out["probs"], strict=True):
        run_id = data["models"][k]["run_id"]
        ids = [nl, *symbol_ids(t, vocab)]
        js = np.array(rows)
        assert js.shape == (len(ids), len(vocab))
        d32, d64, determined, p32 = compare(js, run_id, ids)
        assert d32 <= TOL_F32 and d64 <= TOL_F64, (run_id, t[:20], d32, d64)
        r = report.setdefault(data["models"][k]["method"], [0.0, 0.0, 0, 0, 0.0])
        r[:] = (max(r[0], d32), max(r[1], d64), r[2] + determined.sum(), r[3] + len(ids),
                max(r[4], np.abs(js - p32).max()))  # fmt: skip
    print(
        "\nmax |p_js - p_torch32|, |p_js - p_torch64| where compared, positions compared, "
        "max |p_js - p_torch32| over all positions"
    )
    for method, (d32, d64, n, total, every) in report.items():
        print(f"{method:18s} {d32:.2e} {d64:.2e} {n}/{total} {every:.2e}")


def _generator(seed: int, n: int) -> list[float]:
    """The page's generator in Python (Weyl sequence + murmur3 finalizer, 32-bit)."""
    s, out, mask = seed & 0xFFFFFFFF, [], 0xFFFFFFFF
    for _ in range(n):
        s = (s + 0x9E3779B9) & mask
        z = ((s ^ (s >> 16)) * 0x85EBCA6B) & mask
        z = ((z ^ (z >> 13)) * 0xC2B2AE35) & mask
        out.append((z ^ (z >> 16)) / 2**32)
    return out


def test_the_sampler_repeats_per_seed(asset):
    t = TEXTS[0]
    req = [[k, t, 80, 0.8, seed] for k in (0, 3) for seed in (1, 1, 2)]
    out = run_node(asset, {"samples": req, "draws": [[1, 5], [4294967295, 5]]})
    s = out["samples"]
    assert s[0] == s[1] and s[3] == s[4]  # same seed, same sample
    assert s[0] != s[2] and s[3] != s[5]  # another seed, another sample
    vocab = set(parse(asset)["vocab"])
    assert all(len(x) == 80 and set(x) <= vocab for x in s)
    # the draws are integer arithmetic: every engine gives these numbers
    assert out["draws"] == [_generator(1, 5), _generator(4294967295, 5)]


OUTSIDE = re.compile(r"https?:|//[\w.-]+\.\w|fetch\s*\(|XMLHttpRequest|WebAssembly|\bimport\s*\("
                     r"|new\s+Worker|WebSocket|sendBeacon|EventSource|importScripts")  # fmt: skip


def test_nothing_leaves_the_machine(asset):
    for path in (STATIC / "live.js", STATIC / "live.css", ROOT / "book" / "live.md", asset):
        text = path.read_text()
        if path.suffix == ".js":  # comments may name files, never fetch them
            text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        assert not OUTSIDE.findall(text), (path.name, OUTSIDE.findall(text)[:5])
    intro = (ROOT / "book" / "intro.md").read_text()
    block = intro[intro.index('<div class="qrnn-live"') :]
    assert not OUTSIDE.findall(block[: block.index("</div>")])


def test_the_asset_weighs_at_most_3_mb(asset):
    assert asset.stat().st_size <= 3 * 2**20


@pytest.fixture(scope="module")
def page(asset, tmp_path_factory):
    """A minimal page with both widgets, the book's stylesheets and the two scripts."""
    d = asset.parent
    for f in ("live.js", "live.css", "qrnn.css"):
        shutil.copy(STATIC / f, d / f)
    html = d / "live.html"
    html.write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="qrnn.css"><link rel="stylesheet" href="live.css">'
        f'<script src="{qrnn_live.ASSET}"></script><script src="live.js"></script></head>'
        '<body><main><div class="qrnn-live" data-variant="full"></div>'
        '<div class="qrnn-live" data-variant="compact"></div></main></body></html>'
    )
    return html


def _watch(p) -> list[str]:
    """Console errors, page errors and any request that leaves file://."""
    events: list[str] = []
    p.on("console", lambda m: m.type == "error" and events.append(m.text))
    p.on("pageerror", lambda e: events.append(str(e)))
    p.on("request", lambda r: not r.url.startswith("file://") and events.append(r.url))
    return events


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_page_in_a_real_browser(page, asset):
    """From file://, no console error and no request; typing updates every model at 1280 and
    390 px without sideways scrolling; the browser's probabilities equal PyTorch's; the time per
    character per model is printed."""
    from playwright.sync_api import sync_playwright

    data = parse(asset)
    vocab, nl = data["vocab"], data["vocab"].index("\n")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for width in (1280, 390):
            p = b.new_page(viewport={"width": width, "height": 900})
            events = _watch(p)
            p.goto(page.as_uri(), wait_until="load")
            area = p.locator("div.qrnn-live[data-variant=full] textarea")
            area.fill("")
            area.press_sequentially("the stock fell N %")
            p.wait_for_function("[...document.querySelectorAll('.qrnn-live-status')]"
                                ".every(e => !e.textContent.includes('computing'))",
                                timeout=20000)  # fmt: skip
            cards = p.locator("div.qrnn-live[data-variant=full] .qrnn-live-card")
            assert cards.count() == len(data["models"])
            bpc = cards.locator(".qrnn-live-bpc").evaluate_all("es => es.map(e => e.dataset.bpc)")
            assert all(math.isfinite(float(x)) and float(x) > 0 for x in bpc)
            assert p.locator(".qrnn-live-sample").count() == len(data["models"])
            assert p.locator(".qrnn-live-oov").first.inner_text() == "%"
            overflow = p.evaluate("document.documentElement.scrollWidth > window.innerWidth")
            assert not overflow, f"the page scrolls sideways at {width} px"
            assert not events, events
            p.close()
        p = b.new_page()
        p.goto(page.as_uri(), wait_until="load")
        t = TEXTS[0]
        ids = [nl, *symbol_ids(t, vocab)]
        for k, m in enumerate(data["models"]):
            rows = p.evaluate(f"qrnnLive.probs({k}, {json.dumps(t)}).map(r => Array.from(r))")
            d32, d64, _, _ = compare(np.array(rows), m["run_id"], ids)
            assert d32 <= TOL_F32 and d64 <= TOL_F64, (m["run_id"], d32, d64)
        long, n = TEXTS[2] * 2, len(symbol_ids(TEXTS[2] * 2, vocab)) + 1
        ms = p.evaluate(f"""[...Array(qrnnLive.models().length).keys()].map(k => {{
            const t0 = performance.now(); qrnnLive.probs(k, {json.dumps(long)});
            return (performance.now() - t0) / {n}; }})""")
        speed = {m["method"]: round(x, 3) for m, x in zip(data["models"], ms, strict=True)}
        print("\nms per character per model (headless Chromium):", speed)
        b.close()

"""Training-step time of the qrnn layers against ``torch.nn``, Brevitas and a Python time loop.

What: one training step (``zero_grad``, forward, ``loss = output.square().mean()``, backward; no
optimizer step) on a (steps, batch, input_size) input, for

* the float ``torch.nn`` RNN / GRU / LSTM (the baseline, ratio 1.00),
* ``qrnn.QuantRNN / QuantGRU / QuantLSTM`` with every quantized method of ``qrnn.SCHEMES``,
  deterministic and stochastic (training mode, so stochastic draws are sampled every step),
* a Python time loop over the reference cell (``qrnn.cells.reference_forward`` on the float
  ``torch.nn`` layer),
* ``brevitas.nn.QuantLSTM`` (optional ``bench`` extra) two ways: weight-only ternary
  (``SignedTernaryWeightPerTensorConst``, every other quantizer ``None``) and its defaults,

at each hidden size. How: after warm-up steps, every repeat is one *round* that runs each variant
once in an order shuffled per round (fixed seed), so that load from other processes on a shared
machine falls on all variants alike; the table reports the median over rounds (``perf_counter``)
and its ratio to the median of the float ``torch.nn`` layer of the same cell and size.

Targets (PASS/FAIL column): qrnn deterministic <= 1.10x float, stochastic <= 1.25x; the slowest
qrnn LSTM variant at least 1.4x faster than weight-only Brevitas and 5x faster than default
Brevitas at the same hidden size.

    python bench/bench_layers.py                      # full run (see bench/README.md)
    python bench/bench_layers.py --quick --out r.json # smoke run
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import qrnn
from qrnn.cells import reference_forward
from qrnn.study.records import cpu_model, git_state

CELLS = {"rnn": (nn.RNN, qrnn.QuantRNN), "gru": (nn.GRU, qrnn.QuantGRU)}
CELLS["lstm"] = (nn.LSTM, qrnn.QuantLSTM)
METHODS = [s for s in qrnn.SCHEMES if s != "float"]
DET_TARGET, STOCH_TARGET = 1.10, 1.25  # max ratio to float torch.nn
BREVITAS_TARGETS = {"brevitas weight-only ternary": 1.4, "brevitas default": 5.0}  # min speedup
# Brevitas's default activation quantizers collect runtime statistics for their first 300 calls
# in training mode (one call per time step; ``collect_stats_steps`` in brevitas.quant.base), then
# switch to a learned scale. The warm-up runs one untimed no-grad forward of that many time
# steps (batch 1, cheap) so that the timed steps are its steady training state.
BREVITAS_STATS_STEPS = 300
BREVITAS_HINT = "brevitas: not installed (pip install .[bench])"


@dataclass
class Variant:
    cell: str
    hidden: int
    name: str
    kind: str  # float | det | stoch | pyloop | brevitas
    module: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    times: list[float] = field(default_factory=list)  # wall seconds per round
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds
    stats_warmup: int = 0  # time steps of a no-grad forward first (Brevitas's statistics)
    quant_times: list[float] = field(default_factory=list)  # quantize_parameters() alone


def _brevitas_lstm(input_size: int, hidden: int) -> tuple[str, dict[str, nn.Module]] | str:
    """(version, {name: module}) for the two Brevitas configurations, or why not available."""
    try:
        import brevitas
        from brevitas.nn import QuantLSTM
        from brevitas.quant import SignedTernaryWeightPerTensorConst
    except Exception:  # not installed, or broken against this torch
        return BREVITAS_HINT
    quantizers = ("bias", "io", "gate_acc", "sigmoid", "tanh", "cell_state")
    off = {f"{q}_quant": None for q in quantizers}  # everything but the weights in float
    try:
        mods = {
            "brevitas weight-only ternary": QuantLSTM(
                input_size, hidden, weight_quant=SignedTernaryWeightPerTensorConst, **off
            ),
            "brevitas default": QuantLSTM(input_size, hidden),
        }
    except Exception as e:
        return f"brevitas: QuantLSTM failed ({type(e).__name__}: {e}); rows skipped"
    return brevitas.__version__, mods


def build_variants(args: argparse.Namespace) -> tuple[list[Variant], str]:
    variants: list[Variant] = []
    brevitas_note = "brevitas: skipped (--no-brevitas)"
    for hidden in args.hidden:
        for cell in args.cells:
            torch_cls, quant_cls = CELLS[cell]
            base = torch_cls(args.input_size, hidden)
            variants.append(Variant(cell, hidden, "float torch.nn", "float", base, base))
            for method in METHODS:
                for stoch in (False, True):
                    m = quant_cls(args.input_size, hidden, scheme=method, stochastic=stoch)
                    m.load_state_dict(base.state_dict())
                    kind = "stoch" if stoch else "det"
                    variants.append(Variant(cell, hidden, f"{method} {kind}", kind, m, m))
            for norm in ("weight_norm", "layer_norm"):  # the normalization rescue (binary det)
                m = quant_cls(args.input_size, hidden, scheme="binary", **{norm: True})
                m.load_state_dict(base.state_dict(), strict=False)
                name = f"binary det + {norm.replace('_', ' ')}"
                variants.append(Variant(cell, hidden, name, "norm", m, m))
            loop = torch_cls(args.input_size, hidden)
            variants.append(
                Variant(
                    cell, hidden, "python time loop", "pyloop", loop,
                    lambda x, layer=loop: reference_forward(layer, x),
                )
            )  # fmt: skip
        if "lstm" in args.cells and not args.no_brevitas:
            got = _brevitas_lstm(args.input_size, hidden)
            if isinstance(got, str):
                brevitas_note = got
                args.no_brevitas = True  # say it once, skip every size
                continue
            brevitas_note = f"brevitas {got[0]}"
            for name, m in got[1].items():
                v = Variant("lstm", hidden, name, "brevitas", m, m)
                if name == "brevitas default":  # leave its statistics phase first
                    v.stats_warmup = BREVITAS_STATS_STEPS
                variants.append(v)
    for v in variants:
        v.module.train()
    return variants, brevitas_note


def train_step(v: Variant, x: torch.Tensor) -> tuple[float, float]:
    """One training step of ``v``: (wall seconds, process CPU seconds)."""
    c0, t0 = time.process_time(), time.perf_counter()
    v.module.zero_grad(set_to_none=True)
    out = v.forward(x)[0]
    out.square().mean().backward()
    return time.perf_counter() - t0, time.process_time() - c0


def run(args: argparse.Namespace, variants: list[Variant]) -> None:
    """Warm-up, then up to ``args.repeats`` rounds of every variant in a shuffled order (Brevitas
    default only in the first ``args.brevitas_repeats``: one step takes seconds). After
    ``args.min_repeats`` rounds, stop early if the next round would overrun ``args.budget``."""
    torch.manual_seed(args.seed)
    x = torch.randn(args.steps, args.batch, args.input_size)
    rng = random.Random(args.seed)
    t_start = time.perf_counter()
    gc.collect()
    gc.disable()  # no collector pauses inside a timed step; collected between rounds
    try:
        for v in variants:
            if v.stats_warmup:
                with torch.no_grad():
                    v.forward(torch.randn(v.stats_warmup, 1, args.input_size))
            for _ in range(args.warmup):
                train_step(v, x)
        gc.collect()
        print(f"warm-up: {time.perf_counter() - t_start:.0f} s", flush=True)
        for r in range(args.repeats):
            order = [v for v in variants  # default Brevitas only in the first rounds
                     if v.name != "brevitas default" or r < args.brevitas_repeats]  # fmt: skip
            elapsed = time.perf_counter() - t_start
            guess = sum(v.times[-1] for v in order) if r else 0.0  # from the last round
            if args.budget and r >= args.min_repeats and elapsed + guess > 60 * args.budget:
                print(f"stopping after {r} rounds: next would pass --budget {args.budget:g} min")
                break
            rng.shuffle(order)
            t0 = time.perf_counter()
            for v in order:
                wall, cpu = train_step(v, x)
                v.times.append(wall)
                v.cpu_times.append(cpu)
            gc.collect()
            print(f"round {r + 1}/{args.repeats}: {time.perf_counter() - t0:.0f} s", flush=True)
        time_quantization(args, variants)
    finally:
        gc.enable()
    print(f"total: {time.perf_counter() - t_start:.0f} s", flush=True)


def time_quantization(args: argparse.Namespace, variants: list[Variant]) -> None:
    """The quantization work alone (``quantized_parameters()`` as the forward calls it, with the
    straight-through graph): an estimate of the intrinsic overhead that does not depend on the
    noise of whole training steps."""
    for v in variants:
        if v.kind in ("det", "stoch", "norm"):
            v.module.quantized_parameters()  # untimed first call
            for _ in range(args.quant_repeats):
                t0 = time.perf_counter()
                v.module.quantized_parameters()
                v.quant_times.append(time.perf_counter() - t0)


def summarize(variants: list[Variant]) -> list[dict]:
    """One row per variant: medians, ratios to the float torch.nn layer, target status."""
    med = {(v.cell, v.hidden, v.name): statistics.median(v.times) for v in variants}
    cpu = {(v.cell, v.hidden, v.name): statistics.median(v.cpu_times) for v in variants}
    rows = []
    for v in variants:
        key, base = (v.cell, v.hidden, v.name), (v.cell, v.hidden, "float torch.nn")
        m, ratio = med[key], med[key] / med[base]
        q = statistics.quantiles(v.times, n=4) if len(v.times) > 1 else [m, m, m]
        row = dict(cell=v.cell, hidden=v.hidden, variant=v.name, kind=v.kind, median_ms=m * 1e3)
        row.update(iqr_pct=100 * (q[2] - q[0]) / m, ratio=ratio, cpu_ratio=cpu[key] / cpu[base])
        row.update(rounds=len(v.times), target="", status="")
        if v.quant_times:  # quantization alone, as a share of the float step
            row["quant_ms"] = statistics.median(v.quant_times) * 1e3
            row["quant_pct"] = 100 * row["quant_ms"] / (med[base] * 1e3)
        if v.kind in ("det", "stoch"):
            limit = DET_TARGET if v.kind == "det" else STOCH_TARGET
            row["target"] = f"<= {limit:.2f}x"
            row["status"] = "PASS" if ratio <= limit else "FAIL"
        elif v.kind == "brevitas":  # against the slowest qrnn LSTM variant of this size
            qrnn_rows = {k[2]: t for k, t in med.items() if k[:2] == key[:2]}
            slowest = max(t for name, t in qrnn_rows.items() if name.endswith(("det", "stoch")))
            need = BREVITAS_TARGETS[v.name]
            row["target"] = f"qrnn >= {need:g}x faster: {m / slowest:.1f}x"
            if "ternary det" in qrnn_rows:
                row["target"] += f" (ternary det {m / qrnn_rows['ternary det']:.1f}x)"
            row["status"] = "PASS" if m / slowest >= need else "FAIL"
        row.update(times_ms=[t * 1e3 for t in v.times], cpu_ms=[t * 1e3 for t in v.cpu_times])
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'cell':<5} {'hidden':>6}  {'variant':<28} {'ms/step':>9} {'iqr%':>5} "
        f"{'ratio':>6} {'cpu':>6} {'quant%':>6}  target / status"
    )
    print(head)
    print("-" * (len(head) + 20))
    for r in rows:
        quant = f"{r['quant_pct']:>6.1f}" if "quant_pct" in r else " " * 6
        print(
            f"{r['cell']:<5} {r['hidden']:>6}  {r['variant']:<28} {r['median_ms']:>9.1f} "
            f"{r['iqr_pct']:>5.0f} {r['ratio']:>6.2f} {r['cpu_ratio']:>6.2f} {quant}  "
            f"{r['target']} {r['status']}".rstrip()
        )


def print_summary(rows: list[dict]) -> None:
    print("\ntargets:")
    groups = [
        ("deterministic <= 1.10x float", "det"),
        ("stochastic <= 1.25x float", "stoch"),
        ("qrnn LSTM >= 1.4x / 5x faster than Brevitas", "brevitas"),
    ]
    for label, kind in groups:
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            print(f"  {label}: not measured")
            continue
        fails = [f"{r['cell']} {r['hidden']} {r['variant']}" for r in sel if r["status"] == "FAIL"]
        worst = max(r["ratio"] for r in sel) if kind != "brevitas" else None
        extra = f" (worst ratio {worst:.2f}x)" if worst is not None else ""
        verdict = "PASS" if not fails else f"FAIL ({len(fails)}/{len(sel)}: {'; '.join(fails)})"
        print(f"  {label}: {verdict}{extra}")
    for kind, label in (("det", "deterministic"), ("stoch", "stochastic")):
        sel = [r for r in rows if r["kind"] == kind and "quant_pct" in r]
        if sel:
            top = max(sel, key=lambda r: r["quant_pct"])
            print(f"  quantization alone, {label}: at most {top['quant_pct']:.1f}% of the float "
                  f"step ({top['cell']} {top['hidden']} {top['variant']})")  # fmt: skip


def out_path(out: Path, meta: dict, hidden: list[int]) -> Path:
    """``--out`` as given when it names a .json/.csv file; for a folder, one name per run."""
    if out.suffix in (".json", ".csv"):
        return out
    stamp = meta["started"].replace("-", "").replace(":", "")
    return out / f"layers-{stamp}-h{'-'.join(map(str, hidden))}.json"


def write_out(path: Path, meta: dict, rows: list[dict]) -> None:
    if path.suffix == ".csv":
        cols = [k for k in rows[0] if k not in ("times_ms", "cpu_ms")]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    else:
        path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    p.add_argument("--hidden", nargs="+", type=int, default=[128, 256, 512])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=100, help="sequence length (time steps)")
    p.add_argument("--input-size", type=int, default=50)
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median over)")
    p.add_argument(
        "--brevitas-repeats", type=int, default=3, help="rounds with default Brevitas (slow)"
    )
    p.add_argument("--min-repeats", type=int, default=3, help="rounds run whatever --budget")
    p.add_argument(
        "--budget", type=float, default=15, help="minutes; no new round past it (0: no limit)"
    )
    p.add_argument("--quant-repeats", type=int, default=21,
                   help="timed calls of the quantization alone per qrnn variant")  # fmt: skip
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    p.add_argument("--out", type=Path,
                   help="also write results: FILE (.json or .csv), or a folder, where the record "
                        "is named layers-<start time>-h<sizes>.json")  # fmt: skip
    p.add_argument("--no-brevitas", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.hidden, args.batch, args.steps = [16, 32], 8, 10
        args.repeats, args.brevitas_repeats = 3, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    variants, brevitas_note = build_variants(args)
    meta = dict(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpu=cpu_model(),
        python=platform.python_version(),
        brevitas=brevitas_note,
        cores=os.cpu_count(),
        loadavg_start=os.getloadavg()[0],
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        git=git_state(),
        args={k: v for k, v in vars(args).items() if k != "out"},  # the record's own path
    )
    out = out_path(args.out, meta, args.hidden) if args.out else None
    if out:  # made now: a missing folder must not lose the run at the end
        out.parent.mkdir(parents=True, exist_ok=True)
    print(f"torch {meta['torch']}, threads {meta['threads']}, cpu: {meta['cpu']}")
    print(brevitas_note)
    print(f"load average {meta['loadavg_start']:.1f} on {meta['cores']} cores")
    if meta["loadavg_start"] + args.threads > (meta["cores"] or 1) + 0.5:
        print(
            "  warning: the cores are busy; threads that lose their core stall each step, so "
            "wall times are noisy (compare --threads 1 and the cpu column)"
        )
    print(
        f"{len(variants)} variants; batch {args.batch}, steps {args.steps}, input "
        f"{args.input_size}; {args.warmup} warm-up step(s), then {args.repeats} interleaved "
        f"rounds ({args.brevitas_repeats} with default Brevitas; at least {args.min_repeats}, "
        f"no new one past {args.budget:g} min)",
        flush=True,
    )
    run(args, variants)
    meta["loadavg_end"] = os.getloadavg()[0]
    print(f"load average at the end: {meta['loadavg_end']:.1f}")
    rows = summarize(variants)
    print()
    print_table(rows)
    print_summary(rows)
    if out:
        write_out(out, meta, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

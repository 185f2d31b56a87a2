"""Packed export: file sizes against the fp32 state_dict, pack/unpack times, the integer path's
deviation, and operation counts / energy per time step.

    nice -n 15 .venv/bin/python bench/bench_export.py [--hidden 256 512] [--repeat 3]

Models: character LMs (vocabulary 50, one-hot input, 1 layer), weights drawn uniformly within
the Glorot bound of each gate block (a trained-like spread; the fraction of zero ternary weights
depends on it and is printed; pow2-ternary, whose threshold 0.25 lies above the Glorot bound,
gets U(-0.5, 0.5) so that about half its weights are nonzero). ``io``: embedding (16) and
output layer quantized too.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from qrnn.cells import reference_forward
from qrnn.export import load_packed, pack_model
from qrnn.hardware import (
    ENERGY_PJ,
    ENERGY_SOURCE,
    energy_pj,
    integer_forward,
    integer_preactivations,
    preactivation_bound,
    step_ops,
)
from qrnn.study.train import RunConfig, build_model

METHODS = {
    "binary": ("binary", {}),
    "ternary": ("ternary", {}),
    "pow2-ternary": ("pow2-ternary", {}),
    "exponential": ("exponential", {}),
    "float": ("float", {}),
}


def _model(cell: str, method: str, hidden: int, io: bool, seed: int = 0):
    scheme, opts = METHODS[method]
    cfg = RunConfig(task="ptb-char", cell=cell, hidden=hidden, scheme=scheme,
                    quantizer_options=opts, quantize_io=io, embed=16 if io else 0)  # fmt: skip
    model = build_model(cfg, 50)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p.shape[1] if p.dim() == 2 else hidden
            bound = math.sqrt(6 / (fan_in + hidden))
            if method == "pow2-ternary":  # the Glorot bound is below its threshold 0.25
                bound = 0.5
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    return model.eval()


def _time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sizes(hiddens, cells, repeat: int, folder: Path) -> list[dict]:
    rows = []
    for hidden in hiddens:
        for cell in cells:
            for io in (False, True):
                for method in METHODS:
                    model = _model(cell, method, hidden, io)
                    path = folder / "m.npz"
                    pack_s = _time(lambda m=model, p=path: pack_model(m, p), repeat)
                    rep = pack_model(model, path)
                    unpack_s = _time(lambda p=path: load_packed(p), repeat)
                    rows.append(dict(cell=cell, hidden=hidden, io=io, method=method,
                                     bits=rep["bits"], file_bytes=rep["file_bytes"],
                                     fp32_bytes=rep["fp32_bytes"], ratio=rep["ratio"],
                                     quantized_ratio=rep["quantized_ratio"],
                                     quantized_fraction=rep["quantized_fraction"],
                                     pack_ms=1e3 * pack_s, unpack_ms=1e3 * unpack_s))  # fmt: skip
    return rows


def deviations(hidden: int, steps: int) -> list[dict]:
    """Integer path vs float over ``steps`` random characters: the one-step pre-activation
    error (fed the float trajectory; against the stated bound) and the free-running output."""
    rows = []
    x = torch.randint(0, 50, (steps, 1), generator=torch.Generator().manual_seed(1))
    for cell in ("rnn", "gru", "lstm"):
        for method in ("binary", "ternary", "pow2-ternary", "exponential"):
            rnn = _model(cell, method, hidden, False).rnn
            e = torch.nn.functional.one_hot(x, 50).float()
            t0 = time.perf_counter()
            with torch.no_grad():
                ref, _ = rnn(e)
                got, _ = integer_forward(rnn, e)
                loop, _ = reference_forward(rnn, e)  # float32, another summation order
            int_s = time.perf_counter() - t0
            w = {k: v.detach().double() for k, v in rnn.quantized_parameters(False).items()}
            h = torch.cat([torch.zeros(1, 1, hidden), ref[:-1]])[:, 0]  # (T, H) float states
            gi, gh = integer_preactivations(rnn, e[:, 0], h)
            exact_i = e[:, 0].double() @ w["weight_ih_l0"].T + w["bias_ih_l0"]
            exact_h = h.double() @ w["weight_hh_l0"].T + w["bias_hh_l0"]
            bi, bh = preactivation_bound(rnn)
            di, dh = abs(gi - exact_i.numpy()), abs(gh - exact_h.numpy())
            rows.append(dict(cell=cell, method=method,
                             step_max_abs=float(max(di.max(), dh.max())),
                             step_of_bound=float(max((di / bi).max(), (dh / bh).max())),
                             max_abs=float((ref - got).abs().max()),
                             float_reorder=float((ref - loop).abs().max()),
                             int_s=int_s))  # fmt: skip
    return rows


def operations(hidden: int) -> list[dict]:
    rows = []
    for cell in ("rnn", "gru", "lstm"):
        for method in METHODS:
            ops = step_ops(_model(cell, method, hidden, False).rnn)
            rows.append({**ops, **{f"{k}_pj": v for k, v in energy_pj(ops).items()},
                         "dram_total_pj": energy_pj(ops, "dram")["total"]})  # fmt: skip
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 512])
    p.add_argument("--cells", nargs="+", default=["rnn", "gru", "lstm"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steps", type=int, default=50, help="sequence length of the deviation check")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="also write every row here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        size_rows = sizes(args.hidden, args.cells, args.repeat, Path(d))
    print("file sizes against the fp32 state_dict (4 bytes per element; whole file counted)")
    print(f"{'cell':5} {'H':>4} {'io':>3} {'method':13} {'bits':>4} {'file B':>9} {'fp32 B':>9} "
          f"{'ratio':>6} {'q-ratio':>7} {'q-frac':>6} {'pack ms':>8} {'unpack ms':>9}")  # fmt: skip
    for r in size_rows:
        qr = f"{r['quantized_ratio']:7.2f}" if r["quantized_ratio"] else f"{'-':>7}"
        bits = ",".join(map(str, r["bits"])) or "32"
        print(f"{r['cell']:5} {r['hidden']:4d} {'yes' if r['io'] else 'no':>3} {r['method']:13} "
              f"{bits:>4} {r['file_bytes']:9d} {r['fp32_bytes']:9d} {r['ratio']:6.2f} {qr} "
              f"{r['quantized_fraction']:6.1%} {r['pack_ms']:8.1f} "
              f"{r['unpack_ms']:9.1f}")  # fmt: skip
    H = args.hidden[0]
    dev = deviations(H, args.steps)
    print(f"\ninteger path (Q16.16) vs float, H={H}, {args.steps} random characters: one step "
          "(max |d pre-activation|, max fraction of the stated bound); free-running max |dh| "
          "(float32 fused vs float32 loop, for scale: chaotic nets amplify any rounding)"
          )  # fmt: skip
    for r in dev:
        print(f"  {r['cell']:5} {r['method']:13} step {r['step_max_abs']:.2e} "
              f"({r['step_of_bound']:.2f} of bound)  run {r['max_abs']:.2e} "
              f"({r['float_reorder']:.2e})  {r['int_s']:.2f} s")  # fmt: skip
    ops = operations(H)
    print(f"\noperations and energy per time step, batch 1, recurrent layer, H={H}, one-hot input "
          f"50 (dense)\nenergies: {ENERGY_SOURCE}: {json.dumps(ENERGY_PJ)}; shift and sign flip "
          "costed as an int32 add (our assumption)")  # fmt: skip
    cols = ("fp32_mult", "fp32_add", "int32_mult", "int32_add", "shift", "sign_flip",
            "nonlinearity", "weight_bits")  # fmt: skip
    print(
        f"{'cell':5} {'method':13} "
        + " ".join(f"{c:>10}" for c in cols)
        + f" {'zero%':>6} {'arith pJ':>9} {'SRAM pJ':>9} {'total pJ':>9} {'DRAM tot nJ':>11}"
    )
    for r in ops:
        print(f"{r['cell']:5} {r['scheme']:13} " + " ".join(f"{r[c]:10d}" for c in cols)
              + f" {r['zero_fraction']:6.1%} {r['arithmetic_pj']:9.0f} {r['weights_pj']:9.0f} "
              f"{r['total_pj']:9.0f} {r['dram_total_pj'] / 1e3:11.1f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"sizes": size_rows, "deviation": dev, "ops": ops}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

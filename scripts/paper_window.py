"""The paper-scale window on one large GPU (issues 12 and 18), as one prepared command.

Runs the ``window`` experiment of the ``paper`` profile (PTB-char LSTM 1000 units, a 64-wide
embedding, the full training text, 8 epochs; float, binary-det, ternary-det, ternary-stoch,
exponential-det; seed 0), all runs at once on the one GPU, then a GPU layer benchmark
(quantized vs float fused training step at hidden 256 / 512 / 1000). Everything goes under
``--out`` (the device tool's ``$OUT``): ``results/paper/runs/<run-id>/`` and
``bench-gpu.json``. ``--dry`` runs the same code on the CPU at toy sizes (``paper-dry``
profile, tiny benchmark) in about a minute: the test suite runs it.

    QRNN_DATA=... python scripts/paper_window.py --out "$OUT"          # on the GPU machine
    QRNN_DATA=... python scripts/paper_window.py --dry --out runs/win  # here, a check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def bench_gpu(device: str, hiddens: list[int], repeats: int, steps: int, batch: int) -> dict:
    """Median time of one training step (forward + backward, T x B x 64 input) of
    ``torch.nn.LSTM`` against ``QuantLSTM`` per method, interleaved rounds, synchronized."""
    import torch

    from qrnn import QuantLSTM

    methods = {"float": {}, "binary-det": {"scheme": "binary"},
               "ternary-det": {"scheme": "ternary"},
               "ternary-stoch": {"scheme": "ternary", "stochastic": True},
               "exponential-det": {"scheme": "exponential"}}  # fmt: skip
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for hidden in hiddens:
        x = torch.randn(steps, batch, 64, device=device)
        layers = {"torch.nn": torch.nn.LSTM(64, hidden).to(device)}
        layers |= {m: QuantLSTM(64, hidden, **kw).to(device).train() for m, kw in methods.items()}
        times = {k: [] for k in layers}
        for _ in range(repeats + 1):  # the first round warms up and is not kept
            for name, layer in layers.items():
                sync()
                t0 = time.perf_counter()
                out, _ = layer(x)
                out.square().mean().backward()
                sync()
                times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["torch.nn"][1:])
        for name, ts in times.items():
            med = statistics.median(ts[1:])
            rows.append({"hidden": hidden, "variant": name, "median_s": med, "ratio": med / base})
    return {"device": device, "steps": steps, "batch": batch, "repeats": repeats, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder ($OUT)")
    p.add_argument("--dry", action="store_true", help="CPU, toy sizes: check the command")
    p.add_argument("--data", default=None, help="data mirror (default: $QRNN_DATA)")
    p.add_argument("--no-bench", action="store_true", help="skip the layer benchmark")
    args = p.parse_args(argv)

    import torch

    from qrnn import study
    from qrnn.study import records

    profile = "paper-dry" if args.dry else "paper"
    device = "cpu" if args.dry else "cuda"
    if not args.dry and not torch.cuda.is_available():
        print("paper_window: no CUDA device here; use --dry for a CPU check", file=sys.stderr)
        return 2
    results = args.out / "results"
    runs = study.grid(profile, ["experiment=window"])
    t0 = time.perf_counter()
    outcomes = study.run_study(profile, results, only=["experiment=window"], jobs=len(runs),
                               data_root=args.data, quiet=True)  # fmt: skip
    summary = {"profile": profile, "runs": outcomes, "seconds": time.perf_counter() - t0,
               "environment": records.environment(device, torch.get_num_threads())}  # fmt: skip
    for o in outcomes:
        print(f"{o['status']:10s} {o['seconds']:7.1f}s  {o['run_id']}")
    if not args.no_bench:
        if args.dry:
            summary["bench"] = bench_gpu(device, [16], repeats=5, steps=5, batch=4)
        else:
            summary["bench"] = bench_gpu(device, [256, 512, 1000], repeats=15, steps=100, batch=64)
        for r in summary["bench"]["rows"]:
            print(f"bench h={r['hidden']:5d} {r['variant']:16s} {r['ratio']:.2f}x")
    records.atomic_write_json(args.out / "window.json", summary)
    return 0 if all(o["status"] in ("completed", "diverged") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

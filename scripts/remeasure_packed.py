"""Evaluate the packed model of finished runs again with this code and store the result in
their records (``qrnn.study.train.remeasure_packed``; the earlier value is kept as
``packed.remeasured.before``)::

    python scripts/remeasure_packed.py results/cpu/runs/RUN_ID [...] [--data MIRROR]
"""

from __future__ import annotations

import argparse
import os

from qrnn.study.train import remeasure_packed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--data", default=os.environ.get("QRNN_DATA"), help="data mirror folder")
    a = p.parse_args()
    for run in a.runs:
        packed = remeasure_packed(run, a.data)
        was = packed.get("remeasured", {}).get("before")
        print(f"{run}: test metric of the reloaded file {packed['test_metric']!r}"
              + (f" (was {was!r})" if was is not None else " (unchanged)"))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

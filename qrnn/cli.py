"""The ``qrnn`` command. ``qrnn schemes`` lists the quantization methods."""

from __future__ import annotations

import argparse
import sys

from .quantizers import OPTIONS_HELP, SCHEMES, quantizer


def _schemes(args: argparse.Namespace) -> int:
    rows = [("scheme", "bits", "stochastic", "options (defaults)")]
    for name in SCHEMES:
        q = quantizer(name)
        rows.append(
            (name, str(q.bits), "yes" if q.stochastic_supported else "no", OPTIONS_HELP[name])
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[3])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qrnn", description="Recurrent networks with limited numerical precision."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("schemes", help="list the quantization methods, their options and bits")
    s.set_defaults(func=_schemes)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = ["build_parser", "main"]

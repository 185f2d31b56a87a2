"""Helpers for the book and notebooks: interactive figures for the static site and a plot style.

:func:`figure` returns an HTML block that ``book/_static/qrnn.js`` renders in the browser (SVG,
no kernel, no network); its data is embedded as JSON.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

__all__ = ["figure", "style"]


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, 6)
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):  # numpy scalars
        return _clean(x.item())
    return x


def figure(kind: str, spec: dict | None = None, alt: str = ""):
    """An interactive figure: ``kind`` is ``"quantizer"``, ``"results"`` or ``"lines"``."""
    from IPython.display import HTML

    if kind not in ("quantizer", "results", "lines"):
        raise ValueError(f"unknown figure kind {kind!r}; choose quantizer, results or lines")
    data = html.escape(json.dumps(_clean(spec or {})), quote=True)
    label = html.escape(alt, quote=True)
    return HTML(
        f'<div class="qrnn-fig" data-kind="{kind}" data-spec="{data}" role="figure" '
        f'aria-label="{label}"></div>'
    )


def style() -> None:
    """The seaborn theme used by every static figure."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="deep")

"""Helpers for the book and notebooks: interactive figures for the static site, tables that fit a
phone screen, and one plot style with one colour per method.

:func:`figure` returns an HTML block that ``book/_static/qrnn.js`` renders in the browser (SVG,
no kernel, no network); its data is embedded as JSON. :data:`METHOD_COLORS` is the single
method-to-colour map: :func:`style` and :func:`palette` give it to seaborn and matplotlib, and
:func:`figure` embeds it in every interactive figure.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

__all__ = ["CELL_COLORS", "METHOD_COLORS", "METRIC_LABELS", "figure", "palette", "style", "table"]

# deterministic and stochastic variants of one scheme share a hue, the stochastic one lighter
METHOD_COLORS: dict[str, str] = {
    "float": "#4d4d4d",
    "binary-det": "#c44e52",
    "binary-stoch": "#ee9a9c",
    "ternary-det": "#4c72b0",
    "ternary-stoch": "#93b4e4",
    "pow2-ternary": "#55a868",
    "pow2-stoch": "#9fd4aa",
    "exponential-det": "#8172b3",
    "exponential-stoch": "#bcb1e3",
    # the cause experiments (issue 14): binary's hue family, float's grey family
    "binary-glorot-det": "#8c2d04",
    "binary-glorot-stoch": "#d9822b",
    "binary-rms-det": "#b8860b",
    "binary-rms-stoch": "#e6c35c",
    "float-noise-binary": "#937860",
    "float-noise-ternary": "#c9b49c",
}
CELL_COLORS: dict[str, str] = {"rnn": "#dd8452", "gru": "#937860", "lstm": "#64b5cd"}
METRIC_LABELS: dict[str, str] = {
    "bpc": "test BPC (bits per character, lower is better)",
    "error": "test error rate (lower is better)",
}


def palette(names=None) -> dict[str, str]:
    """Colours for methods or cells, as a seaborn ``palette`` (all known names by default)."""
    known = METHOD_COLORS | CELL_COLORS
    return dict(known) if names is None else {n: known[n] for n in names}


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


def figure(kind: str, spec: dict | None = None, alt: str = "", caption: str = ""):
    """An interactive figure: ``kind`` is ``"quantizer"``, ``"results"`` or ``"lines"``.
    ``caption`` (HTML) is shown under it, numbered with the page's other figures."""
    from IPython.display import HTML

    if kind not in ("quantizer", "results", "lines"):
        raise ValueError(f"unknown figure kind {kind!r}; choose quantizer, results or lines")
    spec = {"colors": palette(), "ylabels": METRIC_LABELS, **(spec or {})}
    data = html.escape(json.dumps(_clean(spec)), quote=True)
    label = html.escape(alt, quote=True)
    cap = f"<figcaption><p>{caption}</p></figcaption>" if caption else ""
    return HTML(
        f'<figure class="qrnn-figure"><div class="qrnn-fig" data-kind="{kind}" '
        f'data-spec="{data}" role="figure" aria-label="{label}"></div>{cap}</figure>'
    )


def table(df, columns=None, formats: dict | None = None, name: str = "table", note: str = ""):
    """A table for the book: the ``columns`` a reader needs (all by default) in a box that scrolls
    sideways on a narrow screen, and every column of ``df`` as a CSV download (``name.csv``)."""
    import base64

    from IPython.display import HTML

    view = df[list(columns)] if columns is not None else df
    fmt = {k: v for k, v in (formats or {}).items() if k in view.columns}
    body = view.style.format(fmt, na_rep="-").hide(axis="index").to_html()
    csv = base64.b64encode(df.to_csv(index=False).encode()).decode()
    hidden = [c for c in df.columns if c not in view.columns]
    more = f" (all columns, also {', '.join(map(str, hidden))})" if hidden else ""
    extra = f" {note}" if note else ""
    return HTML(
        f'<div class="qrnn-table"><div class="qrnn-scroll">{body}</div>'
        f'<p class="qrnn-note"><a download="{name}.csv" href="data:text/csv;base64,{csv}">'
        f"Download {name}.csv</a>{more}.{extra}</p></div>"
    )


def style() -> None:
    """The seaborn theme used by every static figure."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="deep")

"""Helpers for the book and notebooks: interactive figures for the static site, tables that fit a
phone screen, and one plot style with one colour per method.

:func:`figure` returns an HTML block that ``book/_static/qrnn.js`` renders in the browser (SVG,
no kernel, no network); its data is embedded as JSON. :data:`METHOD_COLORS` is the single
method-to-colour map: :func:`style` and :func:`palette` give it to seaborn and matplotlib, and
:func:`figure` embeds it in every interactive figure.

Static figures are drawn at :data:`FIGURE_DPI` or more: inside IPython (the book's pages, the
notebooks) :func:`style` renders every matplotlib figure with :func:`figure_png`, which also
writes the figure's sizes into the PNG (:func:`figure_sizes`, as ``tEXt`` chunks), so that the
book's browser test can tell how large its tick labels are on screen.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

__all__ = ["CELL_COLORS", "FIGURE_DPI", "METHOD_COLORS", "METRIC_LABELS", "SCHEME_MARKERS",
           "dashes", "figure", "figure_png", "figure_sizes", "method_order", "method_style",
           "palette", "style", "table"]  # fmt: skip

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
    # the cause experiments (issue 14): hues of their own (orange, magenta, brown, cyan)
    "binary-glorot-det": "#e69f00",
    "binary-glorot-stoch": "#f3c66b",
    "binary-rms-det": "#cc79a7",
    "binary-rms-stoch": "#e9b8d3",
    "float-noise-binary": "#8c564b",
    "float-noise-ternary": "#17becf",
}
# For figures that show many methods at once (the cause experiments beside the main grid): each
# method keeps its colour (METHOD_COLORS), each weight scheme has its own marker and the rounding
# is the line style (deterministic solid, stochastic dashed), so that no two methods differ by a
# shade alone (colour-blind readers, grey print).
SCHEME_MARKERS: dict[str, str] = {
    "float": "none",
    "float-noise-binary": "triangle-down",
    "float-noise-ternary": "star",
    "binary": "square",
    "binary-glorot": "triangle",
    "binary-rms": "diamond",
    "ternary": "circle",
    "pow2-ternary": "plus",
    "pow2": "plus",
    "exponential": "cross",
}
STOCH_DASH = "6,4"


def _scheme(name: str) -> tuple[str, str]:
    scheme, _, rounding = name.rpartition("-")
    if rounding not in ("det", "stoch") or scheme not in SCHEME_MARKERS:
        return name, "det"
    return scheme, rounding


def method_style(name: str) -> dict[str, str]:
    """Colour, marker and dash of a method in a many-method figure: ``binary-glorot-stoch`` is
    its own colour with binary-glorot's marker, dashed."""
    scheme, rounding = _scheme(name)
    return {
        "color": METHOD_COLORS.get(name, "#4d4d4d"),
        "marker": SCHEME_MARKERS.get(scheme, "circle"),
        "dash": STOCH_DASH if rounding == "stoch" else "",
    }


def method_order(names) -> list[str]:
    """``names`` in the order of :data:`SCHEME_MARKERS`, deterministic before stochastic (a
    legend that reads float, its controls, then binary to exponential); unknown names last."""
    schemes = list(SCHEME_MARKERS)

    def key(name: str):
        scheme, rounding = _scheme(name)
        return (schemes.index(scheme) if scheme in schemes else len(schemes), rounding, name)

    return sorted(names, key=key)


def dashes(names) -> dict[str, tuple[int, int] | str]:
    """seaborn's ``dashes`` for a line plot with ``hue`` and ``style`` both the method: stochastic
    rounding dashed, every other method solid (the line style of :func:`method_style`)."""
    return {n: (4, 2) if _scheme(n)[1] == "stoch" else "" for n in names}


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


# the least resolution of a static figure (pixels per inch of the figure): a figure made at 80
# dpi is rendered at 100, so that it is never shown upscaled in a column of the book
FIGURE_DPI = 100


def figure_sizes(fig) -> dict[str, str]:
    """The sizes a reader's screen needs, for a PNG's ``tEXt`` chunks: the resolution
    (``qrnn:dpi``) and the smallest font, in points, of the visible tick labels
    (``qrnn:tick_pt``), of the legends (``qrnn:legend_pt``) and of any visible text
    (``qrnn:text_pt``); a size with nothing to measure is left out. On screen a label of ``pt``
    points is ``pt / 72 * dpi * shown_width / natural_width`` pixels high."""
    from matplotlib.text import Text

    def smallest(texts) -> float | None:
        sizes = [t.get_fontsize() for t in texts if t.get_visible() and t.get_text().strip()]
        return min(sizes) if sizes else None

    ticks, legends = [], []
    for ax in fig.axes:
        if not (ax.get_visible() and ax.axison):
            continue
        for axis in (ax.xaxis, ax.yaxis):
            ticks += axis.get_ticklabels(which="both")
        if ax.get_legend() is not None:
            legends += ax.get_legend().get_texts()
    legends += [t for leg in fig.legends for t in leg.get_texts()]
    texts = [t for t in fig.findobj(Text) if t.axes is None or t.axes.get_visible()]
    sizes = {
        "dpi": max(fig.dpi, FIGURE_DPI),
        "tick_pt": smallest(ticks),
        "legend_pt": smallest(legends),
        "text_pt": smallest(texts),
    }
    return {f"qrnn:{k}": f"{v:g}" for k, v in sizes.items() if v is not None}


def figure_png(fig) -> str | None:
    """A matplotlib figure as base64 PNG for IPython's display: cut to its drawn content, at
    least :data:`FIGURE_DPI`, its sizes (:func:`figure_sizes`) in the file."""
    from IPython.core.pylabtools import print_figure

    sizes = figure_sizes(fig)
    return print_figure(fig, "png", bbox_inches="tight", base64=True,
                        dpi=float(sizes["qrnn:dpi"]), metadata=sizes)  # fmt: skip


def _render_figures_with_sizes() -> None:
    """Inside IPython, display matplotlib figures with :func:`figure_png`."""
    import importlib
    import sys

    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    import matplotlib
    from matplotlib.figure import Figure

    backend = str(matplotlib.get_backend(auto_select=False))
    if backend.startswith("module://"):
        # the inline backend sets IPython's figure formats when it is first imported: import it
        # now, so that it does so before, not after, the formatter below
        importlib.import_module(backend.removeprefix("module://"))
    shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


def style() -> None:
    """The seaborn theme used by every static figure; inside IPython, figures are shown at
    :data:`FIGURE_DPI` or more with their sizes in the PNG (:func:`figure_png`)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="deep")
    _render_figures_with_sizes()

"""Local Sphinx extension for the qrnn book: an offline site.

* MathJax 3 is served from the build (copied from the ``django-static-mathjax`` wheel, which
  ships MathJax 3.2.2 and needs no Django) instead of a CDN.
* ``qrnn.js`` / ``qrnn.css`` (the interactive figures, a few KB) are added to every page.
* Duplicate ``<script>`` entries (Jupyter Book 1.0.4 adds sphinx-thebe's inline script twice)
  are removed from every page.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MATHJAX_ENTRY = "tex-chtml.js"


def _mathjax_source() -> Path:
    import mathjax  # the django-static-mathjax package

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _config_inited(app, config) -> None:
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"
    static = str(Path(__file__).resolve().parent.parent / "_static")
    config.html_static_path = [*config.html_static_path, static]


def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    if not (dest / MATHJAX_ENTRY).exists():
        shutil.copytree(_mathjax_source(), dest, dirs_exist_ok=True)


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        # same file and attributes (inline body included), whatever the priority
        attrs = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", None) or "", tuple(sorted(attrs.items())))  # None == ""
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("config-inited", _config_inited)
    app.connect("build-finished", _copy_mathjax)
    app.connect("html-page-context", _dedupe_scripts)
    app.add_js_file("qrnn.js")
    app.add_css_file("qrnn.css")
    return {"version": "0.2", "parallel_read_safe": True, "parallel_write_safe": True}

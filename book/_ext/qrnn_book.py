"""Local Sphinx extension for the qrnn book: an offline site.

* MathJax 3 is served from the build (copied from the ``django-static-mathjax`` wheel, which
  ships MathJax 3.2.2 and needs no Django) instead of a CDN.
* ``qrnn.js`` / ``qrnn.css`` (the interactive figures, scroll boxes, a few KB) on every page.
* Duplicate ``<script>`` entries (Jupyter Book 1.0.4 adds sphinx-thebe's inline script twice)
  are removed from every page.
* The repository is a setting: ``qrnn_repository_url`` (``sphinx.config`` in ``_config.yml``) or
  the environment variable ``QRNN_REPOSITORY_URL``. Without it the book has no repository or
  launch buttons; with it, the repository button and Binder/Colab buttons on the pages in
  ``qrnn_launch_pages`` (the run notebook) only.
* Every notebook page can be downloaded as ``.ipynb`` (the executed copy of a Markdown page).
* A colophon in the footer: the commit the book was built from and the last commit of the run
  records it reads (``qrnn_results``).
* Bibliography labels in the author-year style of the citations (pybtex style ``authoryear``).
* The study's trained models (packed ``model.npz`` of every committed run) are copied into the
  build under ``models/`` for download.
* Glossary terms are linked where they first appear in the prose of each page
  (:data:`GLOSSARY`), unless the page already links that term itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

MATHJAX_ENTRY = "tex-chtml.js"
ROOT = Path(__file__).resolve().parents[2]


def _mathjax_source() -> Path:
    import mathjax  # the django-static-mathjax package

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _git(*args: str) -> str:
    try:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def colophon(results: str) -> str:
    """The footer line: build commit (``+`` when the tree had changes) and records commit."""
    build = _git("rev-parse", "--short=10", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        build += " + local changes"
    rec = _git("log", "-1", "--format=%h %cs", "--", results) or "unknown"
    return (
        f'<p class="qrnn-colophon">Built from commit <code>{build}</code>; run records '
        f"<code>{results}</code> at commit <code>{rec}</code>. Cite it with "
        "<code>CITATION.cff</code> in the repository.</p>"
    )


def _config_inited(app, config) -> None:
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"
    static = str(Path(__file__).resolve().parent.parent / "_static")
    config.html_static_path = [*config.html_static_path, static]
    opts = dict(config.html_theme_options or {})
    url = (os.environ.get("QRNN_REPOSITORY_URL") or config.qrnn_repository_url or "").strip()
    opts["repository_url"] = url
    opts["use_repository_button"] = bool(url)
    opts["launch_buttons"] = (
        {"notebook_interface": "classic", "binderhub_url": "https://mybinder.org",
         "colab_url": "https://colab.research.google.com"} if url else {}
    )  # fmt: skip
    opts["extra_footer"] = colophon(config.qrnn_results)
    config.html_theme_options = opts


def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    if not (dest / MATHJAX_ENTRY).exists():
        shutil.copytree(_mathjax_source(), dest, dirs_exist_ok=True)


MODELS = "models"  # build folder of the trained models offered for download


def model_href(run_id: str) -> str:
    """Link, from a page under ``book/``, to a committed run's packed model in the build."""
    return f"../{MODELS}/{run_id}.npz"


def _copy_models(app, exception) -> None:
    """Copy every committed packed model of the study (``<qrnn_results>/runs/*/model.npz``) to
    ``<build>/models/<run-id>.npz``, so the results page can offer them for download; each is
    first checked against the sha256 in its ``run.json`` (a mismatch fails the build)."""
    if exception is not None or app.builder.format != "html":
        return
    from qrnn.study.runs import verify_packed

    dest = Path(app.outdir) / MODELS
    for f in sorted((ROOT / app.config.qrnn_results / "runs").glob("*/model.npz")):
        verify_packed(f.parent)  # PackedMismatch names the file and both digests
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest / f"{f.parent.name}.npz")


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


def _ipynb_download(app, pagename, templatename, context, doctree) -> None:
    """Offer the executed notebook of a Markdown notebook page (before the theme's buttons)."""
    if "kernelspec" not in app.env.metadata.get(pagename, {}):
        return
    if not context.get("sourcename", "").endswith((".md", ".md.txt")):
        return  # an .ipynb page: its source download is the notebook
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if executed.exists():
        dest = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(executed, dest)
        context["ipynb_source"] = f"{pagename}.ipynb"


def _launch_only_where_useful(app, pagename, templatename, context, doctree) -> None:
    """Launch buttons only on the pages that work in Binder/Colab (after the theme adds them)."""
    if pagename in app.config.qrnn_launch_pages:
        return
    buttons = context.get("header_buttons")
    if buttons:
        context["header_buttons"] = [b for b in buttons if b.get("label") != "launch-buttons"]


# glossary term (as written in book/glossary.md) -> how it appears in prose
GLOSSARY: dict[str, str] = {
    "Pow2-ternarization": r"pow2-ternari[sz]ation",
    "Exponential quantization": r"exponential quantization",
    "Post-training quantization": r"post-training quantization",
    "Straight-through estimator": r"straight-through estimator",
    "Stochastic rounding": r"stochastic rounding",
    "Shadow weight": r"shadow weights?",
    "Binarization": r"binari[sz]ation",
    "Ternarization": r"(?<!-)ternari[sz]ation",
    "Run record": r"run records?",
    "Packed file": r"packed (?:model )?files?",
    "Glorot bound": r"Glorot bounds?",
    "BPTT": r"BPTT",
    "BPC": r"BPC",
}
_GLOSSARY_PAGE = "book/glossary"


def _skip_node(node) -> bool:
    """Text where a link does not belong: code, math, titles, links, captions, outputs."""
    from docutils import nodes
    from sphinx import addnodes

    kinds = (nodes.literal, nodes.literal_block, nodes.math, nodes.math_block, nodes.title,
             nodes.reference, nodes.term, nodes.raw, nodes.caption, nodes.rubric, nodes.comment,
             nodes.substitution_definition, addnodes.pending_xref, addnodes.desc_signature,
             addnodes.toctree, nodes.field_name, nodes.option_list)  # fmt: skip
    p = node.parent
    while p is not None:
        if isinstance(p, kinds) or "cell_output" in p.get("classes", []):
            return True
        p = p.parent
    return False


def _link_glossary_terms(app, doctree) -> None:
    """Link the first prose mention of each glossary term on a page to its definition."""
    from docutils import nodes
    from sphinx import addnodes

    docname = app.env.docname
    if docname == _GLOSSARY_PAGE:
        return
    linked = {
        x["reftarget"].lower()
        for x in doctree.findall(addnodes.pending_xref)
        if x.get("reftype") == "term"
    }
    for term, pattern in GLOSSARY.items():
        if term.lower() in linked:
            continue
        rx = re.compile(rf"\b{pattern}\b", 0 if term.isupper() else re.I)
        for text in list(doctree.findall(nodes.Text)):
            m = rx.search(str(text))
            if not m or _skip_node(text):
                continue
            s, word = str(text), m.group(0)
            inner = nodes.inline(word, word, classes=["xref", "std", "std-term"])
            xref = addnodes.pending_xref("", inner, refdomain="std", reftype="term",
                                         reftarget=term.lower(), refexplicit=True,
                                         refwarn=True, refdoc=docname)  # fmt: skip
            new = [nodes.Text(s[: m.start()]), xref, nodes.Text(s[m.end() :])]
            text.parent.replace(text, new)
            break


def _register_label_style() -> None:
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.unsrt import Style
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYear(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            for entry in sorted_entries:
                names = entry.persons.get("author") or entry.persons.get("editor") or []
                last = [" ".join(p.last_names) for p in names]
                who = (last[0] if len(last) == 1 else " and ".join(last) if len(last) == 2
                       else f"{last[0]} et al.") if last else entry.key  # fmt: skip
                yield f"{who}, {entry.fields.get('year', 'n.d.')}"

    class AuthorYearStyle(Style):
        default_label_style = AuthorYear
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle, force=True)


def setup(app):
    _register_label_style()
    app.add_config_value("qrnn_repository_url", "", "html")
    app.add_config_value("qrnn_launch_pages", ["book/executed/train"], "html")
    app.add_config_value("qrnn_results", "results/cpu", "html")
    app.connect("config-inited", _config_inited)
    app.connect("build-finished", _copy_mathjax)
    app.connect("build-finished", _copy_models)
    app.connect("doctree-read", _link_glossary_terms)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("html-page-context", _ipynb_download, priority=500)
    app.connect("html-page-context", _launch_only_where_useful, priority=600)
    app.add_js_file("qrnn.js")
    app.add_css_file("qrnn.css")
    return {"version": "0.3", "parallel_read_safe": True, "parallel_write_safe": True}

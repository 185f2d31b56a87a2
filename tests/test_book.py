"""The book: a strict offline build from the committed run records, internal links, and a real
browser (Debian's chromium driven by Playwright) on every page."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def book():
    """Build the book strictly (warnings are errors), as `make book` does. QRNN_BOOK_HTML names
    an already built site to check instead (the html folder of `jupyter-book build
    --path-output`), so that a page change is checked without a second build."""
    if os.environ.get("QRNN_BOOK_HTML"):
        return Path(os.environ["QRNN_BOOK_HTML"])
    jb = Path(sys.executable).parent / "jupyter-book"
    shutil.rmtree(HTML / "_modules", ignore_errors=True)  # viewcode keeps stale pages (Makefile)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([str(jb), "build", str(ROOT), "-W", "-n", "--keep-going"], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=1200)  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    return HTML


def _pages(html: Path) -> list[Path]:
    skip = ("_static", "_sources", "_images", "genindex", "search", "_modules", "_screenshots")
    return sorted(p for p in html.rglob("*.html") if not any(s in p.parts or p.stem == s
                                                             for s in skip))  # fmt: skip


def _content_pages(html: Path) -> list[Path]:
    """Pages a reader sees: the root redirect stub (meta refresh) navigates away on load."""
    return [p for p in _pages(html) if 'http-equiv="refresh"' not in p.read_text().lower()]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key) and not (tag == "link" and a.get("rel") == "canonical"):
                self.links.append(a[key])


def test_book_builds_and_internal_links_resolve(book):
    pages = _pages(book)
    assert {p.stem for p in pages} >= {"intro", "quantizers", "cells", "data", "results",
                                       "reproduce", "api", "references"}  # fmt: skip
    parsed = {}
    for p in book.rglob("*.html"):
        parser = _Links()
        parser.feed(p.read_text(errors="replace"))
        parsed[p.resolve()] = parser
    broken = []
    for page in pages:
        for link in parsed[page.resolve()].links:
            url = urlsplit(link)
            if url.scheme or link.startswith(("//", "mailto:", "javascript:")):
                continue  # external links are not followed (the site is offline)
            target = (page.parent / unquote(url.path)).resolve() if url.path else page.resolve()
            if not target.exists():
                broken.append(f"{page.name}: {link}")
            elif url.fragment and target.suffix == ".html":
                ids = parsed.get(target)
                if ids is not None and url.fragment not in ids.ids:
                    broken.append(f"{page.name}: {link} (no anchor)")
    assert not broken, broken[:20]


def test_every_image_has_alt_text(book):
    """Figures carry a description (myst-nb `mystnb.image.alt`), not their file name."""
    missing = []
    for page in _content_pages(book):
        for tag in re.findall(r"<img [^>]*>", page.read_text()):
            alt = re.search(r'alt="([^"]*)"', tag)
            if not alt or not alt.group(1).strip() or alt.group(1).endswith((".png", ".svg")):
                missing.append((page.name, tag[:120]))
    assert not missing, missing


def _soup(page: Path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(page.read_text(errors="replace"), "html.parser")


def test_every_display_cell_displays_something(book):
    """A remove-input cell exists to show its output: one that shows nothing (an expression
    inside an `if`, a figure that was never drawn) leaves a hole where the text cites it."""
    empty = []
    for page in _content_pages(book):
        for cell in _soup(page).select("div.cell.tag_remove-input"):
            out = cell.select_one("div.cell_output")
            shown = out and (
                out.get_text(strip=True)
                or out.find(["img", "svg", "table"])
                or out.select_one("div.qrnn-fig")
            )  # drawn in the browser: checked there
            if not shown:
                empty.append((page.name, cell.get_text(" ", strip=True)[:80]))
    assert not empty, empty


PLACEHOLDER = re.compile(r"<[^>]*>|your[-_]|example\.(com|org)|qrnn-study|TODO|placeholder", re.I)


def test_no_link_or_button_points_to_a_placeholder(book):
    """Links and buttons lead somewhere real; with no repository URL set (qrnn_repository_url,
    QRNN_REPOSITORY_URL) there is no repository, Binder or Colab button at all."""
    url = os.environ.get("QRNN_REPOSITORY_URL", "")
    bad = []
    for page in _content_pages(book):
        soup = _soup(page)
        for tag in soup.find_all(["a", "button", "link", "script", "img"]):
            for key in ("href", "src", "data-url", "onclick"):
                v = unquote(tag.get(key) or "")
                if not v or v.startswith("data:"):
                    continue
                launch = re.search(r"mybinder\.org|colab\.research|deepnote|jupyterhub", v)
                if (
                    PLACEHOLDER.search(v)
                    or (launch and not url)
                    or (url and launch and "executed/train.ipynb" not in v)
                ):
                    bad.append((page.name, key, v[:100]))  # fmt: skip
    assert not bad, bad


def _page_commands(page: Path) -> list[str]:
    """The shell commands a reader copies from a page: bash blocks, comments dropped."""
    cmds = []
    for pre in _soup(page).select("div.highlight-bash pre"):
        for line in pre.get_text().replace("\\\n", " ").splitlines():
            cmd = line.split(" #")[0].strip()
            if cmd and not cmd.startswith("#"):
                cmds.append(cmd)
    return cmds


def _notebook_parameters(path: Path) -> set[str]:
    import json

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    return {m.group(1) for m in re.finditer(r"^(\w+)\s*=", "".join(cell["source"]), re.M)}


def test_reproduce_page_commands_work(book):
    """Every command of the reproduce page, in order: the quick ones run (against the committed
    records); the rest parse with qrnn's own parser, name existing notebooks and parameters and
    existing make targets. No placeholders."""
    from qrnn.cli import build_parser

    cmds = _page_commands(book / "book" / "reproduce.html")
    assert cmds and cmds[0].startswith(("git clone", "make venv")), cmds[:2]
    assert "source .venv/bin/activate" in cmds, "the page must say how to use the venv"
    bin_ = Path(sys.executable).parent
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for cmd in cmds:
        assert not PLACEHOLDER.search(cmd), cmd
        argv = shlex.split(cmd)
        if argv[0] == "make":
            assert set(argv[1:]) <= targets, cmd
        elif argv[0] in ("source", "export", "git", "cd"):
            assert argv[0] != "source" or (ROOT / argv[1]).exists(), cmd
        elif argv[0] in ("mkdir", "cp"):  # the copy of the committed records under runs/
            assert argv[-1].startswith("runs/"), cmd
            subprocess.run(argv, cwd=ROOT, check=True, timeout=120)
        elif argv[0] == "qrnn":
            args = build_parser().parse_args(argv[1:])  # flags and values are real
            quick = args.command == "schemes" or (
                args.command == "show" and "results/cpu/runs" in argv
            )
            if quick:
                r = subprocess.run([str(bin_ / "qrnn"), *argv[1:]], cwd=ROOT, capture_output=True,
                                   text=True, timeout=120)  # fmt: skip
                assert r.returncode == 0, (cmd, r.stderr[-2000:])
        elif argv[0] == "papermill":
            nb = ROOT / argv[1]
            assert nb.exists() and "--cwd" in argv, cmd
            names = {argv[i + 1] for i, a in enumerate(argv) if a == "-p"}
            assert names <= _notebook_parameters(nb), (cmd, names - _notebook_parameters(nb))
            if "runs/reproduce" in argv and "results.ipynb" in argv[1]:  # on the copy: it runs
                r = subprocess.run([str(bin_ / "papermill"), *argv[1:]], cwd=ROOT,
                                   capture_output=True, text=True, timeout=600)  # fmt: skip
                assert r.returncode == 0, (cmd, (r.stdout + r.stderr)[-3000:])
        else:
            pytest.fail(f"unknown command on the reproduce page: {cmd}")


def test_no_page_references_an_outside_script_or_stylesheet(book):
    for page in _pages(book):
        text = page.read_text()
        outside = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', text)
        assert not outside, (page.name, outside)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield b
        b.close()


def _watch(page) -> list[str]:
    """Collect console errors, page errors, failed requests and requests leaving the machine."""
    events: list[str] = []
    page.on("console", lambda m: m.type == "error" and events.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: events.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: events.append(f"requestfailed: {r.url}"))
    page.on("request", lambda r: not r.url.startswith(("file://", "data:", "blob:"))
            and events.append(f"outside request: {r.url}"))  # fmt: skip
    return events


def test_every_page_in_a_real_browser(book, browser):
    shots = book / "_screenshots"
    shots.mkdir(exist_ok=True)
    problems = []
    for page_path in _content_pages(book):
        ctx = browser.new_context(viewport={"width": 1200, "height": 900})
        page = ctx.new_page()
        events = _watch(page)
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_timeout(300)
        if 'class="math' in page_path.read_text():  # MathJax rendered it, offline
            page.wait_for_selector("mjx-container", timeout=15000)
        assert page.locator("mjx-merror").count() == 0, f"{page_path.name}: MathJax error"
        broken = page.evaluate(
            "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )
        if broken:
            events.append(f"images not loaded: {broken}")
        # every display cell shows something once the page's scripts have run
        blank = page.evaluate("""[...document.querySelectorAll('div.cell.tag_remove-input')]
            .filter(c => { const o = c.querySelector('div.cell_output');
              return !o || !(o.innerText.trim() || o.querySelector('img, table, svg *')); })
            .map(c => c.innerText.slice(0, 60))""")
        if blank:
            events.append(f"display cells without output: {blank}")
        page.screenshot(path=str(shots / f"{page_path.stem}.png"), full_page=True)
        if events:
            problems.append((page_path.name, events))
        ctx.close()
    assert not problems, problems


def test_quantizer_explorer_responds_to_input(book, browser):
    page = browser.new_page()
    page.goto((book / "book" / "quantizers.html").as_uri(), wait_until="load")
    fig = page.locator("div.qrnn-fig[data-kind=quantizer]")
    path = fig.locator("g.series[data-name=deterministic] path")
    before = path.get_attribute("d")
    levels = fig.locator(".qrnn-note")
    assert "ternary (W0 = 0.50)" in levels.inner_text()
    # the visible slider value is the W0 the plot uses (its levels), and it follows the slider
    slider, shown = fig.locator("input.qrnn-scale"), fig.locator("output.qrnn-scale-value")
    for value in ("0.5", "0.7"):
        slider.evaluate(f"e => {{ e.value = '{value}'; e.dispatchEvent(new Event('input')); }}")
        w0 = float(shown.inner_text())
        assert w0 == float(value) == float(fig.get_attribute("data-scale"))
        assert f"levels on this range: {-w0:g}, 0, {w0:g}" in levels.inner_text()
    assert fig.locator("input.qrnn-fbits").is_disabled()  # pow2-ternary only
    fig.locator("select.qrnn-method").select_option("binary")
    assert path.get_attribute("d") != before
    assert shown.inner_text() == "1.00"  # the library's default H = 1
    assert "binary (H = 1.00): deterministic levels on this range: -1, 1" in levels.inner_text()
    fig.locator("select.qrnn-method").select_option("exponential")
    assert slider.is_disabled() and fig.locator("input.qrnn-fbits").is_disabled()
    assert "exponents -22..9" in levels.inner_text()  # the library's default range
    fig.locator("select.qrnn-method").select_option("pow2-ternary")
    assert slider.is_disabled() and not fig.locator("input.qrnn-fbits").is_disabled()
    fig.locator("select.qrnn-method").select_option("binary")
    dots = fig.locator("g.series[data-name='one stochastic draw'] circle")
    first = [dots.nth(i).get_attribute("cy") for i in range(dots.count())]
    fig.locator("button.qrnn-resample").click()
    assert [dots.nth(i).get_attribute("cy") for i in range(dots.count())] != first
    # the browser's rounding rules agree with qrnn.quantizer on a grid of weights
    import torch

    import qrnn

    w = [i / 50 - 1.3 for i in range(131)]
    for method, opts, js in [
        ("ternary", {"scale": 0.5}, "{scale: 0.5}"),
        ("binary", {"scale": 0.7}, "{scale: 0.7}"),
        ("pow2-ternary", {}, "{fbits: 1, ibits: 0}"),
        ("exponential", {"min_exp": -4, "max_exp": 1}, "{min_exp: -4, max_exp: 1}"),
    ]:
        got = page.evaluate(f"{w}.map(x => window.qrnnQuantize('{method}', x, {js}, null))")
        want = qrnn.quantizer(method, **opts)(torch.tensor(w, dtype=torch.float64)).tolist()
        assert got == pytest.approx(want), method
    page.close()


def test_results_figure_switches_task(book, browser):
    page = browser.new_page()
    page.goto((book / "book" / "results.html").as_uri(), wait_until="load")
    fig = page.locator("div.qrnn-fig[data-kind=results]")
    options = fig.locator("select.qrnn-task option").all_inner_texts()
    assert "ptb-char" in options
    circles = fig.locator("circle")
    assert circles.count() > 0
    fig.locator("input[type=checkbox]").first.uncheck()
    assert fig.locator("g.series").count() == len(fig.locator("input[type=checkbox]").all()) - 1
    page.close()


def test_results_figure_names_diverged_groups(book, browser):
    # a group whose runs all diverged has no test mean: the figure names it instead of
    # leaving its column empty; the finished group keeps its 95% interval bar
    page = browser.new_page()
    page.goto((book / "book" / "results.html").as_uri(), wait_until="load")
    rows = [
        {
            "task": "t",
            "cell": "gru",
            "method": "float",
            "metric": "bpc",
            "test_mean": 1.6,
            "test_std": 0.01,
            "test_lo": 1.5,
            "test_hi": 1.7,
            "n": 3,
            "diverged": 0,
        },
        {
            "task": "t",
            "cell": "gru",
            "method": "binary-stoch",
            "metric": "bpc",
            "test_mean": None,
            "test_std": None,
            "test_lo": None,
            "test_hi": None,
            "n": 3,
            "diverged": 3,
        },
        {
            "task": "t",
            "cell": "gru",
            "method": "ternary-det",
            "metric": "bpc",
            "test_mean": 1.8,
            "test_std": None,
            "test_lo": None,
            "test_hi": None,
            "n": 1,
            "diverged": 0,
        },
    ]
    methods = ["float", "binary-stoch", "ternary-det"]
    spec = {"rows": rows, "baselines": {}, "methods": methods, "interval": "ci"}
    page.evaluate(
        "spec => { const d = document.createElement('div'); d.className = 'qrnn-fig';"
        " d.id = 'probe'; d.dataset.kind = 'results'; d.dataset.spec = JSON.stringify(spec);"
        " document.body.appendChild(d); window.qrnnInitFigures(); }",
        spec,
    )
    fig = page.locator("#probe")
    mark = fig.locator("text.qrnn-mark")
    assert mark.count() == 1 and "diverged" in mark.text_content()
    assert "3 of 3 runs diverged" in mark.locator("title").text_content()
    circles = fig.locator("circle")
    assert circles.count() == 2  # the finished groups have a point, the diverged one none
    bar = fig.locator("g.series line").first  # the 95% interval: 1.5 to 1.7 around 1.6
    y1, y2 = float(bar.get_attribute("y1")), float(bar.get_attribute("y2"))
    cy = float(circles.first.get_attribute("cy"))
    assert y1 > cy > y2 and abs((y1 - cy) - (cy - y2)) < 1e-6
    assert fig.locator("g.series line").count() == 1  # one seed: no bar ...
    single = circles.nth(1)  # ... but an open circle, and the tooltip says why
    assert single.get_attribute("fill") == "white"
    assert "n=1: no interval" in single.locator("title").text_content()
    page.close()


def test_jacobian_figure_switches_model(book, browser):
    page = browser.new_page()
    page.goto((book / "book" / "binarization.html").as_uri(), wait_until="load")
    fig = page.locator("div.qrnn-fig[data-kind=lines]").first
    select = fig.locator("select")
    options = select.locator("option").all_inner_texts()
    assert options[0] == "LSTM 256 at initialization" and len(options) >= 2
    before = fig.locator("svg").inner_html()
    assert fig.locator("g.series").count() >= 4  # one line per method
    select.select_option(options[1])
    assert fig.locator("svg").inner_html() != before  # redrawn with the trained curves
    page.close()


def test_method_colours_agree_between_figures(book, browser):
    """One colour per method (qrnn.viz.METHOD_COLORS) in every interactive figure and view."""
    from qrnn.viz import METHOD_COLORS, palette

    known = palette()
    wrong = []
    page = browser.new_page()
    for page_path in _content_pages(book):
        if "qrnn-fig" not in page_path.read_text():
            continue
        page.goto(page_path.as_uri(), wait_until="load")
        for i in range(page.locator("div.qrnn-fig").count()):
            fig = page.locator("div.qrnn-fig").nth(i)
            selects = fig.locator("select.qrnn-group, select.qrnn-task")
            views = selects.first.locator("option").all_inner_texts() if selects.count() else [""]
            for view in views:
                if view:
                    selects.first.select_option(view)
                for name, color in fig.locator("g.series").evaluate_all(
                        "gs => gs.map(g => [g.dataset.name, g.dataset.color])"):  # fmt: skip
                    if name in known and color != known[name]:
                        wrong.append((page_path.name, i, view, name, color))
    page.close()
    assert not wrong, wrong
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)


CLIPPED = """() => {
  const vw = document.documentElement.clientWidth, out = [];
  const art = document.querySelector("article.bd-article");
  if (!art) return out;
  for (const e of art.querySelectorAll("*")) {
    if (e.closest("mjx-assistive-mml, script, style, .visually-hidden, .sr-only")) continue;
    const r = e.getBoundingClientRect();
    if (!r.width || !r.height || getComputedStyle(e).visibility === "hidden") continue;
    let a = e.parentElement, boxed = false, clipped = false;
    for (; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === "auto" || o === "scroll") { boxed = true; break; }
      const ar = a.getBoundingClientRect();
      if ((o === "hidden" || o === "clip") && (r.right > ar.right + 1 || r.left < ar.left - 1)) {
        clipped = true; break;
      }
    }
    if (!boxed && (clipped || r.right > vw + 1 || r.left < -1)) {
      out.push(`${e.tagName.toLowerCase()}.${e.className && e.className.baseVal === undefined
        ? e.className : ""} "${(e.textContent || "").trim().slice(0, 50)}" ${Math.round(r.right)}`);
    }
  }
  return out.slice(0, 8);
}"""


def test_pages_fit_a_phone_width_screen(book, browser):
    """At 390 px no page scrolls sideways and no content is cut off outside a scroll box: wide
    tables, equations and code scroll inside their own box, with a visible cue."""
    wide, clipped, cues = [], [], 0
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    for page_path in _content_pages(book):
        page = ctx.new_page()
        page.goto(page_path.as_uri(), wait_until="load")
        if 'class="math' in page_path.read_text():
            page.wait_for_selector("mjx-container", timeout=15000)
        page.wait_for_timeout(200)
        page.evaluate("window.qrnnMarkOverflow && window.qrnnMarkOverflow()")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 392:
            wide.append((page_path.name, width))
        found = page.evaluate(CLIPPED)
        if found:
            clipped.append((page_path.name, found))
        boxes = page.locator(".qrnn-overflows")
        cues += boxes.count()
        uncued = page.evaluate("""[...document.querySelectorAll('.qrnn-overflows')].filter(b =>
            !(b.previousElementSibling || {}).classList?.contains('qrnn-scroll-cue')).length""")
        if uncued:
            clipped.append((page_path.name, f"{uncued} scroll boxes without a cue"))
        page.close()
    ctx.close()
    assert not wide, wide
    assert not clipped, clipped
    assert cues > 0  # the phone width does overflow some boxes, and they are marked


@pytest.mark.parametrize("name", ["train", "jacobian", "results"])
def test_notebook_pages_are_executed_copies(name):
    """The notebook pages (book/executed/, written by book/_ext/executed.py) are executed copies
    of notebooks/<name>.ipynb: the same code, a note naming the command that produced them and
    when, and no section without output. Rerun the script when a notebook changes."""
    import json

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from executed import code_sources, repository_url

    copy = json.loads((ROOT / "book" / "executed" / f"{name}.ipynb").read_text())
    source = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    assert code_sources(copy) == code_sources(source), "rerun book/_ext/executed.py " + name
    note = "".join(copy["cells"][1]["source"])
    assert "Executed copy" in note and f"papermill notebooks/{name}.ipynb" in note
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", note) and "commit `" in note
    text = json.dumps(copy)
    assert "/work/" not in text and "/home/" not in text and "/root/" not in text
    errors = [o for c in copy["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    install = [c for c in copy["cells"] if "install" in c["metadata"].get("tags", [])]
    if name == "train" and repository_url():  # launch buttons open it: it installs qrnn
        assert install and repository_url() in "".join(install[0]["source"]), (
            "run .venv/bin/python book/_ext/executed.py --install-cell"
        )
    else:
        assert not install
    section, empty = None, []
    for cell in copy["cells"] + [{"cell_type": "markdown", "source": "## end"}]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and src.lstrip().startswith("## "):
            if section and section[1] and not section[2]:
                empty.append(section[0])
            section = [src.splitlines()[0], 0, 0]
        elif cell["cell_type"] == "code" and section:
            section[1] += 1
            section[2] += len(cell.get("outputs", []))
    assert not empty, f"sections without output: {empty}"


def test_glossary_terms_are_linked_on_every_page(book):
    """A glossary term that a page's prose uses is linked to its definition on that page
    (book/_ext/qrnn_book.py links the first mention)."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from qrnn_book import GLOSSARY

    glossary = _soup(book / "book" / "glossary.html")
    ids = {dt.get_text(" ", strip=True).rstrip("¶#").strip().lower(): dt.get("id")
           for dt in glossary.select("dl.glossary dt")}  # fmt: skip
    assert set(ids) == {t.lower() for t in GLOSSARY}, ids
    missing = []
    for page in _content_pages(book):
        if page.stem in ("glossary", "genindex") or "api" in page.stem:
            continue
        soup = _soup(page)
        art = soup.select_one("article.bd-article") or soup
        hrefs = {a.get("href", "").split("#")[-1] for a in art.find_all("a")}
        for el in art.select("pre, code, .math, h1, h2, h3, h4, figcaption, .cell_output, a"):
            el.decompose()
        prose = " ".join(e.get_text(" ") for e in art.select("p, li, td, dd"))
        for term, pattern in GLOSSARY.items():
            rx = re.compile(rf"\b{pattern}\b", 0 if term.isupper() else re.I)
            if rx.search(prose) and ids[term.lower()] not in hrefs:
                missing.append((str(page.relative_to(book)), term))
    assert not missing, missing


def _reader_text(page: Path) -> str:
    """The text a reader sees in a page's article: prose, generated text and table cells, without
    code, rendered math, scripts and downloads."""
    soup = _soup(page)
    art = soup.select_one("article.bd-article") or soup
    for el in art.select("pre, code, .math, mjx-container, script, style, .highlight, "
                         "div.cell_input, .headerlink"):  # fmt: skip
        el.decompose()
    return art.get_text(" ")


def test_no_literal_math_or_backticks_in_the_text(book):
    """Generated text (Markdown() outputs, glue) goes through MyST like the page's own prose: no
    `$...$` source or backticks left standing in what the reader sees (issue 29)."""
    found = []
    for page in _content_pages(book):
        if "api" in page.stem or page.stem == "genindex":
            continue
        text = _reader_text(page)
        for m in re.finditer(r"\$[^$\s][^$]{0,80}?\$|`[^`\s][^`]{0,80}`", text):
            found.append((str(page.relative_to(book)), m.group(0)))
    assert not found, found[:20]


HISTORY = re.compile(
    r"first study|corrected (?:cpu )?study|so far|were rerun|as far as the study|"
    r"on this shared machine|with local changes|first version|"
    r"targets 1\.10",
    re.I,
)


def test_no_development_history_in_the_pages(book):
    """The pages describe the study as it stands; what changed between versions of the study
    lives on the archive page only (issue 29)."""
    found = []
    for page in _content_pages(book):
        if page.stem in ("archive", "genindex") or "api" in page.stem:
            continue
        for m in HISTORY.finditer(_reader_text(page)):
            found.append((str(page.relative_to(book)), m.group(0)))
    assert not found, found


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_the_first_screen_answers_the_question(book, browser, width, height):
    """Without scrolling, the intro says what the paper reported (as the paper's) and the
    study's verdict on binarization for each task, read from the study's claims."""
    sys.path.insert(0, str(ROOT))
    from qrnn.study import pages

    claims = pages.claim_table()
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.goto((book / "book" / "intro.html").as_uri(), wait_until="load")
    page.wait_for_timeout(300)
    seen = page.evaluate("""() => { const out = [];
      const w = document.createTreeWalker(document.querySelector("article.bd-article"),
                                          NodeFilter.SHOW_TEXT);
      for (let n = w.nextNode(); n; n = w.nextNode()) {
        const r = document.createRange(); r.selectNodeContents(n);
        const b = r.getBoundingClientRect();
        if (b.height && b.top >= 0 && b.bottom <= innerHeight) out.push(n.textContent);
      }
      return out.join(" ").replace(/\\s+/g, " "); }""")
    ctx.close()
    assert "Ott et al. (2016) reported" in seen, seen
    for r in claims[claims["number"] == "1"].itertuples():
        assert f"{r.verdict} on {pages.TASK_WORDS[r.task]}" in seen, (r.task, seen)


FIGURES = """() => {
  const vw = document.documentElement.clientWidth, out = {images: [], svgs: [],
    pageWidth: document.documentElement.scrollWidth, vw};
  const imgs = ".bd-article .cell_output img, .bd-article figure img";
  for (const i of document.querySelectorAll(imgs)) {
    const r = i.getBoundingClientRect(), box = i.closest(".qrnn-scroll") || i.parentElement;
    const col = i.closest("article").getBoundingClientRect();
    const scroller = i.closest(".qrnn-scroll");
    out.images.push({src: i.src, shown: r.width, natural: i.naturalWidth, right: r.right,
      colRight: col.right, over: box.scrollWidth > box.clientWidth + 1,
      scrolls: !!scroller && getComputedStyle(scroller).overflowX === "auto"});
  }
  document.querySelectorAll(".bd-article .qrnn-fig").forEach((div, k) => {
    const svg = div.querySelector("svg");
    if (!svg) return;
    const scale = svg.getScreenCTM().a, sr = svg.getBoundingClientRect();
    const ticks = [...svg.querySelectorAll("g.axes > text:not([class])")]
      .map(t => parseFloat(getComputedStyle(t).fontSize) * scale);
    const legend = [...svg.querySelectorAll("text.legend")].map(t => {
      const r = t.getBoundingClientRect();
      return {text: t.textContent, left: r.left, right: r.right,
              inside: r.left >= sr.left - 1 && r.right <= sr.right + 1};
    });
    out.svgs.push({k, kind: div.dataset.kind, ticks, legend, right: sr.right, left: sr.left});
  });
  return out;
}"""


def png_sizes(src: str) -> dict[str, float]:
    """The sizes a figure's PNG carries (``qrnn.viz.figure_sizes``: ``tEXt`` chunks written
    when the figure is drawn): dpi and the smallest tick-label, legend and text font in
    points."""
    from PIL import Image

    with Image.open(Path(unquote(urlsplit(src).path))) as im:
        text = dict(getattr(im, "text", {}) or {})
    return {k.removeprefix("qrnn:"): float(v) for k, v in text.items() if k.startswith("qrnn:")}


def tick_px(sizes: dict[str, float], shown: float, natural: float) -> float:
    """Tick labels' height on screen: points at the figure's dpi, times the display scale."""
    return sizes["tick_pt"] / 72 * sizes["dpi"] * shown / natural


def _figure_pages(html: Path) -> list[Path]:
    return [
        p
        for p in _content_pages(html)
        if re.search(r'class="qrnn-fig"|<img [^>]*src="[^"]*_images/', p.read_text())
    ]


@pytest.mark.parametrize("width", [1280, 390])
def test_every_figure_is_readable(book, browser, width):
    """Every figure, measured in the browser (issue 29). At 1280 px a raster figure is drawn at
    100 dpi or more and never upscaled (natural width >= shown width x 100 / dpi), its tick
    labels are at least 10 px high on screen (their size in points, recorded in the PNG by
    qrnn.viz.figure_png, at the shown scale) and it is whole: inside the viewport and its
    column, in no sideways scroll box; an interactive figure's tick labels are at least 10 px
    (computed font size times the SVG's scale) and inside the viewport. At 390 px (a phone)
    every legend entry of an interactive figure is on the screen without scrolling, and a raster
    figure wider than the screen scrolls in its own box (legend and all) instead of being cut."""
    bad, seen = [], 0
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    for page_path in _figure_pages(book):
        page = ctx.new_page()
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_timeout(300)
        page.evaluate("window.qrnnMarkOverflow && window.qrnnMarkOverflow()")
        found = page.evaluate(FIGURES)
        page.close()
        name = str(page_path.relative_to(book))
        for s in found["svgs"]:
            seen += 1
            if width == 1280 and (not s["ticks"] or min(s["ticks"]) < 10):
                bad.append((name, s["kind"], s["k"], "tick labels px", s["ticks"][:3]))
            if width == 1280 and s["right"] > found["vw"] + 1:
                bad.append((name, s["kind"], s["k"], "cut at the right", s["right"]))
            if width == 390:
                out = [
                    e["text"]
                    for e in s["legend"]
                    if not e["inside"] or e["right"] > found["vw"] + 1 or e["left"] < -1
                ]
                if out:
                    bad.append((name, s["kind"], s["k"], "legend off the screen", out))
        if width != 1280:  # a phone: a wide raster figure scrolls in its own box, never cut
            cut = [
                i["src"].rsplit("/", 1)[-1][:16]
                for i in found["images"]
                if i["right"] > found["vw"] + 1 and not i["scrolls"]
            ]
            if cut:
                bad.append((name, "figures cut at the right", cut))
            continue
        if found["pageWidth"] > found["vw"] + 1:
            bad.append((name, "page scrolls sideways", found["pageWidth"]))
        for i in found["images"]:
            seen += 1
            img = i["src"].rsplit("/", 1)[-1][:16]
            sizes = png_sizes(i["src"])
            if "dpi" not in sizes or "tick_pt" not in sizes:
                bad.append((name, img, "no sizes in the PNG (qrnn.viz.style() not called)"))
                continue
            px = tick_px(sizes, i["shown"], i["natural"])
            problems = [
                f"drawn at {sizes['dpi']:g} dpi" if sizes["dpi"] < 100 else "",
                "upscaled" if i["natural"] + 0.5 < i["shown"] * 100 / sizes["dpi"] else "",
                f"tick labels {px:.1f} px" if px < 10 else "",
                "cut at the right" if i["right"] > min(found["vw"], i["colRight"]) + 1 else "",
                "in a sideways scroll box" if i["over"] else "",
            ]
            if any(problems):
                bad.append((name, img, [p for p in problems if p], round(i["shown"]),
                            i["natural"], sizes))  # fmt: skip
    ctx.close()
    assert seen, "no figure measured"
    assert not bad, bad


def test_the_results_page_stays_short(book, browser):
    """The results page is a narrative a reader finishes (issue 29: about 8,000 px at 1280 px);
    every group's numbers live on the All numbers page, the earlier study on the archive."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.goto((book / "book" / "results.html").as_uri(), wait_until="load")
    page.wait_for_timeout(500)
    height = page.evaluate("document.documentElement.scrollHeight")
    ctx.close()
    assert height <= 8500, height
    for name in ("numbers", "archive"):
        assert (book / "book" / f"{name}.html").exists(), name


STUDY_LITERAL = re.compile(r'"results"\s*/\s*"cpu"|\b(?:grid|experiments|collect|cost|'
                           r'trained_analyses)\(\s*"cpu"')  # fmt: skip


def test_pages_read_the_study_through_qrnn_pages():
    """Every page reads the study folder and its profile through qrnn.study.pages (STUDY, PROFILE,
    study_dir()), so that showing another study is one change (issue 29)."""
    found = []
    for md in sorted((ROOT / "book").glob("*.md")):
        for n, line in enumerate(md.read_text().splitlines(), 1):
            if STUDY_LITERAL.search(line):
                found.append(f"{md.name}:{n}: {line.strip()}")
    assert not found, found


def _rgb(color: str) -> tuple[int, ...]:
    return tuple(int(color.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))


def test_many_method_figure_tells_methods_apart(book, browser):
    """In a figure of many methods (binarization, the recurrent matrix over training) two methods
    of similar colour differ in marker or line style, stochastic rounding is dashed, and the
    markers and dashes are drawn (issue 29: fourteen near-identical hues)."""
    import json

    figs = [json.loads(f["data-spec"]) for f in _soup(book / "book" / "binarization.html")
            .select("div.qrnn-fig[data-kind=lines]")]  # fmt: skip
    spec = next(f for f in figs if f.get("select") == "statistic")
    series = next(iter(spec["groups"].values()))
    assert len(series) >= 10, len(series)
    alike = []
    for i, a in enumerate(series):
        assert bool(a.get("dash")) == a["name"].endswith("-stoch"), a
        for b in series[i + 1 :]:
            pairs = zip(_rgb(a["color"]), _rgb(b["color"]), strict=True)
            near = sum((x - y) ** 2 for x, y in pairs) < 90**2
            if near and (a.get("marker"), a.get("dash")) == (b.get("marker"), b.get("dash")):
                alike.append((a["name"], b["name"]))
    assert not alike, alike
    page = browser.new_page()
    page.goto((book / "book" / "binarization.html").as_uri(), wait_until="load")
    fig = (
        page.locator("div.qrnn-fig[data-kind=lines]")
        .filter(has=page.locator("select.qrnn-group option", has_text="spectral norm"))
        .first
    )
    dashed = fig.locator("g.series path.line[stroke-dasharray='6,4']").count()
    marks = fig.locator("g.series path:not(.line), g.series circle").count()
    page.close()
    assert dashed == sum(1 for s in series if s.get("dash")), dashed
    assert marks >= len(series), marks


@pytest.mark.parametrize("width", [1280, 390])
def test_selects_show_their_labels(book, browser, width):
    """A figure's select is wide enough for its longest option, up to the column's width: at
    1280 px no option is cut (issue 29: selects cut their labels)."""
    cut = []
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    for page_path in _content_pages(book):
        if "qrnn-fig" not in page_path.read_text():
            continue
        page = ctx.new_page()
        page.goto(page_path.as_uri(), wait_until="load")
        found = page.evaluate("""() => [...document.querySelectorAll(".qrnn-controls select")]
          .map(s => { const c = document.createElement("canvas").getContext("2d");
            const cs = getComputedStyle(s); c.font = `${cs.fontSize} ${cs.fontFamily}`;
            const need = Math.max(...[...s.options].map(o => c.measureText(o.text).width));
            const room = s.closest("article").getBoundingClientRect().width;
            return {need: Math.round(need), has: s.clientWidth, room: Math.round(room),
                    text: s.options[s.selectedIndex].text}; })""")
        for f in found:
            if f["has"] < min(f["need"] + 16, f["room"] * 0.95):
                cut.append((page_path.name, f))
        page.close()
    ctx.close()
    assert not cut, cut[:10]


def test_tables_show_readable_headers(book):
    """No header of the binarization tables is a bare column name such as top_sv_median (issue
    29); the hardware page gives the number of inputs beside the share of equal predictions."""
    raw = []
    for th in _soup(book / "book" / "binarization.html").select("article th"):
        text = th.get_text(" ").strip()
        if re.fullmatch(r"[a-z0-9]+(?:_[a-z0-9]+)+", text):
            raw.append(text)
    assert not raw, raw
    text = re.sub(r"\s+", " ", _reader_text(book / "book" / "hardware.html"))
    assert re.search(r"\d+% \(\d+ of the first \d+ test (?:recordings|characters)\)", text)


# ------------------------------------------------------------------------------- exercises
# the teaching chapters: each opens with what the reader will be able to do (issue 29)
TEACHING = ("quantizers", "cells", "data", "binarization", "normalization", "hardware")
EXERCISE_PAGES = (*TEACHING, "results")
_CHECK = re.compile(r"^( *)```python\n( *# exercise (\d+)\n(?:.*\n)*?)\1```", re.M)


def _exercises(name: str) -> tuple[dict[int, str], dict[int, str]]:
    """A page's exercises (number -> text) and the check of each solution (number -> code): a
    ```python block of the Solutions whose first line is ``# exercise N``."""
    import textwrap

    text = (ROOT / "book" / f"{name}.md").read_text()
    section = text.split("\n## Exercises\n", 1)[1]
    asked, solved = re.split(r"^`{3,}\{admonition\} Solutions", section, maxsplit=1, flags=re.M)
    parts = re.split(r"^(\d+)\. ", asked.split("\n```\n")[-1], flags=re.M)
    questions = {int(n): body for n, body in zip(parts[1::2], parts[2::2], strict=True)}
    checks = {int(m[3]): textwrap.dedent(m[2]) for m in _CHECK.finditer(solved)}
    return questions, checks


@pytest.mark.parametrize("name", EXERCISE_PAGES)
def test_every_exercise_states_its_outcome_and_has_a_check(name):
    """Every exercise says what the reader should see, and its solution carries the code that
    shows it (run by test_exercise_checks_hold)."""
    questions, checks = _exercises(name)
    assert questions, f"{name}: no exercises found"
    silent = [n for n, q in questions.items() if "You should see" not in " ".join(q.split())]
    assert not silent, f"{name}: exercises without a stated outcome: {silent}"
    assert sorted(checks) == sorted(questions), (name, sorted(checks), sorted(questions))


@pytest.mark.parametrize("name,number", [(n, k) for n in EXERCISE_PAGES
                                         for k in sorted(_exercises(n)[1])])  # fmt: skip
def test_exercise_checks_hold(name, number, monkeypatch):
    """Each exercise's check runs (from the repository root, on the committed records and the
    data under QRNN_DATA) and its assertions, the outcome the exercise states, hold; in a few
    seconds each."""
    import time

    monkeypatch.chdir(ROOT)
    code = _exercises(name)[1][number]
    started = time.perf_counter()
    exec(compile(code, f"{name}.md exercise {number}", "exec"), {"__name__": "__exercise__"})
    took = time.perf_counter() - started
    assert took < 20, f"{name} exercise {number} took {took:.1f} s"


def test_teaching_chapters_open_with_learning_objectives(book):
    """Each teaching chapter opens, before its first section, with what the reader will be
    able to do: an "After this page you can" list of 3 or 4 items (issue 29)."""
    for name in TEACHING:
        art = _soup(book / "book" / f"{name}.html").select_one("article.bd-article")
        box = art.select_one("div.admonition.qrnn-objectives")
        assert box is not None, f"{name}: no learning objectives"
        assert box.select_one(".admonition-title").get_text(strip=True) == (
            "After this page you can"
        ), name
        items = box.select("li")
        assert 3 <= len(items) <= 4, (name, len(items))
        first = art.select_one("section section") or art.find("h2")
        assert first is None or box.sourceline < first.sourceline, f"{name}: objectives not first"


STUDY_PATH = re.compile(r"results/cpu(?![-\w])")


def test_pages_name_the_study_folder_through_qrnn_pages():
    """No page types the study folder: the reader's text names it through pages.STUDY (glued)
    or without the path, so that showing another study is one change (issue 29)."""
    found = [f"{md.name}:{n}: {line.strip()}"
             for md in sorted((ROOT / "book").glob("*.md"))
             for n, line in enumerate(md.read_text().splitlines(), 1)
             if STUDY_PATH.search(line)]  # fmt: skip
    assert not found, found


def test_every_reference_is_complete():
    """Every entry of book/references.bib has authors, a title, a venue and a year (issue 29)."""
    from pybtex.database import parse_file

    venues = ("journal", "booktitle", "school", "institution", "publisher", "howpublished")
    bad = []
    for key, entry in parse_file(ROOT / "book" / "references.bib").entries.items():
        fields = {k.lower() for k in entry.fields}
        missing = [f for f in ("title", "year") if f not in fields]
        missing += [] if entry.persons.get("author") else ["author"]
        missing += [] if fields & set(venues) else ["venue"]
        if missing:
            bad.append((key, missing))
    assert not bad, bad


def test_paper_vs_ours_page(book, browser):
    """The researchers' page (issue 29): it says the paper's result tables were not available
    and which statements it compares against; each claim and the paper's one number stand
    beside ours, with its setting and its 95% interval over seeds as the study's records give
    them; every percentage carries its sample size; the page is listed after the results."""
    sys.path.insert(0, str(ROOT))
    from qrnn.study import comparison

    toc = (ROOT / "_toc.yml").read_text()
    assert toc.index("book/results") < toc.index("book/paper") < toc.index("book/numbers")
    text = re.sub(r"\s+", " ", _reader_text(book / "book" / "paper.html"))
    assert "result tables were not available to us" in text
    assert "abstract and conclusion" in text
    assert comparison.paper_gain() and f"{comparison.paper_gain()} bits per character" in text
    versus = comparison.paper_vs_ours()
    for r in versus.to_dict("records"):
        assert r["the paper"] in text, r["the paper"]
        for column in ("our setting", "ours: gap to float, 95% interval", "our verdict"):
            assert r[column] in text, (r["claim"], r["task"], column)
    assert comparison.CONJECTURE in text
    assert "95% interval" in text and "seeds" in text
    unsized = [
        m.group(0)
        for m in re.finditer(r"\d+(?:\.\d+)?% (?!interval)[^;]{0,90}", text)
        if not re.search(r"\d[\d,]* (?:test )?(?:recordings|characters)", m.group(0))
    ]
    assert not unsized, unsized
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.goto((book / "book" / "paper.html").as_uri(), wait_until="load")
    height = page.evaluate("document.documentElement.scrollHeight")
    ctx.close()
    assert height <= 9000, height


def test_figures_record_their_sizes():
    """qrnn.viz.figure_sizes, what every static figure of the book carries in its PNG: the dpi it
    is drawn at (never under qrnn.viz.FIGURE_DPI) and its smallest tick-label and legend font;
    qrnn.viz.dashes: stochastic rounding dashed, the rest solid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qrnn import viz

    fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
    ax.plot([0, 1], [0, 1], label="float")
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=7)
    sizes = viz.figure_sizes(fig)
    plt.close(fig)
    assert sizes["qrnn:dpi"] == f"{viz.FIGURE_DPI:g}"
    fonts = [sizes[f"qrnn:{k}_pt"] for k in ("tick", "legend", "text")]
    assert fonts == ["8", "7", "7"], sizes
    assert viz.dashes(["float", "ternary-det", "ternary-stoch", "pow2-stoch"]) == {
        "float": "", "ternary-det": "", "ternary-stoch": (4, 2), "pow2-stoch": (4, 2)}  # fmt: skip

"""The book: a strict offline build from the committed run records, internal links, and a real
browser (Debian's chromium driven by Playwright) on every page."""

import os
import re
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
    """Build the book strictly (warnings are errors), as `make book` does."""
    jb = Path(sys.executable).parent / "jupyter-book"
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
    assert "ternary" in levels.inner_text()
    fig.locator("select.qrnn-method").select_option("binary")
    assert path.get_attribute("d") != before
    assert "binary: deterministic levels on this range: -0.5, 0.5" in levels.inner_text()
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


def test_jacobian_figure_switches_model(book, browser):
    page = browser.new_page()
    page.goto((book / "book" / "binarization.html").as_uri(), wait_until="load")
    fig = page.locator("div.qrnn-fig[data-kind=lines]").first
    select = fig.locator("select")
    options = select.locator("option").all_inner_texts()
    assert options[0] == "LSTM at initialization" and len(options) >= 2
    before = fig.locator("svg").inner_html()
    assert fig.locator("g.series").count() >= 4  # one line per method
    select.select_option(options[1])
    assert fig.locator("svg").inner_html() != before  # redrawn with the trained curves
    page.close()


def test_pages_fit_a_phone_width_screen(book, browser):
    """At 390 px no page scrolls sideways: wide tables scroll inside their own box."""
    wide = []
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    for page_path in _content_pages(book):
        page = ctx.new_page()
        page.goto(page_path.as_uri(), wait_until="load")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 392:
            wide.append((page_path.name, width))
        page.close()
    ctx.close()
    assert not wide, wide

"""The built lessons site in a real browser: Debian's chromium, driven by Playwright.

It needs a built site, which takes minutes (every notebook cell runs), so it runs only when
given one:

    python -m sphinx -W -b html docs docs/_build/html
    python -m pytest tests/test_site.py --site docs/_build/html

(`.ci/run` does both.) Without `--site` these tests are skipped, saying how to run them.

Every HTML page of the site is opened from a loopback HTTP server. On each: no uncaught
JavaScript error, no console error and no request outside the site (it must work offline),
every image has loaded (natural width > 0). On each lesson:
the PyTorch | JAX tabs start on JAX, one click on "PyTorch" switches every pair of the page (and
only the PyTorch cells are then visible), one click on "JAX" switches them all back, and the
page's notebook download (`<page>.ipynb`) is served. A screenshot of the seed 000 lesson is kept
in `<site>/../site-test/`.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
from pathlib import Path

import pytest
from loopback import running

CHROMIUM = "/usr/bin/chromium"   # Debian's (`apt-get install chromium`); no downloaded browsers
# Flags for a machine without a display or a network: no sandbox (root in CI), no GPU, and none
# of chromium's own connections, which this machine's closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOT_PAGE = "lessons/01_mnist.html"


@pytest.fixture(scope="module")
def site(request) -> Path:
    path = request.config.getoption("--site")
    if path is None:
        pytest.skip("needs a built site: python -m sphinx -W -b html docs docs/_build/html, "
                    "then pytest tests/test_site.py --site docs/_build/html")
    site = Path(path).resolve()
    assert (site / "index.html").is_file(), f"{site} holds no built site (no index.html)"
    return site


@pytest.fixture(scope="module")
def server(site):
    with running(functools.partial(_QuietHandler, directory=str(site))) as url:
        yield url


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log in the test output
        pass


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (setup.sh --dev does)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def pages(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not p.relative_to(site).parts[0].startswith("_"))


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
            if m.type == "error" else None)
    # Everything a page needs comes from the site itself (MathJax included): a request
    # elsewhere is a page that breaks offline.
    home = url.split("/", 3)[:3]
    page.on("request", lambda r: errors.append(f"request outside the site: {r.url}")
            if r.url.split("/", 3)[:3] != home and not r.url.startswith("data:") else None)
    page.goto(url, wait_until="load")
    return page, errors


def _selected(page) -> list[str]:
    """The checked tab of each PyTorch | JAX pair: 'pytorch' or 'jax'."""
    return page.eval_on_selector_all(
        ".jaxnets-pair", """sets => sets.map(s => {
            const checked = s.querySelector(':scope > input:checked');
            const label = checked && checked.nextElementSibling;
            return label ? label.dataset.syncId : null; })""")


def _visible_cells(page) -> list[str]:
    """For each pair, which cell is displayed: 'pytorch', 'jax', 'both' or 'none'."""
    return page.eval_on_selector_all(
        ".jaxnets-pair", """sets => sets.map(s => {
            const shown = t => [...s.querySelectorAll('.cell.tag_' + t)]
                .some(c => c.offsetParent !== null);
            const p = shown('pytorch'), j = shown('jax');
            return p && j ? 'both' : p ? 'pytorch' : j ? 'jax' : 'none'; })""")


def test_the_site_has_every_lesson(site):
    lessons = sorted(p.name for p in (Path(__file__).parent.parent / "docs" / "lessons")
                     .glob("*.md"))
    built = {p for p in pages(site) if p.startswith("lessons/")}
    assert {f"lessons/{name[:-3]}.html" for name in lessons} <= built


def test_every_page_loads_without_errors_and_with_its_images(site, server, browser):
    checked = 0
    for name in pages(site):
        page, errors = _open(browser, f"{server}/{name}")
        broken = page.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0))"
                   ".map(i => i.getAttribute('src'))")
        assert not errors, (name, errors)
        assert not broken, (name, "images that did not load", broken)
        checked += page.eval_on_selector_all("img", "imgs => imgs.length")
        page.close()
    assert checked > 0  # the lessons have plots


def test_the_pytorch_jax_switch_switches_every_pair(site, server, browser):
    lessons = [p for p in pages(site) if p.startswith("lessons/")]
    assert lessons
    for name in lessons:
        page, errors = _open(browser, f"{server}/{name}")
        n = len(_selected(page))
        assert n > 0, f"{name} has no PyTorch | JAX pair"
        assert _selected(page) == ["jax"] * n and _visible_cells(page) == ["jax"] * n, name
        page.locator(".jaxnets-pair label", has_text="PyTorch").first.click()
        assert _selected(page) == ["pytorch"] * n, (name, _selected(page))
        assert _visible_cells(page) == ["pytorch"] * n, (name, _visible_cells(page))
        page.locator(".jaxnets-pair label", has_text="JAX").last.click()
        assert _selected(page) == ["jax"] * n, (name, _selected(page))
        assert _visible_cells(page) == ["jax"] * n, (name, _visible_cells(page))
        notebook = page.get_attribute("a.jaxnets-ipynb", "href")
        response = page.request.get(f"{server}/{os.path.dirname(name)}/{notebook}")
        assert response.ok and response.json()["cells"], (name, notebook)
        assert not errors, (name, errors)
        page.close()


def test_screenshot_of_a_lesson(site, server, browser):
    out = site.parent / "site-test"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    page, errors = _open(browser, f"{server}/{SCREENSHOT_PAGE}")
    path = out / (Path(SCREENSHOT_PAGE).stem + ".png")
    page.screenshot(path=str(path), full_page=True)
    page.close()
    assert not errors
    assert path.stat().st_size > 10_000, path
    print(f"screenshot: {path}")

"""The docs site: built from the notebooks, served on localhost, and read in headless Chromium like a person would."""

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlparse
from urllib.request import urlopen

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (make browser)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "Build the site the way `make docs` does, into a temporary folder, and serve it on a free localhost port."
    work = tmp_path_factory.mktemp("docs")
    for args in (
        [sys.executable, "docs/prepare.py", "--out", str(work / "proc")],
        [
            sys.executable,
            "-m",
            "sphinx",
            "-q",
            "-W",
            "--keep-going",
            "-c",
            "docs",
            str(work / "proc"),
            str(work / "html"),
        ],
    ):
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(work / "html")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", work / "html"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1300,1800",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(v for k, v in attrs if k == "id" and v)


def _pages(html: Path) -> list[str]:
    return sorted(str(p.relative_to(html)) for p in html.glob("*.html"))


def test_every_page_loads_cleanly(site, browser):
    base, html = site
    notebooks = sorted(p.stem for p in (REPO / "nbs").glob("[0-9]*.ipynb"))
    pages = _pages(html)
    for expected in ["index", *notebooks, "requirements", "architecture", "operations"]:
        assert f"{expected}.html" in pages, f"no page for {expected}"
    links, problems = set(), []
    shots = REPO / ".test-runs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for page in pages:
        browser.get(base + page)
        title = browser.title
        if not title.strip() or "ml-project" not in title:
            problems.append(f"{page}: title {title!r}")
        severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        if severe:
            problems.append(f"{page}: console errors {severe}")
        broken = browser.execute_script(
            "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
        )
        if broken:
            problems.append(f"{page}: images that did not load {broken}")
        hrefs = browser.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")
        links.update(h for h in hrefs if urlparse(h).netloc == urlparse(base).netloc)
        browser.save_screenshot(str(shots / page.replace(".html", ".png")))  # every page, kept as a CI artefact
    ids = {}
    for link in sorted(links):
        url, fragment = urldefrag(link)
        try:
            with urlopen(url) as response:
                body = response.read().decode("utf-8", "replace")
        except Exception as e:
            problems.append(f"broken link {link}: {e}")
            continue
        if fragment and url.endswith(".html"):
            if url not in ids:
                parser = _Ids()
                parser.feed(body)
                ids[url] = parser.ids
            if fragment not in ids[url]:
                problems.append(f"broken anchor {link}")
    assert not problems, "\n".join(problems)
    assert len(links) > 20


def test_plots_are_on_the_pages(site, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = site
    count = "return [...document.images].filter(i => i.complete && i.naturalWidth > 100).length"
    for page, at_least in (("05_eda.html", 5), ("26_train.report.html", 4), ("34_search.tune.html", 1)):
        browser.get(base + page)
        try:
            WebDriverWait(browser, 15).until(
                lambda b: b.execute_script(count) >= at_least
            )  # images decode after load on a busy machine
        except TimeoutException:
            pass
        shown = browser.execute_script(count)
        assert shown >= at_least, f"{page}: {shown} plots"


def test_api_reference_and_search(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = site
    browser.get(base + "04_data.html")
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h2 code, h3 code, h4 code")]
    assert "load_dataset" in headings and "verify_raw" in headings
    assert "Acquire (once), verify, read, validate and type" in browser.page_source
    assert "#| export" not in browser.page_source and "#| hide" not in browser.page_source
    browser.get(base + "architecture.html")
    api_links = browser.execute_script("return [...document.querySelectorAll('a[href*=\"#api-\"]')].map(a => a.href)")
    assert any("04_data.html#api-load-dataset" in h for h in api_links), api_links  # resolved by the link check above
    browser.get(base + "search.html?q=load_dataset")
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "ul.search li a"))
    results = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "ul.search li a")]
    assert any(r.split("#")[0].endswith("04_data.html") for r in results), results


def test_hidden_cells_stay_out_of_the_site(site):
    _, html = site
    text = (html / "02_config.html").read_text()
    shown = re.sub(r"<[^>]+>", "", text)
    assert "def _write" not in shown and "fastcore.test" not in shown  # a #| hide cell's helper, the hidden imports
    assert "test_eq" in (html / "41_serve.predictor.html").read_text()  # tests that teach stay visible
    assert re.search(r"load_config", text)


class _Outputs(HTMLParser):
    "The text inside the cells' output blocks (prose and code may name `churn__fast`; outputs must not)."

    def __init__(self):
        super().__init__()
        self.depth, self.text = 0, []

    VOID = frozenset({"img", "br", "hr", "input", "meta", "link", "source", "wbr"})  # no end tag to match

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID and (self.depth or "cell_output" in (dict(attrs).get("class") or "")):
            self.depth += 1

    def handle_endtag(self, tag):
        if self.depth and tag not in self.VOID:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)


def test_pages_show_careful_runs(site):
    _, html = site
    for page in sorted(html.glob("[0-9]*.html")):
        text = page.read_text()
        assert "come from a careful-mode run" in re.sub(r"<[^>]+>", "", text), (
            f"{page.name}: no note of the run its outputs come from"
        )
        outputs = _Outputs()
        outputs.feed(text)
        assert outputs.text, f"{page.name}: no outputs found"
        assert not re.search(r"\w__fast\b", "".join(outputs.text)), f"{page.name}: an output shows a fast-mode name"


def test_api_entries_have_parameter_tables_source_links_and_an_index(site, browser):
    base, html = site
    browser.get(base + "51_monitor.report.html#api-monitor-rows")
    page = browser.page_source
    start = page.index('id="api-monitor-rows"')
    block = page[start : page.index('id="api-', start + 10)]
    assert "<table" in block and "the model’s folder (with its reference)" in block and "source</a>" in block, block[
        :2000
    ]
    assert "blob/main/ml_project/monitor/report.py#L" in block
    browser.get(base + "50_monitor.drift.html#api-column-drift")
    page = browser.page_source
    block = page[page.index('id="api-column-drift"') :]
    assert (
        "p_value" in block[:4000]
        and '<td><p><code class="docutils literal notranslate"><span class="pre">0.05</span>' in block[:6000]
    )
    # copy buttons on code blocks (sphinx-copybutton adds them when the page loads)
    assert browser.execute_script("return document.querySelectorAll('button.copybtn').length") > 5
    # the API index lists every public name; the general index is not empty
    import importlib

    from ml_project._modidx import d

    public = {n for m in d["syms"] for n in getattr(importlib.import_module(m), "__all__", [])}
    listed = (html / "api.html").read_text()
    missing = sorted(n for n in public if f">{n}<" not in listed)
    assert not missing, missing
    index = (html / "genindex.html").read_text()
    assert "monitor_rows" in index and "load_dataset" in index and index.count("<li>") > 100
    assert "2026, ml-project developers" in (html / "index.html").read_text()  # the footer names the copyright holder
    browser.get(base + "05_eda.html")  # pandas tables drawn like the theme's: hairlines, no double border
    style = browser.execute_script(
        "const t = document.querySelector('table.dataframe'); const s = getComputedStyle(t); "
        "return [s.borderCollapse, s.borderTopStyle, getComputedStyle(t.querySelector('td')).borderLeftStyle]"
    )
    assert style == ["collapse", "none", "none"], style

"""Test support: load pages in a real headless Chromium and read back what it rendered.

Chromium is driven through its command line only (``--screenshot``, ``--dump-dom``), so no
browser-automation package is needed. Each call uses a fresh temporary profile, which lets
tests run in parallel, and ``--virtual-time-budget`` so the page has finished loading before
the DOM is dumped or the screenshot taken. Console output (messages and uncaught exceptions)
goes to stderr with ``--enable-logging=stderr`` and is picked out by :func:`console_messages`.

Tests skip with a reason where no browser is installed (``chromium`` on Debian)::

    import browser_support

    chromium = browser_support.chromium  # makes the fixture available in the module
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 90
_CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught ")


def find_chromium() -> str | None:
    """Path of the first Chromium-family browser on ``PATH``, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser binary; skips the test where none is installed."""
    path = find_chromium()
    if path is None:
        pytest.skip(
            "no headless browser found (looked for " + ", ".join(CANDIDATES) + "); "
            "install Debian's `chromium` package to run the browser tests"
        )
    return path


def run_chromium(
    binary: str, page: Path, *args: str, window: tuple[int, int] = (1280, 2000)
) -> subprocess.CompletedProcess[str]:
    """Load ``page`` (a local file) headless with extra ``args``; stdout/stderr as text."""
    with tempfile.TemporaryDirectory(prefix="sarcrop-chromium-") as profile:
        command = [
            binary,
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
            *args,
            page.resolve().as_uri(),
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    if result.returncode != 0:
        raise AssertionError(f"chromium exited with {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def console_messages(stderr: str) -> list[str]:
    """Console messages and uncaught exceptions that Chromium logged for the page."""
    return [line for line in stderr.splitlines() if _CONSOLE.search(line)]


def screenshot(
    binary: str, page: Path, png: Path, window: tuple[int, int] = (1280, 2000)
) -> list[str]:
    """Save a screenshot of ``page`` to ``png``; returns the console messages."""
    result = run_chromium(binary, page, f"--screenshot={png}", window=window)
    return console_messages(result.stderr)


def dump_dom(
    binary: str, page: Path, window: tuple[int, int] = (1280, 2000)
) -> tuple[str, list[str]]:
    """The DOM after loading ``page`` (serialised) and the console messages."""
    result = run_chromium(binary, page, "--dump-dom", window=window)
    return result.stdout, console_messages(result.stderr)


# A script added to a copy of the page under test: after the load event it writes what only
# the browser knows (decoded image sizes, layout overflow, computed visibility) into the DOM
# as JSON, where --dump-dom carries it out.
_PROBE = """
<script>
window.addEventListener("load", () => {
  const root = document.documentElement;
  const result = {
    images: Array.from(document.images).map((img) => ({
      complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
      shown: img.getBoundingClientRect().width,
    })),
    viewport: window.innerWidth,
    scroll_width: root.scrollWidth,
    visible: Object.fromEntries(Array.from(document.querySelectorAll("[id]")).map(
      (el) => [el.id, getComputedStyle(el).display !== "none" && el.offsetParent !== null])),
  };
  const out = document.createElement("pre");
  out.id = "browser-probe";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def probe(binary: str, page: Path, window: tuple[int, int] = (1280, 2000)) -> dict:
    """Measurements taken inside the browser on a probed copy of ``page`` (see ``_PROBE``).

    Keys: ``images`` (complete, natural width/height, displayed width of each ``<img>``),
    ``viewport`` and ``scroll_width`` (page wider than the window means horizontal
    scrolling), ``visible`` (element id -> rendered or hidden).
    """
    text = page.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise AssertionError(f"{page} has no </body>")
    copy = page.with_name(f".probe-{window[0]}-{page.name}")
    copy.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
    try:
        dom, messages = dump_dom(binary, copy, window)
    finally:
        copy.unlink(missing_ok=True)
    if messages:
        raise AssertionError("console messages while probing:\n" + "\n".join(messages))
    match = re.search(r'<pre id="browser-probe">(.*?)</pre>', dom, re.S)
    if match is None:
        raise AssertionError("the probe did not run (no load event before the DOM dump?)")
    return json.loads(html.unescape(match.group(1)))


# --------------------------------------------------------------------------- DOM reading


@dataclass
class Table:
    """A table of the DOM: its id and rows per section (``thead``/``tbody``/``tfoot``)."""

    id: str | None
    rows: dict[str, list[list[str]]] = field(default_factory=dict)


@dataclass
class Dom:
    """What the tests read from a DOM: tables, images, links and the visible text."""

    tables: list[Table] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    text: str = ""

    def table(self, table_id: str) -> Table:
        for table in self.tables:
            if table.id == table_id:
                return table
        raise AssertionError(f"no table with id {table_id!r}; have {[t.id for t in self.tables]}")


class _DomReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.dom = Dom()
        self._table: Table | None = None
        self._section = "tbody"
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._skip = 0
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if "id" in attributes:
            self.dom.ids.append(attributes["id"])
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "table":
            self._table = Table(attributes.get("id"))
            self.dom.tables.append(self._table)
        elif tag in ("thead", "tbody", "tfoot"):
            self._section = tag
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.rows.setdefault(self._section, []).append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.dom.images.append(attributes)
        elif tag == "a" and "href" in attributes:
            self.dom.links.append(attributes["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip = max(0, self._skip - 1)
        elif tag == "table":
            self._table, self._section = None, "tbody"
        elif tag in ("thead", "tfoot"):
            self._section = "tbody"
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self._text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def close(self) -> None:
        super().close()
        self.dom.text = " ".join(" ".join(self._text).split())


def read_dom(markup: str) -> Dom:
    """Tables, images, links, ids and text of an HTML document."""
    reader = _DomReader()
    reader.feed(markup)
    reader.close()
    return reader.dom

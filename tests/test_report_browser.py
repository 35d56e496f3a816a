"""The report as a reader sees it: headless Chromium loads report.html from disk.

Skipped only when Debian's ``chromium`` is absent (``.ci/run`` installs it). Saves a screenshot
to ``test-artifacts/report.png``.
"""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from _report_data import FAST_OPTIONS, SCRIPT_NAME, decode_data_uri  # noqa: E402

from keras_audit.audit.report import SECTIONS, run  # noqa: E402

CHROMIUM = shutil.which("chromium") or next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="chromium is not installed (.ci/run installs it)")

# Loads the report in a frame and, once it has loaded, writes what it found into
# the page, which --dump-dom then prints. (The report itself has no scripts.)
HARNESS = """<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe id="f" src="report.html" style="width:1200px;height:800px"></iframe>
<script>
const frame = document.getElementById('f');
function inspect() {
  // the frame's load event fires after all of its images have loaded (or failed to)
  const doc = frame.contentDocument;
  const imgs = Array.from(doc.images);
  const ok = imgs.map(img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0);
  document.getElementById('out').textContent = JSON.stringify({
    images: imgs.length, decoded: ok.filter(Boolean).length,
    failed: imgs.filter((_, i) => !ok[i]).map(i => i.alt),
    headings: Array.from(doc.querySelectorAll('h2')).map(h => h.textContent.trim()),
    scripts: doc.scripts.length,
    classCells: Array.from(doc.querySelectorAll('td')).map(td => td.textContent)
      .filter(t => t.includes('alert(1)')).length});
}
if (frame.contentDocument && frame.contentDocument.readyState === 'complete' &&
    frame.contentDocument.images.length) { inspect(); }
else { frame.addEventListener('load', inspect); }
</script></body></html>
"""


def chromium(*args: str, profile: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Headless Chromium with a throw-away profile; returns the finished process."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class _DomReader(HTMLParser):
    """Collects h2 texts, img sources and script elements from a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.imgs: list[str] = []
        self.scripts = 0
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        elif tag == "img":
            self.imgs.append(dict(attrs).get("src", ""))
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


@pytest.fixture(scope="module")
def report_dir(shapes_model, shapes_data, tmp_path_factory):
    _, _, xt, yt, _ = shapes_data
    out = tmp_path_factory.mktemp("browser_report")
    run(shapes_model, xt[:50], yt[:50], class_names=["red", SCRIPT_NAME, "blue"], out_dir=out,
        samples=8, card={"intended_use": "Browser test."}, options=FAST_OPTIONS)
    return out


def test_dom_has_every_section_and_image(report_dir, tmp_path):
    page = report_dir / "report.html"
    done = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _DomReader()
    dom.feed(done.stdout)
    titles = [f"{i}. {title}" for i, (_, title) in enumerate(SECTIONS, start=1)]
    assert [h.strip() for h in dom.h2] == titles
    assert dom.scripts == 0  # the class name never became an element
    source = page.read_text(encoding="utf-8")
    assert len(dom.imgs) == source.count("<img ") > 10
    for src in dom.imgs:
        assert decode_data_uri(src).size > 0
    assert html_lib.escape(SCRIPT_NAME, quote=False) in done.stdout


def test_browser_decodes_every_image(report_dir, tmp_path):
    (report_dir / "harness.html").write_text(HARNESS, encoding="utf-8")
    try:
        done = chromium("--allow-file-access-from-files", "--virtual-time-budget=30000",
                        "--dump-dom", (report_dir / "harness.html").as_uri(),
                        profile=tmp_path / "profile")
    finally:
        (report_dir / "harness.html").unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
    assert match, done.stdout[:500]
    found = json.loads(html_lib.unescape(match.group(1)))
    assert found["images"] > 10
    assert found["decoded"] == found["images"], found["failed"]
    assert found["headings"] == [f"{i}. {t}" for i, (_, t) in enumerate(SECTIONS, start=1)]
    assert found["scripts"] == 0
    assert found["classCells"] > 0  # the name is shown, as text


def test_screenshot_and_print(report_dir, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = chromium("--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}",
                    (report_dir / "report.html").as_uri(), profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        assert len(set(img.convert("L").resize((64, 120)).getdata())) > 20  # not blank
    # print: every section starts a page, so the PDF has at least one page per section
    pdf = tmp_path / "report.pdf"
    done = chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                    (report_dir / "report.html").as_uri(), profile=tmp_path / "profile2")
    assert done.returncode == 0, done.stderr[-2000:]
    counts = [int(c) for c in re.findall(rb"/Count (\d+)", pdf.read_bytes())]
    assert counts and max(counts) >= len(SECTIONS)
    # every printed page carries the report id and its page number (the @page margin boxes)
    from pypdf import PdfReader

    report_id = json.loads((report_dir / "report.json").read_text())["provenance"]["report_id"]
    pages = PdfReader(pdf).pages
    for i, pg in enumerate(pages, start=1):
        text = " ".join(pg.extract_text().split())
        assert f"Page {i} of {len(pages)}" in text and report_id in text, (i, text[:200])

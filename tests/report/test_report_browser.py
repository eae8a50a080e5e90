"""report.html in a real headless browser (Chromium, Debian's `chromium` package): every image
loads and every contents link lands on a section. Skipped only when no Chromium is installed.

The check: a copy of the page, beside it (so relative figure paths resolve the same), gets a
script that, once the window has loaded, writes `loaded/total` images (complete with a
natural width) and `resolved/total` in-page links (an element with the link's id exists)
into data attributes of <body>; `chromium --headless --dump-dom` prints the DOM after the
load, and the test reads the attributes back.
"""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH")

PROBE = ("<script>window.addEventListener('load', function () {"
         "var im = Array.prototype.slice.call(document.images);"
         "var ok = im.filter(function (i) { return i.complete && i.naturalWidth > 0; });"
         "document.body.setAttribute('data-images', ok.length + '/' + im.length);"
         "var a = Array.prototype.slice.call(document.querySelectorAll('a[href^=\"#\"]'));"
         "var hit = a.filter(function (l) {"
         " return document.getElementById(l.getAttribute('href').slice(1)) !== null; });"
         "document.body.setAttribute('data-links', hit.length + '/' + a.length);"
         "});</script>")


def probe(page_path) -> str:
    """The DOM of the page at `page_path` after load, with the probe's attributes."""
    path = os.path.join(os.path.dirname(page_path), "_browser_probe.html")
    with open(page_path) as f:
        page = f.read()
    with open(path, "w") as f:
        f.write(page.replace("</body>", PROBE + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
           "file://" + os.path.abspath(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "data-images=" in out.stdout, \
        f"no probe result in Chromium's DOM (rc {out.returncode}): {out.stderr[-2000:]}"
    return out.stdout


def counted(dom: str, what: str) -> tuple:
    m = re.search(rf'data-{what}="(\d+)/(\d+)"', dom)
    return int(m.group(1)), int(m.group(2))


def images_loaded(page_path) -> tuple:
    """(loaded, total) images of the page at `page_path`, as headless Chromium sees them."""
    return counted(probe(page_path), "images")


@pytest.fixture(scope="module")
def report_dir(toy_fit):
    """A report from tiny inputs (the session's toy samples and fit): heatmaps, toy real /
    true correlations, SeFa and PCA grids (all embedded as base64)."""
    from helpers import make_tiny_report
    out = toy_fit / "browser_report"
    report = make_tiny_report(toy_fit, out=str(out), model="toy", classifier="toy",
                              real="toy", real_rows=100, directions=1, direction_samples=2,
                              direction_w_samples=200, grid_seeds=2)
    return out, report


def test_every_embedded_image_loads_and_every_contents_link_lands(report_dir):
    out, report = report_dir
    dom = probe(str(out / "report.html"))
    loaded, total = counted(dom, "images")
    assert total == len(report["figures"]) >= 6        # 3 correlations, cosine, 2 grids
    assert loaded == total
    hit, links = counted(dom, "links")
    assert links >= 6 and hit == links                  # summary + at least 5 sections
    for section in ("summary", "contents", "boundaries", "correlation", "sefa", "pca"):
        assert f'id="{section}"' in dom


def test_figure_files_load_by_relative_path_and_a_missing_one_is_caught(report_dir):
    """The same page with figures/*.png linked instead of embedded loads them all; one
    missing file shows as one image not loaded (the probe can fail)."""
    from gankit.report import render_html
    out, report = report_dir
    figs = {os.path.basename(p)[:-4]: p for p in report["figures"]}
    (out / "linked.html").write_text(render_html(report, figs))
    assert images_loaded(str(out / "linked.html")) == (len(figs), len(figs))
    figs["correlation"] = "figures/missing.png"
    (out / "broken.html").write_text(render_html(report, figs))
    assert images_loaded(str(out / "broken.html")) == (len(figs) - 1, len(figs))


def test_figures_are_not_blank(report_dir):
    """What the browser shows is a picture, not an empty canvas."""
    from PIL import Image
    out, report = report_dir
    for name in report["figures"]:
        a = np.asarray(Image.open(out / name).convert("RGB"), dtype=np.float64)
        assert a.std() > 10, name

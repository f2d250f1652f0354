"""The Sphinx documentation builds without a single warning (``-W``), API pages included."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    """The build has no warnings, and its pages read offline: math is rendered by the MathJax served with
    the pages (no script from a CDN or any other host), and no page loads anything from the network.
    (One build, about 30 s of CPU, checked both ways.)"""
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(tmp_path / "doctrees"),
           str(DOCS), str(tmp_path / "html")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        print(proc.stdout)
        print(proc.stderr)
    assert proc.returncode == 0, f"sphinx-build failed (exit {proc.returncode}):\n{proc.stderr[-5000:]}"
    check_pages_offline(tmp_path / "html")


def check_pages_offline(html: Path) -> None:
    """Every page's scripts and stylesheets are files of the build; pages with math load MathJax from it."""
    import re

    with_math = 0
    for page in html.rglob("*.html"):
        text = page.read_text()
        for url in re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', text):
            assert not re.match(r"(https?:)?//", url), f"{page.name} loads {url} from the network"
        if re.search(r'class="math', text):
            with_math += 1
            mathjax = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', text, flags=re.I)
            assert mathjax, f"{page.name} has math but loads no MathJax"
            assert all((page.parent / m.split("?")[0]).is_file() for m in mathjax), (page.name, mathjax)
    assert with_math >= 5  # gaps, estimators, validation, ... (the check is not vacuous)


def test_committed_gap_reports_render_to_their_markdown():
    """Every gap report in docs/results is regenerated, by the current code, into exactly the markdown
    committed beside it: the tables in the docs cannot drift from their JSON."""
    from pyro_vaegap.gaps import GapReport

    reports = [p for p in (DOCS / "results").rglob("*.json") if p.with_suffix(".md").exists()
               and {"per_point", "approx_family"} <= set(json.loads(p.read_text()))]  # top level: not a sweep's merge
    for path in reports:
        assert GapReport.load(path).to_markdown() == path.with_suffix(".md").read_text(), path

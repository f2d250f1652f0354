"""The Sphinx documentation builds without a single warning (``-W``), API pages included."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(tmp_path / "doctrees"),
           str(DOCS), str(tmp_path / "html")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        print(proc.stdout)
        print(proc.stderr)
    assert proc.returncode == 0, f"sphinx-build failed (exit {proc.returncode}):\n{proc.stderr[-5000:]}"


def test_committed_gap_reports_render_to_their_markdown():
    """Every gap report in docs/results is regenerated, by the current code, into exactly the markdown
    committed beside it: the tables in the docs cannot drift from their JSON."""
    from pyro_vaegap.gaps import GapReport

    reports = [p for p in (DOCS / "results").rglob("*.json") if p.with_suffix(".md").exists()
               and {"per_point", "approx_family"} <= set(json.loads(p.read_text()))]  # top level: not a sweep's merge
    for path in reports:
        assert GapReport.load(path).to_markdown() == path.with_suffix(".md").read_text(), path

"""Provenance: the git state a result records covers the whole repository, and the resume fingerprint
of a gap evaluation changes when any code changes (``guides/`` included)."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pyro_vaegap import utils
from pyro_vaegap.gaps import ConfigError, GapConfig, Pieces, fingerprint
from pyro_vaegap.guides.ffg import FFGEncoder

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A small repository laid out like ours: the package, guides/ beside it, and results under docs/."""
    root = tmp_path / "repo"
    for rel, text in (("pyro_vaegap/__init__.py", "x = 1\n"), ("guides/flow.py", "K = 2\n"),
                      ("experiments/e.py", "E = 0\n"), ("docs/results/r.json", "{}\n")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return root


def test_git_state_sees_edits_outside_the_package(repo):
    package = repo / "pyro_vaegap"
    clean = utils.git_state(package)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["diff"] is None
    (repo / "guides/flow.py").write_text("K = 3\n")
    first = utils.git_state(package)
    assert first["dirty"] is True and first["commit"] == clean["commit"]
    (repo / "guides/flow.py").write_text("K = 4\n")
    second = utils.git_state(package)
    assert second["dirty"] is True and second["diff"] != first["diff"]  # two dirty states told apart
    (repo / "guides/flow.py").write_text("K = 2\n")
    (repo / "experiments/e.py").write_text("E = 1\n")
    assert utils.git_state(package)["dirty"] is True
    (repo / "experiments/e.py").write_text("E = 0\n")
    (repo / "docs/results/r.json").write_text('{"new": 1}\n')  # a rewritten result is output, not code
    assert utils.git_state(package) == clean


def test_resume_fingerprint_changes_when_a_guide_is_edited(repo, lg_model, lg_data, monkeypatch, tmp_path):
    real = utils.git_state
    monkeypatch.setattr(utils, "git_state", lambda path=None: real(repo / "pyro_vaegap"))
    enc = FFGEncoder(lg_model, hidden=4).double()
    cfg = GapConfig(iwae_samples=10, elbo_samples=10)

    def fp():
        monkeypatch.setattr(utils, "_PROVENANCE", None)  # a new process reads the checkout afresh
        return fingerprint(lg_model, enc, lg_data, cfg, "ffg")

    before = fp()
    assert before["code"]["dirty"] is False
    Pieces(tmp_path / "partial", before)  # a partial evaluation left by the clean code
    (repo / "guides/flow.py").write_text("K = 3\n")
    after = fp()
    assert after["code"] != before["code"] and after["code"]["dirty"] is True
    with pytest.raises(ConfigError, match="different code"):
        Pieces(tmp_path / "partial", after)
    (repo / "guides/flow.py").write_text("K = 4\n")
    assert fp()["code"] != after["code"]


RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _records_commit(d) -> bool:
    """A results JSON names the code that made it: ``git`` (or ``meta.git``, or a sweep's plan or merge) with a commit."""
    if not isinstance(d, dict):
        return False
    if isinstance(d.get("git"), dict) and "commit" in d["git"]:
        return True
    return any(_records_commit(d.get(k)) for k in ("meta", "merged_with", "planned_with"))


def test_every_committed_results_file_records_a_commit():
    """Every JSON under docs/results records the commit of its code, or, for files written before results
    recorded one, a ``committed`` stamp whose commits are what git says: ``commit_added`` added the file and
    ``commit_content`` holds exactly these numbers (the file with the stamp removed)."""
    top = RESULTS.parents[1]
    in_git = (top / ".git").exists() and shutil.which("git") and subprocess.run(
        ["git", "-C", str(top), "rev-parse", "--is-shallow-repository"], capture_output=True, text=True
    ).stdout.strip() == "false"  # a shallow clone lacks the commits the stamps name: only their presence is checked
    for path in sorted(RESULTS.rglob("*.json")):
        d = json.loads(path.read_text())
        if _records_commit(d):
            continue
        assert "committed" in d, f"{path} records no commit"
        stamp = d.pop("committed")
        if not in_git:
            continue
        rel = str(path.relative_to(top))

        def git(*args):
            return subprocess.run(["git", "-C", str(top), *args], check=True, capture_output=True, text=True).stdout

        assert stamp["commit_added"] == git("log", "--diff-filter=A", "--format=%H", "--", rel).split()[0], rel
        assert json.loads(git("show", f"{stamp['commit_content']}:{rel}")) == d, rel

"""Results of an experiment: ``results.json``, ``results.md`` and figures, each written atomically.

``results.json`` holds the experiment's name, its options, seed, package versions, git commit and the
numbers (:func:`write_results`); ``results.md`` is the page a person reads: a title, the command, the
options as a table (:func:`options_markdown`), what the run cost, and the experiment's own markdown.
:func:`paper_table` puts published values beside ours.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..utils import atomic_write, atomic_write_json, atomic_write_text, provenance

#: options of every experiment that say how it runs, not what it computes: left out of the results page
HOW_TO_RUN = ("debug", "quiet", "threads")


def plain(v):
    """``v`` as a JSON value: a tuple as a list, a torch device, path or other object as its string."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def json_clean(obj):
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no NaN; an undefined standard error
    of a single value is ``null`` in the results files)."""
    if isinstance(obj, dict):
        return {k: json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def fmt(v, digits: int = 2) -> str:
    """A number for a markdown cell (``None`` and ``nan`` as —)."""
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown_table(headers, rows) -> str:
    """A GitHub-markdown table; floats are printed with 3 decimals."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _value(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) if v else "—"
    return f"`{v}`" if isinstance(v, str) and v else str(plain(v))


def options_markdown(options: dict, skip=HOW_TO_RUN) -> str:
    """The options of a run as a two-column markdown table (``option | value``), flags spelled as on the command
    line; options that only say how the command runs (``--threads``, ``--quiet``, ``--debug``) are left out."""
    rows = [(f"`--{k.rstrip('_').replace('_', '-')}`", _value(v)) for k, v in options.items() if k not in skip]
    return markdown_table(["option", "value"], rows)


def duration(seconds: float) -> str:
    """``seconds`` as a person says it: 45 s, 12.5 min, 3.2 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def paper_table(rows, digits: int = 2, label: str = "quantity") -> str:
    """Published values beside ours: a markdown table ``quantity | paper | ours | ours − paper``.

    :param rows: ``(quantity, paper, ours)`` triples; ``ours`` a number or a ``(mean, standard error)`` pair,
        ``paper`` a number or ``None`` (not published: no difference is shown).
    """
    out = []
    for name, paper, ours in rows:
        mean, se = ours if isinstance(ours, (tuple, list)) else (ours, None)
        shown = fmt(mean, digits) + (f" ± {fmt(se, digits)}" if se is not None else "")
        diff = fmt(mean - paper, digits) if paper is not None and mean is not None else "—"
        if diff not in ("—",) and not diff.startswith("-"):
            diff = "+" + diff
        out.append((name, fmt(paper, digits), shown, diff))
    return markdown_table([label, "paper", "ours", "ours − paper"], out)


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (:func:`pyro_vaegap.utils.atomic_write`) and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def write_results(out: Path, name: str, args, results: dict, markdown: str, seconds: float | None,
                  reused: str | None = None) -> None:
    """``results.json`` (options, seed, versions, git commit, wall time, results) and ``results.md``, atomically.

    :param seconds: what this command's computation took; ``None`` when it computed nothing itself (it assembled
        finished pieces), and the page says so rather than printing a wall time of 0.
    :param reused: what was reused, in words (e.g. "the three gap reports named by --compare"), for the page.
    """
    options = vars(args) if not isinstance(args, dict) else dict(args)
    payload = {"experiment": name, "config": plain(options), "seed": options.get("seed"), **provenance(),
               "wall_seconds": None if seconds is None else round(seconds, 1), "results": results}
    atomic_write_json(Path(out) / "results.json", payload)
    _write_page(out, name, payload, markdown, reused, options)


def rewrite_page(out: Path, markdown, reused=None) -> Path:
    """Regenerate ``results.md`` from the saved ``results.json`` by current code, computing nothing:
    ``markdown(results)`` is the experiment's own markdown of the saved results; the header (commit, cost,
    options) is the saved run's; ``reused(payload)``, if given (the whole saved file), says what that run reused
    (or None)."""
    payload = json.loads((Path(out) / "results.json").read_text())
    res = payload["results"]
    return _write_page(out, payload["experiment"], payload, markdown(res), reused(payload) if reused else None)


def _write_page(out, name, payload, markdown, reused=None, options=None) -> Path:
    seconds = payload.get("wall_seconds")
    options = payload.get("config") or {} if options is None else options
    if seconds is None:
        cost = ("This page assembles results computed earlier" + (f" ({reused})" if reused else "")
                + "; each piece records its own settings, commit and compute time.")
    else:
        cost = f"Computed in {duration(seconds)}" + (f"; reused {reused}" if reused else "") + "."
    git = payload.get("git") or {}
    commit = git.get("commit")
    where = (f" at commit `{commit[:12]}`" + (" with uncommitted changes" if git.get("dirty") else "")) if commit else ""
    # five header lines, as the docs' includes expect (``:start-line: 5``); the options close the page
    return atomic_write_text(Path(out) / "results.md",
                             f"# {name}\n\nMade by `python -m experiments.{name}`{where}. {cost}\n"
                             "The options are listed at the end of this page; package versions are in `results.json`.\n\n"
                             + markdown.rstrip("\n") + "\n\n**Options of this run**\n\n" + options_markdown(options))

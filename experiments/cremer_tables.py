r"""Cremer, Li & Duvenaud (2018), Tables 2 (both columns), 3, 5, 6 and 10 on MNIST, each one command.

Every table compares a few *variants* of the paper's MNIST model, and every variant is one
:mod:`experiments.cremer_gaps` run (training, resumed or reused when finished, then a gap report):

========================  ==============================================  ==============================
variant                   trained with                                    families of L[q*]
========================  ==============================================  ==============================
``ffg``                   the paper's recipe: FFG encoder 784-200-200,    ffg, flow
                          decoder 50-200-200-784, entropy annealing
``flow_trained``          the auxiliary-flow encoder (Table 2, column 2)  ffg, flow
``decoder0``/``decoder4`` decoders with 0 / 4 hidden layers (Table 5)     ffg
``encoder500``            a larger encoder, 784-500-500 (Table 3)         ffg
``no_anneal``             no entropy annealing (Table 6)                  ffg
``fullcov_trained``       a full-covariance encoder, lr 3e-4 (Table 10;   ffg, fullcov
                          it diverges at 1e-3)
========================  ==============================================  ==============================

A table prints, per variant, log p̂, L[q] and each L[q*] with the approximation, amortization and
inference gaps (mean ± s.e. over the test points), the paper's value in brackets where
:data:`pyro_vaegap.report.compute.PAPERS` has it, and each gap's difference from the table's reference variant
(``ffg``; Table 5: the 2-layer decoder, which is ``ffg``) **paired over the same test points** (mean ±
s.e. of the per-point differences): variants share the seeded test subset, each with its own
decoder. The amortization gap is the variant's own family's: :math:`\mathcal L[q^*] - \mathcal L[q]`
for the family its encoder has.

Profiles: ``cpu`` (default; 20 epochs, entropy annealing over 5, 20 test points, AIS 20 × 100 × 5,
1000 samples, q* with 20 samples per step and a 20,000-step cap: minutes per variant on one core) and
``paper`` (the authors' protocol, :mod:`pyro_vaegap.studies.cremer`: 3280 epochs on Burda et al.'s schedule over
the 60,000 training and validation images, evaluated on the first 1000 training images; for a GPU).
``--eval-splits train,test`` makes every table twice, on training points and on test points (a report per
split: ``RUNS/VARIANT/gaps_train.json``, ``gaps_test.json``; test points are always a seeded random subset, the
test split being sorted by class)::

    python -m experiments.cremer_tables --tables 2,3,5,6,10 --data-dir ../shared/data \
        --runs runs/cremer_tables --out docs/results/cremer_tables
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from pyro_vaegap.report.paper_columns import PAPERS
from pyro_vaegap.report.render import mean_se
from pyro_vaegap.utils import ConfigError

from pyro_vaegap.harness import make_parser, markdown_table, parse_args, run_main, write_results
from pyro_vaegap.studies import cremer

NAME = "cremer_tables"
#: variant -> (cremer_gaps options beyond the profile's, families of L[q*])
VARIANTS = {
    "ffg": ((), "ffg,flow"),
    "flow_trained": (("--guide", "flow"), "ffg,flow"),
    "decoder0": (("--decoder-layers", "0"), "ffg"),
    "decoder4": (("--decoder-layers", "4"), "ffg"),
    "encoder500": (("--encoder-hidden", "500"), "ffg"),
    "no_anneal": (("--anneal-epochs", "0"), "ffg"),
    "fullcov_trained": (("--guide", "fullcov", "--lr", "3e-4"), "ffg,fullcov"),
}
#: table -> (title, variants in print order, {variant: the PAPERS column of this table when it is not the one
#: the report names}); the 2-layer model is Table 2's FFG column, but Table 5 gives it its own value
TABLES = {
    2: ("Table 2: the FFG-trained and the flow-trained model", ("ffg", "flow_trained"), {}),
    3: ("Table 3: a larger encoder", ("ffg", "encoder500"), {}),
    5: ("Table 5: the decoder's size (0, 2, 4 hidden layers)", ("decoder0", "ffg", "decoder4"),
        {"ffg": "cremer2018_table5_mnist_2_layers"}),
    6: ("Table 6: no entropy annealing", ("ffg", "no_anneal"), {}),
    10: ("Table 10: the full-covariance-trained model", ("ffg", "fullcov_trained"), {}),
}
REFERENCE = "ffg"
#: the profiles of :mod:`pyro_vaegap.studies.cremer` a table may be made with
PROFILES = ("cpu", "paper", "quick")
#: --eval-splits: which points of a split are evaluated (the binarized MNIST test split is sorted by class, so its
#: points are always a seeded random subset; a training split's follow the profile: the paper's, its first rows)
SPLIT_WORDS = {"train": "training points", "valid": "validation points", "test": "test points"}


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0])
    p.set_defaults(out="docs/results/cremer_tables")
    p.add_argument("--tables", default="2,3,5,6,10", help="comma-separated tables of the paper (2, 3, 5, 6, 10)")
    p.add_argument("--profile", default="cpu", choices=("cpu", "paper"), help="settings (see the module doc)")
    p.add_argument("--quick", action="store_true", help="smoke run: cremer_gaps --quick per variant")
    p.add_argument("--eval-splits", default=None,
                   help="comma-separated splits whose points are evaluated, one table block each (e.g. train,test: "
                        "Table 2 on training points and on test points; default: the profile's split only)")
    p.add_argument("--dataset", default="binarized_mnist", choices=tuple(cremer.DATASETS),
                   help="data set of every variant (see experiments.cremer_gaps; the paper's numbers are MNIST's)")
    p.add_argument("--data-dir", default=None, help="folder with the data set's files (else $PYRO_VAEGAP_DATA)")
    p.add_argument("--compare", nargs="+", metavar="NAME=REPORT",
                   help="instead of the paper's tables: one table of these finished gap reports (JSON files), their "
                        "gaps paired against the first's")
    p.add_argument("--runs", default=None, help="one folder per variant: VARIANT/run (training) and VARIANT/gaps.json "
                                                "(report), each reused when finished (default runs/cremer_tables_PROFILE, "
                                                "plus _DATASET for a data set other than binarized MNIST)")
    return p


def parse_tables(text: str) -> list[int]:
    try:
        tables = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        tables = None
    if not tables or any(t not in TABLES for t in tables):
        raise ConfigError(f"--tables {text!r} is not allowed: expected a comma-separated subset of "
                          f"{', '.join(map(str, TABLES))}")
    return tables


def variant_report(variant: str, runs: Path, args, profile: str, split: str | None = None) -> dict:
    """The variant's gap report (JSON dict): read when finished, else made by :func:`pyro_vaegap.studies.cremer.run`
    (the model trained, resumed or reused in ``RUNS/VARIANT/run``); ``split``: evaluated on that split's points (its
    report ``RUNS/VARIANT/gaps_SPLIT.json``), else on the profile's (``RUNS/VARIANT/gaps.json``)."""
    options, families = VARIANTS[variant]
    stem = runs / variant / ("gaps" if split is None else f"gaps_{split}")
    path = stem.with_suffix(".json")
    if not path.exists():
        argv = ["--profile", profile, *options, "--families", families, "--run-dir", str(runs / variant / "run"),
                "--out", str(stem), "--seed", str(args.seed), "--device", str(args.device), "--dataset", args.dataset]
        if split is not None:
            argv += ["--eval-split", split] + (["--eval-points", "random"] if split == "test" else [])
        argv += ["--data-dir", args.data_dir] if args.data_dir else []
        argv += ["--threads", str(args.threads)] if args.threads else []
        argv += ["--quiet"] if args.quiet else []
        cremer.run(cremer.build_parser(name=NAME).parse_args(argv))
    report = json.loads(path.read_text())
    found = ",".join(report["config"]["families"])
    if found != families:
        raise ConfigError(f"{path} has families {found!r}, but variant {variant!r} needs {families!r}: move it "
                          "away (its run folder can stay: the training is reused)")
    return report


def _gaps(report: dict) -> dict[str, np.ndarray]:
    """Per-point rows and gaps of a report, keyed by column name; the amortization gap is its own family's."""
    pp, own = report["per_point"], report["approx_family"]
    cols = {"log p̂": pp["log_px"], "L[q]": pp["amortized"]}
    cols.update({f"L[q*_{f}]": pp[f"local:{f}"] for f in report["config"]["families"]})
    cols.update({f"approx. gap {f}": pp[f"approximation:{f}"] for f in report["config"]["families"]})
    cols["amort. gap"] = pp[f"amortization:{own}"]
    cols["inference gap"] = pp["inference"]
    return {k: np.asarray(v, dtype=float) for k, v in cols.items()}


#: per-point columns compared with the reference, paired, and their keys in a paper column's values
PAIRED = ("approx. gap ffg", "amort. gap", "inference gap")
PAPER_KEYS = {"log p̂": "log_px", "L[q]": "amortized", "L[q*_ffg]": "local:ffg", "L[q*_flow]": "local:flow",
              "approx. gap ffg": "approximation:ffg", "approx. gap flow": "approximation:flow",
              "inference gap": "inference"}


def compare(reports: dict[str, dict], reference: str, papers: dict[str, str] | None = None) -> dict:
    """One table: per variant the mean ± s.e. of every column, the paper's values where known (``papers``:
    variant → :data:`PAPERS` key, else the report's own), and the paired differences of :data:`PAIRED` from
    ``reference`` (points must be the same: same seed and number of points)."""
    ref = reports[reference]
    rows = {}
    for name, rep in reports.items():
        same = (rep["meta"]["num_points"], rep["config"]["seed"]) == (ref["meta"]["num_points"], ref["config"]["seed"])
        if not same:
            raise ConfigError(f"variant {name!r} was evaluated on other test points than {reference!r} (points, seed "
                              f"{rep['meta']['num_points']}, {rep['config']['seed']} vs {ref['meta']['num_points']}, "
                              f"{ref['config']['seed']}): their gaps cannot be paired")
        cols, ref_cols = _gaps(rep), _gaps(ref)
        key = (papers or {}).get(name, rep["meta"].get("paper"))
        paper = PAPERS[key].values if key else {}
        if rep["approx_family"] == "ffg" and "amortization:ffg" in paper:
            paper = {**paper, "amort. gap": paper["amortization:ffg"]}
        rows[name] = {
            "family": rep["family"], "commit": rep["meta"]["git"]["commit"],
            "columns": {k: mean_se(v) for k, v in cols.items()},
            "paper": {k: paper[PAPER_KEYS.get(k, k)] for k in cols if PAPER_KEYS.get(k, k) in paper},
            "paired": {k: mean_se(cols[k] - ref_cols[k]) for k in PAIRED if name != reference and k in cols},
            "steps_capped": {f: int(np.sum(~np.asarray(rep["per_point"][f"converged:{f}"], dtype=bool)))
                             for f in rep["config"]["families"]},
        }
    return {"reference": reference, "variants": rows}


def table_markdown(title: str, table: dict) -> str:
    names = list(table["variants"])
    order = ("log p̂", "L[q]", "L[q*", "approx.", "amort.", "inference")  # rows first, then the gaps
    columns = sorted({k for v in table["variants"].values() for k in v["columns"]},
                     key=lambda k: (next(i for i, p in enumerate(order) if k.startswith(p)), k))
    # bold, not a heading: the docs include the file inside their own sections
    lines = [f"**{title}**\n", f"Reference for the paired differences (Δ): `{table['reference']}`.\n"]
    rows = []
    for name in names:
        v = table["variants"][name]
        cells = [f"`{name}` ({v['family']}-trained)"]
        for col in columns:
            if col not in v["columns"]:
                cells.append("–")
                continue
            m, se = v["columns"][col]
            cell = f"{m:.2f} ± {se:.2f}"
            if col in v["paper"]:
                cell += f" [paper {v['paper'][col]:.2f}]"
            if col in v["paired"]:
                dm, dse = v["paired"][col]
                cell += f" (Δ {dm:+.2f} ± {dse:.2f})"
            cells.append(cell)
        rows.append(cells)
    lines.append(markdown_table(["variant", *columns], rows))
    capped = [f"`{n}` {f}: {c}" for n, v in table["variants"].items() for f, c in v["steps_capped"].items() if c]
    lines.append("Local optimizations stopped by the step cap before the paper's rule: "
                 + (", ".join(capped) if capped else "none") + ".\n")
    return "\n".join(lines)


def read_reports(items: list[str]) -> dict[str, dict]:
    """``NAME=PATH`` items → ``{name: report JSON}``, in order."""
    reports = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not (sep and name and path) or name in reports:
            raise ConfigError(f"--compare {item!r} is not allowed: expected NAME=REPORT.json with a new NAME")
        if not Path(path).is_file():
            raise ConfigError(f"--compare {item!r}: no gap report at {path}")
        reports[name] = json.loads(Path(path).read_text())
    return reports


def parse_splits(text: str | None) -> list[str | None]:
    """``--eval-splits`` → the splits, or ``[None]`` (the profile's split)."""
    if text is None:
        return [None]
    splits = [t.strip() for t in text.split(",") if t.strip()]
    if not splits or any(t not in SPLIT_WORDS for t in splits) or len(set(splits)) < len(splits):
        raise ConfigError(f"--eval-splits {text!r} is not allowed: expected distinct names among "
                          f"{', '.join(SPLIT_WORDS)}")
    return splits


def main(argv=None):
    args = parse_args(build_parser(), argv)
    if args.compare:
        reports = read_reports(args.compare)
        table = compare(reports, next(iter(reports)))
        used = {"compare": args.compare, "out": args.out}  # the other options do not apply to a comparison
        write_results(Path(args.out), NAME, used, {"compare": table},
                      table_markdown("Gap reports compared", table), None,
                      reused=f"the {len(reports)} gap reports named by --compare")
        return
    tables = parse_tables(args.tables)
    splits = parse_splits(args.eval_splits)
    profile = "quick" if args.quick else args.profile
    suffix = "" if args.dataset == "binarized_mnist" else f"_{args.dataset}"
    runs = Path(args.runs or f"runs/cremer_tables_{profile}{suffix}")
    start = time.time()
    reports, results, parts, made = {}, {}, [], 0
    for t in tables:
        title, variants, papers = TABLES[t]
        for split in splits:
            for variant in variants:
                if (variant, split) not in reports:
                    stem = runs / variant / ("gaps" if split is None else f"gaps_{split}")
                    made += not stem.with_suffix(".json").exists()
                    reports[variant, split] = variant_report(variant, runs, args, profile, split)
            key = str(t) if split is None else f"{t}:{split}"
            results[key] = compare({v: reports[v, split] for v in variants}, REFERENCE, papers)
            on = "" if split is None else f", on {SPLIT_WORDS[split]}"
            parts.append(table_markdown(f"Cremer et al. (2018), {title}{on}", results[key]))
    points = ("the evaluated points (each report names them)" if splits == [None] else
              " and ".join(SPLIT_WORDS[s] for s in splits))
    files = "gaps.json" if splits == [None] else "gaps_SPLIT.json"
    header = (f"Profile `{profile}`; nats, mean ± s.e. over {points}; [paper] where "
              "`pyro_vaegap.gaps.PAPERS` has the value; Δ: paired difference from the reference variant over the "
              "same points. Each variant's report (with its settings, commit and versions) is "
              f"`{runs}/VARIANT/{files}`.\n\n")
    total = len(reports)
    write_results(Path(args.out), NAME, args, {"profile": profile, "runs": str(runs), "tables": results},
                  header + "\n".join(parts), time.time() - start if made else None,
                  reused=f"{total - made} of the {total} finished gap reports" if total - made else None)


if __name__ == "__main__":
    run_main(main)

r"""The gap report as data and as a page: :class:`GapReport` holds the per-datapoint results and their provenance,
writes and reads them as JSON, and renders the markdown table laid out like Table 2 of Cremer et al. (2018), with
the published column beside ours where one matches (:mod:`pyro_vaegap.report.paper_columns`) and the diagnostics.
Everything the table prints is in the JSON, so :meth:`GapReport.from_dict` and ``vaegap render`` regenerate it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..estimators.importance import PSIS_MIN_SAMPLES
from ..utils import atomic_write_json, atomic_write_text
from .config import saved_config
from .paper_columns import _USES_LOG_PX, PAPERS, evaluation_split


def mean_se(v: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean of ``v`` ``(N,)`` (NaN standard error for one value)."""
    with np.errstate(invalid="ignore", over="ignore"):  # an inf entry (k̂ of a few samples) gives inf/NaN, quietly
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


@dataclass
class GapReport:
    """Per-datapoint results (``per_point``: name → array of shape ``(N,)``) and their provenance.

    ``meta["paper"]`` names the published column (:data:`~pyro_vaegap.report.paper_columns.PAPERS`) the markdown table sets beside
    ours, if any; everything :meth:`to_markdown` prints is in :meth:`to_dict`, so the table can be
    regenerated from the saved JSON by current code (:meth:`from_dict`, ``vaegap render``).
    """

    family: str                   #: the amortized guide's family
    approx_family: str            #: family whose q* splits the gap (the amortized family when optimized)
    per_point: dict
    config: dict
    meta: dict

    @property
    def local_families(self) -> list[str]:
        return [k.split(":", 1)[1] for k in self.per_point if k.startswith("local:")]

    @property
    def log_px_estimator(self) -> str:
        return self.meta.get("log_px_estimator", "iwae")

    @property
    def amortized_samples(self) -> int:
        """Draws of the amortized guide behind IWAE and L[q]: both come from the same
        ``max(iwae_samples, elbo_samples)`` draws (:func:`~pyro_vaegap.report.compute.gap_report`)."""
        return max(self.config["iwae_samples"], self.config["elbo_samples"])

    def summary(self) -> dict[str, tuple[float, float]]:
        """Mean and standard error (over datapoints) of every per-datapoint quantity."""
        return {k: mean_se(np.asarray(v, dtype=float)) for k, v in self.per_point.items()}

    def to_dict(self) -> dict:
        """JSON-ready; an undefined value (the standard error of a single point or sample) is ``None``."""
        def clean(v):
            return [clean(u) for u in v] if isinstance(v, list) else (v if math.isfinite(v) else None)

        s = self.summary()
        n = len(next(iter(self.per_point.values())))
        warnings = [line[len("- WARNING: "):] for line in self._diagnostics(s, n) if line.startswith("- WARNING")]
        return {"family": self.family, "approx_family": self.approx_family, "warnings": warnings,
                "summary": {k: {"mean": clean(m), "se": clean(se)} for k, (m, se) in s.items()},
                "per_point": {k: clean(np.asarray(v, dtype=float).tolist()) for k, v in self.per_point.items()},
                "config": self.config, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "GapReport":
        """The report saved by :meth:`to_dict` (``null`` entries become NaN)."""
        per = {k: np.array([np.nan if u is None else u for u in v], dtype=float) for k, v in d["per_point"].items()}
        return cls(family=d["family"], approx_family=d["approx_family"], per_point=per, config=saved_config(d["config"]),
                   meta=d["meta"])

    @classmethod
    def load(cls, path) -> "GapReport":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save(self, stem) -> tuple:
        """Write ``stem.json`` and ``stem.md`` (:meth:`to_markdown`) atomically."""
        stem = Path(stem)
        return (atomic_write_json(stem.with_suffix(".json"), self.to_dict()),
                atomic_write_text(stem.with_suffix(".md"), self.to_markdown()))

    def _rows(self):
        fams = self.local_families
        order = [self.approx_family] + [f for f in fams if f != self.approx_family]
        rows = [("log p̂(x)" + f" ({self.log_px_estimator.upper()})", "log_px")]
        rows += [(f"L[q*_{f.upper()}]", f"local:{f}") for f in fams]
        rows += [(f"L[q] ({self.family.upper()} encoder)", "amortized")]
        own, enc = self.family in fams, self.family.upper()
        for f in order:
            rows += [(f"Approximation gap (log p̂ − L[q*_{f.upper()}])", f"approximation:{f}")]
            if f == self.family:
                rows += [(f"Amortization gap (L[q*_{f.upper()}] − L[q])", f"amortization:{f}")]
                continue
            # q* of another family than the encoder's: the difference mixes amortization with the families'
            # difference, and need not be >= 0 (docs/gaps.rst); it is labelled as what it is
            rows += [(f"L[q*_{f.upper()}] − L[q] (cross-family: {f.upper()} optimum vs {enc} encoder; "
                      "not an amortization gap)", f"amortization:{f}")]
            if own:
                rows += [(f"of which family difference L[q*_{f.upper()}] − L[q*_{enc}]",
                          f"local:{f} − local:{self.family}")]
        return rows + [("Inference gap (log p̂ − L[q])", "inference")]

    def _summary_with_differences(self) -> dict:
        """:meth:`summary` plus the paired differences ``"local:a − local:b"`` that :meth:`_rows` names."""
        s = self.summary()
        for _, key in self._rows():
            if key not in s:
                a, b = key.split(" − ")
                s[key] = mean_se(np.asarray(self.per_point[a], dtype=float) - np.asarray(self.per_point[b], dtype=float))
        return s

    def to_markdown(self) -> str:
        """Table 2 of the paper: bounds, then gaps, mean ± standard error over datapoints (nats).

        Paper numbers (``meta["paper"]``) are paired only with the same quantity measured the same way: a
        gap with the gap of the same family's q*, log p̂ and every quantity derived from it only when our
        log p̂ includes AIS, as the paper's does, and no difference at all when our points come from
        another split than the paper's (the paper's column is then shown beside ours, not subtracted:
        a test point's amortization gap also holds the encoder's generalization error, and its bounds
        are lower, than a training point's).
        """
        s = self._summary_with_differences()
        paper = PAPERS.get(self.meta.get("paper") or "")
        with_ais = self.log_px_estimator in ("ais", "max")
        split = evaluation_split(self.meta)
        same_points = paper is not None and split == paper.split
        head = "| | ours |" + ((" paper | ours − paper |" if same_points else " paper (other points) |") if paper else "")
        lines = [head, "|---|---|" + (("---|---|" if same_points else "---|") if paper else "")]
        for label, key in self._rows():
            m, se = s[key]
            line = f"| {label} | {m:.2f} ± {se:.2f} |"
            if paper:
                comparable = key in paper.values and (with_ais or not key.startswith(_USES_LOG_PX))
                if same_points:
                    line += f" {paper.values[key]:.2f} | {m - paper.values[key]:+.2f} |" if comparable else " – | – |"
                else:
                    line += f" {paper.values[key]:.2f} |" if comparable else " – |"
            lines.append(line)
        n = len(next(iter(self.per_point.values())))
        c = self.config
        ais_text = (f"AIS {c['ais_chains']} chains × {c['ais_steps']} steps × {c['ais_leapfrog']} leapfrog "
                    f"({c['ais_schedule']} schedule, step sizes: {c['ais_step_size']})" if c["ais"] else "AIS off")
        out = "\n".join(lines) + "\n"
        points = self.meta.get("evaluation_points") or f"{n} datapoints"
        out += (f"\nN = {n}: {points}; log p̂ = {_LOG_PX_TEXT[self.log_px_estimator]}; "
                f"IWAE and L[q] with k = {self.amortized_samples} samples (max of iwae_samples {c['iwae_samples']} "
                f"and elbo_samples {c['elbo_samples']}); L[q*] with {c['elbo_samples']} samples; {ais_text}; "
                f"local optimization: {c['local_samples']} samples/step, lr {c['local_lr']}, init {c['local_init']}.\n")
        out += "\nDiagnostics:\n" + "\n".join(self._diagnostics(s, n)) + "\n"
        if paper:
            out += f"\nPaper: {paper.title}. Its settings: {paper.settings}."
            if not same_points:
                words = {"train": "training", "valid": "validation", "test": "test"}
                out += (f" The paper's points are {words[paper.split]} images and ours are "
                        f"{words.get(split, 'of an unrecorded split')}, so the two columns are not subtracted.")
            if not with_ais:
                out += " Our log p̂ does not use AIS, so log p̂, the approximation gaps and the inference gap are not compared."
            out += "\n"
            if self.meta.get("paper_settings"):
                out += f"\nOur settings that differ: {self.meta['paper_settings']}\n"
        return out

    def _diagnostics(self, s, n) -> list[str]:
        p, c = self.per_point, self.config
        out = []
        for key, label in (("psis_khat", "PSIS k̂ of q's weights"), ("iwae_ess", f"IS ESS of q (of {self.amortized_samples})"),
                           ("ais_ess", f"AIS ESS (of {c['ais_chains']} chains)"), ("ais_accept", "AIS acceptance rate"),
                           ("ais_minus_iwae", "AIS − IWAE"), ("uncertainty", "encoder uncertainty (guide.uncertainty)")):
            if key == "psis_khat" and key in p and np.isnan(np.asarray(p[key], dtype=float)).all():
                out.append(f"- {label}: undefined (PSIS needs at least {PSIS_MIN_SAMPLES} draws; "
                           f"{self.amortized_samples} were drawn)")
            elif key in s:
                out.append(f"- {label}: mean {s[key][0]:.3g} ± {s[key][1]:.2g}")
        if "psis_khat" in p and not np.isnan(np.asarray(p["psis_khat"], dtype=float)).all():
            out.append(f"- datapoints with k̂ > 0.7 (q far from the posterior): {int((np.asarray(p['psis_khat']) > 0.7).sum())}/{n}")
        if self.log_px_estimator == "max":
            out.append("- log p̂ is the per-datapoint max of IWAE and AIS (the paper's rule): biased upward, and the "
                       "bias enters every approximation gap")
        for f in self.local_families:
            steps = np.asarray(p[f"steps:{f}"])
            stopped = int(np.sum(p[f"converged:{f}"]))
            out.append(f"- local {f}: steps median {int(np.median(steps))}, max {int(steps.max())}; stopped by the "
                       f"rule: {stopped}/{n}")
            if stopped < n:
                out.append(f"- WARNING: local {f}: {n - stopped}/{n} datapoints hit the step cap before the stopping "
                           "rule: their L[q*] may be short of the optimum")
            amort = np.asarray(p[f"amortization:{f}"])
            se = np.hypot(np.asarray(p[f"local_se:{f}"]), np.asarray(p["amortized_se"]))
            neg = int(np.sum(amort < -2 * se))
            if neg and f == self.family:
                out.append(f"- WARNING: amortization gap of {f} below −2 s.e. on {neg}/{n} datapoints: the local "
                           "optimization ended below the encoder's own q there")
            elif neg:
                out.append(f"- L[q*_{f.upper()}] − L[q] below −2 s.e. on {neg}/{n} datapoints: the {f} optimum is "
                           f"below the {self.family} encoder's q there (possible when {f} does not contain "
                           f"{self.family}; otherwise the local optimization ended short)")
        return out


_LOG_PX_TEXT = {"ais": "AIS", "iwae": "IWAE of the encoder", "max": "max(IWAE, AIS) per datapoint (paper)"}

r"""The inference-gap report of Cremer, Li & Duvenaud (2018).

For a trained model :math:`p_\theta` and amortized guide :math:`q` of family :math:`\mathcal Q`,
per datapoint :math:`x`:

.. math::

    \underbrace{\log p(x) - \mathcal L[q]}_{\text{inference gap}}
    = \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation gap}}
    + \underbrace{\mathcal L[q^*] - \mathcal L[q]}_{\text{amortization gap}},

where :math:`q^* = \arg\max_{q\in\mathcal Q}\mathcal L[q]` is found by per-datapoint optimization
(:mod:`pyro_vaegap.local`) for every family in ``GapConfig.families``. Every term is estimated from
the Pyro model and guides through their traces, so any registered family works.

The estimate :math:`\log\hat p(x)` (``GapConfig.log_px``)
----------------------------------------------------------
``"auto"`` (default): AIS when it runs (:mod:`pyro_vaegap.ais`, kernels frozen in advance, so its
mean weight is unbiased for :math:`p(x)`), IWAE-:math:`S` of the encoder otherwise. One estimator is
chosen *per run*, never per datapoint. ``"ais"`` and ``"iwae"`` force one. ``"max"`` is the paper's
definition, :math:`\max(\text{IWAE}, \text{AIS})` per datapoint: the maximum of two noisy
estimates is biased upward, and the bias enters the approximation gap in full, so it is offered
only to reproduce the paper's protocol. Both estimates are kept per datapoint in the report.

:func:`gap_report` returns a :class:`GapReport`: per-datapoint arrays, means with standard errors,
JSON (config, seed, package versions, git commit) and a markdown table laid out like the paper's
Table 2, which :meth:`GapReport.from_dict` re-creates from the JSON alone.
A guide with an ``uncertainty(x)`` method (``gpvae``) also has that value kept per datapoint, under
``"uncertainty"``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import papers
from .ais import SCHEDULES, STEP_SIZE_MODES, ais
from .contract import as_model, check_sites, inspect_model, state_tensors, validate_data
from .estimators import PSIS_MIN_SAMPLES, importance_sample
from .local import optimize_local
from .registry import get_family
from .utils import (ConfigError, atomic_torch_save, atomic_write_json, atomic_write_text, check_choice,
                    check_positive_int, provenance, stable_seed)

LOCAL_INITS = ("prior", "encoder")
LOG_PX_ESTIMATORS = ("auto", "ais", "iwae", "max")


@dataclass(frozen=True)
class PaperColumn:
    """Published numbers for one model, keyed like :attr:`GapReport.per_point` (nats); ``split``: the split
    whose points the paper evaluated ("train": Cremer et al.'s code takes the first training images)."""

    title: str
    values: dict
    settings: str
    split: str = "train"


#: Published columns a report can set beside ours, from :mod:`pyro_vaegap.papers` (the one home of published
#: numbers): Cremer et al. (2018), Table 2, MNIST, the FFG-trained model, and Table 5's approximation gaps. The gaps
#: are keyed by the family whose q* defines them, so a report pairs them only with the same quantity.
PAPERS = {
    "cremer2018_table2_mnist_ffg": PaperColumn(
        title="Cremer et al. (2018), Table 2, MNIST, FFG-trained model (pyro_vaegap.papers: cremer2018:2:*:mnist/ffg)",
        values=papers.gap_values("cremer2018", "2", "mnist/ffg"),
        settings=("3280 epochs (Burda schedule) on 60k training images, λ = min(1, epoch/400), Adam eps 1e-4; gaps on the "
                  "first 1000 training images (the authors' code), log p̂ = max(IWAE, AIS) per point, AIS 100 chains × "
                  "500 intermediate distributions × 10 leapfrog steps, IWAE and L[q] with 5000 samples, local "
                  "optimization with 100 samples per step")),
}
for _layers in (0, 2, 4):
    PAPERS[f"cremer2018_table5_mnist_{_layers}_layers"] = PaperColumn(
        title=f"Cremer et al. (2018), Table 5, MNIST, decoder with {_layers} hidden layers (approximation gap; "
              f"pyro_vaegap.papers: cremer2018:5:approximation:decoder{_layers})",
        values={"approximation:ffg": papers.value("cremer2018", "5", "approximation", f"decoder{_layers}")},
        settings="Table 5's protocol (pyro_vaegap.papers.table_info('cremer2018', '5').protocol); only its "
                 "approximation gap is paired here")
#: quantities whose paper value depends on the paper's log p̂, which uses AIS
_USES_LOG_PX = ("log_px", "inference", "approximation:")


def evaluation_split(meta: dict) -> str | None:
    """The split a report's points came from: ``meta["evaluation_split"]``, else read from the words of
    ``meta["evaluation_points"]`` (reports written before the split was recorded), else ``None``."""
    if meta.get("evaluation_split"):
        return meta["evaluation_split"]
    words = meta.get("evaluation_points") or ""
    found = [split for split, word in (("train", "training"), ("valid", "validation"), ("test", "test"))
             if f" {word} point" in f" {words}"]
    return found[0] if len(found) == 1 else None


def paper_for(train_config: dict) -> str | None:
    """The key in :data:`PAPERS` of the published column matching a run's training config, if any: Table 2 for
    the paper's FFG-trained MNIST model (encoder 784-200-200, decoder 50-200-200-784, entropy annealing), Table 5
    for its decoders with 0 or 4 hidden layers."""
    c = train_config
    encoder = c.get("guide_options", {})
    if c.get("decoder_from"):  # an encoder trained on a frozen decoder is not one of the paper's jointly trained models
        return None
    if not (c.get("dataset") == "binarized_mnist" and c.get("guide") == "ffg" and c.get("latent_dim") == 50
            and c.get("hidden") == 200 and c.get("arch", "mlp") == "mlp" and c.get("anneal") == "entropy"
            and encoder.get("hidden", 200) == 200 and encoder.get("layers", 2) == 2):
        return None
    layers = c.get("decoder_layers", 2)
    return "cremer2018_table2_mnist_ffg" if layers == 2 else f"cremer2018_table5_mnist_{layers}_layers" \
        if f"cremer2018_table5_mnist_{layers}_layers" in PAPERS else None


@dataclass
class GapConfig:
    """Evaluation settings (the paper's values as defaults)."""

    families: tuple = ("ffg",)         #: families whose per-datum optimum L[q*] is computed
    family_options: dict = field(default_factory=dict)  #: {family: options for its local guide}
    iwae_samples: int = 5000
    elbo_samples: int = 5000           #: samples for L[q] and each L[q*]
    sample_chunk: int = 500
    data_chunk: int = 100
    ais: bool = True
    ais_chains: int = 100
    ais_steps: int = 500
    ais_leapfrog: int = 10
    ais_schedule: str = "sigmoid"
    ais_step_size: str = "pilot"       #: "pilot" (frozen, unbiased) or "online-biased"
    ais_pilot_chains: int = 10
    ais_init_step_size: float = 0.1
    ais_data_chunk: int = 25           #: datapoints per AIS piece (K × this many rows per decoder call)
    log_px: str = "auto"               #: "auto", "ais", "iwae" or "max" (the paper's; biased upward)
    local_samples: int = 100
    local_lr: float = 1e-3
    local_max_steps: int = 50_000
    local_check_every: int = 100
    local_patience: int = 10
    local_init: str = "prior"
    local_data_chunk: int | None = None  #: datapoints per local-optimization piece (None: all, one problem)
    seed: int = 0

    def __post_init__(self):
        self.families = tuple(self.families)
        if not self.families:
            raise ConfigError("families is empty: name at least one family to optimize locally")
        twice = sorted({f for f in self.families if self.families.count(f) > 1})
        if twice:
            raise ConfigError(f"families={','.join(self.families)!r} names {', '.join(twice)} more than once: "
                              "list each family once")
        for name in ("iwae_samples", "elbo_samples", "sample_chunk", "data_chunk", "ais_chains", "ais_steps",
                     "ais_leapfrog", "ais_pilot_chains", "ais_data_chunk", "local_samples", "local_max_steps", "local_check_every",
                     "local_patience"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("seed", self.seed, minimum=0)
        if self.local_data_chunk is not None:
            check_positive_int("local_data_chunk", self.local_data_chunk)
        check_choice("ais_schedule", self.ais_schedule, SCHEDULES)
        check_choice("ais_step_size", self.ais_step_size, STEP_SIZE_MODES)
        check_choice("local_init", self.local_init, LOCAL_INITS)
        check_choice("log_px", self.log_px, LOG_PX_ESTIMATORS)
        if self.log_px in ("ais", "max") and not self.ais:
            raise ConfigError(f"log_px={self.log_px!r} needs AIS: drop --no-ais or use log_px='iwae'")
        for name in ("local_lr", "ais_init_step_size"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name}={v!r} is not allowed: expected a finite positive number")
        if not isinstance(self.family_options, dict):
            raise ConfigError(f"family_options={self.family_options!r} must be a mapping {{family: {{option: value}}}}")
        for name, options in self.family_options.items():
            if not isinstance(options, dict):
                raise ConfigError(f"family_options: the options of family {name!r} must be a mapping "
                                  f"{{option: value}}, got {options!r}")

    @property
    def log_px_estimator(self) -> str:
        """``"ais"``, ``"iwae"`` or ``"max"``: what ``log_px`` resolves to for this configuration."""
        if self.log_px == "auto":
            return "ais" if self.ais else "iwae"
        return self.log_px

    def check_families(self) -> None:
        """Every family and family option exists (raise :class:`ConfigError` before any computation)."""
        for name in self.family_options:
            if name not in self.families:
                raise ConfigError(f"family_options names {name!r}, which is not in families {list(self.families)}")
        for name in self.families:
            get_family(name).check_options("local", self.family_options.get(name, {}))

    def to_dict(self):
        return dataclasses.asdict(self)


def mean_se(v: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean of ``v`` ``(N,)`` (NaN standard error for one value)."""
    with np.errstate(invalid="ignore", over="ignore"):  # an inf entry (k̂ of a few samples) gives inf/NaN, quietly
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


@dataclass
class GapReport:
    """Per-datapoint results (``per_point``: name → array of shape ``(N,)``) and their provenance.

    ``meta["paper"]`` names the published column (:data:`PAPERS`) the markdown table sets beside
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
        ``max(iwae_samples, elbo_samples)`` draws (:func:`gap_report`)."""
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
        return cls(family=d["family"], approx_family=d["approx_family"], per_point=per, config=d["config"],
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


class Interrupted(ConfigError):
    """Ctrl-C during an evaluation: the message says where it stopped and how to resume."""


class Pieces:
    """The finished pieces of one gap evaluation (a stage × a chunk of datapoints), kept in ``folder``.

    Each piece seeds its own random numbers from ``(seed, stage, chunk)`` (:func:`~pyro_vaegap.utils.stable_seed`),
    so a piece computed in a later process is the piece an uninterrupted run computes, and an
    interrupted evaluation rerun with the same inputs resumes to the same numbers. ``folder/manifest.json``
    fingerprints the inputs (config, data, model and guide parameters): a folder left by different
    inputs is refused, never mixed in. ``folder=None`` keeps nothing (every piece is computed). Pieces
    are kept on the CPU, so an evaluation started on one device resumes on another.
    """

    def __init__(self, folder, fingerprint: dict, shard: tuple[int, int] = (0, 1)):
        self.folder = None if folder is None else Path(folder)
        #: compute seconds per stage, summed over its pieces whichever process computed them
        self.seconds: dict[str, float] = {}
        #: ``(rank, world)``: this process computes only the chunks ``c`` with ``c % world == rank``
        self.rank, self.world = shard
        #: stages with chunks of other ranks, left out here (a later unsharded pass assembles them)
        self.missing: set[str] = set()
        if self.folder is None:
            return
        manifest = self.folder / "manifest.json"
        if manifest.exists():
            try:
                saved = json.loads(manifest.read_text())
            except (OSError, ValueError) as e:
                raise ConfigError(f"the checkpoint folder {str(self.folder)!r} is damaged ({e}); delete it to "
                                  "start the evaluation afresh") from e
            differ = sorted(k for k in fingerprint if saved.get(k) != fingerprint[k])
            if differ:
                raise ConfigError(f"the checkpoint folder {str(self.folder)!r} holds a partial evaluation with a "
                                  f"different {' and '.join(differ)}; rerun with the same options and run to "
                                  f"resume it, or delete the folder (or choose another --out) to start afresh")
        else:
            atomic_write_json(manifest, fingerprint)

    def _path(self, key):
        return self.folder / f"{key}.pt"

    def get(self, key):
        """The saved piece ``key``, or None."""
        if not self.has(key):
            return None
        try:
            return torch.load(self._path(key), map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any unreadable file: say which and what to do
            raise ConfigError(f"the checkpoint piece {str(self._path(key))!r} is damaged ({type(e).__name__}); "
                              "delete that file to recompute it") from e

    def has(self, key) -> bool:
        return self.folder is not None and self._path(key).exists()

    def put(self, key, value) -> None:
        if self.folder is not None:
            atomic_torch_save(self._path(key), value)

    def drop(self, key) -> None:
        if self.folder is not None:
            self._path(key).unlink(missing_ok=True)

    def chunked(self, stage: str, seed: int, n: int, chunk: int, compute) -> dict:
        """``compute(c, start, end)`` (a dict of tensors ``(end - start,)``, or ``(dict, seconds)`` with the
        compute time of earlier processes) for every chunk ``c`` of ``range(n)``, each seeded from
        ``(seed, stage, c)`` and kept as a piece with its compute time; concatenated. Chunks of other ranks
        are left to them: the stage is then :attr:`missing` and ``{}`` is returned."""
        parts = []
        for c, start in enumerate(range(0, n, chunk)):
            key = f"{stage}-{c}"
            if c % self.world != self.rank:  # another rank's: assembled after the barrier, not read now
                self.missing.add(stage)
                continue
            piece = self.get(key)
            if piece is None:
                torch.manual_seed(stable_seed(seed, stage, c))
                t = time.perf_counter()
                values = compute(c, start, min(start + chunk, n))
                values, before = values if isinstance(values, tuple) else (values, 0.0)
                values = {k: v.detach().cpu() for k, v in values.items()}  # pieces resume on any device
                piece = {"values": values, "seconds": before + time.perf_counter() - t}
                self.put(key, piece)
            parts.append(piece["values"])
            self.seconds[stage] = self.seconds.get(stage, 0.0) + piece["seconds"]
        if stage in self.missing:
            return {}
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def fingerprint(model, guide, x, cfg: GapConfig, family: str) -> dict:
    """What an evaluation depends on: config, data, model and guide parameters (short hashes) and the code
    (git commit, dirty flag and a hash of the uncommitted changes anywhere in the repository, or the package
    version): pieces of different code are never mixed."""
    def digest(tensors):
        h = hashlib.sha256()
        for t in tensors:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    code = provenance()
    fp = {"config": cfg.to_dict(), "family": family, "data": digest([x]),
          "parameters": digest([*state_tensors(model), *state_tensors(guide)]),
          "code": code["git"] if code["git"]["commit"] else code["versions"]["pyro_vaegap"]}
    return json.loads(json.dumps(fp))  # as a manifest reads back (tuples become lists)


def check_guides(model, guide, x: torch.Tensor, cfg: GapConfig, rows: int = 3) -> None:
    """Before any estimator runs: the amortized guide and every family's per-datum guide sample exactly the
    model's latent sites, inside its data plate, with its shapes and supports
    (:func:`pyro_vaegap.contract.check_sites`, on the first ``rows`` datapoints); one clear error otherwise."""
    spec = inspect_model(model, x, rows)
    xb = x[:rows]
    B = xb.shape[0]
    check_sites(spec, guide, xb, torch.arange(B, device=x.device), who="the amortized guide")
    for name in cfg.families:
        local = get_family(name).make_local(model, B, **cfg.family_options.get(name, {}))
        check_sites(spec, local.to(dtype=x.dtype, device=x.device), xb,
                    who=f"the per-datum guide of family {name!r}")


def gap_report(model, guide, x: torch.Tensor, config: GapConfig | None = None, *, family: str = "ffg",
               progress: bool = True, log=print, checkpoint=None, shard: tuple[int, int] = (0, 1)) -> GapReport | None:
    r"""Estimate :math:`\log\hat p(x)`, :math:`\mathcal L[q]`, :math:`\mathcal L[q^*]` for each family, and the gaps.

    :param model: a trained Pyro model: any callable ``model(x)`` with its latents and observations inside a
        plate over the rows of ``x`` (:mod:`pyro_vaegap.contract`: sites, data plate, shapes and supports are
        read from its trace); it is frozen throughout.
    :param guide: the trained amortized guide: any Pyro callable ``guide(x)`` sampling the model's latent
        sites inside the data plate (an encoder, a fitted ``AutoNormal``, a family's guide). It and every
        family's per-datum guide are checked against the model's trace before anything is computed.
    :param x: evaluation data ``(N, D)`` — take a seeded random subset (:func:`pyro_vaegap.data.seeded_subset`).
    :param family: the amortized guide's family name (its q* defines the headline gaps).
    :param log: where progress lines go (``print`` by default; ``None`` to silence).
    :param checkpoint: a folder that keeps every finished piece (:class:`Pieces`): an interrupted call
        with the same arguments resumes there and returns exactly what an uninterrupted call returns.
        The caller deletes it once the report is saved.
    :param shard: ``(rank, world)``: compute only the pieces of chunks ``c`` with ``c % world == rank`` into
        ``checkpoint`` (shared by the ranks) and return None — the first pass of a sharded evaluation
        (:mod:`pyro_vaegap.distributed`), whose report a later unsharded call assembles from the folder. A piece is seeded by its chunk alone, so the
        report assembled from the ranks' pieces is the one a single process computes.
    """
    cfg = config or GapConfig()
    cfg.check_families()
    get_family(family)  # the amortized guide's family must exist: its name labels the report
    x = validate_data(model, x)
    model = as_model(model, x)
    check_guides(model, guide, x, cfg)  # before any estimator: a guide that misses a site is a wrong number
    log = log or (lambda *a: None)
    N = x.shape[0]
    if shard[1] > 1 and checkpoint is None:
        raise ConfigError("a sharded evaluation needs a checkpoint folder shared by its ranks")
    pieces = Pieces(checkpoint, fingerprint(model, guide, x, cfg, family), shard)
    per = {}
    is_kw = dict(sample_chunk=cfg.sample_chunk, progress=progress)
    where = "[1/4] L[q] and IWAE"
    try:
        log(f"{where}-{max(cfg.iwae_samples, cfg.elbo_samples)} with the amortized guide on {N} datapoints")

        def importance(c, s, e):
            # global row indices: a guide with per-datapoint parameters (a fitted AutoNormal) reads its rows
            r = importance_sample(model, guide, x[s:e], max(cfg.iwae_samples, cfg.elbo_samples), desc="L[q], IWAE",
                                  data_chunk=e - s, idx=torch.arange(s, e, device=x.device), **is_kw)
            out = {"amortized": r.elbo, "amortized_se": r.elbo_se, "iwae": r.iwae, "iwae_se": r.iwae_se,
                   "iwae_ess": r.ess, "psis_khat": r.khat}
            if hasattr(guide, "uncertainty"):  # a family's own per-point measure of its encoder's uncertainty
                with torch.no_grad():
                    out["uncertainty"] = guide.uncertainty(x[s:e])
            return out

        per.update(pieces.chunked("importance", cfg.seed, N, cfg.data_chunk, importance))

        if cfg.ais:
            where = "[2/4] AIS"
            log(f"{where}: {cfg.ais_chains} chains × {cfg.ais_steps} steps × {cfg.ais_leapfrog} leapfrog "
                f"({cfg.ais_schedule} schedule, {cfg.ais_step_size} step sizes), {cfg.ais_data_chunk} datapoints at a time")

            def anneal(c, s, e):
                a = ais(model, x[s:e], num_chains=cfg.ais_chains, num_steps=cfg.ais_steps,
                        leapfrog_steps=cfg.ais_leapfrog, schedule=cfg.ais_schedule, step_size=cfg.ais_step_size,
                        pilot_chains=cfg.ais_pilot_chains, init_step_size=cfg.ais_init_step_size,
                        data_chunk=e - s, progress=progress)
                return {"ais": a.log_px, "ais_se": a.se, "ais_ess": a.ess, "ais_accept": a.accept_rate,
                        "ais_step_size": a.step_sizes.mean(0) if a.step_sizes.numel() else torch.zeros_like(a.log_px)}

            per.update(pieces.chunked("ais", cfg.seed, N, cfg.ais_data_chunk, anneal))

        lchunk = cfg.local_data_chunk or N
        for i, fam_name in enumerate(cfg.families):
            where = f"[3/4] local optimization of family {fam_name!r}"
            log(f"{where} ({i + 1}/{len(cfg.families)}), {lchunk} datapoints at a time")

            def optimize_and_score(c, s, e, fam_name=fam_name):
                # the initialization is random for some families: seeded by the piece (Pieces.chunked)
                local = get_family(fam_name).make_local(model, e - s, **cfg.family_options.get(fam_name, {}))
                local = local.to(dtype=x.dtype, device=x.device)
                if cfg.local_init == "encoder":
                    local.init_from_amortized(guide, x[s:e])
                key = f"local-{fam_name}-{c}-state"
                state = pieces.get(key)
                t0, before = time.perf_counter(), state["seconds"] if state else 0.0
                if state is None or not state.get("done"):
                    def save_state(st):
                        pieces.put(key, {**st, "seconds": before + time.perf_counter() - t0})

                    res = optimize_local(model, local, x[s:e], num_samples=cfg.local_samples, lr=cfg.local_lr,
                                         max_steps=cfg.local_max_steps, check_every=cfg.local_check_every,
                                         patience=cfg.local_patience, progress=progress, desc=f"local {fam_name}",
                                         state=state, save_state=save_state)
                    state = {"guide": local.state_dict(), "steps": res.steps, "converged": res.converged,
                             "done": True, "seconds": before + time.perf_counter() - t0}
                    pieces.put(key, state)  # scoring may be interrupted: the optimum is kept
                local.load_state_dict(state["guide"])
                torch.manual_seed(stable_seed(cfg.seed, f"score-{fam_name}", c))  # whether or not it resumed
                r = importance_sample(model, local, x[s:e], cfg.elbo_samples, psis=False, desc=f"L[q*_{fam_name}]",
                                      data_chunk=e - s, **is_kw)
                return ({f"local:{fam_name}": r.elbo, f"local_se:{fam_name}": r.elbo_se,
                         f"steps:{fam_name}": state["steps"], f"converged:{fam_name}": state["converged"]},
                        before)

            per.update(pieces.chunked(f"local-{fam_name}", cfg.seed, N, lchunk, optimize_and_score))
            for c in range(-(-N // lchunk)):  # a chunk's optimizer state goes once its piece is saved
                if pieces.has(f"local-{fam_name}-{c}"):
                    pieces.drop(f"local-{fam_name}-{c}-state")
    except KeyboardInterrupt:
        kept = (f"the finished parts are kept in {str(pieces.folder)!r}: rerun the same command to resume"
                if pieces.folder is not None else "nothing was kept (no checkpoint folder)")
        raise Interrupted(f"interrupted during {where}; {kept}") from None

    if pieces.missing:  # the first pass of a sharded evaluation: other ranks' pieces are still coming
        return None
    log("[4/4] gaps")
    if cfg.ais:
        per["ais_minus_iwae"] = per["ais"] - per["iwae"]
    estimator = cfg.log_px_estimator
    per["log_px"] = (per["iwae"] if estimator == "iwae" else per["ais"] if estimator == "ais"
                     else torch.maximum(per["ais"], per["iwae"]))
    for f in cfg.families:
        per[f"approximation:{f}"] = per["log_px"] - per[f"local:{f}"]
        per[f"amortization:{f}"] = per[f"local:{f}"] - per["amortized"]
    per["inference"] = per["log_px"] - per["amortized"]
    per = {k: (v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)) for k, v in per.items()}
    approx_fam = family if family in cfg.families else cfg.families[0]
    # compute time per stage, summed over the processes that computed its pieces (a resumed evaluation
    # reports what the whole evaluation cost, not what its last process did)
    meta = {**provenance(), "seconds": pieces.seconds, "num_points": N, "log_px_estimator": estimator}
    return GapReport(family=family, approx_family=approx_fam, per_point=per, config=cfg.to_dict(), meta=meta)

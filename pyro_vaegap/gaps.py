r"""The inference-gap report of Cremer, Li & Duvenaud (2018).

For a trained model :math:`p_\theta` and amortized guide :math:`q` of family :math:`\mathcal Q`,
per datapoint :math:`x`:

.. math::

    \underbrace{\log p(x) - \mathcal L[q]}_{\text{inference gap}}
    = \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation gap}}
    + \underbrace{\mathcal L[q^*] - \mathcal L[q]}_{\text{amortization gap}},

where :math:`q^* = \arg\max_{q\in\mathcal Q}\mathcal L[q]` is found by per-datapoint optimization
(:mod:`pyro_vaegap.local`) and :math:`\log p(x)` is estimated by
:math:`\log\hat p(x) = \max(\text{IWAE}_{5000}, \text{AIS})` (the paper's definition). Every term is
estimated from the Pyro model and guides through their traces, so any registered family works.

:func:`gap_report` returns a :class:`GapReport`: per-datapoint arrays, means with standard errors,
JSON (config, seed, package versions) and a markdown table laid out like the paper's Table 2.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .ais import SCHEDULES, ais
from .estimators import importance_sample
from .registry import get_family
from .local import optimize_local
from .utils import (ConfigError, atomic_write_json, atomic_write_text, check_choice, check_positive_int,
                    package_versions)

LOCAL_INITS = ("prior", "encoder")

#: Cremer et al. (2018), Table 2, MNIST, model trained with the FFG encoder (nats).
PAPER_MNIST_FFG = {"log_px": -89.80, "local:flow": -90.80, "local:ffg": -91.23, "amortized": -92.57,
                   "approximation": 1.43, "amortization": 1.34, "inference": 2.77}
PAPER_MNIST_SETTINGS = ("paper: 3280 epochs (Burda schedule), 1000 test points, AIS 100 chains × 500 "
                        "intermediate distributions × 10 leapfrog steps, IWAE and L[q] with 5000 samples, "
                        "local optimization with 100 samples per step")


@dataclass
class GapConfig:
    """Evaluation settings (paper values as defaults)."""

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
    ais_step_size: float = 0.05
    local_samples: int = 100
    local_lr: float = 1e-3
    local_max_steps: int = 50_000
    local_check_every: int = 100
    local_patience: int = 10
    local_init: str = "prior"
    seed: int = 0

    def __post_init__(self):
        self.families = tuple(self.families)
        if not self.families:
            raise ConfigError("families is empty: name at least one family to optimize locally")
        for name in ("iwae_samples", "elbo_samples", "sample_chunk", "data_chunk", "ais_chains", "ais_steps",
                     "ais_leapfrog", "local_samples", "local_max_steps", "local_check_every", "local_patience"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("seed", self.seed, minimum=0)
        check_choice("ais_schedule", self.ais_schedule, SCHEDULES)
        check_choice("local_init", self.local_init, LOCAL_INITS)
        if not self.local_lr > 0:
            raise ConfigError(f"local_lr={self.local_lr!r} is not allowed: expected a positive number")

    def to_dict(self):
        return dataclasses.asdict(self)


def _mean_se(v: np.ndarray) -> tuple[float, float]:
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


@dataclass
class GapReport:
    """Per-datapoint results (``per_point``: name → array of shape ``(N,)``) and their provenance."""

    family: str                   #: the amortized guide's family
    approx_family: str            #: family whose q* splits the gap (the amortized family when optimized)
    per_point: dict
    config: dict
    meta: dict

    @property
    def local_families(self) -> list[str]:
        return [k.split(":", 1)[1] for k in self.per_point if k.startswith("local:")]

    def summary(self) -> dict[str, tuple[float, float]]:
        """Mean and standard error (over datapoints) of every per-datapoint quantity."""
        return {k: _mean_se(np.asarray(v, dtype=float)) for k, v in self.per_point.items()}

    def to_dict(self) -> dict:
        """JSON-ready; an undefined value (the standard error of a single point or sample) is ``None``."""
        def clean(v):
            return [clean(u) for u in v] if isinstance(v, list) else (v if math.isfinite(v) else None)

        return {"family": self.family, "approx_family": self.approx_family,
                "summary": {k: {"mean": clean(m), "se": clean(s)} for k, (m, s) in self.summary().items()},
                "per_point": {k: clean(np.asarray(v).tolist()) for k, v in self.per_point.items()},
                "config": self.config, "meta": self.meta}

    def save(self, stem, markdown: str | None = None) -> tuple:
        """Write ``stem.json`` and ``stem.md`` (``markdown`` or :meth:`to_markdown`) atomically."""
        stem = Path(stem)
        return (atomic_write_json(stem.with_suffix(".json"), self.to_dict()),
                atomic_write_text(stem.with_suffix(".md"), markdown or self.to_markdown()))

    def to_markdown(self, paper: dict | None = None, paper_settings: str = "") -> str:
        """Table 2 of the paper: bounds, then gaps, mean ± standard error over datapoints (nats)."""
        s = self.summary()
        rows = [("log p̂(x)", "log_px")]
        rows += [(f"L[q*_{f.upper()}]", f"local:{f}") for f in self.local_families]
        rows += [(f"L[q] ({self.family.upper()} encoder)", "amortized"),
                 (f"Approximation gap (log p̂ − L[q*_{self.approx_family.upper()}])", "approximation"),
                 ("Amortization gap (L[q*] − L[q])", "amortization"), ("Inference gap (log p̂ − L[q])", "inference")]
        head = "| | ours |" + (" paper | ours − paper |" if paper else "")
        lines = [head, "|---|---|" + ("---|---|" if paper else "")]
        for label, key in rows:
            m, se = s[key]
            line = f"| {label} | {m:.2f} ± {se:.2f} |"
            if paper:
                line += (f" {paper[key]:.2f} | {m - paper[key]:+.2f} |" if key in paper else " – | – |")
            lines.append(line)
        n = len(next(iter(self.per_point.values())))
        c = self.config
        diag = (f"\nN = {n} datapoints (seeded subset); IWAE k = {c['iwae_samples']}; L[q], L[q*] with "
                f"{c['elbo_samples']} samples; AIS " + (f"{c['ais_chains']} chains × {c['ais_steps']} steps × "
                                                        f"{c['ais_leapfrog']} leapfrog ({c['ais_schedule']})"
                                                        if c["ais"] else "off")
                + f"; local optimization: {c['local_samples']} samples/step, lr {c['local_lr']}, init "
                  f"{c['local_init']}.\n")
        extra = []
        for key, label in (("psis_khat", "PSIS k̂ of q's weights"), ("iwae_ess", "IS ESS of q (of "
                           f"{c['iwae_samples']})"), ("ais_ess", "AIS ESS (of chains)"),
                           ("ais_minus_iwae", "AIS − IWAE")):
            if key in s:
                extra.append(f"- {label}: mean {s[key][0]:.3g} ± {s[key][1]:.2g}")
        if "psis_khat" in self.per_point:
            k = np.asarray(self.per_point["psis_khat"])
            extra.append(f"- datapoints with k̂ > 0.7 (q far from the posterior): {int((k > 0.7).sum())}/{n}")
        for f in self.local_families:
            steps = np.asarray(self.per_point[f"steps:{f}"])
            extra.append(f"- local {f}: steps median {int(np.median(steps))}, max {int(steps.max())}; "
                         f"stopped by the rule: {int(np.sum(self.per_point[f'converged:{f}']))}/{n}")
        out = "\n".join(lines) + "\n" + diag + "\nDiagnostics:\n" + "\n".join(extra) + "\n"
        if paper_settings:
            out += f"\nSettings that differ from the paper: {paper_settings}\n"
        return out


def gap_report(model, guide, x: torch.Tensor, config: GapConfig | None = None, *, family: str = "ffg",
               progress: bool = True, log=print) -> GapReport:
    r"""Estimate :math:`\log\hat p(x)`, :math:`\mathcal L[q]`, :math:`\mathcal L[q^*]` for each family, and the gaps.

    :param model: a trained model (decoder); it is frozen throughout.
    :param guide: the trained amortized guide.
    :param x: evaluation data ``(N, D)`` — take a seeded random subset (:func:`pyro_vaegap.data.seeded_subset`).
    :param family: the amortized guide's family name (its q* defines the approximation gap).
    :param log: where progress lines go (``print`` by default; ``None`` to silence).
    """
    cfg = config or GapConfig()
    x = model.validate_data(x)
    log = log or (lambda *a: None)
    torch.manual_seed(cfg.seed)
    N = x.shape[0]
    per, timings = {}, {}
    is_kw = dict(sample_chunk=cfg.sample_chunk, data_chunk=cfg.data_chunk, progress=progress)

    t = time.time()
    log(f"[1/4] L[q] and IWAE-{cfg.iwae_samples} with the amortized guide on {N} datapoints")
    S = max(cfg.iwae_samples, cfg.elbo_samples)
    amort = importance_sample(model, guide, x, S, desc="L[q], IWAE", **is_kw)
    per["amortized"] = amort.elbo
    per["amortized_se"] = amort.elbo_se
    per["iwae"] = amort.iwae
    per["iwae_se"] = amort.iwae_se
    per["iwae_ess"], per["psis_khat"] = amort.ess, amort.khat
    timings["importance"] = time.time() - t

    if cfg.ais:
        t = time.time()
        log(f"[2/4] AIS: {cfg.ais_chains} chains × {cfg.ais_steps} steps × {cfg.ais_leapfrog} leapfrog")
        a = ais(model, x, num_chains=cfg.ais_chains, num_steps=cfg.ais_steps, leapfrog_steps=cfg.ais_leapfrog,
                schedule=cfg.ais_schedule, init_step_size=cfg.ais_step_size,
                data_chunk=max(1, min(N, 10_000 // cfg.ais_chains)), progress=progress)
        per["ais"], per["ais_ess"], per["ais_accept"] = a.log_px, a.ess, a.accept_rate
        per["ais_minus_iwae"] = a.log_px - amort.iwae
        per["log_px"] = torch.maximum(a.log_px, amort.iwae)
        timings["ais"] = time.time() - t
    else:
        per["log_px"] = amort.iwae

    for i, fam_name in enumerate(cfg.families):
        t = time.time()
        log(f"[3/4] local optimization of family {fam_name!r} ({i + 1}/{len(cfg.families)})")
        fam = get_family(fam_name)
        local = fam.make_local(model, N, **cfg.family_options.get(fam_name, {}))
        local = local.to(dtype=x.dtype)
        if cfg.local_init == "encoder":
            local.init_from_amortized(guide, x)
        res = optimize_local(model, local, x, num_samples=cfg.local_samples, lr=cfg.local_lr,
                             max_steps=cfg.local_max_steps, check_every=cfg.local_check_every,
                             patience=cfg.local_patience, progress=progress)
        opt = importance_sample(model, local, x, cfg.elbo_samples, psis=False, desc=f"L[q*_{fam_name}]", **is_kw)
        per[f"local:{fam_name}"] = opt.elbo
        per[f"local_se:{fam_name}"] = opt.elbo_se
        per[f"steps:{fam_name}"] = res.steps
        per[f"converged:{fam_name}"] = res.converged
        timings[f"local:{fam_name}"] = time.time() - t

    log("[4/4] gaps")
    approx_fam = family if family in cfg.families else cfg.families[0]
    per["approximation"] = per["log_px"] - per[f"local:{approx_fam}"]
    per["amortization"] = per[f"local:{approx_fam}"] - per["amortized"]
    per["inference"] = per["log_px"] - per["amortized"]
    per = {k: (v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)) for k, v in per.items()}
    meta = {"versions": package_versions(), "seconds": timings, "num_points": N}
    return GapReport(family=family, approx_family=approx_fam, per_point=per, config=cfg.to_dict(), meta=meta)

"""What a gap evaluation is asked to compute: :class:`GapConfig` (the paper's values as defaults)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..contract.registry import get_family
from ..estimators.ais import SCHEDULES, STEP_SIZE_MODES
from ..estimators.potential import FAST_MODES, check_gradient_dtype
from ..utils import ConfigError, check_choice, check_positive_int

LOCAL_INITS = ("prior", "encoder")
LOG_PX_ESTIMATORS = ("auto", "ais", "iwae", "max")


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
    #: how AIS evaluates log p(x, z) and its gradient (:mod:`~pyro_vaegap.estimators.potential`): "traced"
    #: gives the eager values bit for bit; "compiled" agrees to rounding and is faster on the paper's MNIST model
    ais_fast: str = "traced"
    local_fast: str = "eager"          #: the same for the local optimization's step ("traced", "compiled")
    gradient_dtype: str | None = None  #: "bfloat16": both searches' gradients in bf16 (GPUs, AMX CPUs)
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
        check_choice("ais_fast", self.ais_fast, FAST_MODES)
        check_choice("local_fast", self.local_fast, FAST_MODES)
        if self.gradient_dtype not in (None, "bfloat16"):
            raise ConfigError(f"gradient_dtype={self.gradient_dtype!r} is not allowed: expected bfloat16 "
                              "(or leave it unset for the model's precision)")
        check_gradient_dtype(self.gradient_dtype)
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


#: fields added to :class:`GapConfig` after reports were saved, with the value those reports ran with
#: (AIS ran eagerly or traced: bit for bit the same values; the local step eagerly; gradients in fp32)
ADDED_FIELDS = {"ais_fast": "traced", "local_fast": "eager", "gradient_dtype": None}


def saved_config(config: dict) -> dict:
    """A saved report's config with the fields it predates filled in (:data:`ADDED_FIELDS`), so that it
    compares equal to the :class:`GapConfig` that would compute it today."""
    return {**{k: v for k, v in ADDED_FIELDS.items() if k not in config}, **config}

"""The published columns a gap report sets beside ours (:data:`PAPERS`), and which one matches a run
(:func:`paper_for`); the numbers come from :mod:`pyro_vaegap.report.papers`, the one home of published numbers."""
from __future__ import annotations

from dataclasses import dataclass

from . import papers


@dataclass(frozen=True)
class PaperColumn:
    """Published numbers for one model, keyed like :attr:`GapReport.per_point` (nats); ``split``: the split
    whose points the paper evaluated ("train": Cremer et al.'s code takes the first training images)."""

    title: str
    values: dict
    settings: str
    split: str = "train"


#: Published columns a report can set beside ours, from :mod:`pyro_vaegap.report.papers` (the one home of published
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

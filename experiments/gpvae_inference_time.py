r"""Kim & Pavlovic (2021), Table 5: inference time per batch of 128 at dim z = 50, VAE vs SA(K), IAF(K) and GPVAE.

Times one amortized inference pass — one reparameterized draw :math:`z\sim q(z\mid x)` per row with its
:math:`\log q(z\mid x)`, under ``torch.no_grad()`` — for a batch of 128 MNIST-sized inputs (784 binary
pixels), with the library's MNIST networks (encoder 784-200-200, ELU; decoder 50-200-200-784, which
SA's refinement steps run through) and :math:`d = 50`:

* ``VAE``: the FFG encoder (``ffg``), :math:`(\mu(x), \sigma(x))`;
* ``SA(K)``, K = 1, 2, 4, 8: the FFG encoder and K gradient steps on the per-datapoint ELBO (``sa``;
  each step a decoder pass forward and backward);
* ``IAF(K)``, K = 1, 2, 4, 8: the FFG encoder and K MADE steps conditioned on its last hidden layer
  (``iaf``; MADE width ``max(2d, 16)`` = 100);
* ``GPVAE``: the moment-matched marginal of eq. 13 (``gpvae``; full 200×200 covariances for each of the
  2d rows of :math:`W, U`), as the library evaluates it: :math:`\Sigma_j + \Gamma_j` computed once per
  parameter state (``GPVAEEncoder.covariances``), :math:`d` quadratic forms per row;
* ``GPVAE, eq. 13 per call``: the same marginal with the Cholesky factors rebuilt and :math:`2d` quadratic
  forms on every call, as training computes it (``benchmarks.bench_gpvae_inference``, variant (b)).

All variants run in one process in interleaved rounds (``benchmarks.bench_gpvae_inference.interleaved_times``:
every round runs each variant ``--repeats`` times, the order rotating), on the same batch, after warm-up
calls; the figure per variant is the median over its timed calls, and the ratio is to the VAE's median.
The paper's times (GPU, Table 5's MNIST column, from :mod:`pyro_vaegap.report.papers`) are printed beside
ours for every row the paper has (VAE 3.6 ms, GPVAE 9.9 ms: ratio 2.75); the row of eq. 13 per call is ours
only. The weights are freshly initialized (timing does not
depend on training). The default is the paper's protocol (batch 128, d = 50, MNIST size) on the CPU
with one thread; ``--device cuda`` times on a GPU (kernels synchronized around every call).
"""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

import numpy as np
import pyro
import torch

from pyro_vaegap.benchmarks.bench_gpvae_inference import (cpu_name, gaussian_draw, interleaved_times, q_draw,
                                                          uncached_encode)
from pyro_vaegap.data import load_dataset
from pyro_vaegap.models import BernoulliVAE, GaussianVAE
from pyro_vaegap.studies.kim_pavlovic import PAPER_SIGMA2
from pyro_vaegap.contract.registry import get_family

from pyro_vaegap.harness import (Profiles, Progress, Setting, make_parser, markdown_table, parse_args, run_main,
                                 save_figure, write_results)
from pyro_vaegap.report import papers

NAME = "gpvae_inference_time"
DATA_DIM = 784
#: Kim & Pavlovic (2021), Table 5, MNIST (ms per batch of 128 at dim z = 50, GPU; :mod:`pyro_vaegap.report.papers`,
#: ``kim2021:5:ROW:mnist``): the rows whose ratio to the VAE's time the results set beside ours
PAPER_MS = {row: papers.value("kim2021", "5", row, "mnist") for row, _ in papers.table_info("kim2021", "5").rows}
STEPS = (1, 2, 4, 8)
#: cpu (default): the committed results' settings (the paper's batch of 128 at dim z = 50); table11: the supplement's
#: Table 11 (VLAE(K) against GPVAE with fully connected decoders; dim z 10 or 50 by --latent-dim); quick: a smoke run
PROFILES = Profiles(
    profiles={"cpu": {"table": "5", "batch": 128, "latent_dim": 50, "hidden": 200, "rounds": 40, "repeats": 25,
                      "warmup": 10},
              "table11": {"table": "11", "batch": 128, "latent_dim": 10, "hidden": 200, "rounds": 6, "repeats": 3,
                          "warmup": 1},
              "quick": {"table": "5", "batch": 16, "latent_dim": 4, "hidden": 16, "rounds": 2, "repeats": 2,
                        "warmup": 1}},
    settings={"table": Setting(str, "the paper's table: 5 (VAE, SA, IAF, GPVAE) or 11 (VLAE and GPVAE, fully "
                                    "connected decoders)", choices=("5", "11")),
              "batch": Setting(int, "rows per pass (paper 128)"),
              "latent_dim": Setting(int, "dim z (paper 50)"),
              "hidden": Setting(int, "width of the encoder's and decoder's hidden layers (table 11: the decoder's; "
                                     "200 gives about the weights of the conv decoder, 0.20 M)"),
              "rounds": Setting(int, "interleaved rounds"),
              "repeats": Setting(int, "timed calls per variant and round"),
              "warmup": Setting(int, "untimed calls per variant before timing")},
    default="cpu", help={"cpu": "the committed results' settings",
                         "table11": "supplement Table 11: VLAE(1, 2, 4, 8) and GPVAE, conv_kim encoders, fully "
                                    "connected Gaussian decoder"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], profiles=PROFILES)
    p.add_argument("--data-dir", help="folder with binarized_mnist.npz (else $PYRO_VAEGAP_DATA); the batch is 128 "
                                      "seeded random test images")
    return p


def device_name(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"{platform.machine()} CPU ({cpu_name()}), {threads} torch thread{'s' * (threads != 1)}"


def table11_variants(latent_dim: int, hidden: int, seed: int, device) -> dict:
    """The supplement's Table 11: VLAE(K) and GPVAE (and the VAE, the ratios' reference), each with Table 6's
    convolutional encoder (``conv_kim``, h = 256; GPVAE with its separate p = 256 feature networks), and one fully
    connected Gaussian decoder d-``hidden``-``hidden``-784 (ReLU, fixed σ_x²) that VLAE linearizes."""
    torch.manual_seed(seed)
    enc = dict(arch="conv_kim", hidden=256, layers=1, activation="relu")
    model = GaussianVAE(DATA_DIM, latent_dim=latent_dim, hidden=hidden, decoder_layers=2, activation="relu",
                        variance="fixed", sigma2=PAPER_SIGMA2)
    guides = {"VAE": get_family("ffg").make_amortized(model, **enc)}
    guides.update({f"VLAE({k})": get_family("vlae").make_amortized(model, num_steps=k, **enc) for k in STEPS})
    guides["GPVAE"] = get_family("gpvae").make_amortized(model, features="separate", feature_width=256, **enc)
    model.to(device).eval()
    return {name: q_draw(g.to(device).eval()) for name, g in guides.items()}


def paper_ms(table: str, latent_dim: int) -> dict:
    """The paper's milliseconds per batch of each row (GPU): Table 5's MNIST column, or Table 11's MNIST column
    with the fully connected decoder at this dim z (none at another dim z)."""
    if table == "5":
        return PAPER_MS
    col = f"mnist/dim_z={latent_dim}/fc"
    if col not in dict(papers.table_info("kim2021", "11").columns):
        return {}
    return {row: papers.value("kim2021", "11", row, col) for row, _ in papers.table_info("kim2021", "11").rows}


def build_variants(latent_dim: int, hidden: int, seed: int, device) -> dict:
    """name → ``x ↦ (z, log q)`` for every row of the table, on freshly initialized networks."""
    torch.manual_seed(seed)
    net = dict(hidden=hidden, layers=2, activation="elu")
    model = BernoulliVAE(DATA_DIM, latent_dim=latent_dim, hidden=hidden, decoder_layers=2, activation="elu")
    guides = {"VAE": get_family("ffg").make_amortized(model, **net)}
    guides.update({f"SA({k})": get_family("sa").make_amortized(model, num_steps=k, **net) for k in STEPS})
    guides.update({f"IAF({k})": get_family("iaf").make_amortized(model, num_transforms=k, **net) for k in STEPS})
    guides["GPVAE"] = get_family("gpvae").make_amortized(model, **net)
    model.to(device).eval()
    variants = {}
    for name, g in guides.items():
        g.to(device).eval()
        variants[name] = q_draw(g)
    variants["GPVAE, eq. 13 per call"] = gaussian_draw(uncached_encode(guides["GPVAE"]))
    return variants


def main(argv=None):
    args = parse_args(build_parser(), argv, positive=("batch", "latent_dim", "hidden", "rounds", "repeats"),
                      nonneg=("warmup",), profiles=PROFILES)
    out, progress = Path(args.out), Progress(args.quiet)
    device = args.device  # the paper timed on a GPU: --device cuda
    threads = torch.get_num_threads()
    load_start = os.getloadavg()
    table11 = args.table == "11"
    x = load_dataset("mnist_continuous" if table11 else "binarized_mnist", "test", data_dir=args.data_dir)
    gen = torch.Generator().manual_seed(args.seed)
    x = x[torch.randperm(x.shape[0], generator=gen)[:args.batch]].to(device)
    variants = (table11_variants if table11 else build_variants)(args.latent_dim, args.hidden, args.seed, device)
    published = paper_ms(args.table, args.latent_dim)
    progress(f"timing {len(variants)} variants on {device_name(device, threads)}: {args.rounds} rounds × "
             f"{args.repeats} calls after {args.warmup} warm-up calls")
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    with torch.no_grad(), pyro.validation_enabled(False):
        times = interleaved_times(variants, x, args.rounds, args.repeats, args.warmup, sync=sync)
    base = statistics.median(times["VAE"])
    paper_base = published.get("GPVAE" if table11 else "VAE")  # Table 11 has no VAE row: its ratios are to GPVAE
    results = {"table": args.table, "device": device_name(device, threads), "batch": args.batch, "latent_dim": args.latent_dim,
               "hidden": args.hidden, "timed_calls": args.rounds * args.repeats,
               "load_average_start": list(load_start), "load_average_end": list(os.getloadavg()), "variants": {}}
    rows = []
    for name, t in times.items():
        ms = 1e3 * np.asarray(t)
        med = float(np.median(ms))
        paper = published.get(name)
        r = {"median_ms": med, "q25_ms": float(np.percentile(ms, 25)), "q75_ms": float(np.percentile(ms, 75)),
             "ratio_to_vae": med / (1e3 * base), "paper_ms": paper,
             "paper_ratio": paper / paper_base if paper is not None else None}
        if table11:
            r["ratio_to_gpvae"] = med / (1e3 * statistics.median(times["GPVAE"]))
        results["variants"][name] = r
        rows.append([name, f"{med:.3f}", f"{r['q25_ms']:.3f}–{r['q75_ms']:.3f}", f"**{r['ratio_to_vae']:.2f}x**"]
                    + ([f"**{r['ratio_to_gpvae']:.2f}x**"] if table11 else [])
                    + [f"{paper:.1f}" if paper is not None else "–",
                       f"{r['paper_ratio']:.2f}x" if paper is not None else "–"])
        progress(f"{name}: median {med:.3f} ms, {r['ratio_to_vae']:.2f}x the VAE")
    md = (f"One amortized inference pass (a draw z ~ q(z|x) per row and log q(z|x), `torch.no_grad()`) for a batch "
          f"of {args.batch} MNIST test images at dim z = {args.latent_dim} (hidden width {args.hidden}), on "
          f"{results['device']}; median (and interquartile range) over {args.rounds * args.repeats} timed calls per "
          f"variant in {args.rounds} interleaved rounds after {args.warmup} warm-up calls. Load average (1, 5, 15 min) "
          f"at the start {tuple(round(v, 2) for v in load_start)}, at the end "
          f"{tuple(round(v, 2) for v in results['load_average_end'])}. "
          + ("Networks: supplement Table 6's convolutional encoder (h = 256; GPVAE with separate p = 256 feature "
             f"networks) and a fully connected Gaussian decoder {args.latent_dim}-{args.hidden}-{args.hidden}-784 "
             "(ReLU), VLAE(K) linearizing it K times. Paper: Kim & Pavlovic (2021), supplement Table 11 (MNIST, fully "
             f"connected decoder, dim z = {args.latent_dim}), on a GPU; its ratios are to its GPVAE (it has no VAE "
             "row)" if table11 else "Paper: Kim & Pavlovic (2021), Table 5, on a GPU")
          + "; \"–\": a value we do not have.\n\n")
    md += markdown_table(["variant", "median ms / batch", "IQR ms", "ratio to VAE"] + (["ratio to GPVAE"] if table11
                         else []) + ["paper ms", "paper ratio" + (" to GPVAE" if table11 else "")], rows)
    write_results(out, NAME, args, results, md, progress.elapsed)
    save_figure(time_figure(results), out / "inference_time.png")
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}\n\n{md}")
    return results


def time_figure(results: dict):
    import matplotlib.pyplot as plt

    names = list(results["variants"])
    med = [results["variants"][n]["median_ms"] for n in names]
    lo = [m - results["variants"][n]["q25_ms"] for n, m in zip(names, med)]
    hi = [results["variants"][n]["q75_ms"] - m for n, m in zip(names, med)]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1))
    ax.barh(range(len(names)), med, xerr=[lo, hi], color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"median ms per batch of {results['batch']} (bars: interquartile range)")
    ax.set_title(f"inference pass, dim z = {results['latent_dim']}\n{results['device']}", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    run_main(main, None)

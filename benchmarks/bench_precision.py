r"""Matrix-product rates in fp32 and bf16 on this CPU, at the shapes of the paper's evaluation.

Reduced precision is a speed lever only where the processor has bf16 matrix units (Intel AMX tiles,
``amx_bf16``; AVX-512 ``avx512_bf16``). Where it has neither, PyTorch converts bf16 operands in software
and a bf16 product is *slower* than fp32. This script says which case this machine is, from its CPU flags
and from measured rates, before any estimator is given a bf16 path:

(a) dense products at the shapes of Cremer et al.'s decoder on a 10,000-row evaluation batch and a
    100-row training batch, fp32 against bf16 operands;
(b) the paper's decoder (50-200-200-784, ELU, Bernoulli log-likelihood) forward plus the gradient with
    respect to its input on 10,000 rows — the unit of work of an HMC leapfrog step in AIS — in eager fp32
    and under ``torch.autocast("cpu", dtype=torch.bfloat16)``, the log-likelihood summed in fp32.

Timed in one process, in interleaved rounds (the order rotating), median of each; ratios from one run::

    python -m benchmarks.bench_precision --threads 1 --out docs/results/bench_precision.txt
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from pyro_vaegap.utils import atomic_write_text, provenance_line

SHAPES = (((10_000, 200), (200, 784)), ((10_000, 784), (784, 200)), ((100, 200), (200, 784)))
FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def cpu_facts() -> tuple[str, list[str]]:
    """(model name, which of :data:`FLAGS` the CPU reports), from /proc/cpuinfo where there is one."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", []
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                "unknown")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return name, [f for f in FLAGS if f in flags]


def decoder(dtype_ctx):
    """A closure running (b) once: decoder forward + input gradient on 10,000 rows."""
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(a, b, generator=g) / a ** 0.5 for a, b in ((50, 200), (200, 200), (200, 784))]
    bs = [torch.zeros(b) for _, b in ((50, 200), (200, 200), (200, 784))]
    z0 = torch.randn(10_000, 50, generator=g)
    x = (torch.rand(10_000, 784, generator=g) < 0.13).float()

    def step():
        z = z0.clone().requires_grad_(True)
        with dtype_ctx():
            h = F.elu(z @ ws[0] + bs[0])
            h = F.elu(h @ ws[1] + bs[1])
            logits = h @ ws[2] + bs[2]
        ll = -F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").sum()
        (grad,) = torch.autograd.grad(ll, z)
        return float(ll.detach()), grad
    return step


def timed(fn, rounds: int, reps: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        out.append((time.perf_counter() - t) / reps)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_precision", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", help="also write the report here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    name, flags = cpu_facts()
    lines = [provenance_line(), f"CPU: {name}; bf16-relevant flags: {', '.join(flags) or 'none'}; "
             f"torch {torch.__version__}, threads={args.threads}; {args.rounds} interleaved rounds, median", ""]
    lines += ["(a) dense products", "", "| shape | fp32 GFLOP/s | bf16 GFLOP/s | bf16 / fp32 rate |", "|---|---|---|---|"]
    for (m, k), (_, n) in SHAPES:
        a32, b32 = torch.randn(m, k), torch.randn(k, n)
        a16, b16 = a32.bfloat16(), b32.bfloat16()
        reps = max(1, int(2e9 // (2 * m * k * n)))
        t32, t16 = [], []
        for r in range(args.rounds):
            pair = [(t32, lambda: a32 @ b32), (t16, lambda: a16 @ b16)]
            for store, fn in (pair if r % 2 == 0 else pair[::-1]):
                store += timed(fn, 1, reps)
        g32, g16 = (2 * m * k * n / statistics.median(t) / 1e9 for t in (t32, t16))
        lines.append(f"| ({m} × {k}) @ ({k} × {n}) | {g32:.0f} | {g16:.0f} | **{g16 / g32:.2f}x** |")
    eager = decoder(lambda: torch.autocast("cpu", enabled=False))
    bf16 = decoder(lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    ll32, grad32 = eager()
    ll16, grad16 = bf16()
    t32, t16 = [], []
    for r in range(args.rounds):
        pair = [(t32, eager), (t16, bf16)]
        for store, fn in (pair if r % 2 == 0 else pair[::-1]):
            store += timed(fn, 1, 3)
    m32, m16 = statistics.median(t32) * 1e3, statistics.median(t16) * 1e3
    rel = float((grad16 - grad32).norm() / grad32.norm())
    lines += ["", "(b) decoder forward + input gradient, 10,000 rows", "",
              "| variant | ms | speed-up over fp32 |", "|---|---|---|",
              f"| eager fp32 | {m32:.1f} | 1.00x |", f"| eager bf16 autocast | {m16:.1f} | **{m32 / m16:.2f}x** |", "",
              f"bf16 against fp32: log-likelihood {ll16:.1f} vs {ll32:.1f} nats (sum over 10,000 rows), "
              f"relative gradient error {rel:.2e}"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()

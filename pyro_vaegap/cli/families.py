"""``vaegap families``: the registered posterior families."""
from __future__ import annotations

def cmd_families(args):
    from ..contract.registry import broken_plugins, families

    for name, fam in sorted(families().items()):
        kinds = "/".join(k for k, c in (("amortized", fam.amortized), ("per-datum", fam.local)) if c)
        print(f"{name:14s} {kinds:20s} {fam.description}")
    for source, why in broken_plugins().items():
        print(f"(left out) {source}: {why}")

"""A gap evaluation in resumable pieces: :class:`Pieces` keeps every finished piece (a stage × a chunk of
datapoints) in a folder, fingerprinted by what the evaluation depends on (:func:`fingerprint`), so an interrupted
evaluation resumes to the numbers an uninterrupted one computes."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from ..contract.model import state_tensors
from ..utils import ConfigError, atomic_torch_save, atomic_write_json, provenance, stable_seed
from .config import GapConfig

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

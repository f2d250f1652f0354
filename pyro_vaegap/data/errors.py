"""The error every data loader raises, and the split names every loader accepts."""

from __future__ import annotations

SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Missing or malformed data; the message names the offending value and how to fix it."""


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; allowed splits are {', '.join(SPLITS)}")

"""Checks of data handed to a likelihood, and seeded evaluation subsets."""

from __future__ import annotations

import torch

from .errors import DataError


def _check_2d_float(x, name: str) -> torch.Tensor:
    """Shared checks: ``x`` is a non-empty 2-D floating-point tensor with finite entries."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise DataError(
            f"{name}: expected a 2-D tensor (N, D) with one flattened image per row, "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{name}: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise DataError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    _raise_on_entries(~torch.isfinite(x), x, name, "not finite", "a likelihood needs finite values")
    return x


def _raise_on_entries(bad: torch.Tensor, x: torch.Tensor, name: str, what: str, why: str) -> None:
    """Raise a DataError counting the True entries of the (N, D) mask ``bad`` and locating the
    first (row-major) one, so that the user can find it in their data.

    ``what`` says what is wrong with an entry ("not finite"), ``why`` why that matters.
    """
    count = int(bad.sum())
    if count == 0:
        return
    row, col = (int(i) for i in bad.nonzero()[0])
    raise DataError(
        f"{name}: {count} {'entry is' if count == 1 else 'entries are'} {what} "
        f"(first at row {row}, column {col}, value {float(x[row, col]):g}); {why}"
    )


def validate_binary(x, name: str = "data") -> torch.Tensor:
    """Check data for a Bernoulli likelihood.

    :param x: float tensor of shape (N, D).
    :param name: how the data is named in error messages.
    :returns: ``x`` (its floating dtype kept, so float64 validation runs stay float64), contiguous.
    :raises DataError: if ``x`` is not a non-empty 2-D floating-point tensor, has NaN/inf
        entries, or has entries other than exactly 0 or 1 (the message gives their count and
        the position and value of the first).
    """
    x = _check_2d_float(x, name)
    _raise_on_entries(
        (x != 0) & (x != 1), x, name, "not 0 or 1", "a Bernoulli likelihood needs binary data"
    )
    return x.contiguous()


def validate_continuous(x, name: str = "data") -> torch.Tensor:
    """Check data for a continuous likelihood.

    :param x: float tensor of shape (N, D).
    :param name: how the data is named in error messages.
    :returns: ``x`` (its floating dtype kept, so float64 validation runs stay float64), contiguous.
    :raises DataError: if ``x`` is not a non-empty 2-D floating-point tensor or has NaN/inf
        entries.
    """
    return _check_2d_float(x, name).contiguous()


def seeded_subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """A reproducible random subset of row indices, for evaluating on part of a split.

    Evaluation subsets must be seeded random subsets, never "the first N rows": the binarized
    MNIST test split is sorted by class, so its first rows are all zeros.

    :param n_total: number of rows to choose from.
    :param n: subset size, ``1 <= n <= n_total``.
    :param seed: seed of the ``torch.Generator`` driving ``torch.randperm``.
    :returns: int64 tensor of shape (n,): distinct indices in ``[0, n_total)``, sorted ascending
        (so that indexing keeps the data's original order).
    :raises DataError: if ``n`` is out of range.
    """
    if not 1 <= n <= n_total:
        raise DataError(f"subset size n={n} is out of range; it must be between 1 and n_total={n_total}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=generator)[:n].sort().values


#: how evaluation rows are chosen from a split: a seeded random subset, or its first rows
EVAL_POINTS = ("random", "first")


def evaluation_rows(n_total: int, n: int, seed: int, how: str = "random") -> torch.Tensor:
    """The row indices of an evaluation set of ``n`` of a split's ``n_total`` rows.

    ``how="random"``: :func:`seeded_subset` (ours). ``how="first"``: rows ``0..n-1``, the protocol of Cremer et
    al.'s released code, which evaluates the first 1000 *training* images (the training split is not sorted by
    class; the binarized MNIST *test* split is, so its first rows are all zeros: use ``random`` there).

    :raises DataError: if ``n`` is out of range or ``how`` is neither.
    """
    if how not in EVAL_POINTS:
        raise DataError(f"evaluation points {how!r} are not allowed: expected one of {', '.join(EVAL_POINTS)}")
    if how == "random":
        return seeded_subset(n_total, n, seed)
    if not 1 <= n <= n_total:
        raise DataError(f"subset size n={n} is out of range; it must be between 1 and n_total={n_total}")
    return torch.arange(n)

r"""Dynamically (stochastically) binarized image sets: a fresh Bernoulli draw of every grey-level image each
time training uses it (Salakhutdinov & Murray 2008; the binarization of InfoVAE's Table 1).

A pixel of intensity :math:`v \in [0, 1]` is on with probability :math:`v`. For training, the loader returns the
grey levels themselves and :func:`dynamic_binarize` draws each minibatch anew (the training loop does, seeded by
``(seed, epoch, batch)``, so a resumed or data-parallel run draws the same bits as an uninterrupted one). The
valid and test splits are binarized once, with the fixed seed :data:`DYNAMIC_EVAL_SEED` (recorded here, so every
run evaluates on the same bits), so evaluations are comparable across models.

``dynamic_mnist``
    Grey-level MNIST (:func:`~pyro_vaegap.data.load_mnist_continuous`: torchvision's raw files): train the first
    50,000 training images as grey levels, valid the last 10,000 and test the 10,000 test images, binarized once.
``dynamic_fashion_mnist``
    The same for Fashion-MNIST.
"""

from __future__ import annotations

import torch

from .errors import _check_split
from .torchvision_images import load_fashion_mnist_continuous, load_mnist_continuous

#: The seed of the one-time binarization of the valid and test splits.
DYNAMIC_EVAL_SEED = 20_190_127
#: dynamically binarized set -> loader of its grey levels
_GREY = {"dynamic_mnist": load_mnist_continuous, "dynamic_fashion_mnist": load_fashion_mnist_continuous}
#: The dynamically binarized data sets: their ``train`` split holds Bernoulli probabilities, not bits.
DYNAMIC_DATASETS = tuple(_GREY)


def dynamic_binarize(probs: torch.Tensor, seed: int) -> torch.Tensor:
    """A Bernoulli(``probs``) draw of every entry, as 0./1. in ``probs``' dtype, determined by ``seed`` alone.

    Uniforms compared with the probabilities (rather than :func:`torch.bernoulli`) pin the bits down by the
    generator's stream; the generator lives on ``probs``' device."""
    generator = torch.Generator(device=probs.device).manual_seed(int(seed))
    return (torch.rand(probs.shape, generator=generator, device=probs.device) < probs).to(probs.dtype)


def load_dynamic(name: str, split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of the dynamically binarized set ``name``: ``train`` as grey levels in [0, 1] (to be drawn anew
    by :func:`dynamic_binarize` at each use), ``valid`` and ``test`` binarized once with
    :data:`DYNAMIC_EVAL_SEED` (the split's name enters the seed, so the two draws are independent)."""
    _check_split(split)
    grey = _GREY[name](split, data_dir=data_dir, download=download)
    if split == "train":
        return grey
    return dynamic_binarize(grey, DYNAMIC_EVAL_SEED + ("valid", "test").index(split))

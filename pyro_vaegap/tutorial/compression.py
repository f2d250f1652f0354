r"""Real lossless compression with bits-back ANS (BB-ANS; Townsend, Bird & Barber 2019).

A VAE with prior :math:`p(z)`, likelihood :math:`p(x\mid z)` and encoder :math:`q(z\mid x)` turns into a
lossless code whose rate approaches :math:`-\mathrm{ELBO}(x)` bits (R. Yu 2020, §4.1). The coder is a
stack (ANS, last in first out): ``constriction.stream.stack.AnsCoder``.

Discretization (BB-ANS's "maximum entropy" buckets)
---------------------------------------------------
Each latent coordinate is cut into :math:`K = 2^b` buckets of equal *prior* mass, edges
:math:`e_j = \Phi^{-1}(j/K)`; bucket :math:`j` is represented by :math:`\hat z_j = \Phi^{-1}((j+\tfrac12)/K)`.
So the discretized prior is uniform, :math:`P(j) = 1/K` (exactly :math:`b` bits per coordinate), and the
discretized posterior is :math:`Q(j\mid x) = \Phi((e_{j+1}-\mu)/\sigma) - \Phi((e_j-\mu)/\sigma)` per
coordinate of the FFG encoder's :math:`\mathcal N(\mu, \sigma^2)`.

Coding one image ``x`` (pixels are coded with the decoder's Bernoulli probabilities at :math:`\hat z`)
------------------------------------------------------------------------------------------------------
encode:  1. *pop* :math:`j \sim Q(\cdot\mid x)` from the stack ("bits back": gains :math:`-\log_2 Q(j\mid x)`);
         2. *push* ``x`` with :math:`p(x\mid \hat z_j)`; 3. *push* ``j`` with the uniform prior.
decode:  the same steps reversed: pop ``j`` (prior), pop ``x`` (likelihood), push ``j`` back with
         :math:`Q(\cdot\mid x)`, which restores the stack exactly as it was before ``x`` was encoded.

The net cost of an image is :math:`-\log_2 p(x\mid\hat z) - \log_2 P(j) + \log_2 Q(j\mid x)` bits, a
one-sample estimate of the discretized negative ELBO; since the buckets' widths cancel between
:math:`P` and :math:`Q`, it approaches :math:`-\mathrm{ELBO}/\ln 2` as :math:`K` grows. The first
pop needs bits to be on the stack already: the coder starts from ``initial_words`` random 32-bit
words. They are part of the message (the decoder ends with them), so the *overhead* of the scheme is
those initial bits, amortized over the images of one message.

Encoder and decoder must compute bit-identical probabilities, so both run the networks on one image
at a time (the same tensor shapes, hence the same floating-point reductions) in float64 after the
network, and ``constriction`` quantizes them deterministically (``perfect=False``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import ndtr, ndtri

from ..models import BernoulliVAE
from ..utils import ConfigError, check_positive_int


def _constriction():
    try:
        import constriction
    except ImportError as e:  # an optional dependency: say how to get it
        raise ImportError("bits-back compression needs the 'constriction' package: "
                          "pip install 'pyro_vaegap[compress]'") from e
    return constriction


@dataclass
class CompressionResult:
    """What :meth:`BBANSCoder.encode` produced."""

    compressed: np.ndarray   #: uint32 words of the whole message (initial words included)
    num_images: int
    initial_bits: int        #: bits on the stack before the first image (the scheme's overhead)
    total_bits: int          #: ``32 * len(compressed)``
    per_image_bits: np.ndarray  #: net bits each image added to the stack, shape (N,)

    @property
    def net_bits_per_image(self) -> float:
        """(total − initial) / N: the rate the scheme achieves on a long message."""
        return (self.total_bits - self.initial_bits) / self.num_images

    @property
    def bits_per_image_with_overhead(self) -> float:
        """total / N: the rate of this message including the initial bits."""
        return self.total_bits / self.num_images


class BBANSCoder:
    """Bits-back ANS coder of binary images for a :class:`~pyro_vaegap.models.BernoulliVAE` and an
    FFG encoder (any guide with ``encode(x) -> (loc, scale)`` of shape ``(B, d)``).

    :param latent_bits: ``b``: :math:`2^b` prior-equal-mass buckets per latent coordinate. The
        discretization error of the rate shrinks with ``b``; 12 keeps the bucket width well below a
        typical posterior std while the categorical tables stay small (``d x 4096``).
    :param initial_words: 32-bit words of seed randomness on the stack (default: enough to pop the
        first latent even from a uniform posterior, ``ceil(d * b / 32) + 1``).
    :param seed: seed of those random words.
    """

    def __init__(self, model, guide, latent_bits: int = 12, initial_words: int | None = None, seed: int = 0):
        if not isinstance(model, BernoulliVAE):
            raise ConfigError(f"bits-back coding here needs a BernoulliVAE (binary pixels), got {type(model).__name__}")
        if not hasattr(guide, "encode"):
            raise ConfigError(f"guide {type(guide).__name__} has no encode(x) -> (loc, scale); bits-back "
                              "coding needs a diagonal-Gaussian (FFG) encoder")
        self.model, self.guide = model.eval(), guide.eval()
        self.latent_bits = check_positive_int("latent_bits", latent_bits)
        if self.latent_bits > 20:
            raise ConfigError(f"latent_bits={latent_bits} is not allowed: expected 1..20 (2^b categories per latent)")
        self.num_buckets = 2 ** self.latent_bits
        d = model.latent_dim
        self.initial_words = (math.ceil(d * self.latent_bits / 32) + 1 if initial_words is None
                              else check_positive_int("initial_words", initial_words))
        self.seed = int(seed)
        K = self.num_buckets
        self.edges = ndtri(np.arange(K + 1) / K)                  # (K + 1,), e_0 = -inf, e_K = +inf
        self.centres = ndtri((np.arange(K) + 0.5) / K)            # (K,)
        c = _constriction()
        self._prior = c.stream.model.Uniform(K)
        self._categorical = c.stream.model.Categorical(perfect=False)
        self._bernoulli = c.stream.model.Bernoulli(perfect=False)

    # ----- the two conditional distributions, for one image at a time -----
    @torch.no_grad()
    def posterior_table(self, x: torch.Tensor) -> np.ndarray:
        """:math:`Q(j\\mid x)` for each latent coordinate: float64 ``(d, K)``, rows summing to 1.

        :param x: one image, shape ``(1, D)``.

        Masses are differences of normal CDFs taken on the side of the tail they lie in
        (``ndtr(-u)`` for upper buckets), so buckets far from the median keep relative precision.
        """
        loc, scale = self.guide.encode(x)
        mu = loc[0].double().numpy()[:, None]
        sigma = scale[0].double().numpy()[:, None]
        a = (self.edges[None, :-1] - mu) / sigma
        b = (self.edges[None, 1:] - mu) / sigma
        upper = a > 0
        mass = np.where(upper, ndtr(-a) - ndtr(-b), ndtr(b) - ndtr(a))
        return mass / mass.sum(axis=1, keepdims=True)

    @torch.no_grad()
    def pixel_probs(self, j: np.ndarray) -> np.ndarray:
        """Decoder probabilities :math:`p(x_i = 1\\mid \\hat z_j)`, float64 ``(D,)``, for bucket indices ``j`` ``(d,)``."""
        z = torch.as_tensor(self.centres[j], dtype=torch.float32)[None]
        logits = self.model.likelihood(z).base_dist.logits
        return torch.sigmoid(logits[0].double()).numpy()

    # ----- coding -----
    def initial_message(self) -> np.ndarray:
        """The ``initial_words`` seed words (uint32, nonzero, drawn from ``seed``) the stack starts from."""
        rng = np.random.default_rng(self.seed)
        return rng.integers(1, 2**32, size=self.initial_words, dtype=np.uint64).astype(np.uint32)

    def check_images(self, x) -> torch.Tensor:
        """Images as the model's validated float 0/1 tensor ``(N, D)``."""
        return self.model.validate_data(torch.as_tensor(x, dtype=torch.float32))

    def encode(self, images) -> CompressionResult:
        """Compress ``images`` (float 0/1 tensor ``(N, D)``) into one message."""
        c = _constriction()
        x = self.check_images(images)
        coder = c.stream.stack.AnsCoder(self.initial_message())
        initial_bits = coder.num_bits()
        per_image = np.empty(x.shape[0])
        for n in range(x.shape[0]):
            before = coder.num_valid_bits()
            xn = x[n:n + 1]
            j = coder.decode(self._categorical, self.posterior_table(xn))          # bits back
            coder.encode_reverse(xn[0].numpy().astype(np.int32), self._bernoulli, self.pixel_probs(j))
            coder.encode_reverse(j.astype(np.int32), self._prior)
            per_image[n] = coder.num_valid_bits() - before
        compressed = coder.get_compressed()
        return CompressionResult(compressed, x.shape[0], initial_bits, 32 * len(compressed), per_image)

    def decode(self, compressed: np.ndarray, num_images: int) -> tuple[torch.Tensor, np.ndarray]:
        """Invert :meth:`encode`: ``(images (N, D) float 0/1 in the original order, remaining words)``.

        The remaining words equal the initial random words when the message was intact.
        """
        c = _constriction()
        num_images = check_positive_int("num_images", num_images)
        coder = c.stream.stack.AnsCoder(np.asarray(compressed, dtype=np.uint32))
        d, out = self.model.latent_dim, []
        for _ in range(num_images):  # last in, first out: images come back in reverse order
            j = coder.decode(self._prior, d)
            xn = coder.decode(self._bernoulli, self.pixel_probs(j))
            x = torch.as_tensor(xn, dtype=torch.float32)[None]
            coder.encode_reverse(j.astype(np.int32), self._categorical, self.posterior_table(x))
            out.append(x)
        return torch.cat(out[::-1]), coder.get_compressed()


def compress_and_check(model, guide, images, latent_bits: int = 12, seed: int = 0) -> dict:
    """Encode ``images``, decode them back, verify the round trip, and return the rates.

    :returns: dict with ``num_images``, ``initial_bits``, ``total_bits``, ``net_bits_per_image``,
        ``bits_per_image_with_overhead``, ``per_image_bits`` (list), ``roundtrip_exact`` (True).
    :raises AssertionError: if any decoded pixel differs or the initial words are not restored.
    """
    coder = BBANSCoder(model, guide, latent_bits=latent_bits, seed=seed)
    x = coder.check_images(images)
    res = coder.encode(x)
    decoded, rest = coder.decode(res.compressed, res.num_images)
    initial = coder.initial_message()
    exact = torch.equal(decoded, x) and np.array_equal(rest, initial)
    if not exact:
        raise AssertionError(f"bits-back round trip failed: {int((decoded != x).sum())} pixels differ, "
                             f"initial words restored: {np.array_equal(rest, initial)}")
    return {"num_images": res.num_images, "latent_bits": latent_bits, "initial_bits": res.initial_bits,
            "total_bits": res.total_bits, "net_bits_per_image": res.net_bits_per_image,
            "bits_per_image_with_overhead": res.bits_per_image_with_overhead,
            "per_image_bits": res.per_image_bits.tolist(), "roundtrip_exact": exact}

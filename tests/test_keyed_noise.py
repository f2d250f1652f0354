"""Counter-based reparameterization noise: exact hash bits, standard-normal draws, keyed slices."""
import math
import zlib

import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from pyro_vaegap.keyed_noise import KeyedNoise, hash_ints, key_hash, keyed_normal, mix32, mix32_int
from pyro_vaegap.utils import ConfigError


def test_int32_hash_equals_exact_integer_arithmetic():
    """The tensor hash relies on int32 products wrapping modulo 2^32: compare every bit with Python's
    exact integers (edge words and 10,000 random ones)."""
    g = torch.Generator().manual_seed(0)
    words = torch.cat([torch.tensor([0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 0x7FEB352D, 0x846CA68B]),
                       torch.randint(0, 2 ** 32, (10_000,), generator=g)])
    as_i32 = torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)
    got = mix32(as_i32).to(torch.int64) & 0xFFFFFFFF
    assert got.tolist() == [mix32_int(w) for w in words.tolist()]
    keys = torch.arange(50)
    expect = [mix32_int(mix32_int(k ^ hash_ints(3)) ^ hash_ints(4, 5)) for k in range(50)]
    assert (key_hash(3, keys, 4, 5).to(torch.int64) & 0xFFFFFFFF).tolist() == expect


def test_keyed_normal_is_standard_normal_and_independent():
    """200,000 draws over 400 keys × 10 steps: mean and variance within 4 standard errors (mean: 1/√n,
    variance: √(2/n)); Kolmogorov–Smirnov against N(0, 1) at p > 1e-3; correlation between
    neighbouring keys, neighbouring steps and neighbouring elements within 4/√n of 0."""
    keys = torch.arange(400)
    e = torch.stack([keyed_normal(0, keys, t, 7, (5, 400, 10), 1, torch.float64) for t in range(10)])  # (T, S, K, d)
    flat = e.flatten()
    n = flat.numel()
    assert abs(flat.mean()) < 4 / math.sqrt(n)
    assert abs(flat.var() - 1) < 4 * math.sqrt(2 / n)
    assert stats.kstest(flat.numpy(), "norm").pvalue > 1e-3

    def corr(a, b):
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    for a, b in ((e[:, :, 1:], e[:, :, :-1]), (e[1:], e[:-1]), (e[..., 1:], e[..., :-1])):
        assert abs(corr(a, b)) < 4 / math.sqrt(a.numel())


def test_a_keys_draws_do_not_depend_on_the_other_keys():
    """The slice of key k is the same drawn alone, among 5 or among 50 keys, at any position; another
    seed, step or site gives other draws."""
    full = keyed_normal(1, torch.arange(50), 3, 0, (4, 50, 6), -2)
    for keys in (torch.tensor([17]), torch.tensor([40, 17, 2, 3, 9])):
        part = keyed_normal(1, keys, 3, 0, (4, keys.numel(), 6), -2)
        assert torch.equal(part, full[:, keys])
    for other in ((2, 3, 0), (1, 4, 0), (1, 3, 1)):
        assert not torch.equal(keyed_normal(*other[:1], torch.arange(50), *other[1:], (4, 50, 6), -2), full)
    with pytest.raises(ValueError, match="keys has shape"):
        keyed_normal(1, torch.arange(3), 3, 0, (4, 50, 6), -2)


def test_handler_draws_normal_sites_with_keyed_noise_and_rejects_others():
    loc, scale = torch.randn(3, 2), torch.rand(3, 2) + 0.5
    keys = torch.tensor([4, 0, 9])

    def guide(site_dist):
        with pyro.plate("samples", 5, dim=-2), pyro.plate("data", 3, dim=-1):
            return pyro.sample("z", site_dist)

    with KeyedNoise(11, keys, 2):
        z = guide(dist.Normal(loc, scale).to_event(1))
    eps = keyed_normal(11, keys, 2, zlib.crc32(b"z"), (5, 3, 2), 1)
    assert torch.allclose(z, loc + scale * eps)
    with KeyedNoise(11, keys, 2), pytest.raises(ConfigError, match="site 'z' draws from Laplace"):
        guide(dist.Laplace(loc, scale).to_event(1))

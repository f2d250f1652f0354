"""Constructions and checks of R. Yu's VAE tutorial (2020) that go beyond training a VAE:

* :mod:`~pyro_vaegap.tutorial.sigma_vae` — §3.3, the Σ-VAE whose ELBO tends to a normalizing flow's
  exact log-likelihood;
* :mod:`~pyro_vaegap.tutorial.channel` — §4.3, the regularization term of an isotropic encoder as the
  capacity of a noisy Gaussian channel;
* :mod:`~pyro_vaegap.tutorial.latent` — §5.2, the two global optima of a VAE on Gaussian data.

The isotropic encoder family of §4.3 is a guide family like any other (``guides/isotropic.py``).
"""

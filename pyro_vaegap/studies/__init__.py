"""What the experiments of one paper share: settings and science used by more than one experiment module.

:mod:`~pyro_vaegap.studies.cremer` (Cremer, Li & Duvenaud 2018: the MNIST VAE, its options and profiles, one
trained-and-evaluated variant), :mod:`~pyro_vaegap.studies.infovae_mnist` and
:mod:`~pyro_vaegap.studies.infovae_pixelcnn` (Zhao, Song & Ermon 2019: the binarized-MNIST and PixelCNN
models, the aggregate posterior's summary). No experiment imports another: what two share lives here.
"""

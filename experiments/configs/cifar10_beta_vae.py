"""Homework 2, Task 3: the convolutional beta-VAE on CIFAR-10.

Model (the homework's suggested architecture, ``model.conv_preset = "hw2"``, see
``jvae.conv_preset``): encoder ``conv(32) -> relu -> conv(64) -> relu -> conv(128) ->
relu -> conv(256) -> fc(2 * latent)`` (3x3 convs, strides 1, 2, 2, 2, so 32x32 -> 4x4x256;
the posterior head gives ``mu, log_std`` as the homework's encoder); decoder ``fc`` to a
``128 x H/8 x W/8`` map, then transposed convolutions to 128, 64, 32 channels (4x4, stride 2,
ReLU between) and a last 3x3 one to the 3 colour channels. Likelihood: Gaussian with identity
covariance (``gaussian_scale = "fixed"``, ``fixed_scale = 1``: "we do not fit the covariance
matrix"), decoder means as samples. Objective: the ELBO with ``beta`` on the KL term
(``objective.beta``, analytic KL).

Data: CIFAR-10's 50000 training images (``train_full``) and its 10000 test images, centred to
[-1, 1] (``dataset.centre``: ``x * 2 - 1``, "because it helps the model to fit"); figures map
back to [0, 1]. Any of the readers serves it: the official "python version" folder or archive
in ``$JVAE_DATA_DIR/cifar10/``, the homework's ``cifar10.pkl`` there, ``--config.dataset.
download=True`` (fetches the official archive into the cache), or
``--config.dataset.name=tfds:cifar10`` (a prepared TFDS copy).

Hyperparameters: the homework leaves them to the student within ranges: ``EPOCHS < 16``
(15 here), ``LR < 1e-3`` (5e-4), ``128 < N_LATENTS < 1024`` (256) and ``0.1 < BETA < 10``
(1, "starting with the value beta = 1 (standard ELBO)"); ``BATCH_SIZE`` "any adequate value"
(128). ``config.ranges`` holds the suggested ranges of the latent size and beta, checked by
``jvae.runs.check_ranges`` at start-up with a clear error (``objective.beta`` and every
``sweep.beta`` value; the ends are accepted); lift one with ``--config.ranges.beta='()'``.

    python -m jvae.train --config experiments/configs/cifar10_beta_vae.py --workdir runs/hw2
    python -m jvae.train --config experiments/configs/cifar10_beta_vae.py --workdir runs/hw2b \\
        --config.sweep.beta='(0.5, 1.0, 2.0, 5.0)'      # four betas as one vmapped program

Figures: ``reconstructions.png``, ``samples.png`` (decoder means of prior draws) and
``interpolations.png`` (decoder means along ``z1 (1 - a) + z2 a`` between the posterior means
of pairs of test images, 10 values of ``a``), as the homework's last cell.
"""

import ml_collections

from jvae import default_config

LATENT_RANGE = (128, 1024)      # the homework: 128 < N_LATENS < 1024
BETA_RANGE = (0.1, 10.0)        # the homework: 0.1 < BETA < 10


def get_config():
    c = default_config()
    c.seed = 0
    c.num_epochs = 15
    c.batch_size = 128
    c.learning_rate = 5e-4
    c.latent_dim = 256
    c.dataset.name = "cifar10"
    c.dataset.train_split = "train_full"
    c.dataset.eval_split = "test"
    c.dataset.centre = True
    c.model.encoder = "conv"
    c.model.decoder = "conv"
    c.model.conv_preset = "hw2"
    c.model.posterior = "gaussian"
    c.model.posterior_scale = "log_std"
    c.model.likelihood = "gaussian"
    c.model.gaussian_scale = "fixed"
    c.model.fixed_scale = 1.0
    c.objective.name = "elbo"
    c.objective.beta = 1.0
    c.eval.batch_size = 500
    c.checkpoint_every = 1
    c.ranges = ml_collections.ConfigDict()
    c.ranges.latent_dim = LATENT_RANGE
    c.ranges.beta = BETA_RANGE
    return c

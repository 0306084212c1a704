"""Homework 2's 2-D VAE on synthetic Gaussian data (posterior collapse).

Data: mean (2, 3), std (3, 1), 15000 points (70% train); ``dataset.mode`` is "univariate"
(axis-aligned: a diagonal-Gaussian decoder can model it without the latent, so the rate
collapses towards 0) or "multivariate" (rotated 45 degrees: the latent is needed, rate > 0).
Latent dimension 2, Gaussian likelihood whose scale the decoder predicts (the homework's
``mu_x, log_std_x``). Runs in seconds and needs no data files.
"""

from jvae import default_config


def get_config():
    c = default_config()
    c.seed = 0
    c.num_epochs = 10
    c.batch_size = 128
    c.learning_rate = 1e-3
    c.latent_dim = 2
    c.dataset.name = "gaussian2d"
    c.dataset.mode = "univariate"
    c.dataset.eval_split = "test"
    c.model.encoder_hidden = (64, 64)
    c.model.decoder_hidden = (64, 64)
    c.model.likelihood = "gaussian"
    c.model.gaussian_scale = "predicted"
    c.eval.batch_size = 4500
    c.checkpoint_every = 0
    return c

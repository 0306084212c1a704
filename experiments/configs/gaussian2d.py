"""Homework 2's 2-D VAE on synthetic Gaussian data (Task 2: posterior collapse).

The homework's settings: ``generate_2d_data(COUNT=10000)`` (mean (2, 3), standard deviations
(3, 1), ``np.random.seed(42)``, the first 70% for training, the last 30% (3000 points) for
testing); ``dataset.mode`` is "univariate" (axis-aligned: a diagonal-Gaussian decoder can
model it without the latent, so the rate collapses towards 0) or "multivariate" (rotated 45
degrees: the latent is needed, rate > 0). Latent dimension 2, a standard normal prior, an
encoder and a decoder with two hidden ReLU layers (the homework: "2 hidden layers could be
enough") whose heads output ``mu, log_std`` (``model.posterior_scale = "log_std"`` and
``model.likelihood_scale = "log_std"``: the homework's ``exp(log_std)``, plus jvae's floor of
1e-5 / 1e-3 and a clip of ``log_std`` to [-15, 15]). The homework leaves the numbers to the
student within bounds: ``EPOCHS < 10``, ``LR < 1e-2``, "any adequate" batch size; this
config takes 9 epochs, Adam 5e-3, batch 128, hidden widths 64. Runs in seconds and needs no
data files.
"""

from jvae import default_config


def get_config():
    c = default_config()
    c.seed = 0
    c.num_epochs = 9                    # the homework: EPOCHS < 10
    c.batch_size = 128
    c.learning_rate = 5e-3              # the homework: LR < 1e-2
    c.latent_dim = 2
    c.dataset.name = "gaussian2d"
    c.dataset.mode = "univariate"
    c.dataset.count = 10000             # the homework's COUNT for training
    c.dataset.eval_split = "test"
    c.model.encoder_hidden = (64, 64)
    c.model.decoder_hidden = (64, 64)
    c.model.posterior_scale = "log_std"
    c.model.likelihood = "gaussian"
    c.model.gaussian_scale = "predicted"
    c.model.likelihood_scale = "log_std"
    c.eval.batch_size = 3000
    c.checkpoint_every = 0
    return c

"""The DPM2 notebook's experiment: Fashion-MNIST at 64x64, binarised, latent size 10.

FFNN encoder 4096-512-512-1024 followed by the Gaussian head's 20-unit hidden layer
(``GaussianCPDNet(hidden_size=2*latent)``), FFNN decoder 10-512-512-4096 with a Bernoulli
likelihood; softplus scales; Adam; batch 256, 5 epochs. ``--config.model.encoder=conv
--config.model.decoder=conv`` gives the CNN variant. Differences from the notebook: no
dropout (the notebook's decoder uses p=0.1), and a ReLU after the encoder's 1024-unit layer.
"""

from jvae.config import default_config


def get_config():
    c = default_config()
    c.seed = 42
    c.num_epochs = 5
    c.batch_size = 256
    c.learning_rate = 1e-3
    c.latent_dim = 10
    c.dataset.name = "fashion_mnist"
    c.dataset.resize = 64
    c.dataset.binarize = "static"
    c.dataset.threshold = 0.5
    c.dataset.eval_split = "validation"
    c.model.encoder_hidden = (512, 512, 1024, 20)
    c.model.decoder_hidden = (512, 512)
    c.model.conv_encoder_out = 1024
    c.model.posterior_scale = "softplus"
    c.model.likelihood = "bernoulli"
    c.eval.batch_size = 500
    c.checkpoint_every = 1
    return c

"""Lab 5's PyTorch-examples MNIST VAE (``pytorch/examples/vae``).

MNIST grey levels (not binarised) under a Bernoulli likelihood (the example's summed binary
cross-entropy), 784-400-20 ReLU encoder with a log-variance output, 20-400-784 ReLU decoder,
analytic KL, Adam 1e-3, batch 128, 10 epochs, seed 1; trained on all 60000 training images and
evaluated on the 10000 test images with one sample (the example reports 105.33 nats). Dense
layers use PyTorch's ``nn.Linear`` initialisation, as the original does.
"""

from jvae import default_config


def get_config():
    c = default_config()
    c.seed = 1
    c.num_epochs = 10
    c.batch_size = 128
    c.learning_rate = 1e-3
    c.latent_dim = 20
    c.dataset.name = "mnist"
    c.dataset.train_split = "train_full"
    c.dataset.eval_split = "test"
    c.dataset.binarize = "none"
    c.model.encoder_hidden = (400,)
    c.model.decoder_hidden = (400,)
    c.model.posterior_scale = "exp"
    c.model.init = "torch"
    c.model.likelihood = "bernoulli"
    c.eval.elbo_samples = 1
    c.checkpoint_every = 5
    return c

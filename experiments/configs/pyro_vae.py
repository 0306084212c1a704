"""Lab 5's Pyro VAE: the model of Pyro's "Variational Autoencoders" tutorial.

MNIST grey levels (not binarised) under a Bernoulli likelihood (the tutorial's
``dist.Bernoulli(loc_img, validate_args=False)`` on grey levels), encoder 784-400 softplus with
``loc = fc21(h)`` and ``scale = exp(fc22(h))`` (a log standard deviation:
``model.posterior_scale = "log_std"``), decoder 50-400 softplus -> 784 sigmoid (Bernoulli
logits), a 50-d standard normal prior. The loss is Pyro's ``Trace_ELBO``: one sample and a
Monte Carlo KL (``objective.kl = "mc"``); the variant ``kl=analytic`` is
``TraceMeanField_ELBO``. Adam 1e-3, batch 128, 100 epochs on all 60000 training images, the
test ELBO on the 10000 test images every 5 epochs (and after the last), as the tutorial's
``test_frequency = 5``. Dense layers use PyTorch's ``nn.Linear`` initialisation.

    python -m jvae.train --config experiments/configs/pyro_vae.py --workdir runs/pyro_vae
    python -m jvae.train --config experiments/configs/pyro_vae.py:kl=analytic --workdir runs/pyro_mf

Pyro's own run of the same model: ``experiments/pyro_reference.py``; both side by side:
``experiments/bench_pyro.py``.
"""

from jvae.config import default_config, split_variant

KL = ("mc", "analytic")     # Trace_ELBO | TraceMeanField_ELBO


def get_config(variant: str = ""):
    """The tutorial's run; ``variant`` ``"kl=mc"`` (default) or ``"kl=analytic"``."""
    chosen = split_variant(variant, "pyro_vae", ("kl",), f"valid: kl={' | '.join(KL)}")
    kl = chosen.get("kl", "mc")
    if kl not in KL:
        raise ValueError(f"Unknown value {kl!r} for pyro_vae variant key 'kl'; choose one of "
                         f"{list(KL)}.")
    c = default_config()
    c.seed = 0
    c.num_epochs = 100
    c.batch_size = 128
    c.learning_rate = 1e-3
    c.latent_dim = 50
    c.dataset.name = "mnist"
    c.dataset.train_split = "train_full"
    c.dataset.eval_split = "test"
    c.dataset.binarize = "none"
    c.model.kind = "vae"
    c.model.encoder_hidden = (400,)
    c.model.decoder_hidden = (400,)
    c.model.activation = "softplus"
    c.model.init = "torch"
    c.model.posterior = "gaussian"
    c.model.posterior_scale = "log_std"
    c.model.likelihood = "bernoulli"
    c.objective.name = "elbo"
    c.objective.kl = kl
    c.objective.num_samples = 1
    c.eval.elbo_samples = 1
    c.eval.every = 5
    c.checkpoint_every = 5
    return c

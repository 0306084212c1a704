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

import pathlib
import runpy

from jvae.runs import split_variant

KL = ("mc", "analytic")     # Trace_ELBO | TraceMeanField_ELBO


def kl_variant(variant: str, name: str) -> str:
    """The ``kl`` of a variant string ``"kl=mc"`` (default) or ``"kl=analytic"`` of the config
    ``name`` (also the lecture's 2-D VAE's); a one-line ``ValueError`` for anything else."""
    chosen = split_variant(variant, name, ("kl",), f"valid: kl={' | '.join(KL)}")
    kl = chosen.get("kl", "mc")
    if kl not in KL:
        raise ValueError(f"Unknown value {kl!r} for {name} variant key 'kl'; choose one of "
                         f"{list(KL)}.")
    return kl


def get_config(variant: str = ""):
    """The tutorial's run; ``variant`` ``"kl=mc"`` (default) or ``"kl=analytic"``."""
    kl = kl_variant(variant, "pyro_vae")
    # Lab 5's other model, the PyTorch-examples VAE (pytorch_example.py), has the same data,
    # batch, Adam 1e-3, 400-unit layers, torch init and likelihood.
    c = runpy.run_path(str(pathlib.Path(__file__).with_name("pytorch_example.py")))["get_config"]()
    c.seed = 0
    c.num_epochs = 100
    c.latent_dim = 50
    c.model.activation = "softplus"
    c.model.posterior_scale = "log_std"
    c.objective.kl = kl
    c.eval.every = 5
    return c

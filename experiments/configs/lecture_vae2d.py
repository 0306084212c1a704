"""The lecture's 2-D MNIST VAE (``003`` notebook, "Writing a VAE in Pyro").

Encoder 784-128-128 softplus with two heads, the posterior mean and the log standard
deviation (scale ``exp(.)``, the lecture's ``torch.exp(self.z_scale(h))``); decoder
2-128-128-784 softplus giving Bernoulli logits; standard normal prior; a 2-D latent space.
The ELBO with one sample and a Monte Carlo KL, the lecture's code
``loss=pyro.infer.Trace_ELBO()`` (variant ``kl=mc``, the default); its text says "the Mean
field ELBO", Pyro's ``TraceMeanField_ELBO`` with the analytic KL (variant ``kl=analytic``,
which ``experiments/lecture.py`` trains). MNIST grey levels (not binarised); Adam 1e-2,
batch 128, 10 epochs on 70% of the MNIST training set, the other 30% (18000 images) held
out for validation (jvae's split keeps the file order). PyTorch's ``nn.Linear``
initialisation.

    python -m jvae.train --config experiments/configs/lecture_vae2d.py --workdir runs/vae2d
    python -m jvae.train --config experiments/configs/lecture_vae2d.py:kl=analytic --workdir runs/vae2d_mf
"""

import pathlib
import runpy

from jvae import default_config


def get_config(variant: str = ""):
    """The lecture's run; ``variant`` ``"kl=mc"`` (default: Trace_ELBO, the lecture's code)
    or ``"kl=analytic"`` (TraceMeanField_ELBO, its text)."""
    pyro_vae = pathlib.Path(__file__).with_name("pyro_vae.py")
    kl = runpy.run_path(str(pyro_vae))["kl_variant"](variant, "lecture_vae2d")
    c = default_config()
    c.seed = 0
    c.num_epochs = 10
    c.batch_size = 128
    c.learning_rate = 1e-2
    c.latent_dim = 2
    c.dataset.name = "mnist"
    c.dataset.train_split = "train"
    c.dataset.eval_split = "validation"
    c.dataset.validation_size = 18000      # 70/30 split of the 60000 training images
    c.dataset.binarize = "none"
    c.model.kind = "vae"
    c.model.encoder_hidden = (128, 128)
    c.model.decoder_hidden = (128, 128)
    c.model.activation = "softplus"
    c.model.init = "torch"
    c.model.posterior = "gaussian"
    c.model.posterior_scale = "log_std"
    c.model.likelihood = "bernoulli"
    c.objective.name = "elbo"
    c.objective.kl = kl
    c.objective.num_samples = 1
    return c

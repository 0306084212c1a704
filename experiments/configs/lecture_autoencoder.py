"""The lecture's deterministic MNIST autoencoder (``003`` notebook, "Autoencoder for MNIST").

Encoder 784-128-128-2 and decoder 2-128-128-784, softplus activations, PyTorch's
``nn.Linear`` initialisation; a 2-D code and the binary cross-entropy with logits summed over
pixels (``BCEWithLogitsLoss(reduction="sum")``) on MNIST grey levels (not binarised). Adam
1e-2, batch 128, 10 epochs on 70% of the MNIST training set, the other 30% (18000 images)
held out for validation. jvae's split keeps the file order (the first 42000 images train, the
last 18000 validate), where the lecture draws a random one. The loss is averaged over the
batch where the lecture sums it (with Adam only the epsilon differs).

    python -m jvae.train --config experiments/configs/lecture_autoencoder.py --workdir runs/ae
"""

import pathlib
import runpy


def get_config():
    """The 2-D VAE's config (``lecture_vae2d.py``: data, split, networks, optimiser) with a
    deterministic code instead of the posterior."""
    vae2d = pathlib.Path(__file__).with_name("lecture_vae2d.py")
    c = runpy.run_path(str(vae2d))["get_config"]()
    c.model.kind = "autoencoder"
    c.model.posterior_scale = "softplus"   # the default: an autoencoder has no posterior scale
    c.objective.kl = "auto"
    c.eval.ll_samples = 0
    return c

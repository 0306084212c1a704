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

from jvae.config import default_config


def get_config():
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
    c.model.kind = "autoencoder"
    c.model.encoder_hidden = (128, 128)
    c.model.decoder_hidden = (128, 128)
    c.model.activation = "softplus"
    c.model.init = "torch"
    c.model.likelihood = "bernoulli"       # -log p(x|z): BCE with logits summed over pixels
    c.eval.ll_samples = 0
    return c

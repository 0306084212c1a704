"""The IWAE paper's MNIST model with one stochastic layer (Burda, Grosse & Salakhutdinov, 2016,
"Importance Weighted Autoencoders", ICLR; section 5 and appendix).

* Data: MNIST, dynamically binarised (a fresh ``Bernoulli(pixel)`` draw of every training batch,
  ``dataset.binarize = "dynamic"``); trained on all 60000 training images (``train_full``),
  evaluated on the 10000 test images (binarised once with a fixed seed).
* Model: latent dimension 50, standard normal prior; encoder 784-200-200 tanh MLP and a
  diagonal-Gaussian head (mean and log-variance linear in the last hidden layer,
  ``posterior_scale = "exp"``); decoder 50-200-200 tanh MLP and a Bernoulli likelihood over
  784 pixels.
* Objective: the K-sample importance-weighted bound (objective ``iwae`` with
  ``num_samples = k``); ``k = 1`` is the ELBO (the paper's VAE, with a Monte Carlo KL).
* Optimisation: Adam (beta1 0.9, beta2 0.999, ``eps = 1e-4``), batch 20, learning rate
  ``1e-3 * 10^(-i/7)`` for ``3^i`` passes over the data in stage ``i = 0 .. stages-1``
  (``optim.schedule = "iwae"``); 8 stages = 3280 epochs.
* Evaluation: test log-likelihood by importance sampling with K = 5000 samples
  (``eval.ll_samples = 5000``). It is expensive, so ``eval.ll_every = num_epochs``: it runs
  after the last epoch only, while the ELBO is evaluated every epoch.

Variants through the config string, e.g.
``--config experiments/configs/iwae_mnist.py:k=5,stages=3,estimator=iwae``:

* ``k``: a positive integer, the number of importance samples in training (the paper's
  1, 5 and 50; default 1).
* ``stages``: a positive integer, number of stages of the schedule;
  ``num_epochs = builders.iwae_epochs(stages) = (3^stages - 1) / 2`` (default 8: 3280 epochs;
  2: 4 epochs; 3: 13 epochs).
* ``estimator``: gradient estimator of the bound, ``iwae`` (reparameterised IWAE gradient,
  default) | ``stl`` (sticking the landing; biased for k > 1) | ``dreg`` (doubly
  reparameterised).

Unknown keys or values raise ``ValueError``.

Reported test log-likelihoods (Table 1 of the paper, MNIST, one stochastic layer, K = 5000):
VAE (k = 1) -86.76; IWAE k = 5: -85.54; IWAE k = 50: -84.78.

Dense layers use Glorot & Bengio's uniform initialisation, as the paper does
(``model.init = "glorot"``). Difference from the paper: its test set is binarised
stochastically too, here once with ``dataset.data_seed``.
"""

from jvae import default_config
from jvae.runs import iwae_epochs, split_variant

ESTIMATORS = ("iwae", "stl", "dreg")
KEYS = ("k", "stages", "estimator")
DEFAULTS = {"k": 1, "stages": 8, "estimator": "iwae"}
PAPER_K = (1, 5, 50)


def parse_variant(variant: str) -> dict:
    """``"k=5,stages=3"`` -> ``{"k": 5, "stages": 3, "estimator": "iwae"}``; raises
    ``ValueError`` on an unknown key, a bad value or a repeated key."""
    chosen: dict = split_variant(
        variant, "iwae_mnist", KEYS,
        f"use key=value with keys k (positive integer, the paper's {list(PAPER_K)}), stages "
        f"(positive integer) and estimator (one of {list(ESTIMATORS)})")
    for key, value in chosen.items():
        if key == "estimator":
            if value not in ESTIMATORS:
                raise ValueError(f"Unknown iwae_mnist estimator {value!r}; choose one of "
                                 f"{list(ESTIMATORS)}.")
            continue
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number <= 0 or str(number) != value.lstrip("+"):
            raise ValueError(f"iwae_mnist variant {key} must be a positive integer, got "
                             f"{value!r}.")
        chosen[key] = number
    return {**DEFAULTS, **chosen}


def get_config(variant: str = ""):
    v = parse_variant(variant)
    c = default_config()
    c.seed = 0
    c.num_epochs = iwae_epochs(v["stages"])
    c.batch_size = 20
    c.learning_rate = 1e-3
    c.latent_dim = 50
    c.checkpoint_every = 10

    c.dataset.name = "mnist"
    c.dataset.train_split = "train_full"
    c.dataset.eval_split = "test"
    c.dataset.binarize = "dynamic"

    c.model.encoder_hidden = (200, 200)
    c.model.decoder_hidden = (200, 200)
    c.model.activation = "tanh"
    c.model.init = "glorot"
    c.model.posterior_scale = "exp"
    c.model.likelihood = "bernoulli"
    c.model.prior = "standard"

    c.objective.name = "iwae"
    c.objective.num_samples = v["k"]
    c.objective.estimator = v["estimator"]

    c.optim.name = "adam"
    c.optim.eps = 1e-4
    c.optim.schedule = "iwae"

    c.eval.batch_size = 500
    c.eval.elbo_samples = 1
    c.eval.ll_samples = 5000
    c.eval.ll_chunk = 100
    c.eval.every = 1
    c.eval.ll_every = c.num_epochs   # the K = 5000 evaluation runs after the last epoch only
    return c
